"""The workload suite of issue 17 in three frameworks, in one run: this library (flax-rs,
`flax-runtime/benches/workloads.rs`), PyTorch eager (`workloads_torch.py`, NCHW and
channels-last) and Flax/JAX-jit (`workloads_jax.py`). Prints each workload's median time per
step and the library's speed against each other framework, with issue 17's targets and
PASS/MISS. Details: `scripts/bench/README-workloads.md`.

Run from the repository root (after `bash scripts/bootstrap.sh` and
`bash scripts/golden/setup.sh`):

    .golden-venv/bin/python scripts/bench/workloads.py [--threads 1,2] [--rounds 7] \
        [--samples 3] [--warmup 3] [--workloads transformer_train,...] [--json FILE] \
        [--library-env FLAX_PACKED_LINEAR=0]

`--library-env VAR=VALUE` (repeatable) adds a second library process with that environment,
timed in the same rotation as the others, so that a library setting (such as the packed
inference weights' off switch) is compared against the library's default in one run.

How it is fair:
- One process per framework, started once per thread count and kept for the whole run, each
  under `taskset -c 0` (one thread) or `taskset -c 0,1` (two threads), so that no process
  can use more cores than its figure claims; and each framework told its thread count:
  `tch::set_num_threads` and `torch.set_num_threads`; for XLA (which sizes its pools from
  the CPUs the process may use) the one-thread run also sets
  `XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`, a flag the installed jaxlib has.
  The report gives each framework's CPU time over wall time while timed (from
  `/proc/PID/stat`), which shows whether a process really stayed on its cores.
- The frameworks take turns, workload by workload, in an order rotating every round; a
  ratio is the median over rounds of the ratio of the two frameworks' medians in that round,
  which a change of the machine's load between rounds cannot skew. The same ratio is also
  given by CPU time per step (the process's `utime + stime` around each timed command, in
  10 ms ticks), which time spent waiting for a shared core does not inflate; PASS/MISS is
  decided on wall-clock time.
- Warm-up (JAX's compilation included) happens before the first round; every process runs
  with glibc malloc told to keep freed memory (as `quickstart_train_step.py` explains).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TORCH_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
JAX_PYTHON = os.path.join(ROOT, ".golden-venv", "bin", "python")
MALLOC_KEEP = "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967295"
LIBRARY = "flax-rs"
# Steps per timed sample: a sample should take a measurable fraction of a second.
STEPS = {"transformer_train": 1, "resnet_train": 1, "transformer_infer_b1": 10, "quickstart_train_b32": 5}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def targets(workload, threads):
    """(other framework, minimum library speedup over it, words) for a workload."""
    if workload == "transformer_infer_b1":
        rows = [("torch_eager", 1 / 0.8, "latency <= 0.8x PyTorch eager")]
    else:
        rows = [("torch_eager", 1.3, ">= 1.3x PyTorch eager"),
                ("torch_eager@channels_last", 1.1, ">= 1.1x PyTorch channels-last")]
    if threads == 1:
        rows.append(("flax_jax_jit", 1.0, ">= 1.0x Flax/JAX-jit on one pinned core"))
    return rows


class Worker:
    """A framework's process, serving `run NAME SAMPLES STEPS` (see workload_serve.py)."""

    def __init__(self, framework, command, cores, env):
        self.framework = framework
        self.proc = subprocess.Popen(["taskset", "-c", cores] + command, cwd=ROOT, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.names = self.read()["ready"]
        self.cpu_s = self.wall_s = 0.0

    def read(self):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                sys.exit(f"{self.framework} exited (status {self.proc.wait()})")
            if line.startswith("{"):
                return json.loads(line)

    def cpu(self):
        """User + system CPU seconds of the process so far (all its threads)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def threads(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))

    def run(self, name, samples, steps):
        """The seconds per step of each sample, and the CPU seconds per step over them all."""
        cpu, wall = self.cpu(), time.perf_counter()
        self.proc.stdin.write(f"run {name} {samples} {steps}\n")
        self.proc.stdin.flush()
        result = self.read()["samples_s"]
        cpu = self.cpu() - cpu
        self.cpu_s += cpu
        self.wall_s += time.perf_counter() - wall
        return result, cpu / (samples * steps)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def rust_bench_binary():
    """Builds the Rust bench (`cargo bench --no-run`) and returns its executable's path."""
    command = ["cargo", "bench", "-p", "flax-runtime", "--bench", "workloads", "--no-run", "--message-format=json"]
    output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for line in output.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable") \
                and message["target"]["name"] == "workloads":
            return message["executable"]
    sys.exit("cargo built no workloads bench executable")


def start_workers(binary, threads, warmup, library_envs=()):
    cores = "0" if threads == 1 else ",".join(str(c) for c in range(threads))
    env = dict(os.environ, GLIBC_TUNABLES=MALLOC_KEEP)
    env.pop("OMP_WAIT_POLICY", None)
    jax_env = dict(env)
    if threads == 1:
        jax_env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    common = ["--threads", str(threads), "--warmup", str(warmup)]
    variants = [Worker(f"{LIBRARY}[{setting}]", [binary, "--serve"] + common, cores,
                       dict(env, **dict([setting.split("=", 1)])))
                for setting in library_envs]
    return variants + [
        Worker(LIBRARY, [binary, "--serve"] + common, cores, env),
        Worker("torch_eager", [TORCH_PYTHON, "scripts/bench/workloads_torch.py"] + common, cores, env),
        Worker("flax_jax_jit", [JAX_PYTHON, "scripts/bench/workloads_jax.py"] + common, cores, jax_env),
    ]


def variant(worker, name):
    """`torch_eager@channels_last` for the worker's `resnet_train@channels_last`."""
    return worker.framework + name[len(name.split("@")[0]):]


def collect(workers, workloads, args):
    """rounds[r][(workload, variant)] = that round's seconds per step, one per sample, and
    cpu[r][(workload, variant)] = that round's CPU seconds per step."""
    rounds, cpu = [], []
    for r in range(args.rounds):
        samples, cpu_s = {}, {}
        for workload in workloads:
            for k in range(len(workers)):
                worker = workers[(k + r) % len(workers)]
                for name in worker.names:
                    if name.split("@")[0] == workload:
                        key = (workload, variant(worker, name))
                        samples[key], cpu_s[key] = worker.run(name, args.samples, STEPS[workload])
        rounds.append(samples)
        cpu.append(cpu_s)
        print(f"  round {r + 1}/{args.rounds}, load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return rounds, cpu


def summarize(rounds, cpu, workload):
    """Per variant: median wall seconds per step, the library's wall-clock speedup over it
    (median of per-round ratios), median CPU seconds per step, and the CPU-time speedup."""
    keys = [v for w, v in rounds[0] if w == workload]
    median_s = {v: statistics.median(t for r in rounds for t in r[(workload, v)]) for v in keys}
    cpu_s = {v: statistics.median(c[(workload, v)] for c in cpu) for v in keys}
    speedup, cpu_speedup = {}, {}
    for v in keys:
        per_round = [statistics.median(r[(workload, v)]) / statistics.median(r[(workload, LIBRARY)]) for r in rounds]
        speedup[v] = statistics.median(per_round)
        cpu_speedup[v] = statistics.median(c[(workload, v)] / c[(workload, LIBRARY)] for c in cpu)
    return median_s, speedup, cpu_s, cpu_speedup


def report(threads, rounds, cpu, workloads, workers, load):
    print(f"\n== {threads} thread(s), taskset -c {'0' if threads == 1 else '0-' + str(threads - 1)}; "
          f"{len(rounds)} rounds; load average before/after {load[0]:.2f}/{load[1]:.2f}")
    for w in workers:
        print(f"   {w.framework:<14} CPU/wall while timed {w.cpu_s / max(w.wall_s, 1e-9):.2f}, "
              f"{w.threads()} OS threads")
    summary = {}
    for workload in workloads:
        median_s, speedup, cpu_s, cpu_speedup = summarize(rounds, cpu, workload)
        summary[workload] = {"median_s": median_s, "library_speedup": speedup, "cpu_s_per_step": cpu_s,
                             "library_cpu_speedup": cpu_speedup}
        print(f"\n  {workload}" + " " * 22 + "wall ms  speedup   CPU ms  speedup")
        for v, s in median_s.items():
            print(f"    {v:<28} {s * 1e3:9.2f} {speedup[v]:7.3f}x {cpu_s[v] * 1e3:8.2f} {cpu_speedup[v]:7.3f}x")
        for other, target, words in targets(workload, threads):
            if other in speedup:
                verdict = "PASS" if speedup[other] >= target else "MISS"
                wall, by_cpu = speedup[other], cpu_speedup[other]
                if workload == "transformer_infer_b1" and other == "torch_eager":
                    shown = f"latency ratio {1 / wall:.3f}x, by CPU time {1 / by_cpu:.3f}x (needs <= {1 / target:.2f}x)"
                else:
                    shown = f"speedup {wall:.3f}x, by CPU time {by_cpu:.3f}x (needs >= {target:.2f}x)"
                print(f"    target {words}: {shown} {verdict}")
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2", help="thread counts, one run each")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--samples", type=int, default=3, help="timed samples per framework per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workloads", default=",".join(STEPS))
    parser.add_argument("--json", help="also write the raw samples and the summary here")
    parser.add_argument("--library-env", action="append", default=[], metavar="VAR=VALUE",
                        help="also time the library with this environment variable set")
    parser.add_argument("--steps", action="append", default=[], metavar="WORKLOAD=N",
                        help="steps per timed sample (finer CPU-time resolution: the clock ticks at 10 ms)")
    args = parser.parse_args()
    for setting in args.steps:
        name, _, steps = setting.partition("=")
        if name not in STEPS or not steps.isdigit() or int(steps) < 1:
            parser.error(f"--steps takes WORKLOAD=N with a workload of {sorted(STEPS)}, not {setting!r}")
        STEPS[name] = int(steps)
    workloads = args.workloads.split(",")
    binary = rust_bench_binary()
    results = {}
    for threads in map(int, args.threads.split(",")):
        load_before = os.getloadavg()[0]
        workers = start_workers(binary, threads, args.warmup, args.library_env)
        rounds, cpu = collect(workers, workloads, args)
        summary = report(threads, rounds, cpu, workloads, workers, (load_before, os.getloadavg()[0]))
        for w in workers:
            w.close()
        raw = [{f"{w}/{v}": s for (w, v), s in r.items()} for r in rounds]
        raw_cpu = [{f"{w}/{v}": c for (w, v), c in r.items()} for r in cpu]
        results[threads] = {"summary": summary, "rounds": raw, "cpu_s_per_step": raw_cpu}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
