"""Golden optimizer states of `optax.masked` and `optax.multi_transform` in Optax's layout,
written by real Optax 0.2.8 and Flax.

Run from the repository root:

    .golden-venv/bin/python scripts/golden/optax_masked_states.py

It writes `flax-runtime/tests/data/optax_masked_states.msgpack`, which
`tests/optax_masked_states.rs` reads:

- `params`: the parameters of the transfer-learning guide's `Classifier` shape (spec
  L3591-3901), a small `backbone` module and a Dense `head`;
- `grads`: STEPS gradient trees of them (a seeded numpy generator), stacked on a leading axis;
- `<case>/updates`, `<case>/params`: the updates `tx.update` returned at each step and the
  parameters after `optax.apply_updates`, stacked the same way;
- `<case>/state_<k>`: `flax.serialization.to_bytes(opt_state)` after k steps, for k in
  SAVED_AT (0 is `tx.init`): Optax's state with `MaskedNode()`s, which Flax writes as `{}`.

The cases are the guide's freezing recipe, `multi_transform({'trainable': adam(5e-3),
'frozen': set_to_zero()}, labels)` with the backbone frozen, and `masked(adam(0.05), mask)`
with the head selected.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import serialization, traverse_util

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "flax-runtime", "tests", "data",
                   "optax_masked_states.msgpack")
STEPS = 6
SAVED_AT = (0, 3, 6)
RNG = np.random.default_rng(0)


class Backbone(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(4)(x))
    return nn.relu(nn.Dense(4)(x))


class Classifier(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, x):
    x = Backbone(name="backbone")(x)
    return nn.Dense(self.num_classes, name="head")(x)


def to_numpy(tree):
  return jax.tree_util.tree_map(np.asarray, tree)


def stack(trees):
  return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *trees)


def cases(params):
  labels = traverse_util.path_aware_map(lambda path, v: "frozen" if "backbone" in path else "trainable", params)
  mask = traverse_util.path_aware_map(lambda path, v: "head" in path, params)
  return {
    "multi_transform": optax.multi_transform({"trainable": optax.adam(5e-3), "frozen": optax.set_to_zero()},
                                             labels),
    "masked": optax.masked(optax.adam(0.05), mask),
  }


def run(tx, params, grads):
  state = tx.init(params)
  out = {"state_0": serialization.to_bytes(state)}
  updates_seq, params_seq = [], []
  for step, g in enumerate(grads, start=1):
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
    updates_seq.append(to_numpy(updates))
    params_seq.append(to_numpy(params))
    if step in SAVED_AT:
      out[f"state_{step}"] = serialization.to_bytes(state)
  out["updates"] = stack(updates_seq)
  out["params"] = stack(params_seq)
  return out


def main():
  params = Classifier(num_classes=3).init(jax.random.PRNGKey(0), jnp.ones((1, 5)))["params"]
  params = to_numpy(params)
  grads = [jax.tree_util.tree_map(lambda p: np.asarray(RNG.normal(size=p.shape), np.float32), params)
           for _ in range(STEPS)]
  vectors = {"params": params, "grads": stack(grads)}
  for name, tx in cases(params).items():
    vectors[name] = run(tx, params, grads)
  data = serialization.msgpack_serialize(vectors)
  with open(OUT, "wb") as f:
    f.write(data)
  print(f"wrote {os.path.normpath(OUT)} ({len(data)} bytes)")


if __name__ == "__main__":
  main()
