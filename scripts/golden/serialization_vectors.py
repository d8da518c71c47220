"""Golden vectors for `flax::serialization`, written by the real `flax.serialization`.

Run from the repository root:

    .golden-venv/bin/python scripts/golden/serialization_vectors.py

It writes `flax-runtime/tests/data/serialization/<case>.msgpack` (the bytes Flax 0.12.8 wrote)
and `expected.json`, which describes for every case the API that wrote it and the tree that
Flax's own `msgpack_restore` reads back from it (so the Rust test checks values without
Python). `tests/serialization_golden.rs` restores every file, compares it with that tree, and
re-serializes it expecting identical bytes. `check_rust_bytes.py` imports `CASES` from here to
check, the other way round, the bytes that the Rust test writes.

Every tree is deterministic (aranges and literals), so regenerating gives identical files.
"""

import json
import pathlib
from contextlib import contextmanager

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
from flax import linen as nn
from flax import serialization
from flax.training import train_state

OUT = pathlib.Path(__file__).resolve().parents[2] / 'flax-runtime/tests/data/serialization'

# The chunk size the chunking cases patch in for Flax's 2**30, so small arrays get chunked.
# `chunking.rs` uses the same value to re-serialize those files.
SMALL_CHUNK_SIZE = 100


@contextmanager
def max_chunk_size(size):
  saved = serialization.MAX_CHUNK_SIZE
  serialization.MAX_CHUNK_SIZE = size
  try:
    yield
  finally:
    serialization.MAX_CHUNK_SIZE = saved


def steps(dtype, n=6):
  """n values of `dtype` that every dtype holds: small signed halves, or 0/1 for bool."""
  k = np.arange(n)
  if dtype == np.bool_:
    return k % 2 == 0
  if np.issubdtype(dtype, np.complexfloating):
    return ((k - 2) + 1j * (k * 0.5)).astype(dtype)
  if np.issubdtype(dtype, np.unsignedinteger):
    return (k * 40).astype(dtype)
  if np.issubdtype(dtype, np.integer):
    return (k - 3).astype(dtype)
  return ((k - 2.5) * 0.75).astype(dtype)


DTYPES = [
  np.float16, np.float32, np.float64, ml_dtypes.bfloat16,
  np.int8, np.int16, np.int32, np.int64, np.uint8, np.bool_,
  np.complex64, np.complex128,
  ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2,
  ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2fnuz,
]


def dtypes_tree():
  tree = {np.dtype(d).name: steps(d).reshape(2, 3) for d in DTYPES}
  tree['float32_specials'] = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4e38], np.float32)
  for d in (np.int8, np.int16, np.int32, np.int64, np.uint8):
    info = np.iinfo(d)
    tree[np.dtype(d).name + '_extremes'] = np.array([info.min, info.max], d)
  return tree


def shapes_tree():
  return {
    'scalar': np.array(2.5, np.float32),
    'empty': np.zeros((0, 3), np.float32),
    'rank3': np.arange(24, dtype=np.int32).reshape(2, 3, 4),
    'long': np.arange(300, dtype=np.float32),  # data over 255 bytes: bin16 and ext16 headers
    'huge_dims': np.zeros((0, 70000, 5000000000), np.int8),  # uint32 and uint64 dims
    'jax_array': jnp.arange(4, dtype=jnp.float32) * 0.25,
  }


def views_tree():
  """Non-contiguous arrays; the Rust test builds the same views natively."""
  c = np.arange(3) + 1j * np.arange(3)
  return {
    'transposed': np.arange(6, dtype=np.float32).reshape(2, 3).T,
    'strided': np.arange(10, dtype=np.int64)[::2],
    'conj': np.conj(c.astype(np.complex64)),
  }


def nested_tree():
  """Unsorted keys at every level, lists inside dicts and dicts inside lists."""
  return {
    'zeta': [np.arange(3, dtype=np.float32), [1, 2.5, 'x'], {'b': True, 'a': None}],
    'alpha': {'y': 1, 'x': [], 'w': {}},
    'mid': [[[]]],
  }


def state_dict_tree():
  """What `to_bytes` takes: tuples and lists become dicts keyed '0', '1', …, order is kept."""
  return {
    'params': {'kernel': steps(np.float32).reshape(3, 2), 'bias': np.zeros(2, np.float32)},
    'zz': (np.arange(2, dtype=np.int32), [1, {'q': 2, 'p': 3}]),
    'aa': 1.5,
    'many': list(range(12)),  # keys '10', '11' after '9', not sorted
  }


def scalars_tree():
  return {
    'int_small': 5, 'int_neg': -7, 'int_i8': -100, 'int_i16': -40000, 'int_i32': -2**31,
    'int_i64': -2**63, 'int_u8': 200, 'int_u16': 60000, 'int_u32': 2**31 + 5, 'int_u64': 2**63 - 1,
    'float': 0.1, 'float_big': -1e300, 'float_nan': float('nan'), 'float_inf': float('inf'),
    'true': True, 'false': False, 'none': None,
    'str': 'héllo', 'str_long': 'x' * 40, 'str_300': 'y' * 300,
    'bytes': b'\x00\x01\xff', 'complex': 1.5 - 2j, 'complex_zero': 0j,
  }


def numpy_scalars(as_array):
  tree = {
    'f32': np.float32(1.5), 'f64': np.float64(-0.25), 'i64': np.int64(-7), 'u8': np.uint8(200),
    'bool': np.bool_(True), 'c64': np.complex64(1 + 2j), 'bf16': ml_dtypes.bfloat16(0.5),
  }
  return {k: np.asarray(v) for k, v in tree.items()} if as_array else tree


def chunked_tree():
  return {
    'big': np.arange(40, dtype=np.float32).reshape(5, 8),  # 160 B: chunks of 25 and 15
    'small': np.arange(4, dtype=np.float32),  # 16 B: not chunked
    'nested': {'big64': np.arange(30, dtype=np.float64) * 0.5},  # 12-element chunks (int(12.5))
    'listed': [np.arange(40, dtype=np.float32)],  # inside a list: never chunked
    'many': np.arange(1200, dtype=np.int8).reshape(12, 100),  # 12 chunks: '10' after '9'
    'scalar': np.array(1.0, np.complex128),  # 16 B: not chunked
  }


UNSIGNED = [np.uint16, np.uint32, np.uint64]


def unsigned_tree():
  """The unsigned dtypes tch has no kind for (Rust keeps them host-side), JAX keys included."""
  tree = {}
  for d in UNSIGNED:
    name = np.dtype(d).name
    tree[name] = steps(d).reshape(2, 3)
    tree[name + '_scalar'] = np.array(np.iinfo(d).max - 1, d)  # 0-d
    tree[name + '_empty'] = np.zeros((0, 3), d)
    tree[name + '_extremes'] = np.array([0, np.iinfo(d).max], d)
  tree['uint32_rank3'] = np.arange(24, dtype=np.uint32).reshape(2, 3, 4)
  tree['key'] = jax.random.PRNGKey(42)
  tree['key_fold_in'] = jax.random.fold_in(jax.random.PRNGKey(42), 7)
  tree['listed'] = [np.arange(2, dtype=np.uint16), {'k': jax.random.PRNGKey(0)}]
  return tree


def unsigned_numpy_scalars(as_array):
  tree = {'u16': np.uint16(7), 'u32': np.uint32(2**32 - 1), 'u64': np.uint64(2**63 + 1)}
  return {k: np.asarray(v) for k, v in tree.items()} if as_array else tree


def unsigned_chunked_tree():
  return {
    'big32': np.arange(40, dtype=np.uint32).reshape(5, 8),  # 160 B: chunks of 25 and 15
    'nested': {'big64': np.arange(30, dtype=np.uint64) * 3},  # 240 B: 12-element chunks
    'small16': np.arange(10, dtype=np.uint16),  # 20 B: not chunked
    'listed': [np.arange(40, dtype=np.uint32)],  # inside a list: never chunked
  }


class TrainStateWithKey(train_state.TrainState):
  """The dropout guide's TrainState: the key is a pytree leaf, saved with the state."""
  key: jax.Array


def make_train_state(steps=2, cls=train_state.TrainState, tx=None, jit=False, **extra):
  """A TrainState (or subclass `cls` with `extra` fields) with `tx` (by default Adam) after
  `steps` updates, made under `jax.jit` when `jit` (then `step` is a 0-d int32 array, as in
  any real training loop, instead of a Python int). `to_state_dict` of it is {step, params,
  opt_state: {'0': ScaleByAdamState, '1': EmptyState}, **extra}."""

  class Mlp(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.relu(nn.Dense(4)(x))  # Dense_0: kernel (3, 4)
      return nn.Dense(2)(x)  # Dense_1: kernel (4, 2)

  model = Mlp()
  params = model.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))['params']
  state = cls.create(apply_fn=model.apply, params=params, tx=tx or optax.adam(1e-2), **extra)
  apply = lambda state, grads: state.apply_gradients(grads=grads)
  apply = jax.jit(apply) if jit else apply
  for i in range(steps):
    grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.5 * (i + 1)), state.params)
    state = apply(state, grads)
  return state


def train_state_bytes():
  return serialization.to_bytes(make_train_state())


def make_train_state_with_key(steps=2):
  """With SGD and momentum, whose state (a trace per parameter) a typed Rust `TrainState`
  writes exactly as Optax does."""
  tx = optax.sgd(0.1, momentum=0.9)
  return make_train_state(steps, TrainStateWithKey, tx, key=jax.random.PRNGKey(42))


def train_state_with_key_bytes():
  return serialization.to_bytes(make_train_state_with_key())


def serialize(tree):
  return serialization.msgpack_serialize(tree)


def chunked_serialize(tree):
  with max_chunk_size(SMALL_CHUNK_SIZE):
    return serialization.msgpack_serialize(tree)


def chunked_to_bytes(tree):
  with max_chunk_size(SMALL_CHUNK_SIZE):
    return serialization.to_bytes(tree)


# name -> (api the Rust test re-serializes with, function returning Flax's bytes, notes)
CASES = {
  'dtypes': ('msgpack_serialize', lambda: serialize(dtypes_tree()), {}),
  'dtypes_to_bytes': ('to_bytes', lambda: serialization.to_bytes(dtypes_tree()), {}),
  'shapes': ('msgpack_serialize', lambda: serialize(shapes_tree()), {}),
  'views': ('msgpack_serialize', lambda: serialize(views_tree()), {}),
  'nested': ('msgpack_serialize', lambda: serialize(nested_tree()), {}),
  'nested_to_bytes': ('to_bytes', lambda: serialization.to_bytes(nested_tree()), {}),
  'state_dict': ('to_bytes', lambda: serialization.to_bytes(state_dict_tree()), {}),
  'scalars': ('msgpack_serialize', lambda: serialize(scalars_tree()), {}),
  'numpy_scalars': (
    'msgpack_serialize', lambda: serialize(numpy_scalars(False)),
    # Rust restores numpy scalars as 0-d tensors, which write back as 0-d arrays.
    {'rewritten_as': 'numpy_scalars_as_arrays'},
  ),
  'numpy_scalars_as_arrays': ('msgpack_serialize', lambda: serialize(numpy_scalars(True)), {}),
  'chunked': (
    'msgpack_serialize', lambda: chunked_serialize(chunked_tree()),
    {'max_chunk_size': SMALL_CHUNK_SIZE, 'unchunked_as': 'chunked_unchunked'},
  ),
  'chunked_unchunked': ('msgpack_serialize', lambda: serialize(chunked_tree()), {}),
  'chunked_to_bytes': (
    'to_bytes', lambda: chunked_to_bytes(chunked_tree()),
    {'max_chunk_size': SMALL_CHUNK_SIZE, 'unchunked_as': 'chunked_to_bytes_unchunked'},
  ),
  'chunked_to_bytes_unchunked': ('to_bytes', lambda: serialization.to_bytes(chunked_tree()), {}),
  'train_state': ('to_bytes', train_state_bytes, {}),
  'train_state_jit': ('to_bytes', lambda: serialization.to_bytes(make_train_state(jit=True)), {}),
  'unsigned': ('msgpack_serialize', lambda: serialize(unsigned_tree()), {}),
  'unsigned_to_bytes': ('to_bytes', lambda: serialization.to_bytes(unsigned_tree()), {}),
  'unsigned_numpy_scalars': (
    'msgpack_serialize', lambda: serialize(unsigned_numpy_scalars(False)),
    {'rewritten_as': 'unsigned_numpy_scalars_as_arrays'},
  ),
  'unsigned_numpy_scalars_as_arrays': (
    'msgpack_serialize', lambda: serialize(unsigned_numpy_scalars(True)), {},
  ),
  'unsigned_chunked': (
    'msgpack_serialize', lambda: chunked_serialize(unsigned_chunked_tree()),
    {'max_chunk_size': SMALL_CHUNK_SIZE, 'unchunked_as': 'unsigned_chunked_unchunked'},
  ),
  'unsigned_chunked_unchunked': ('msgpack_serialize', lambda: serialize(unsigned_chunked_tree()), {}),
  'train_state_with_key': ('to_bytes', train_state_with_key_bytes, {}),
}


def describe(x):
  """A JSON description of a restored tree (dict order kept as key/value pairs)."""
  if isinstance(x, dict):
    return {'dict': [[k, describe(v)] for k, v in x.items()]}
  if isinstance(x, list):
    return {'list': [describe(v) for v in x]}
  if isinstance(x, (np.ndarray, np.generic)):
    arr = np.asarray(x)
    return {'array': {'dtype': arr.dtype.name, 'shape': list(arr.shape), 'values': array_values(arr)}}
  if isinstance(x, bool):
    return {'bool': x}
  if isinstance(x, int):
    return {'int': x}
  if isinstance(x, float):
    return {'float': json_float(x)}
  if isinstance(x, complex):
    return {'complex': [json_float(x.real), json_float(x.imag)]}
  if isinstance(x, str):
    return {'str': x}
  if isinstance(x, bytes):
    return {'bytes': x.hex()}
  if x is None:
    return {'none': None}
  raise TypeError(f'cannot describe {type(x)}')


def json_float(x):
  """JSON has no NaN or infinities: those are written as strings."""
  return x if np.isfinite(x) else str(x)


def array_values(arr):
  flat = arr.reshape(-1)
  if arr.dtype == np.bool_:
    return [bool(v) for v in flat]
  if np.issubdtype(arr.dtype, np.integer):
    return [int(v) for v in flat]
  if np.issubdtype(arr.dtype, np.complexfloating):
    return [[json_float(float(v.real)), json_float(float(v.imag))] for v in flat]
  return [json_float(float(v)) for v in flat.astype(np.float64)]


def main():
  OUT.mkdir(parents=True, exist_ok=True)
  expected = {}
  for name, (api, make, notes) in CASES.items():
    data = make()
    (OUT / f'{name}.msgpack').write_bytes(data)
    entry = {'file': f'{name}.msgpack', 'api': api, **notes}
    entry['tree'] = describe(serialization.msgpack_restore(data))
    expected[name] = entry
  (OUT / 'expected.json').write_text(json.dumps({'flax': '0.12.8', 'cases': expected}, indent=1) + '\n')
  print(f'wrote {len(CASES)} cases to {OUT}')


if __name__ == '__main__':
  main()
