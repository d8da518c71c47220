"""Checks, with Python Flax, the msgpack bytes that the Rust serialization tests wrote.

The Rust test `flax-runtime/tests/serialization_golden.rs` saves every buffer it serializes
(re-serialized golden cases as `<case>.msgpack`, trees it built itself with libtorch as
`native_<case>.msgpack`) to `$FLAX_RS_SERIALIZATION_OUT`, by default
`$CARGO_TARGET_DIR/tmp/serialization-rust-bytes` (`target/tmp/…` without CARGO_TARGET_DIR).
Run, from the repository root:

    cargo test -p flax-runtime --test serialization_golden
    .golden-venv/bin/python scripts/golden/check_rust_bytes.py [DIR]

For each file this regenerates the case with Flax (see `serialization_vectors.CASES`) and
checks that the bytes are identical, that `flax.serialization.msgpack_restore` reads back the
same tree, and, for the TrainStates (plain, and the dropout guide's subclass with a `key`
field), that `flax.serialization.from_bytes` restores the Rust bytes into a fresh
`TrainState` equal to the trained one. It exits non-zero on any failure.
"""

import os
import pathlib
import sys

import jax
import numpy as np
from flax import serialization

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import serialization_vectors as vectors  # noqa: E402


def default_dir():
  if 'FLAX_RS_SERIALIZATION_OUT' in os.environ:
    return pathlib.Path(os.environ['FLAX_RS_SERIALIZATION_OUT'])
  target = pathlib.Path(os.environ.get('CARGO_TARGET_DIR', 'target'))
  return target / 'tmp' / 'serialization-rust-bytes'


def flax_twin(case):
  """The case whose Flax bytes Rust's re-serialization of `case` must equal."""
  _, _, notes = vectors.CASES[case]
  return notes.get('rewritten_as') or notes.get('unchunked_as') or case


# case -> the function that builds its TrainState after `steps` updates.
TRAIN_STATES = {
  'train_state': vectors.make_train_state,
  'train_state_with_key': vectors.make_train_state_with_key,
}


def check_train_state(make, rust_bytes):
  trained = make()
  restored = serialization.from_bytes(make(steps=0), rust_bytes)
  assert restored.step == trained.step, (restored.step, trained.step)
  assert type(restored) is type(trained), type(restored)
  # Every pytree leaf (params, opt_state and, for the subclass, the key), dtypes included.
  same = jax.tree_util.tree_map(
    lambda a, b: bool(np.array_equal(a, b) and np.asarray(a).dtype == np.asarray(b).dtype),
    serialization.to_state_dict(restored), serialization.to_state_dict(trained),
  )
  assert all(jax.tree_util.tree_leaves(same)), 'restored TrainState differs from the trained one'


def check(path):
  case = path.stem.removeprefix('native_')
  rust_bytes = path.read_bytes()
  flax_bytes = vectors.CASES[flax_twin(case)][1]()
  assert rust_bytes == flax_bytes, f'bytes differ from Flax ({len(rust_bytes)} vs {len(flax_bytes)} bytes)'
  rust_tree = vectors.describe(serialization.msgpack_restore(rust_bytes))
  assert rust_tree == vectors.describe(serialization.msgpack_restore(flax_bytes)), 'restored trees differ'
  if case in TRAIN_STATES:
    check_train_state(TRAIN_STATES[case], rust_bytes)


def main():
  out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else default_dir()
  files = sorted(out.glob('*.msgpack'))
  if not files:
    print(f'no Rust-written .msgpack files in {out}: run the Rust test first')
    return 1
  failed = 0
  for path in files:
    try:
      check(path)
      print(f'ok    {path.name}')
    except Exception as e:  # report every file, then fail
      failed += 1
      print(f'FAIL  {path.name}: {e}')
  print(f'{len(files) - failed} passed, {failed} failed')
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
