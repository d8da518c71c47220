"""Golden vectors for PRNG keys, jax.random sampling and Flax's initializers.

Run with `.golden-venv/bin/python scripts/golden/rng_vectors.py`. Writes
`flax-runtime/tests/data/rng.msgpack` (flax.serialization.msgpack_serialize of a nested dict
of numpy arrays) and prints the handful of values the Rust unit tests next to the code assert.

Conventions of the file:
- keys and raw random bits (uint32 in JAX) are stored as int64, since libtorch has no uint32;
- every sample is drawn from `jax.random.PRNGKey(SAMPLE_SEED)` unless its entry says otherwise;
- everything is float32 (JAX's default 32-bit mode) except the `f64` section, generated at the
  end with `jax_enable_x64` switched on.

Difference from Flax 0.6.10 (the spec) that matters here: the JAX of the spec's time defaulted
to `jax_threefry_partitionable=False`, jax 0.10.2 to `True` (split, fold_in and random bits
hash each element's 64-bit index). Every key after the seed, and so every sample, differs
between the two; the spec's printed examples (e.g. lecun_normal on PRNGKey(42)) show the old
values. These vectors, and the Rust side, follow jax 0.10.2's default.
"""

import hashlib
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import serialization
from flax.core.scope import _fold_in_static

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "flax-runtime", "tests", "data", "rng.msgpack")
SAMPLE_SEED = 42
SHAPE = (5, 7)
KEY_SEEDS = [0, 42, 2**32 + 5]
INIT_SHAPES = {"dense": (4, 3), "wide": (3, 4), "conv": (3, 3, 2, 4), "vec": (5,)}


def raw(key):
  return np.asarray(jax.random.key_data(key)).astype(np.int64)


def f32(x):
  return np.asarray(x, dtype=np.float32)


def key_section():
  out = {"seed": {}, "split3": {}, "fold_in": {}, "fold_in_static": {}}
  for seed in KEY_SEEDS:
    key = jax.random.PRNGKey(seed)
    out["seed"][str(seed)] = raw(key)
    out["split3"][str(seed)] = raw(jax.random.split(key, 3))
    for data in [0, 1, 12345, 2**32 - 1]:
      out["fold_in"][f"{seed}_{data}"] = raw(jax.random.fold_in(key, data))
  root = jax.random.PRNGKey(0)
  suffixes = {
    "1": (1,),
    "Dense_0_1": ("Dense_0", 1),
    "Dense_0_2": ("Dense_0", 2),
    "Encoder_0_Dense_1_3": ("Encoder_0", "Dense_1", 3),
    "int_0": (0,),
    "int_256": (256,),
    "int_2pow40": (2**40,),
    "unicode": ("Схема", 7),
  }
  for name, suffix in suffixes.items():
    out["fold_in_static"][name] = raw(_fold_in_static(root, suffix))
  return out


def sampler_section():
  key = jax.random.PRNGKey(SAMPLE_SEED)
  out = {
    "random_bits": np.asarray(jax.random.bits(key, SHAPE)).astype(np.int64),
    "uniform": f32(jax.random.uniform(key, SHAPE)),
    "uniform_m3_7": f32(jax.random.uniform(key, SHAPE, minval=-3.0, maxval=7.0)),
    "normal": f32(jax.random.normal(key, SHAPE)),
    "normal_large": f32(jax.random.normal(key, (4096,))),
    "truncated_normal_m2_2": f32(jax.random.truncated_normal(key, -2.0, 2.0, SHAPE)),
    "truncated_normal_m1_3": f32(jax.random.truncated_normal(key, -1.0, 3.0, SHAPE)),
    "truncated_normal_large": f32(jax.random.truncated_normal(key, -2.0, 2.0, (4096,))),
    "bernoulli_0_3": np.asarray(jax.random.bernoulli(key, 0.3, SHAPE)),
    "randint_m5_17": np.asarray(jax.random.randint(key, SHAPE, -5, 17)).astype(np.int64),
    "randint_u8_0_256": np.asarray(jax.random.randint(key, SHAPE, 0, 256, jnp.uint8)).astype(np.int64),
    "randint_i32_full": np.asarray(jax.random.randint(key, SHAPE, -2**31, 2**31 - 1)).astype(np.int64),
    "permutation_3": np.asarray(jax.random.permutation(key, 3)).astype(np.int64),
    "permutation_10": np.asarray(jax.random.permutation(key, 10)).astype(np.int64),
    # More than 1625 elements: two sorting rounds.
    "permutation_3000": np.asarray(jax.random.permutation(key, 3000)).astype(np.int64),
  }
  return out


def initializer_cases():
  """(name, initializer, shapes) for every initializer of flax.linen.initializers."""
  init = nn.initializers
  all_shapes = list(INIT_SHAPES)
  matrix_shapes = ["dense", "wide", "conv"]
  cases = [
    ("zeros", init.zeros_init(), all_shapes),
    ("ones", init.ones_init(), all_shapes),
    ("constant_m7", init.constant(-7.0), all_shapes),
    ("normal_5", init.normal(5.0), all_shapes),
    ("uniform_10", init.uniform(10.0), all_shapes),
    ("truncated_normal_2", init.truncated_normal(2.0), all_shapes),
    ("lecun_normal", init.lecun_normal(), matrix_shapes),
    ("lecun_uniform", init.lecun_uniform(), matrix_shapes),
    ("glorot_normal", init.glorot_normal(), matrix_shapes),
    ("glorot_uniform", init.glorot_uniform(), matrix_shapes),
    ("xavier_normal", init.xavier_normal(), matrix_shapes),
    ("xavier_uniform", init.xavier_uniform(), matrix_shapes),
    ("he_normal", init.he_normal(), matrix_shapes),
    ("he_uniform", init.he_uniform(), matrix_shapes),
    ("kaiming_normal", init.kaiming_normal(), matrix_shapes),
    ("kaiming_uniform", init.kaiming_uniform(), matrix_shapes),
    ("vs_2_fan_out_normal", init.variance_scaling(2.0, "fan_out", "normal"), matrix_shapes),
    ("vs_0_5_fan_avg_uniform", init.variance_scaling(0.5, "fan_avg", "uniform"), matrix_shapes),
    # Custom axes on the conv kernel: in = axes 0 and 1, out = 3, batch = 2.
    ("vs_custom_axes", init.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=(0, 1),
                                             out_axis=3, batch_axis=2), ["conv"]),
    ("orthogonal", init.orthogonal(), matrix_shapes),
    ("orthogonal_2_col0", init.orthogonal(2.0, column_axis=0), matrix_shapes),
    ("delta_orthogonal", init.delta_orthogonal(), ["conv"]),
  ]
  return cases


def initializer_section(dtype):
  key = jax.random.PRNGKey(SAMPLE_SEED)
  out = {}
  for name, initializer, shapes in initializer_cases():
    out[name] = {s: np.asarray(initializer(key, INIT_SHAPES[s], dtype)) for s in shapes}
  return out


class Mlp(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Dense(5)(x)
    return nn.Dense(3)(nn.relu(x))


def model_section():
  key = jax.random.PRNGKey(0)
  dense = nn.Dense(3).init(key, jnp.ones((2, 4)))["params"]
  mlp = Mlp().init(key, jnp.ones((2, 4)))["params"]
  conv = nn.Conv(4, (3, 3)).init(key, jnp.ones((1, 5, 5, 2)))["params"]
  # The derivation the Rust side mirrors: a param's key is make_rng("params") of its scope,
  # i.e. the root "params" key with the scope path and the scope's counter folded in.
  lecun = nn.initializers.lecun_normal()
  assert np.array_equal(dense["kernel"], lecun(_fold_in_static(key, (1,)), (4, 3)))
  assert np.array_equal(mlp["Dense_0"]["kernel"], lecun(_fold_in_static(key, ("Dense_0", 1)), (4, 5)))
  assert np.array_equal(mlp["Dense_1"]["kernel"], lecun(_fold_in_static(key, ("Dense_1", 1)), (5, 3)))
  to_np = lambda tree: jax.tree_util.tree_map(np.asarray, tree)
  return {"dense": to_np(dense), "mlp": to_np(mlp), "conv": to_np(conv)}


def f64_section():
  jax.config.update("jax_enable_x64", True)
  key = jax.random.PRNGKey(SAMPLE_SEED)
  f64 = jnp.float64
  out = {
    "key": raw(key),
    "uniform": np.asarray(jax.random.uniform(key, SHAPE, f64)),
    "uniform_m3_7": np.asarray(jax.random.uniform(key, SHAPE, f64, -3.0, 7.0)),
    "normal": np.asarray(jax.random.normal(key, SHAPE, f64)),
    "truncated_normal_m2_2": np.asarray(jax.random.truncated_normal(key, -2.0, 2.0, SHAPE, f64)),
    "truncated_normal_m1_3": np.asarray(jax.random.truncated_normal(key, -1.0, 3.0, SHAPE, f64)),
    "lecun_normal": np.asarray(nn.initializers.lecun_normal()(key, INIT_SHAPES["conv"], f64)),
    "glorot_uniform": np.asarray(nn.initializers.glorot_uniform()(key, INIT_SHAPES["dense"], f64)),
    "orthogonal": np.asarray(nn.initializers.orthogonal()(key, INIT_SHAPES["wide"], f64)),
  }
  assert out["normal"].dtype == np.float64
  return out


def print_unit_test_values(keys, samples):
  """Values the Rust unit tests next to the code assert (all from the real JAX above)."""
  def words(a):
    return "[" + ", ".join(str(int(v)) for v in np.ravel(a)) + "]"
  def floats(a, n=6):
    return "[" + ", ".join(f"{float(v)!r}" for v in np.ravel(a)[:n]) + "]"
  print("# core/rng.rs")
  for seed in KEY_SEEDS:
    print(f"PRNGKey({seed}) = {words(keys['seed'][str(seed)])}")
  print(f"split(PRNGKey(0), 3) = {words(keys['split3']['0'])}")
  print(f"fold_in(PRNGKey(42), 12345) = {words(keys['fold_in']['42_12345'])}")
  for name in ["1", "Dense_0_1", "Encoder_0_Dense_1_3", "int_0", "int_256"]:
    print(f"fold_in_static(PRNGKey(0), {name}) = {words(keys['fold_in_static'][name])}")
  digest = hashlib.sha1(b"Dense_0\x01").digest()
  print(f"sha1('Dense_0' 0x01)[:4] = {int.from_bytes(digest[:4], 'big')}")
  print("# random.rs (PRNGKey(42))")
  print(f"random_bits[:6] = {words(np.ravel(samples['random_bits'])[:6])}")
  for name in ["uniform", "uniform_m3_7", "normal", "truncated_normal_m2_2"]:
    print(f"{name}[:6] = {floats(samples[name])}")
  print(f"bernoulli_0_3[:10] = {np.ravel(samples['bernoulli_0_3'])[:10].tolist()}")
  print(f"randint_m5_17[:6] = {words(np.ravel(samples['randint_m5_17'])[:6])}")
  print(f"permutation_10 = {words(samples['permutation_10'])}")
  # The spec's example (api-reference.md §13) shows this initializer's values under the old
  # default jax_threefry_partitionable=False; these are jax 0.10.2's.
  spec_example = nn.initializers.lecun_normal()(jax.random.PRNGKey(42), (2, 3))
  print(f"lecun_normal(PRNGKey(42), (2, 3)) = {floats(spec_example)}")


def main():
  keys = key_section()
  samples = sampler_section()
  vectors = {
    "keys": keys,
    "samples": samples,
    "initializers": initializer_section(jnp.float32),
    "models": model_section(),
  }
  print_unit_test_values(keys, samples)
  # Last: switches JAX to 64-bit mode for the rest of the process.
  vectors["f64"] = f64_section()
  data = serialization.msgpack_serialize(vectors)
  with open(OUT, "wb") as f:
    f.write(data)
  print(f"wrote {os.path.normpath(OUT)} ({len(data)} bytes)")


if __name__ == "__main__":
  main()
