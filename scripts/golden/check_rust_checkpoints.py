"""Checks, with Python Flax, the checkpoint that the Rust checkpoint tests wrote.

`flax-runtime/tests/checkpoints.rs` (`rust_writes_the_bytes_flax_writes`) saves a checkpoint
directory to `$FLAX_RS_CHECKPOINT_OUT`, by default `$CARGO_TARGET_DIR/tmp/checkpoint-rust`
(`target/tmp/…` without CARGO_TARGET_DIR). Run, from the repository root:

    cargo test -p flax-runtime --test checkpoints
    .golden-venv/bin/python scripts/golden/check_rust_checkpoints.py [DIR]

It restores the latest checkpoint there with `flax.training.checkpoints.restore_checkpoint`,
raw and into `checkpoint_vectors.tree()`, and checks the values, then checks that the file is
byte-identical to the one Flax wrote. It exits non-zero on any failure.
"""

import os
import pathlib
import sys

import jax
import numpy as np
from flax.training import checkpoints

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import checkpoint_vectors as vectors  # noqa: E402


def default_dir():
  if 'FLAX_RS_CHECKPOINT_OUT' in os.environ:
    return pathlib.Path(os.environ['FLAX_RS_CHECKPOINT_OUT'])
  target = pathlib.Path(os.environ.get('CARGO_TARGET_DIR', 'target'))
  return target / 'tmp' / 'checkpoint-rust'


def main():
  directory = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else default_dir()
  latest = checkpoints.latest_checkpoint(directory)
  if latest is None:
    sys.exit(f'no checkpoint in {directory}: run the Rust test first')
  expected = vectors.tree()
  restored = checkpoints.restore_checkpoint(directory, target=vectors.tree())
  raw = checkpoints.restore_checkpoint(directory, target=None)
  # Raw restores keep Flax's state-dict form: the list becomes a dict keyed '0', '1'.
  assert list(raw['opt_state']) == ['0', '1'], raw['opt_state']
  leaves_expected, tree_expected = jax.tree_util.tree_flatten(expected)
  leaves_restored, tree_restored = jax.tree_util.tree_flatten(restored)
  assert tree_expected == tree_restored, (tree_expected, tree_restored)
  for a, b in zip(leaves_restored, leaves_expected):
    if isinstance(b, np.ndarray):
      assert a.dtype == b.dtype and a.shape == b.shape, (a, b)
      np.testing.assert_array_equal(a, b)
    else:
      assert a == b and type(a) is type(b), (a, b)
  flax_bytes = (vectors.OUT / 'flax_dir' / 'checkpoint_3').read_bytes()
  assert pathlib.Path(latest).read_bytes() == flax_bytes, 'bytes differ from what Flax writes'
  print(f'ok: {latest} restores in Flax and is byte-identical to Flax\'s checkpoint')


if __name__ == '__main__':
  main()
