"""The spec's quickstart training step in four frameworks, in one run on one machine: this
library (flax-rs), hand-written `tch` (channels-last and NCHW), PyTorch eager (NCHW and
channels-last) and Flax with `jax.jit`. Prints steps per second at batch 32 and 128 and the
library's speed against each, with the targets of issue 6 (at least as fast as Flax/JAX-jit,
at least 1.3x PyTorch eager, within 1.05x of hand-written `tch`) and PASS/MISS.

Set-up, once, from the repository root:

    bash scripts/bootstrap.sh        # .venv: the torch 2.13.0 wheel, whose libtorch tch links
    bash scripts/golden/setup.sh     # .golden-venv: flax, jax, optax, numpy

Run, from the repository root (LIBTORCH as for any cargo command; the Rust bench is built
with `cargo bench --no-run` first):

    .golden-venv/bin/python scripts/bench/quickstart_train_step.py [--threads 1] \
        [--rounds 10] [--samples 3] [--steps 5] [--batches 32,128] [--default-malloc]

The step (same network, same optimizer): the CNN's forward pass, the mean softmax
cross-entropy with integer labels, the gradients, and SGD(lr 0.01, momentum 0.9); not the
metrics. The library runs the quickstart example's `train_step` as a user writes it; the
other versions are described in `flax-runtime/benches/quickstart_train_step.rs`,
`scripts/bench/torch_eager_step.py` and `scripts/reference/quickstart.py` (whose `CNN`,
`create_train_state` and jitted `train_step` this script imports and times as they are).

Fairness:
- Same libtorch: `tch` links the libtorch of the `.venv` torch wheel, which PyTorch eager runs.
- Same thread count everywhere (`--threads`, default 1): `tch::set_num_threads`,
  `torch.set_num_threads`, and every process pinned to the first `--threads` cores (the
  script sets its own CPU affinity, which the subprocesses inherit, before importing jax:
  XLA sizes its thread pools from it), plus `XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`
  for one thread.
- Warm-up excluded: every version takes `--warmup` untimed steps first; Flax's are after the
  jit compilation. A sample is `--steps` consecutive steps, timed with a monotonic clock;
  Flax's sample ends with `block_until_ready` on the new state (JAX dispatches
  asynchronously). Inputs are on the host already (no data loading is timed).
- Steady state: every framework runs in a short process (a few dozen steps per round), where
  glibc's malloc still hands the freed activation and gradient buffers back to the operating
  system and each step page-faults them in again (a third of the step on one thread, in the
  library, `tch` and PyTorch eager alike), unlike a training process, whose allocator settles
  after its first steps (the quickstart example takes about 90 page faults per step, with or
  without this setting). So the script runs every framework with `GLIBC_TUNABLES` telling
  malloc to keep freed memory (it re-executes itself with it); `--default-malloc` does not.
- Drift: the machine may be shared, so the frameworks run alternately, round after round (the
  order rotating), and each ratio is the median over rounds of the ratio of the two
  frameworks' medians in that round; the library and hand-written `tch` are paired sample by
  sample inside the Rust bench. Steps per second are medians over all samples.
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
# glibc malloc settings that keep freed buffers in the heap instead of unmapping them.
MALLOC_KEEP = "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967295"

# (other framework, target for the library's speed over its speed, what the target says)
TARGETS = [
    ("tch_channels_last", 1 / 1.05, "within 1.05x of hand-written tch"),
    ("tch_nchw", 1 / 1.05, "within 1.05x of hand-written tch"),
    ("torch_eager_nchw", 1.3, "1.3x PyTorch eager"),
    ("torch_eager_channels_last", 1.3, "1.3x PyTorch eager"),
    ("flax_jax_jit", 1.0, "as fast as Flax/JAX-jit"),
]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of every framework")
    parser.add_argument("--rounds", type=int, default=10, help="rounds, each running every framework")
    parser.add_argument("--samples", type=int, default=3, help="timed samples per framework per round")
    parser.add_argument("--steps", type=int, default=5, help="consecutive steps per timed sample")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before each framework's samples")
    parser.add_argument("--batches", default="32,128")
    parser.add_argument("--json", help="also write the raw samples and the summary to this file")
    parser.add_argument("--default-malloc", action="store_true",
                        help=f"do not set GLIBC_TUNABLES={MALLOC_KEEP} (see the docstring)")
    return parser.parse_args()


def keep_malloc_memory():
    """Re-executes this script with glibc's malloc told to keep freed memory (inherited by
    the subprocesses; glibc reads GLIBC_TUNABLES only at start-up)."""
    if os.environ.get("GLIBC_TUNABLES") != MALLOC_KEEP:
        env = dict(os.environ, GLIBC_TUNABLES=MALLOC_KEEP)
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def set_xla_threads(threads):
    """Pins this process (and so the subprocesses it starts, which inherit the mask) to the
    first `threads` cores, which is what sizes XLA's CPU thread pools, and for one thread
    also sets the one real XLA flag for it (before jax is imported). XLA has no
    `intra_op_parallelism_threads` flag: an earlier version of this script passed one, and
    XLA then still used both cores."""
    os.sched_setaffinity(0, range(threads))
    if threads == 1:
        flags = "--xla_cpu_multi_thread_eigen=false"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()


def rust_bench_binary():
    """Builds the Rust bench (`cargo bench --no-run`) and returns its executable's path."""
    command = ["cargo", "bench", "-p", "flax-runtime", "--bench", "quickstart_train_step", "--no-run",
               "--message-format=json"]
    output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for line in output.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable") and \
                message["target"]["name"] == "quickstart_train_step":
            return message["executable"]
    sys.exit("cargo built no quickstart_train_step bench executable")


def run_json(command):
    """Runs a command that prints one JSON line last, and returns it."""
    result = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


class FlaxJit:
    """The reference `train_step` (jitted) on a state from `create_train_state(0)`."""

    def __init__(self, batches, warmup):
        sys.path.insert(0, os.path.join(ROOT, "scripts", "reference"))
        import jax
        import quickstart  # the spec's CNN, create_train_state and train_step, as they are

        self.jax, self.quickstart, self.warmup = jax, quickstart, warmup
        key_x, key_y = jax.random.split(jax.random.PRNGKey(1))
        self.data = {
            b: (jax.random.uniform(key_x, (b, 28, 28, 1)), jax.random.randint(key_y, (b,), 0, 10))
            for b in batches
        }

    def run(self, samples, steps):
        rows = []
        for batch, (images, labels) in self.data.items():
            state = self.quickstart.create_train_state(0)
            for _ in range(self.warmup):  # the first one compiles
                state = self.quickstart.train_step(state, images, labels)
            self.jax.block_until_ready(state)
            times = []
            for _ in range(samples):
                start = time.perf_counter()
                for _ in range(steps):
                    state = self.quickstart.train_step(state, images, labels)
                self.jax.block_until_ready(state)
                times.append((time.perf_counter() - start) / steps)
            rows.append({"name": "flax_jax_jit", "batch": batch, "samples_s": times})
        return rows


def frameworks(args, batches):
    """The three runners, each returning rows `{name, batch, samples_s}` for one round."""
    binary = rust_bench_binary()
    common = ["--threads", str(args.threads), "--steps", str(args.steps), "--warmup", str(args.warmup),
              "--batches", args.batches]
    flax_jit = FlaxJit(batches, args.warmup)
    return {
        "rust": lambda: run_json([binary, "--json", "--rounds", str(args.samples)] + common)["rows"],
        "torch": lambda: run_json([TORCH_PYTHON, "scripts/bench/torch_eager_step.py", "--samples",
                                   str(args.samples)] + common)["rows"],
        "flax": lambda: flax_jit.run(args.samples, args.steps),
    }


def collect(args, batches):
    """`rounds[r][(name, batch)]` = that round's per-step samples, in seconds."""
    runners = list(frameworks(args, batches).items())
    rounds = []
    for r in range(args.rounds):
        samples = {}
        for k in range(len(runners)):
            name, run = runners[(k + r) % len(runners)]
            for row in run():
                samples[(row["name"], row["batch"])] = row["samples_s"]
        rounds.append(samples)
        print(f"round {r + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return rounds


def summarize(rounds, batch):
    """Per framework: median steps/s; per other framework: the library's speed over its speed."""
    names = [name for name, b in rounds[0] if b == batch]
    steps_per_s = {n: 1 / statistics.median([t for r in rounds for t in r[(n, batch)]]) for n in names}
    ratios = {}
    for other in names:
        if other.startswith("tch_"):  # paired sample by sample in the Rust bench
            pairs = [o / f for r in rounds for o, f in zip(r[(other, batch)], r[("flax", batch)])]
        else:
            pairs = [statistics.median(r[(other, batch)]) / statistics.median(r[("flax", batch)]) for r in rounds]
        ratios[other] = statistics.median(pairs)
    return steps_per_s, ratios


def print_report(args, rounds, batches, load):
    print(f"\nquickstart train step: {args.threads} thread(s), {args.rounds} rounds x {args.samples} samples x "
          f"{args.steps} steps; load average before/after {load[0]:.2f}/{load[1]:.2f}; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}")
    summary = {}
    for batch in batches:
        steps_per_s, ratios = summarize(rounds, batch)
        summary[batch] = {"steps_per_s": steps_per_s, "library_speedup": ratios}
        print(f"\nbatch {batch}")
        for name, rate in steps_per_s.items():
            print(f"  {name:<28} {rate:8.1f} steps/s")
        for other, target, words in TARGETS:
            ratio = ratios[other]
            verdict = "PASS" if ratio >= target else "MISS"
            print(f"  flax-rs / {other:<26} {ratio:6.3f}x  target >= {target:.3f}x ({words})  {verdict}")
    return summary


def main():
    args = parse_args()
    if not args.default_malloc:
        keep_malloc_memory()
    set_xla_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    load_before = os.getloadavg()[0]
    rounds = collect(args, batches)
    summary = print_report(args, rounds, batches, (load_before, os.getloadavg()[0]))
    if args.json:
        with open(args.json, "w") as f:
            raw = [{f"{n}@{b}": s for (n, b), s in r.items()} for r in rounds]
            json.dump({"args": vars(args), "summary": summary, "rounds": raw}, f, indent=1)


if __name__ == "__main__":
    main()
