"""Checks, with pip-installed orbax-checkpoint 0.12.8, the Orbax checkpoints the Rust library wrote.

`flax-runtime/tests/orbax_checkpoints.rs` (`written_checkpoints_restore_here_in_both_layouts`)
saves `rust_tree()` to `$FLAX_RS_ORBAX_OUT`, by default `$CARGO_TARGET_DIR/tmp/orbax-rust`
(`target/tmp/…` without CARGO_TARGET_DIR): `ocdbt/` (the default layout), `per_array/`
(`Layout::PerArray`) and `manager/` (a `CheckpointManager` that kept steps 2 and 3). Run, from
the repository root:

    cargo test -p flax-runtime --test orbax_checkpoints
    cargo test -p flax-runtime --test orbax_sharded   # after orbax_checkpoints, which clears DIR
    .golden-venv/bin/python scripts/golden/orbax_check_restore.py [DIR]

It restores each with Orbax — raw with `PyTreeCheckpointer` and `StandardCheckpointer`, into
an abstract target of `jax.ShapeDtypeStruct`s with `PyTreeRestore`, and the manager's latest
step through `CheckpointManager` — and checks every value, dtype and shape against the tree
the Rust test saved.

`flax-runtime/tests/orbax_sharded.rs` writes, into the same directory, `sharded/` (a TrainState
saved by 4 Rust ranks, each writing its pieces into its own `ocdbt.process_<rank>/`),
`sharded_manager/7/` (the same through a `CheckpointManager`) and `sharded_reference/` (the
gathered state saved by one process). The script checks that each process database holds
that rank's chunk of Dense_0's kernel and no other rank's, and `.zarray` documents only on
rank 0 (as multi-host JAX writes them), and that Orbax restores the sharded checkpoint as the full
arrays: raw, into a target sharded over 4 CPU devices, and through `CheckpointManager`.
It exits non-zero on any failure.
"""

import os
import pathlib
import sys

# Four CPU devices for the sharded target (set before JAX starts).
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=4')

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def rust_tree():
  """The tree `rust_tree()` in the Rust test builds, as Orbax restores it raw."""
  return {
    'params': {
      'Dense_0': {
        'kernel': (np.arange(600, dtype=np.float32) / 7.0).reshape(20, 30),
        'bias': np.array([0.5, -1.5, 2.0], np.float32),
      }
    },
    'bf16': np.array([1.5, -2.0], jnp.bfloat16),
    'int32': np.array([-3, 0, 7], np.int32),
    'bool': np.array([True, False]),
    'key': np.array([0, 42], np.uint32),
    'step': np.array(5, np.int32),
    'lr': 0.25,
    'epoch': 3,
    'name': 'cnn',
    'nothing': None,
    'empty': {},
    # A state dict's {"0": …, "1": …} is written as a sequence: Orbax gives back a list.
    'opt_state': [{'count': np.array(2, np.int32)}, {}],
  }


def default_dir():
  if 'FLAX_RS_ORBAX_OUT' in os.environ:
    return pathlib.Path(os.environ['FLAX_RS_ORBAX_OUT'])
  target = pathlib.Path(os.environ.get('CARGO_TARGET_DIR', 'target'))
  return target / 'tmp' / 'orbax-rust'


def check_same(expected, got, path=''):
  if isinstance(expected, dict):
    assert isinstance(got, dict), f'{path}: expected a dict, got {type(got)}'
    assert sorted(expected) == sorted(got), f'{path}: keys {sorted(got)} != {sorted(expected)}'
    for key in expected:
      check_same(expected[key], got[key], f'{path}/{key}')
  elif isinstance(expected, list):
    assert isinstance(got, (list, tuple)), f'{path}: expected a list, got {type(got)}'
    assert len(expected) == len(got), f'{path}: {len(got)} items, expected {len(expected)}'
    for i, (e, g) in enumerate(zip(expected, got)):
      check_same(e, g, f'{path}/{i}')
  elif isinstance(expected, np.ndarray):
    got = np.asarray(got)
    assert got.dtype == expected.dtype, f'{path}: dtype {got.dtype} != {expected.dtype}'
    assert got.shape == expected.shape, f'{path}: shape {got.shape} != {expected.shape}'
    np.testing.assert_array_equal(got, expected, err_msg=path)
  else:
    assert type(got) is type(expected) and got == expected, f'{path}: {got!r} != {expected!r}'


def main():
  directory = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else default_dir()
  if not directory.is_dir():
    sys.exit(f'no checkpoints in {directory}: run the Rust test first')
  expected = rust_tree()
  for layout in ['ocdbt', 'per_array']:
    path = (directory / layout).resolve()
    check_same(expected, ocp.PyTreeCheckpointer().restore(path), layout)
    check_same(expected, ocp.StandardCheckpointer().restore(path), layout)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding) if isinstance(x, np.ndarray) else x,
      expected,
    )
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
    restored = ocp.PyTreeCheckpointer().restore(
      path, args=ocp.args.PyTreeRestore(item=abstract, restore_args=restore_args)
    )
    assert isinstance(restored['params']['Dense_0']['kernel'], jax.Array)
    check_same(expected, restored, f'{layout} (into a target)')
    print(f'{layout}: Orbax restores what Rust wrote')
  manager = ocp.CheckpointManager((directory / 'manager').resolve())
  assert manager.all_steps() == [2, 3], manager.all_steps()
  check_same(expected, manager.restore(manager.latest_step()), 'manager')
  manager.close()
  print('manager: steps [2, 3]; Orbax restores step 3 what Rust wrote')
  check_sharded(directory)


def database_keys(path):
  store = ts.KvStore.open({'driver': 'ocdbt', 'base': f'file://{path}'}).result()
  return [key.decode() for key in store.list().result()]


def check_sharded(directory):
  """The checkpoint 4 Rust ranks wrote: its layout, and Orbax's restores of it."""
  path = (directory / 'sharded').resolve()
  if not path.is_dir():
    sys.exit(f'no sharded checkpoint in {directory}: run the orbax_sharded test first')
  reference = ocp.PyTreeCheckpointer().restore((directory / 'sharded_reference').resolve())
  # Each rank's database holds its own chunks; the primary also the .zarray documents and
  # the replicated values. Dense_0's (64, 256) kernel is split along its last axis in 4.
  kernel = 'params.Dense_0.kernel'
  for rank in range(4):
    keys = database_keys(path / f'ocdbt.process_{rank}')
    assert rank == 0 or not any(k.endswith('.zarray') for k in keys), f'process {rank}: {keys}'
    own = sorted(k for k in keys if k.startswith(kernel + '/'))
    expected = ([f'{kernel}/.zarray'] if rank == 0 else []) + [f'{kernel}/0.{rank}']
    assert own == expected, f'process {rank}: {own} != {expected}'
  assert f'{kernel}/0.3' in database_keys(path), 'the merged top-level database'
  check_same(reference, ocp.PyTreeCheckpointer().restore(path), 'sharded')
  check_same(reference, ocp.StandardCheckpointer().restore(path), 'sharded')
  # Into jax.Arrays sharded as the Rust ranks held them: the last axis over 4 devices.
  mesh = Mesh(np.array(jax.devices()[:4]), ('data',))

  def target(x):
    if not isinstance(x, np.ndarray):
      return x
    split = x.ndim > 0 and x.shape[-1] % 4 == 0
    spec = PartitionSpec(*([None] * (x.ndim - 1) + ['data'])) if split else PartitionSpec()
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, spec))

  abstract = jax.tree_util.tree_map(target, reference)
  restored = ocp.PyTreeCheckpointer().restore(
    path,
    args=ocp.args.PyTreeRestore(item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract)),
  )
  assert len(restored['params']['Dense_0']['kernel'].sharding.device_set) == 4
  check_same(reference, restored, 'sharded (into a target on 4 devices)')
  manager = ocp.CheckpointManager((directory / 'sharded_manager').resolve())
  assert manager.all_steps() == [7], manager.all_steps()
  check_same(reference, manager.restore(7), 'sharded manager')
  manager.close()
  print('sharded: each process database holds its rank\'s chunks; Orbax restores the full arrays')


if __name__ == '__main__':
  main()
