"""Golden vectors for `flax::training::checkpoints`, written by the real `flax.training.checkpoints`.

Run from the repository root:

    .golden-venv/bin/python scripts/golden/checkpoint_vectors.py

Flax 0.12.8 saves with Orbax by default; this turns `flax_use_orbax_checkpointing` off to get
the legacy msgpack checkpoints that the spec (Flax 0.6.10) documents and the Rust library
writes. It writes, under `flax-runtime/tests/data/checkpoints/`:

- `flax_dir/checkpoint_3`: `save_checkpoint(flax_dir, TREE, step=3)` of the tree `tree()`
  (the Rust test builds the same tree, restores this file into it and raw, and saves it again
  expecting identical bytes); `flax_list/checkpoint_1` and `flax_array/checkpoint_2` the same
  for a bare list (`list_tree()`) and a bare array (`array_tree()`);
- `expected.json`:
  - `names`: the file name `save_checkpoint` gives each step (ints and floats);
  - `natural_sort`: `natural_sort` of name lists, including the spec's restore_checkpoint
    examples, with `latest_checkpoint` of a directory holding those names;
  - `scenarios`: sequences of operations on a fresh directory (saves with options, files
    created by hand) with, after each, the result (the returned file name or the error's class)
    and the directory listing, `latest_checkpoint` and `available_steps(step_type=float)`.

`check_rust_checkpoints.py` checks, the other way round, the checkpoint the Rust test writes.
"""

import json
import os
import pathlib
import shutil
import tempfile
import warnings

import numpy as np
from flax import config, errors
from flax.training import checkpoints

config.update('flax_use_orbax_checkpointing', False)
warnings.simplefilter('ignore', DeprecationWarning)

OUT = pathlib.Path(__file__).resolve().parents[2] / 'flax-runtime/tests/data/checkpoints'


def tree():
  """A variables-like tree with several dtypes, a list, scalars and an empty dict."""
  return {
    'params': {
      'Dense_0': {
        'kernel': (np.arange(6, dtype=np.float32).reshape(3, 2) - 2.5) / 4,
        'bias': np.array([0.5, -1.5], np.float32),
      },
    },
    'batch_stats': {'mean': np.linspace(-1, 1, 4), 'count': np.arange(3, dtype=np.int32)},
    'opt_state': [{'mu': np.ones(2, np.float16)}, {}],
    'step': 3,
    'lr': 0.01,
    'name': 'mlp',
  }


def list_tree():
  """A bare list: its state dict is keyed '0' … '10' in insertion order, not sorted."""
  return [np.full(1, i, np.int32) for i in range(11)]


def array_tree():
  return np.arange(4, dtype=np.float32)


def small():
  return {'a': np.arange(3, dtype=np.int64)}


NAME_STEPS = [0, 3, 100, -7, 0.1, 0.01, 0.001, 2.5, 3.0, -1.0, 1e5, 1e15, 1e16, 1.5e-5, 1e-4,
              123456789012345678.0]

SORT_LISTS = [
  ['ckpt_1', 'ckpt_2', 'ckpt_3'],
  ['ckpt_0.01', 'ckpt_0.1', 'ckpt_0.001'],
  ['ckpt_-1.0', 'ckpt_1.0', 'ckpt_1e5'],
  ['ckpt_10', 'ckpt_9', 'ckpt_100', 'ckpt_tmp', 'ckpt_1.5', 'ckpt_+2', 'ckpt_.5'],
  ['ckpt_1e-3', 'ckpt_1E2', 'ckpt_3.', 'ckpt_2e', 'ckpt_x9', 'ckpt_'],
]


def save(step, **options):
  return {'op': 'save', 'step': step, 'options': options}


def touch(name, directory=False):
  return {'op': 'touch', 'name': name, 'directory': directory}


SCENARIOS = {
  'keep_2': [save(s, keep=2) for s in range(1, 6)],
  'keep_default': [save(s) for s in (1, 2, 3)],
  'keep_0_keeps_all': [save(s, keep=0) for s in (1, 2, 3)],
  'keep_every_3_steps': [save(s, keep=1, keep_every_n_steps=3) for s in range(0, 11)],
  'keep_every_2_steps_keep_2': [save(s, keep=2, keep_every_n_steps=2) for s in (1, 2, 3, 5, 6, 9, 10)],
  'float_steps': [save(s, keep=2) for s in (0.001, 0.01, 0.1, 0.5)],
  'float_steps_keep_every': [save(s, keep=1, keep_every_n_steps=1) for s in (0.5, 1.0, 1.5, 2.0, 3.5)],
  'outdated_step': [save(5), save(5), save(3), save(6)],
  'overwrite_removes_newer': [save(s, keep=5) for s in (1, 2, 3, 4)]
  + [save(2, keep=5, overwrite=True), save(2, keep=5, overwrite=True), save(3, keep=5)],
  'overwrite_with_keep': [save(s, keep=3) for s in (1, 2, 3)] + [save(1, keep=1, overwrite=True)],
  'prefix': [save(s, prefix='test_', keep=2) for s in (1, 2, 3)] + [save(1)],
  'stale_tmp': [touch('checkpoint_tmp'), save(1), touch('checkpoint_tmp'), save(2)],
  'gda_folder_ignored': [save(1), touch('checkpoint_5_gda', directory=True), save(2)],
  'stray_file_blocks_saves': [save(1), touch('checkpoint_foo'), save(2), save(3, overwrite=True)],
  'stray_directory_removed': [touch('checkpoint_1', directory=True), save(2), save(3)],
  'negative_and_exponent_steps': [save(s, keep=3) for s in (-1.0, 1.0, 1e5)] + [save(2.0)],
}


def listing(directory):
  return sorted(os.listdir(directory))


def run_scenario(ops):
  results = []
  with tempfile.TemporaryDirectory() as root:
    directory = os.path.join(root, 'ckpts')
    for op in ops:
      if op['op'] == 'touch':
        path = os.path.join(directory, op['name'])
        os.makedirs(directory, exist_ok=True)
        if op['directory']:
          os.makedirs(path)
        else:
          pathlib.Path(path).write_bytes(b'not a checkpoint')
        result = None
      else:
        try:
          path = checkpoints.save_checkpoint(directory, small(), op['step'], **op['options'])
          result = os.path.basename(path)
        except errors.InvalidCheckpointError:
          result = 'InvalidCheckpointError'
      prefix = op.get('options', {}).get('prefix', 'checkpoint_')
      latest = checkpoints.latest_checkpoint(directory, prefix)
      try:
        steps = checkpoints.available_steps(directory, prefix, step_type=float)
      except ValueError:
        steps = 'ValueError'
      results.append({
        'result': result,
        'files': listing(directory),
        'latest': latest and os.path.basename(latest),
        'available_steps': steps,
      })
  return results


def file_names():
  names = []
  with tempfile.TemporaryDirectory() as directory:
    for step in NAME_STEPS:
      path = checkpoints.save_checkpoint(directory, small(), step, overwrite=True, keep=100)
      names.append({'step': step, 'is_float': isinstance(step, float), 'name': os.path.basename(path)})
  return names


def natural_sorts():
  out = []
  for names in SORT_LISTS:
    with tempfile.TemporaryDirectory() as directory:
      for name in names:
        pathlib.Path(directory, name).write_bytes(b'')
      latest = checkpoints.latest_checkpoint(directory, 'ckpt_')
    out.append({
      'names': names,
      'sorted': checkpoints.natural_sort(names),
      'latest': latest and os.path.basename(latest),
    })
  return out


def main():
  shutil.rmtree(OUT, ignore_errors=True)
  flax_dir = OUT / 'flax_dir'
  path = checkpoints.save_checkpoint(flax_dir, tree(), step=3)
  assert os.path.basename(path) == 'checkpoint_3', path
  checkpoints.save_checkpoint(OUT / 'flax_list', list_tree(), step=1)
  checkpoints.save_checkpoint(OUT / 'flax_array', array_tree(), step=2)
  expected = {
    'names': file_names(),
    'natural_sort': natural_sorts(),
    'scenarios': {name: {'ops': ops, 'after': run_scenario(ops)} for name, ops in SCENARIOS.items()},
  }
  (OUT / 'expected.json').write_text(json.dumps(expected, indent=1) + '\n')
  print(f'wrote {OUT}')


if __name__ == '__main__':
  main()
