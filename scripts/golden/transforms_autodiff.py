"""Golden vectors for `nn.remat`, `nn.remat_scan`, `nn.custom_vjp` and `nn.jvp` (flax 0.12.8): remat'd layers
(named `CheckpointDense_k`) with and without dropout (the recomputation draws the same keys),
the spec's `custom_vjp` example (sign gradients, L16975-17021) and `jvp` example (L16801-16816),
and a jvp of a Dense layer along input and parameter tangents.

Run with `.golden-venv/bin/python scripts/golden/transforms_autodiff.py`; writes
`flax-runtime/tests/data/layers/autodiff.msgpack` in the layout of `layers_common.py`, plus
`grads` (gradients of the output's sum with respect to the params) where computed.
"""

import jax
import jax.numpy as jnp
import flax.linen as nn

from layers_common import SEED, normal, to_numpy, write


class Deep(nn.Module):
  @nn.compact
  def __call__(self, x):
    for _ in range(3):
      x = jnp.tanh(nn.remat(nn.Dense)(4)(x))
    return x


class NoisyBlock(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dropout(0.5, deterministic=False)(jnp.tanh(nn.Dense(4)(x)))


class NoisyDeep(nn.Module):
  @nn.compact
  def __call__(self, x):
    for _ in range(2):
      x = nn.remat(NoisyBlock)()(x)
    return x


class DenseStack(nn.Module):
  """Flax's `remat_scan` example (`BigResnet`), smaller: 2 x 3 Dense layers."""
  @nn.compact
  def __call__(self, x):
    return nn.remat_scan(nn.Dense, lengths=(2, 3))(4, name="dense_stack")(x)


class SignGrad(nn.Module):
  """The spec's `nn.custom_vjp` example."""
  @nn.compact
  def __call__(self, x):
    def f(mdl, x):
      return mdl(x)

    def fwd(mdl, x):
      return nn.vjp(f, mdl, x)

    def bwd(vjp_fn, y_t):
      params_t, *inputs_t = vjp_fn(y_t)
      params_t = jax.tree_util.tree_map(jnp.sign, params_t)
      return (params_t, *inputs_t)

    sign_grad = nn.custom_vjp(f, forward_fn=fwd, backward_fn=bwd)
    return sign_grad(nn.Dense(1), x).reshape(())


class LearnScale(nn.Module):
  @nn.compact
  def __call__(self, x):
    p = self.param('test', nn.initializers.normal(), ())
    return p * x


class JvpSpec(nn.Module):
  """The spec's `nn.jvp` example."""
  @nn.compact
  def __call__(self, x):
    scale = LearnScale()
    vars_t = jax.tree_util.tree_map(jnp.ones_like, scale.variables.get('params', {}))
    _, out_t = nn.jvp(lambda mdl, x: mdl(x), scale, (x,), (jnp.zeros_like(x),),
                      variable_tangents={'params': vars_t})
    return out_t


class JvpDense(nn.Module):
  @nn.compact
  def __call__(self, x, x_t, k_t, b_t):
    dense = nn.Dense(3)
    if self.is_initializing():
      dense(x)
    y, y_t = nn.jvp(lambda mdl, x: mdl(x), dense, (x,), (x_t,),
                    variable_tangents={'params': {'kernel': k_t, 'bias': b_t}})
    return y, y_t


def with_grads(module, inputs, rngs=None):
  args = list(inputs.values())
  init_rngs = {'params': jax.random.PRNGKey(SEED), **(rngs or {})}
  variables = module.init(init_rngs, *args)
  out = module.apply(variables, *args, rngs=rngs)
  grads = jax.grad(lambda p: jnp.sum(module.apply({'params': p}, *args, rngs=rngs)))(variables['params'])
  return {"inputs": to_numpy(inputs), "variables": to_numpy(variables), "output": to_numpy(out),
          "grads": to_numpy(grads)}


def main():
  c = {}
  c["remat"] = with_grads(Deep(), {"x": normal((2, 4), 1)})
  c["remat_dropout"] = with_grads(NoisyDeep(), {"x": normal((2, 4), 2)}, {'dropout': jax.random.PRNGKey(1)})
  c["remat_scan"] = with_grads(DenseStack(), {"x": normal((2, 4), 9)})
  c["custom_vjp"] = with_grads(SignGrad(), {"x": normal((3,), 3)})
  x = normal((3,), 4)
  variables = JvpSpec().init(jax.random.PRNGKey(SEED), x)
  c["jvp_spec"] = {"inputs": {"x": x}, "variables": to_numpy(variables),
                   "output": to_numpy(JvpSpec().apply(variables, x))}
  inputs = {"x": normal((2, 4), 5), "x_t": normal((2, 4), 6), "k_t": normal((4, 3), 7), "b_t": normal((3,), 8)}
  variables = JvpDense().init(jax.random.PRNGKey(SEED), *inputs.values())
  y, y_t = JvpDense().apply(variables, *inputs.values())
  c["jvp_dense"] = {"inputs": to_numpy(inputs), "variables": to_numpy(variables),
                    "output": {"y": to_numpy(y), "y_t": to_numpy(y_t)}}
  write("autodiff", c)


if __name__ == "__main__":
  main()
