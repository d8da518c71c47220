"""Golden vectors for the Module API around `init` (flax 0.12.8): `Module.copy` with changed
attributes, `module_paths` and `lazy_init`.

Run with `.golden-venv/bin/python scripts/golden/module_api.py`; writes
`flax-runtime/tests/data/layers/module_api.msgpack` (format: `layers_common.py`, plus a
`paths` entry for `module_paths`: `{"0": {"path": …, "type": …, "repr": …}, …}` in Flax's order).
"""

import jax
import jax.numpy as jnp
import flax.linen as nn

from layers_common import SEED, case, normal, to_numpy, write


class Copies(nn.Module):
  """`copy` inside a compact method: a new auto-name, changed attributes, or a given name."""

  @nn.compact
  def __call__(self, x):
    d = nn.Dense(3)
    e = d.copy(features=4)
    f = d.copy(name="named")
    y = jnp.concatenate([d(x), e(x), f(x)], -1)
    return nn.Dense(5)(y)


class Encoder(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(2)(nn.Dense(3)(x))


class Mlp(nn.Module):
  def setup(self):
    self.enc = Encoder()
    self.head = nn.Dense(4)

  def __call__(self, x):
    return self.head(self.enc(x))


class Top(nn.Module):
  """Compact and setup modules, auto-names and an explicit name, for `module_paths`."""

  @nn.compact
  def __call__(self, x):
    y = Mlp()(x)
    z = Mlp(name="second")(x)
    return nn.Dense(1)(y + z)


class Lazy(nn.Module):
  """A model `lazy_init` can initialise from shapes alone: Conv, BatchNorm (its statistics
  are not updated during `init`), Dense."""

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(4, (3, 3))(x)
    x = nn.BatchNorm(use_running_average=False)(x)
    return nn.Dense(2)(x.reshape((x.shape[0], -1)))


class DependsOnValues(nn.Module):
  """The spec's `LazyInitError` example: a parameter computed from the input's values."""

  @nn.compact
  def __call__(self, x):
    k = self.param("kernel", lambda _: x)
    return x * k


def module_paths_case(x):
  paths = Top().module_paths(jax.random.PRNGKey(SEED), x)
  return {
    "inputs": to_numpy({"x": x}),
    "paths": {str(i): {"path": p, "type": type(m).__name__} for i, (p, m) in enumerate(paths.items())},
  }


def lazy_case():
  shape = jax.ShapeDtypeStruct((2, 5, 5, 3), jnp.float32)
  variables = Lazy().lazy_init(jax.random.PRNGKey(SEED), shape)
  refused = False
  try:
    DependsOnValues().lazy_init(jax.random.PRNGKey(SEED), jax.ShapeDtypeStruct((8, 4), jnp.float32))
  except Exception as e:  # flax.errors.LazyInitError
    refused = type(e).__name__ == "LazyInitError"
  assert refused, "Flax accepted a variable computed from a ShapeDtypeStruct"
  return {"variables": to_numpy(variables)}


def main():
  x = normal((2, 3), 1)
  c = {}
  c["copy"] = case(Copies(), {"x": x})
  c["module_paths"] = module_paths_case(x)
  c["lazy_init"] = lazy_case()
  write("module_api", c)


if __name__ == "__main__":
  main()
