"""Golden vectors for `nn.jit`, `nn.map_variables` and `nn.vjp` (flax 0.12.8): the lifted
module names (`JitDense_0`, `Map_variablesDense_0`), Flax's `CausalDense` (a masked view of
the kernel), a weight-tying view, and the spec's `nn.vjp` example (L16900-16913).

Run with `.golden-venv/bin/python scripts/golden/transforms_misc.py`; writes
`flax-runtime/tests/data/layers/transforms.msgpack` in the layout of `layers_common.py`;
structured outputs are saved as Flax's state dicts save tuples (`{"0": …, "1": …}`).
"""

import jax
import jax.numpy as jnp
import flax.linen as nn
from flax import serialization

from layers_common import SEED, normal, to_numpy, write


class JitModel(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.jit(nn.Dense)(4)(x)
    return nn.jit(nn.Dense)(2)(nn.relu(x))


class CausalDense(nn.Module):
  """Flax's `map_variables` example: output i depends on inputs <= i."""
  features: int

  def apply_mask(self, variables):
    return (jax.tree_util.tree_map(jnp.triu, variables)
            if not self.is_initializing() else variables)

  @nn.compact
  def __call__(self, x):
    dense = nn.map_variables(nn.Dense, 'params', self.apply_mask, init=self.is_initializing())
    return dense(features=self.features, use_bias=False)(x)


class Doubled(nn.Module):
  """A view that doubles the stored params (stored: raw, used: doubled)."""
  @nn.compact
  def __call__(self, x):
    double = lambda v: jax.tree_util.tree_map(lambda t: 2 * t, v)
    return nn.map_variables(nn.Dense, 'params', double, init=self.is_initializing())(3)(x)


class LearnScale(nn.Module):
  @nn.compact
  def __call__(self, x, y):
    p = self.param('scale', nn.initializers.zeros_init(), ())
    return p * x * y


class Foo(nn.Module):
  """The spec's `nn.vjp` example."""
  @nn.compact
  def __call__(self, x, y):
    z, bwd = nn.vjp(lambda mdl, x, y: mdl(x, y), LearnScale(), x, y)
    params_grad, x_grad, y_grad = bwd(jnp.ones(z.shape))
    return z, params_grad, x_grad, y_grad


class DenseVjp(nn.Module):
  """vjp of a Dense with a non-trivial cotangent."""
  @nn.compact
  def __call__(self, x, cot):
    y, bwd = nn.vjp(lambda mdl, x: mdl(x), nn.Dense(3), x)
    params_grad, x_grad = bwd(cot)
    return y, params_grad, x_grad


def entry(module, inputs, variables=None):
  args = list(inputs.values())
  init = module.init(jax.random.PRNGKey(SEED), *args)
  variables = init if variables is None else variables
  out = serialization.to_state_dict(to_numpy(module.apply(variables, *args)))
  return {"inputs": to_numpy(inputs), "variables": to_numpy(init), "output": out}


def main():
  c = {}
  x = normal((2, 3), 1)
  c["jit"] = entry(JitModel(), {"x": x})
  c["causal_dense"] = entry(CausalDense(features=3), {"x": x})
  c["doubled"] = entry(Doubled(), {"x": x})
  xy = {"x": normal((3,), 2), "y": normal((3,), 3)}
  c["vjp_spec"] = entry(Foo(), xy, {'params': {'LearnScale_0': {'scale': jnp.array(0.5)}}})
  c["vjp_spec_init"] = {"output": serialization.to_state_dict(
    to_numpy(Foo().init_with_output(jax.random.PRNGKey(SEED), *xy.values())[0]))}
  c["vjp_dense"] = entry(DenseVjp(), {"x": x, "cot": normal((2, 3), 4)})
  write("transforms", c)


if __name__ == "__main__":
  main()
