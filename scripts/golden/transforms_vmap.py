"""Golden vectors for `nn.vmap` (flax 0.12.8): the spec's `LinenVmapMLP` (L11072-11103; the
spec prints `Dense_0`/`Dense_1` with a `(3, 2, 4)` kernel, inconsistent with its own `MLP`,
whose layers are `hidden`/`out`, and `xs` of shape `(3, 4)`: Flax gives the names and shapes
below), an ensemble over a batch, shared params (`variable_axes={'params': None}`) with
`in_axes`/`out_axes` 1, BatchNorm averaging its statistics over the mapped axis
(`axis_name`), dropout with per-member keys, the spec's vmap of a module method
(`nn.vmap(Foo.inner, …)`, L10523-10568, in its working `Partial` form), and gradients.

Run with `.golden-venv/bin/python scripts/golden/transforms_vmap.py`; writes
`flax-runtime/tests/data/layers/vmap.msgpack` in the layout of `layers_common.py`, plus
`grads` (the gradient of the output's sum with respect to the params) where computed.
"""

from typing import Any, Callable, Iterable

import flax
import jax
import jax.numpy as jnp
import flax.linen as nn

from layers_common import SEED, normal, to_numpy, write


class MLP(nn.Module):
  @nn.compact
  def __call__(self, xs):
    h = nn.Dense(4, name='hidden')(xs)
    h = nn.relu(h)
    return nn.Dense(1, name='out')(h)


class LinenVmapMLP(nn.Module):
  @nn.compact
  def __call__(self, xs):
    VmapMLP = nn.vmap(MLP, variable_axes={'params': 0}, split_rngs={'params': True}, in_axes=0)
    return VmapMLP(name='mlp')(xs)


class ManualVmapMLP(nn.Module):
  """The spec's functionalized vmap (L10684-10696): a detached MLP's init and apply, vmapped
  by hand, its stacked params stored as one param."""
  @nn.compact
  def __call__(self, xs):
    mlp = MLP(parent=None)
    init_fn = lambda rng, xs: jax.vmap(mlp.init, in_axes=0)(jax.random.split(rng, xs.shape[0]), xs)['params']
    apply_fn = jax.vmap(mlp.apply, in_axes=0)
    mlp_params = self.param('mlp', init_fn, xs)
    return apply_fn({'params': mlp_params}, xs)


class Shared(nn.Module):
  """One MLP shared by every member, mapped over axis 1, outputs stacked on axis 1."""
  @nn.compact
  def __call__(self, xs):
    return nn.vmap(MLP, variable_axes={'params': None}, split_rngs={'params': False},
                   in_axes=1, out_axes=1)()(xs)


class StatefulMLP(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    h = nn.Dense(4, name='hidden')(x)
    h = nn.BatchNorm(axis_name='batch')(h, use_running_average=not train)
    h = nn.relu(h)
    return nn.Dense(1, name='out')(h)


class LinenStatefulVmapMLP(nn.Module):
  """The spec's stateful example with the axis name its BatchNorm needs."""
  @nn.compact
  def __call__(self, xs, train):
    VmapMLP = nn.vmap(StatefulMLP, variable_axes={'params': 0, 'batch_stats': None},
                      split_rngs={'params': True}, in_axes=(0, None), axis_name='batch')
    return VmapMLP(name='mlp')(xs, train)


class Noisy(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dropout(0.5, deterministic=False)(nn.Dense(3)(x))


class NoisyEnsemble(nn.Module):
  @nn.compact
  def __call__(self, xs):
    return nn.vmap(Noisy, variable_axes={'params': 0},
                   split_rngs={'params': True, 'dropout': True})()(xs)


class Partial(flax.struct.PyTreeNode):
  fn: Callable = flax.struct.field(pytree_node=False)
  args: Iterable[Any]

  def __call__(self, *args, **kwargs):
    return self.fn(*(tuple(self.args) + args), **kwargs)


class Foo(nn.Module):
  """The spec's vmap of a module method."""
  @nn.compact
  def __call__(self, x):
    dense = nn.Dense(x.shape[-1])
    fn = lambda mdl, x: mdl(x) + 1
    vmap_inner = nn.vmap(Foo.inner, in_axes=0, variable_axes={"params": 0}, split_rngs={"params": True})
    return vmap_inner(self, x, Partial(fn, [dense]))

  def inner(self, x, fn):
    for i in range(3):
      x = fn(x)
    return x


def simple(module, inputs, static=()):
  args = list(inputs.values()) + list(static)
  variables = module.init(jax.random.PRNGKey(SEED), *args)
  out = module.apply(variables, *args)
  params = {"params": variables["params"]}
  grads = jax.grad(lambda p: jnp.sum(module.apply(p, *args)))(params)
  return {"inputs": to_numpy(inputs), "variables": to_numpy(variables), "output": to_numpy(out),
          "grads": to_numpy(grads["params"])}


def main():
  c = {}
  c["linen_vmap_mlp"] = simple(LinenVmapMLP(), {"xs": normal((3, 4), 1)})
  c["ensemble"] = simple(LinenVmapMLP(), {"xs": normal((3, 5, 2), 2)})
  c["manual_vmap_mlp"] = simple(ManualVmapMLP(), {"xs": normal((3, 4), 1)})
  c["shared"] = simple(Shared(), {"xs": normal((5, 3, 2), 3)})
  c["method"] = simple(Foo(), {"x": normal((2, 3), 4)})

  xs = normal((3, 6, 2), 5)
  module = LinenStatefulVmapMLP()
  variables = module.init(jax.random.PRNGKey(SEED), xs, False)
  out, updated = module.apply(variables, xs, True, mutable=['batch_stats'])
  c["batch_norm"] = {"inputs": {"xs": xs}, "variables": to_numpy(variables), "output": to_numpy(out),
                     "updated": to_numpy(updated),
                     "eval_output": to_numpy(module.apply(variables, xs, False))}

  xs = normal((2, 4, 3), 6)
  module = NoisyEnsemble()
  rngs = {'params': jax.random.PRNGKey(SEED), 'dropout': jax.random.PRNGKey(1)}
  variables = module.init(rngs, xs)
  out = module.apply(variables, xs, rngs={'dropout': jax.random.PRNGKey(2)})
  c["dropout"] = {"inputs": {"xs": xs}, "variables": to_numpy(variables), "output": to_numpy(out)}
  write("vmap", c)


if __name__ == "__main__":
  main()
