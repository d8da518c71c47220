"""Golden vectors for `nn.scan` (flax 0.12.8): stacked parameters (`variable_axes`), shared
ones (`variable_broadcast`), carried collections (`variable_carry`), split and shared RNG
streams, `in_axes`/`out_axes`, `reverse`, nested scans, and gradients through the loop.

Run with `.golden-venv/bin/python scripts/golden/transforms_scan.py`; writes
`flax-runtime/tests/data/layers/scan.msgpack` in the layout of `layers_common.py`, plus
`grads` (the gradient of the output's sum with respect to the params) where computed.
The spec's examples (ResidualMLP, the scanned LSTM) are the first two cases.
"""

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn
from flax import serialization

from layers_common import SEED, normal, to_numpy, write


class ResidualMLPBlock(nn.Module):
  @nn.compact
  def __call__(self, x, _):
    h = nn.Dense(features=2)(x)
    h = nn.relu(h)
    return x + h, None


class ResidualMLP(nn.Module):
  """The spec's `nn.scan` example (L16386-16405)."""
  n_layers: int = 4

  @nn.compact
  def __call__(self, x):
    ScanMLP = nn.scan(
      ResidualMLPBlock, variable_axes={'params': 0},
      variable_broadcast=False, split_rngs={'params': True},
      length=self.n_layers)
    x, _ = ScanMLP()(x, None)
    return x


class ScanLSTM(nn.Module):
  """The spec's scanned LSTM (L16327-16350); Flax 0.12's cells take `features`."""
  features: int

  @nn.compact
  def __call__(self, x):
    ScanLSTMCell = nn.scan(
      nn.LSTMCell, variable_broadcast="params",
      split_rngs={"params": False}, in_axes=1, out_axes=1)
    carry = nn.LSTMCell(self.features).initialize_carry(jax.random.PRNGKey(0), x[:, 0].shape)
    carry, x = ScanLSTMCell(self.features)(carry, x)
    return x


class Accumulate(nn.Module):
  """A body with a scanned input and output: carry += Dense(x_t); outputs the carry."""
  @nn.compact
  def __call__(self, c, x):
    c = c + nn.Dense(3)(x)
    return c, jnp.tanh(c)


class ReverseScan(nn.Module):
  @nn.compact
  def __call__(self, xs):
    c = jnp.zeros((xs.shape[0], 3))
    return nn.scan(Accumulate, variable_axes={'params': 0}, split_rngs={'params': True},
                   in_axes=1, out_axes=1, reverse=True)()(c, xs)


class Counted(nn.Module):
  """Counts its calls in a carried collection; shares its Dense across iterations."""
  @nn.compact
  def __call__(self, c, x):
    counter = self.variable('counter', 'i', lambda: jnp.zeros((), jnp.int32))
    counter.value += 1
    return nn.Dense(2)(c) + x, None


class CarryScan(nn.Module):
  """Scans a module in its own scope (the functional form of `nn.scan`); a carried variable
  must exist before the loop, so the module is called once first."""
  @nn.compact
  def __call__(self, c, xs):
    counted = Counted()
    c, _ = counted(c, xs[0])
    scan = nn.scan(lambda m, c, x: m(c, x), variable_carry='counter',
                   variable_broadcast='params', split_rngs={'params': False})
    return scan(counted, c, xs)[0]


class NormBlock(nn.Module):
  @nn.compact
  def __call__(self, x, _):
    x = nn.Dense(4)(x)
    x = nn.BatchNorm(use_running_average=False)(x)
    x = nn.Dropout(0.5, deterministic=False)(x)
    return nn.relu(x), None


class NormScan(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.scan(NormBlock, variable_axes={'params': 0, 'batch_stats': 0},
                   split_rngs={'params': True, 'dropout': True}, length=3)()(x, None)[0]


class Pair(nn.Module):
  """A tuple of scanned inputs and a tuple of outputs."""
  @nn.compact
  def __call__(self, c, xs):
    a, b = xs
    h = nn.Dense(2)(a) * b
    return c + h.sum(), (h, 2 * h)


class PairScan(nn.Module):
  @nn.compact
  def __call__(self, a, b):
    return nn.scan(Pair, variable_axes={'params': 0}, split_rngs={'params': True},
                   in_axes=0, out_axes=1)()(jnp.zeros(()), (a, b))


class Inner(nn.Module):
  @nn.compact
  def __call__(self, x, _):
    return nn.tanh(nn.Dense(3)(x)), None


class Outer(nn.Module):
  @nn.compact
  def __call__(self, x, _):
    x, _ = nn.scan(Inner, variable_axes={'params': 0}, split_rngs={'params': True}, length=2)()(x, None)
    return nn.Dense(3)(x), None


class NestedScan(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.scan(Outer, variable_axes={'params': 0}, split_rngs={'params': True}, length=3)()(x, None)[0]


def with_grads(entry, module, *args):
  params = {"params": entry["variables"]["params"]}
  grads = jax.grad(lambda p: jnp.sum(jax.tree_util.tree_leaves(module.apply(p, *args))[0]))(params)
  entry["grads"] = to_numpy(grads["params"])
  return entry


def simple(module, inputs, grads=True):
  args = list(inputs.values())
  variables = module.init(jax.random.PRNGKey(SEED), *args)
  out = module.apply(variables, *args)
  # Tuples as Flax's state dicts save them: {"0": ..., "1": ...}.
  out = serialization.to_state_dict(to_numpy(out))
  entry = {"inputs": to_numpy(inputs), "variables": to_numpy(variables), "output": out}
  return with_grads(entry, module, *args) if grads else entry


def main():
  c = {}
  c["residual_mlp"] = simple(ResidualMLP(n_layers=4), {"x": normal((1, 2), 1)})
  c["lstm"] = simple(ScanLSTM(features=4), {"x": normal((2, 5, 3), 2)})
  c["reverse"] = simple(ReverseScan(), {"xs": normal((2, 4, 3), 3)})
  c["pair"] = simple(PairScan(), {"a": normal((5, 2, 3), 4), "b": normal((5, 2, 2), 5)})
  c["nested"] = simple(NestedScan(), {"x": normal((2, 3), 6)})

  carry_inputs = {"c": normal((2, 2), 7), "xs": normal((3, 2, 2), 8)}
  module = CarryScan()
  variables = module.init(jax.random.PRNGKey(SEED), *carry_inputs.values())
  out, updated = module.apply(variables, *carry_inputs.values(), mutable=['counter'])
  c["carry"] = {"inputs": to_numpy(carry_inputs), "variables": to_numpy(variables),
                "output": to_numpy(out), "updated": to_numpy(updated)}

  x = normal((4, 4), 9)
  module = NormScan()
  rngs = {'params': jax.random.PRNGKey(SEED), 'dropout': jax.random.PRNGKey(1)}
  variables = module.init(rngs, x)
  out, updated = module.apply(variables, x, mutable=['batch_stats'],
                              rngs={'dropout': jax.random.PRNGKey(2)})
  c["norm_dropout"] = {"inputs": {"x": x}, "variables": to_numpy(variables),
                       "output": to_numpy(out), "updated": to_numpy(updated)}
  write("scan", c)


if __name__ == "__main__":
  main()
