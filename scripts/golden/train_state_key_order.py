"""Golden vectors for the key order of `flax.serialization.to_bytes` checkpoints after
training, written by real Flax 0.12.8 and Optax 0.2.8.

Run from the repository root:

    .golden-venv/bin/python scripts/golden/train_state_key_order.py

JAX flattens a dict in sorted key order and every `jax.tree_util` rebuild (`tree_map`,
`jax.grad`'s gradients and auxiliary outputs, Optax's states, `optax.apply_updates`) returns
key-sorted dicts, while `Module.init` returns its variables in creation order and
`to_bytes` writes dicts in their own order. So a `TrainState` saved right after `create`
has `params` in creation order (`kernel` before `bias`) and Optax's `mu` sorted, and one
saved after `apply_gradients` has everything sorted. Each case here is one eager (not
jitted) training run:

- `<case>/x`, `<case>/y`: the batch (float32), the loss being the mean squared error;
- `<case>/variables`: `to_bytes` of `init(PRNGKey(0), x)`'s variables (creation order), for
  the Rust test to start from the same values in the same order;
- `<case>/state_0`: `to_bytes` of the `TrainState` right after `create`;
- `<case>/state_1`, `<case>/state_2`: `to_bytes` of the state after each training step
  (`value_and_grad` with `batch_stats` as its auxiliary output where the model has one,
  then `apply_gradients`, then `replace(batch_stats=…)`).

Cases: `mlp` (Dense, relu, Dense; Adam), `nested` (submodules `trunk` and `head`, each a
Dense `proj`, relu and a BatchNorm `norm`, so that creation order and sorted order differ at
every level and `batch_stats` is a second collection; AdamW) and `masked` (the MLP with
`optax.masked(adam)` on kernels only, chained with `scale`).

The file is `flax-runtime/tests/data/train_state_key_order.msgpack`
(`msgpack_serialize`, which sorts this container's keys; the checkpoints inside are byte
strings, so their order is kept). `tests/train_state_key_order.rs` reads it.
"""

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import serialization
from flax.training import train_state

OUT = os.path.join(
  os.path.dirname(__file__), "..", "..", "flax-runtime", "tests", "data", "train_state_key_order.msgpack")
RNG = np.random.default_rng(0)
STEPS = 2


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x, train=True):
    x = nn.relu(nn.Dense(4)(x))
    return nn.Dense(2)(x)


class Block(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    # The relu keeps the bias's gradient off zero (a BatchNorm right after a Dense cancels
    # it, and Adam would amplify the rounding noise left in its place).
    x = nn.relu(nn.Dense(4, name="proj")(x))
    return nn.BatchNorm(use_running_average=not train, name="norm")(x)


class Nested(nn.Module):
  @nn.compact
  def __call__(self, x, train=True):
    x = Block(name="trunk")(x, train)
    return Block(name="head")(x, train)


class TrainState(train_state.TrainState):
  """The `TrainState` of a model with `batch_stats` (the plain one for the others)."""
  batch_stats: Any


def kernels_only(params):
  return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", params)


def run(model, tx, x, y):
  variables = model.init(jax.random.PRNGKey(0), x)
  batch_stats = variables.get("batch_stats")
  if batch_stats is None:
    state = train_state.TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx)
  else:
    state = TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx, batch_stats=batch_stats)
  out = {
    "x": x,
    "y": y,
    "variables": serialization.to_bytes(variables),
    "state_0": serialization.to_bytes(state),
  }
  for step in range(1, STEPS + 1):
    def loss_fn(params):
      if batch_stats is None:
        return jnp.mean((state.apply_fn({"params": params}, x) - y) ** 2), None
      pred, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, x, mutable=["batch_stats"])
      return jnp.mean((pred - y) ** 2), updates["batch_stats"]

    (_, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads)
    if batch_stats is not None:
      state = state.replace(batch_stats=batch_stats)
    out[f"state_{step}"] = serialization.to_bytes(state)
  return {k: np.frombuffer(v, np.uint8) if isinstance(v, bytes) else v for k, v in out.items()}


def main():
  x = RNG.normal(size=(6, 3)).astype(np.float32)
  y = RNG.normal(size=(6, 2)).astype(np.float32)
  cases = {
    "mlp": run(MLP(), optax.adam(1e-2), x, y),
    "nested": run(Nested(), optax.adamw(1e-2, weight_decay=1e-2), x, RNG.normal(size=(6, 4)).astype(np.float32)),
    "masked": run(MLP(), optax.chain(optax.masked(optax.adam(1e-2), kernels_only), optax.scale(-1e-2)), x, y),
  }
  with open(OUT, "wb") as f:
    f.write(serialization.msgpack_serialize(cases))


if __name__ == "__main__":
  main()
