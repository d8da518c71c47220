"""Issue 16's LSTM benchmark: the training step of an LSTM sequence classifier in this library
(flax-rs), PyTorch eager with `nn.LSTM`, and Flax with `jax.jit`, each on one pinned core.

The step (same model, same optimizer, same shapes everywhere): token ids `(32, 50)` from a
vocabulary of 1000; an embedding to 128 features; an LSTM of 256 units over the 50 steps
(batch-major); a dense head on the last hidden state to 10 classes; the mean softmax
cross-entropy with integer labels; the gradients; an Adam(1e-3) update.
- flax-rs: `flax-runtime/benches/lstm_train_step.rs` (`nn::RNN(nn::LSTMCell)`, which runs
  libtorch's fused `lstm` at `apply`; also `flax_per_step`, the cell scanned step by step, and
  `flax_optimized_per_step`, `OptimizedLSTMCell` scanned step by step);
- PyTorch: `nn.Embedding`, `nn.LSTM(batch_first=True)`, `nn.Linear`, `F.cross_entropy`,
  `torch.optim.Adam`, `zero_grad` / `backward` / `step`, `torch.set_num_threads(1)`;
- Flax/JAX: `nn.Embed`, `nn.RNN(nn.LSTMCell(256), return_carry=True)`, `nn.Dense`, optax's
  `softmax_cross_entropy_with_integer_labels` and `adam`, one `jax.jit`ted step
  (`block_until_ready` at the end of a sample), `XLA_FLAGS` for one thread.

Fairness: every framework runs in its own process pinned with `taskset -c 0` (one core; for
JAX the XLA flags alone would leave other threads), with glibc malloc told to keep freed
memory (`GLIBC_TUNABLES`, as in `quickstart_train_step.py`); warm-up steps (and JAX's
compilation) are excluded; a sample is `--steps` consecutive steps. The machine may be shared,
so frameworks run alternately, round after round (the order rotating); each ratio is the
median over rounds of the ratio of the two frameworks' medians in that round. Every sample is
timed by the wall clock and by the process's CPU time (all threads; on one pinned core, the
work done, whatever the time spent waiting for the core while other jobs run): on a busy
machine the CPU-time ratios are the meaningful ones.

Run from the repository root (the Rust bench is built with `cargo bench --no-run` first):

    .golden-venv/bin/python scripts/bench/lstm_train_step.py [--rounds 5] [--samples 3] [--steps 3]
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
VOCAB, EMBED, HIDDEN, STEPS, BATCH, CLASSES, LR = 1000, 128, 256, 50, 32, 10, 1e-3


def data():
  """The same token ids and labels for every framework, as nested lists (the PyTorch venv has
  no numpy): a fixed linear congruential sequence."""
  state, values = 12345, []
  for _ in range(BATCH * STEPS + BATCH):
    state = (1103515245 * state + 12345) % 2**31
    values.append(state >> 8)
  tokens = [[values[b * STEPS + t] % VOCAB for t in range(STEPS)] for b in range(BATCH)]
  labels = [values[BATCH * STEPS + b] % CLASSES for b in range(BATCH)]
  return tokens, labels


def worker_torch(samples, steps, warmup):
  import torch
  import torch.nn.functional as F

  torch.set_num_threads(1)

  class Model(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.embed = torch.nn.Embedding(VOCAB, EMBED)
      self.lstm = torch.nn.LSTM(EMBED, HIDDEN, batch_first=True)
      self.head = torch.nn.Linear(HIDDEN, CLASSES)

    def forward(self, tokens):
      _, (h, _) = self.lstm(self.embed(tokens))
      return self.head(h[0])

  torch.manual_seed(0)
  model = Model()
  opt = torch.optim.Adam(model.parameters(), lr=LR)
  tokens, labels = (torch.tensor(a, dtype=torch.int64) for a in data())

  def step():
    opt.zero_grad()
    loss = F.cross_entropy(model(tokens), labels)
    loss.backward()
    opt.step()
    return loss

  for _ in range(warmup):
    step()
  out = {"wall": [], "cpu": []}
  for _ in range(samples):
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
      step()
    out["wall"].append((time.perf_counter() - start) * 1e3 / steps)
    out["cpu"].append((time.process_time() - start_cpu) * 1e3 / steps)
  return {"pytorch_nn_lstm": out}


def worker_jax(samples, steps, warmup):
  import jax
  import jax.numpy as jnp
  import optax
  import flax.linen as nn

  class Model(nn.Module):
    @nn.compact
    def __call__(self, tokens):
      x = nn.Embed(VOCAB, EMBED)(tokens)
      (_, h), _ = nn.RNN(nn.LSTMCell(HIDDEN), return_carry=True)(x)
      return nn.Dense(CLASSES)(h)

  tokens, labels = (jnp.asarray(a, dtype=jnp.int32) for a in data())
  model = Model()
  params = model.init(jax.random.PRNGKey(42), tokens)["params"]
  tx = optax.adam(LR)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state):
    def loss_fn(p):
      logits = model.apply({"params": p}, tokens)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  for _ in range(max(warmup, 1)):
    params, opt_state, loss = step(params, opt_state)
  jax.block_until_ready(params)
  out = {"wall": [], "cpu": []}
  for _ in range(samples):
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
      params, opt_state, loss = step(params, opt_state)
    jax.block_until_ready((params, opt_state))
    out["wall"].append((time.perf_counter() - start) * 1e3 / steps)
    out["cpu"].append((time.process_time() - start_cpu) * 1e3 / steps)
  return {"flax_jax_jit": out}


def rust_bench_binary():
  command = ["cargo", "bench", "-p", "flax-runtime", "--bench", "lstm_train_step", "--no-run",
             "--message-format=json"]
  output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
  for line in output.splitlines():
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == "lstm_train_step":
      if msg.get("executable"):
        return msg["executable"]
  raise SystemExit("could not find the lstm_train_step bench binary")


def run_json(command, extra_env=None):
  env = dict(os.environ, GLIBC_TUNABLES=MALLOC_KEEP, **(extra_env or {}))
  result = subprocess.run(["taskset", "-c", "0"] + command, cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True)
  return json.loads(result.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--worker", choices=["torch", "jax"])
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--samples", type=int, default=3)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--warmup", type=int, default=2)
  args = parser.parse_args()
  if args.worker:
    fn = worker_torch if args.worker == "torch" else worker_jax
    print(json.dumps(fn(args.samples, args.steps, args.warmup)))
    return

  binary = rust_bench_binary()
  me = os.path.abspath(__file__)
  common = ["--samples", str(args.samples), "--steps", str(args.steps), "--warmup", str(args.warmup)]
  xla = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
  runners = [
    ("flax-rs", lambda: run_json([binary, "--json", "--rounds", str(args.samples), "--steps",
                                  str(args.steps), "--warmup", str(args.warmup)])),
    ("pytorch", lambda: run_json([TORCH_PYTHON, me, "--worker", "torch"] + common)),
    ("jax", lambda: run_json([JAX_PYTHON, me, "--worker", "jax"] + common, xla)),
  ]
  rounds = []
  for r in range(args.rounds):
    result = {}
    for k in range(len(runners)):
      name, run = runners[(k + r) % len(runners)]
      result.update(run())
    rounds.append({name: {m: statistics.median(s[m]) for m in ("wall", "cpu")} for name, s in result.items()})
    print(f"round {r + 1}: " + ", ".join(f"{n} {v['wall']:.1f} ms wall / {v['cpu']:.1f} ms CPU"
                                         for n, v in rounds[-1].items()), file=sys.stderr)

  names = list(rounds[0])
  print(f"LSTM train step: batch {BATCH}, {STEPS} steps, embed {EMBED}, {HIDDEN} units, Adam; one "
        f"pinned core (taskset -c 0); {args.rounds} rounds x {args.samples} samples x {args.steps} steps")
  print(f"{'version':>23}  {'wall ms/step':>12}  {'CPU ms/step':>11}")
  for n in names:
    wall = statistics.median(r[n]["wall"] for r in rounds)
    cpu = statistics.median(r[n]["cpu"] for r in rounds)
    print(f"{n:>23}  {wall:12.2f}  {cpu:11.2f}")
  print("speed of flax-rs (fused) against each: median of per-round time ratios (>1 = flax-rs faster)")
  print(f"{'':>23}  {'wall':>12}  {'CPU':>11}")
  for n in names:
    if n != "flax":
      ratio = {m: statistics.median(r[n][m] / r["flax"][m] for r in rounds) for m in ("wall", "cpu")}
      print(f"{n:>23}  {ratio['wall']:11.2f}x  {ratio['cpu']:10.2f}x")
  print(json.dumps({"rounds": rounds}))


if __name__ == "__main__":
  main()
