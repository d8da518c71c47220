"""Golden vectors for JAX's array repr, which Flax's FrozenDict.pretty_repr prints for leaves.

Writes flax-runtime/tests/data/array_repr.msgpack: {case: {"array": ndarray, "repr": str}}, plus
one FrozenDict's pretty_repr. Run with the golden virtualenv:
    .golden-venv/bin/python scripts/golden/array_repr_vectors.py
"""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax.core import freeze
from flax.serialization import msgpack_serialize

OUT = pathlib.Path(__file__).resolve().parents[2] / "flax-runtime/tests/data/array_repr.msgpack"

CASES = {
    "zeros": jnp.zeros(5),
    "running_mean": jnp.full((1, 5), 0.0299, dtype=jnp.float32),
    "pad_right": jnp.array([1.5, 2.0]),
    "signs": jnp.array([-1.0, 1.0]),
    "exp_small": jnp.array([1e-5, 1.0]),
    "exp_large": jnp.array([1e9, 1.0]),
    "exp_mixed": jnp.array([123456.7, 0.001]),
    "ints": jnp.arange(12).reshape(3, 4),
    "bools": jnp.array([True, False]),
    "cube": jnp.ones((2, 2, 2)),
    "wrapped": jnp.linspace(0, 1, 30),
    "summarised": jnp.arange(2000.0),
    "summarised_2d": jnp.arange(3000.0).reshape(60, 50) / 7,
    "non_finite": jnp.array([np.nan, np.inf, -np.inf, 1.0]),
    "tenths": jnp.array([0.1, 0.2, 0.3]),
    "normal": jnp.array(np.random.default_rng(0).normal(size=(4, 3)), dtype=jnp.float32),
    "float64": np.array([0.1, 1 / 3]),
    "float16": jnp.array([0.1, 2.5, -3.0], dtype=jnp.float16),
    "bfloat16": jnp.array([0.1, 2.5, -3.0], dtype=jnp.bfloat16),
    "int64_neg": np.array([-5, 10, 200], dtype=np.int64),
    "scalar": jnp.array(2.5, dtype=jnp.float32),
    "empty": jnp.zeros((0, 3)),
    # Unsigned dtypes tch lacks (Rust keeps them host-side), JAX's keys first.
    "uint32_key": jax.random.PRNGKey(42),
    "uint32_keys": jax.random.split(jax.random.PRNGKey(0), 3),
    "uint16_wrapped": jnp.arange(40, dtype=jnp.uint16) * 1600,
    "uint32_summarised": jnp.arange(2000, dtype=jnp.uint32).reshape(40, 50),
    "uint16_scalar": jnp.array(7, dtype=jnp.uint16),
    "uint32_empty": jnp.zeros((2, 0), dtype=jnp.uint32),
    "uint64_extremes": np.array([0, 2**64 - 1, 5], dtype=np.uint64),
}


def main():
  out = {}
  for name, a in CASES.items():
    if isinstance(a, np.ndarray):
      # 64-bit arrays: JAX without x64 cannot hold them, so format them as jax.Array.__repr__
      # would (numpy's array2string with JAX's prefix, and JAX's wider separator before the
      # dtype when the last line is long).
      body = np.array2string(a, prefix="Array(", suffix=",", separator=", ")
      dtype_str = f"dtype={a.dtype.name}"
      last_line_len = len(body) - body.rfind("\n") + 1
      sep = " " * len("Array(") if last_line_len + len(dtype_str) + 2 > np.get_printoptions()["linewidth"] else " "
      text = f"Array({body},{sep}{dtype_str})"
    else:
      text = repr(a)
    out[name] = {"array": np.asarray(a), "repr": text}
  tree = freeze({"batch_stats": {"mean": jnp.full((1, 5), 0.01, dtype=jnp.float32)}, "params": {"bias": jnp.zeros(5)}})
  out["__pretty_repr__"] = {"repr": tree.pretty_repr()}
  OUT.write_bytes(msgpack_serialize(out))
  print(f"wrote {OUT}")


if __name__ == "__main__":
  main()
