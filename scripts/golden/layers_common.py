"""Shared helpers of the `layers_*.py` golden-vector scripts.

Each script builds Flax layers, runs `init` with `jax.random.PRNGKey(SEED)` on inputs drawn from
a fixed numpy generator, runs `apply` with the variables `init` returned, and writes one msgpack
file under `flax-runtime/tests/data/layers/`:

    {case name: {"inputs": {name: array}, "variables": {collection: {...}},
                 "output": array or {name: array}, "updated": {collection: {...}} (optional)}}

The Rust tests build the same layers, check that `init` with `PRNGKey::new(SEED)` gives the
same variable tree (names, shapes, collections and values: the PRNG is JAX's), and that `apply`
with these variables on these inputs gives these outputs.
"""

import pathlib

import jax
import numpy as np
from flax import serialization

SEED = 0
OUT_DIR = pathlib.Path(__file__).resolve().parents[2] / "flax-runtime" / "tests" / "data" / "layers"


def normal(shape, seed, dtype=np.float32):
  """Inputs: standard normal samples from numpy's generator `seed`."""
  return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def to_numpy(tree):
  return jax.tree_util.tree_map(np.asarray, tree)


def case(module, inputs, call=None, apply_kwargs=None, init_kwargs=None, mutable=False):
  """Runs `init` then `apply` of `module` on the named `inputs` (positional, in order).

  `call(module, variables, *inputs)` overrides the plain `module.apply(variables, *inputs)`.
  With `mutable`, `apply` returns the updated collections too; they are stored as `updated`.
  """
  args = list(inputs.values())
  variables = module.init(jax.random.PRNGKey(SEED), *args, **(init_kwargs or {}))
  kwargs = dict(apply_kwargs or {})
  if mutable:
    kwargs["mutable"] = mutable
  if call is not None:
    out = call(module, variables, *args)
  else:
    out = module.apply(variables, *args, **kwargs)
  entry = {"inputs": to_numpy(inputs), "variables": to_numpy(variables)}
  if mutable:
    out, updated = out
    entry["updated"] = to_numpy(updated)
  entry["output"] = to_numpy(out)
  return entry


def write(name, cases):
  OUT_DIR.mkdir(parents=True, exist_ok=True)
  data = serialization.msgpack_serialize(cases)
  path = OUT_DIR / f"{name}.msgpack"
  path.write_bytes(data)
  print(f"wrote {path} ({len(data)} bytes, {len(cases)} cases)")
