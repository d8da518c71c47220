"""Golden Orbax checkpoints for `flax::training::orbax`, written by pip-installed orbax-checkpoint.

Run from the repository root:

    .golden-venv/bin/python scripts/golden/orbax_vectors.py

It writes, under `flax-runtime/tests/data/orbax/` (a few kB in all):

- `cnn/`: `StandardCheckpointer().save` of `cnn_tree()` — the params of a small CNN (Conv,
  BatchNorm, Dense; the Dense kernel is larger than OCDBT's 1024-byte inline limit, so its
  chunk is stored out of line), a bfloat16 and an int32 array, nested dicts and Python
  scalars. This is Orbax 0.12.8's default layout: an OCDBT database (`manifest.ocdbt`, `d/`,
  and the per-process database `ocdbt.process_0/` that the top-level manifest was merged from)
  holding one zarr v2 array per leaf, compressed with zstd, and the `_METADATA` tree.
- `manager/`: a `CheckpointManager(max_to_keep=2)` that saved a `TrainState` (Adam, trained
  two steps under `jax.jit`, so `step` is a 0-d int32 array) at steps 1, 2 and 3 with
  `args.StandardSave`; steps 2 and 3 remain, each `<step>/default/` holding a checkpoint.
- `per_array/`: `PyTreeCheckpointer` with `use_ocdbt=False` of `spec_tree()`, the checkpoint
  guide's `ckpt` (spec L4132–4330): one zarr v2 directory per array, the other layout Orbax
  writes and the only one it wrote before OCDBT.
- `aggregate/`: the layout of the Orbax the spec documents (0.1–0.4), which wrote the tree's
  structure, small values inline, into a msgpack file named `checkpoint` with
  `PLACEHOLDER://<name>` leaves for the arrays stored as zarr directories. Orbax 0.12.8 no
  longer writes that file but still reads it (`PyTreeCheckpointHandler._read_aggregate_file`);
  this script builds it from `per_array/` exactly as the old `MsgpackHandler` did (Flax's
  `msgpack_serialize` of the tree) without `_METADATA`, and checks that Orbax 0.12.8 restores
  it to the same tree before keeping it.
- `expected.msgpack`: `{name: flax.serialization.to_state_dict(restored tree)}` for each
  checkpoint above, as Orbax restores it, in Flax's msgpack format.

`orbax_check_restore.py` checks the other direction: that Orbax restores what Rust wrote.
"""

import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import linen as nn
from flax import serialization
from flax.training import train_state

OUT = pathlib.Path(__file__).resolve().parents[2] / 'flax-runtime/tests/data/orbax'


class Cnn(nn.Module):
  """A small CNN: the layers of the quickstart's, scaled down."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(4, (3, 3))(x)
    x = nn.BatchNorm(use_running_average=not train)(x)
    x = nn.relu(x)
    x = nn.avg_pool(x, (2, 2), (2, 2))
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(10)(x)


def cnn_variables():
  x = jnp.ones((1, 8, 8, 1))
  return Cnn().init(jax.random.PRNGKey(0), x), x


def cnn_tree():
  variables, _ = cnn_variables()
  return {
    'params': variables['params'],
    'batch_stats': variables['batch_stats'],
    'extras': {
      'bf16': jnp.arange(6, dtype=jnp.bfloat16).reshape(2, 3) / 4,
      'int32': jnp.arange(-3, 3, dtype=jnp.int32),
      'uint8': np.arange(4, dtype=np.uint8),
      'bool': np.array([True, False, True]),
      'f64': np.linspace(0, 1, 3),
      'nested': {'deeper': {'scalar_array': np.float32(2.5), 'empty': {}}},
    },
    'lr': 0.125,
    'epoch': 7,
  }


def train_states():
  """A TrainState after each of three jitted Adam steps on the CNN."""
  variables, x = cnn_variables()
  state = train_state.TrainState.create(
    apply_fn=Cnn().apply, params=variables['params'], tx=optax.adam(1e-2)
  )

  @jax.jit
  def step(state):
    def loss(params):
      y = state.apply_fn({'params': params, 'batch_stats': variables['batch_stats']}, x)
      return jnp.mean(y**2)

    return state.apply_gradients(grads=jax.grad(loss)(state.params))

  for _ in range(3):
    state = step(state)
    yield state


def spec_tree():
  """The checkpoint guide's `ckpt`: a model state, a config with a string, and a data list."""
  kernel = np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3)
  return {
    'model': {
      'step': 1,
      'params': {'kernel': kernel, 'bias': np.full(3, -0.001, np.float32)},
      'opt_state': [None, None],
    },
    'config': {'dimensions': np.array([5, 3]), 'name': 'dense'},
    'data': [np.linspace(0, 2.4, 5, dtype=np.float32)],
  }


def fresh(name):
  path = OUT / name
  shutil.rmtree(path, ignore_errors=True)
  return path


def write_aggregate(per_array, path):
  """The pre-OCDBT layout: per-array zarr directories plus the `checkpoint` msgpack tree."""
  shutil.copytree(per_array, path)
  for extra in ['_METADATA', '_CHECKPOINT_METADATA', '_sharding', 'array_metadatas']:
    target = path / extra
    if target.is_dir():
      shutil.rmtree(target)
    elif target.exists():
      target.unlink()
  tree = spec_tree()
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  flat = {}
  for keypath, leaf in leaves:
    keys = tuple(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in keypath)
    if isinstance(leaf, np.ndarray):
      # orbax.checkpoint.utils.leaf_placeholder: the array's zarr directory, named by its path.
      flat[keys] = 'PLACEHOLDER://' + '.'.join(keys)
    else:
      flat[keys] = leaf
  structure = jax.tree_util.tree_unflatten(
    jax.tree_util.tree_structure(tree), [flat[k] for k in (
      tuple(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in kp) for kp, _ in leaves)]
  )
  (path / 'checkpoint').write_bytes(serialization.msgpack_serialize(structure))


def main():
  OUT.mkdir(parents=True, exist_ok=True)
  expected = {}

  ckptr = ocp.StandardCheckpointer()
  ckptr.save(fresh('cnn'), cnn_tree())
  ckptr.wait_until_finished()
  expected['cnn'] = ocp.StandardCheckpointer().restore(OUT / 'cnn')

  manager_dir = fresh('manager')
  manager = ocp.CheckpointManager(manager_dir, options=ocp.CheckpointManagerOptions(max_to_keep=2))
  states = list(train_states())
  for i, state in enumerate(states, start=1):
    manager.save(i, args=ocp.args.StandardSave(state))
  manager.wait_until_finished()
  for step in manager.all_steps():
    restored = manager.restore(step, args=ocp.args.StandardRestore(states[step - 1]))
    expected[f'manager_{step}'] = serialization.to_state_dict(restored)
  manager.close()

  handler = ocp.PyTreeCheckpointHandler(use_ocdbt=False)
  ocp.Checkpointer(handler).save(fresh('per_array'), args=ocp.args.PyTreeSave(spec_tree()))
  expected['per_array'] = ocp.PyTreeCheckpointer().restore(OUT / 'per_array')

  write_aggregate(OUT / 'per_array', fresh('aggregate'))
  restored = ocp.PyTreeCheckpointer().restore(OUT / 'aggregate')
  jax.tree_util.tree_map(np.testing.assert_array_equal, restored, expected['per_array'])
  expected['aggregate'] = restored

  for name, tree in expected.items():
    # Arrays as numpy arrays; Python scalars stay scalars, as Orbax restored them.
    expected[name] = jax.tree_util.tree_map(
      lambda x: np.asarray(x) if isinstance(x, jax.Array) else x, serialization.to_state_dict(tree)
    )
  (OUT / 'expected.msgpack').write_bytes(serialization.msgpack_serialize(expected))


if __name__ == '__main__':
  main()
