"""Writes the pjit guide's partitioning printouts, computed by real Flax, for
`flax-runtime/tests/spmd.rs` into `flax-runtime/tests/data/spmd/`.

Run with the golden venv (scripts/golden/setup.sh):

    .golden-venv/bin/python scripts/golden/spmd_vectors.py

The models are the guide's (`DotReluDot`, `MLP` with `nn.scan`, `LogicalDotReluDot`,
`LogicalMLP`; spec L5399-6365) and the Axis Metadata FLIP's `Dense` (L28266-28275). Each
printout is the guide's `print` of the same expression, made here with `jax.eval_shape` where
the guide does (no mesh: one process has none, and the specs do not depend on it).

Differences between Flax 0.12.8 / JAX 0.10.2 and the 0.6.10 / JAX 0.4 the spec documents,
handled here:
- JAX 0.10 prints a `PartitionSpec` as `P(None, 'model')`; the guide's JAX printed
  `PartitionSpec(None, 'model')`. The printouts are rewritten to the guide's spelling.
- 0.12.8's `init` returns plain dicts; the guide's returned `FrozenDict`s. Trees are printed
  through `flax.core.freeze` to get the guide's layout.
- The guide prints whole `TrainState`s (with the bound `apply_fn` and the optimizer's function
  addresses); only the trees of partitioned values in them are written (`params`, Adam's `mu`).
- `tabulate` of partitioned params prints `float32[4,8] P(None, data)`; the spec does not show
  one (0.6.10 printed the box's repr).
"""

import functools
import pathlib

import jax
import jax.numpy as jnp
import flax
import flax.linen as nn
import optax
from flax import serialization
from flax.core import freeze
from flax.linen import spmd
from jax.sharding import PartitionSpec

OUT = pathlib.Path(__file__).resolve().parents[2] / "flax-runtime" / "tests" / "data" / "spmd"


class DotReluDot(nn.Module):
  """The guide's layer (L5545-5567), without `with_sharding_constraint` (no mesh here; it
  changes no value)."""
  depth: int

  @nn.compact
  def __call__(self, x):
    W1 = self.param('W1', nn.with_partitioning(nn.initializers.xavier_normal(), (None, 'model')),
                    (x.shape[-1], self.depth))
    y = jax.nn.relu(jnp.dot(x, W1))
    W2 = self.param('W2', nn.with_partitioning(nn.initializers.xavier_normal(), ('model', None)),
                    (self.depth, x.shape[-1]))
    z = jnp.dot(y, W2)
    return z, None


class MLP(nn.Module):
  num_layers: int
  depth: int
  use_scan: bool

  @nn.compact
  def __call__(self, x):
    if self.use_scan:
      x, _ = nn.scan(DotReluDot, length=self.num_layers,
                     variable_axes={"params": 0},
                     split_rngs={"params": True},
                     metadata_params={nn.PARTITION_NAME: None})(self.depth)(x)
    else:
      for i in range(self.num_layers):
        x, _ = DotReluDot(self.depth)(x)
    return x


class LogicalDotReluDot(nn.Module):
  depth: int

  @nn.compact
  def __call__(self, x):
    W1 = self.param('W1', spmd.with_logical_partitioning(nn.initializers.xavier_normal(), ('embed', 'hidden')),
                    (x.shape[-1], self.depth))
    y = jax.nn.relu(jnp.dot(x, W1))
    y = spmd.with_logical_constraint(y, ('batch', 'hidden'))
    W2 = self.param('W2', spmd.with_logical_partitioning(nn.initializers.xavier_normal(), ('hidden', 'embed')),
                    (self.depth, x.shape[-1]))
    z = jnp.dot(y, W2)
    z = spmd.with_logical_constraint(z, ('batch', 'embed'))
    return z, None


class LogicalMLP(nn.Module):
  num_layers: int
  depth: int
  use_scan: bool

  @nn.compact
  def __call__(self, x):
    x, _ = nn.scan(LogicalDotReluDot, length=self.num_layers,
                   variable_axes={"params": 0},
                   split_rngs={"params": True},
                   metadata_params={nn.PARTITION_NAME: 'layer'})(self.depth)(x)
    return x


def guide_repr(tree):
  """The guide's printout of a tree: FrozenDict layout, JAX 0.4's PartitionSpec spelling."""
  return repr(freeze(tree)).replace("P(", "PartitionSpec(")


def init_fn(k, x, model, optimizer):
  variables = model.init(k, x)
  params = variables['params']
  return params, optimizer.init(params)


def main():
  OUT.mkdir(parents=True, exist_ok=True)
  out = {}
  BATCH, LAYERS, DEPTH = 8, 4, 1024
  x = jnp.ones((BATCH, DEPTH))
  k = jax.random.PRNGKey(0)
  optimizer = optax.adam(learning_rate=0.001)

  for name, model in [('mlp', MLP(LAYERS, DEPTH, True)), ('logical_mlp', LogicalMLP(LAYERS, DEPTH, True))]:
    params, opt_state = jax.eval_shape(functools.partial(init_fn, model=model, optimizer=optimizer), k, x)
    out[f'{name}_params_spec'] = guide_repr(nn.get_partition_spec(params))
    out[f'{name}_params_shapes'] = guide_repr(jax.tree_util.tree_map(jnp.shape, params))
    out[f'{name}_mu_spec'] = guide_repr(nn.get_partition_spec(opt_state[0].mu))
    if name == 'logical_mlp':
      rules = (('batch', 'data'), ('hidden', 'model'))
      out['logical_mlp_mesh_spec'] = guide_repr(spmd.logical_to_mesh(nn.get_partition_spec(params), rules))

  # The guide's `jax.tree_map(lambda a, b: a - b, …)` over boxed params keeps the boxes.
  def diff_fn(k, x):
    params = MLP(LAYERS, DEPTH, True).init(k, x)['params']['ScanDotReluDot_0']
    return jax.tree_util.tree_map(lambda a, b: a - b, params, params)
  out['diff_shapes'] = guide_repr(jax.tree_util.tree_map(jnp.shape, jax.eval_shape(diff_fn, k, x)))

  # The worked example of `logical_to_mesh_axes` (L17600-17640).
  out['logical_to_mesh_axes'] = repr(nn.logical_to_mesh_axes(
      ('batch', 'length', 'heads', 'features'),
      (('batch', 'X'), ('features', 'X'), ('heads', 'Y'), ('batch', 'Z')))).replace("P(", "PartitionSpec(")

  # The FLIP's Dense (L28266-28275), with values: its bytes and its table.
  dense = nn.Dense(8, kernel_init=nn.with_partitioning(nn.initializers.lecun_normal(), (None, 'data')))
  variables = dense.init(jax.random.PRNGKey(0), jnp.ones((4,)))
  out['dense_shapes'] = guide_repr(jax.tree_util.tree_map(jnp.shape, variables))
  (OUT / 'dense_partitioned.msgpack').write_bytes(serialization.to_bytes(variables))
  out['dense_tabulate'] = dense.tabulate(jax.random.PRNGKey(0), jnp.ones((4,)), mutable=True,
                                         console_kwargs={'force_terminal': False, 'width': 80})

  # A small scanned model with values: its boxed variables' bytes, for init and serialization.
  small = MLP(3, 4, True)
  small_vars = small.init(jax.random.PRNGKey(1), jnp.ones((2, 5)))
  (OUT / 'small_mlp.msgpack').write_bytes(serialization.to_bytes(small_vars))
  (OUT / 'small_mlp_output.msgpack').write_bytes(serialization.to_bytes(small.apply(small_vars, jnp.ones((2, 5)))))

  # `nn.vmap` names the mapped axis of the boxes it stacks.
  class Ensemble(nn.Module):
    @nn.compact
    def __call__(self, xs):
      dense = nn.vmap(nn.Dense, variable_axes={'params': 0}, split_rngs={'params': True}, in_axes=0,
                      metadata_params={nn.PARTITION_NAME: 'members'})
      return dense(3, kernel_init=nn.with_partitioning(nn.initializers.lecun_normal(), (None, 'data')))(xs)
  ensemble_vars = Ensemble().init(jax.random.PRNGKey(2), jnp.ones((2, 4)))
  out['ensemble_shapes'] = guide_repr(jax.tree_util.tree_map(jnp.shape, ensemble_vars))
  (OUT / 'ensemble.msgpack').write_bytes(serialization.to_bytes(ensemble_vars))

  # The boxes' reprs with a value and rules.
  out['box_reprs'] = '\n'.join([
      repr(nn.Partitioned(jnp.ones(2), (None,))),
      repr(nn.LogicallyPartitioned(jnp.ones(2), ('a',), rules=(('a', 'data'),))),
      repr(nn.LogicallyPartitioned(jnp.ones((1, 2)), ('a', None), rules=(('a', 'data'), ('b', None)))),
  ])

  for key, text in out.items():
    (OUT / f'{key}.txt').write_text(text + ('' if text.endswith('\n') else '\n'), encoding='utf-8')


if __name__ == '__main__':
  main()
