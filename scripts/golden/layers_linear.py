"""Golden vectors for `nn.Dense`, `nn.DenseGeneral` and `nn.Embed` (flax 0.12.8).

Run with `.golden-venv/bin/python scripts/golden/layers_linear.py`; writes
`flax-runtime/tests/data/layers/linear.msgpack` (format: `layers_common.py`).
"""

import jax
import numpy as np
import flax.linen as nn

from layers_common import SEED, case, normal, to_numpy, write


def ids(shape, high, seed):
  return np.random.default_rng(seed).integers(0, high, shape).astype(np.int32)


def main():
  c = {}
  c["dense"] = case(nn.Dense(3), {"x": normal((2, 4), 1)})
  c["dense_batched_no_bias"] = case(nn.Dense(5, use_bias=False), {"x": normal((2, 3, 4), 2)})
  c["general_int"] = case(nn.DenseGeneral(4), {"x": normal((2, 3), 3)})
  c["general_tuple_features"] = case(nn.DenseGeneral((4, 5)), {"x": normal((1, 3), 4)})
  c["general_axes"] = case(nn.DenseGeneral((4, 5), axis=(1, -1)), {"x": normal((1, 3, 6, 7), 5)})
  c["general_last_two"] = case(nn.DenseGeneral(3, axis=(-2, -1)), {"x": normal((2, 3, 4, 5), 6)})
  c["general_middle_axis"] = case(nn.DenseGeneral(5, axis=1), {"x": normal((2, 3, 4), 7)})
  c["general_batch_dims"] = case(nn.DenseGeneral((2, 3), batch_dims=(0,)), {"x": normal((4, 5, 6), 8)})
  c["general_two_batch_dims"] = case(
    nn.DenseGeneral(3, axis=2, batch_dims=(0, 1), use_bias=False), {"x": normal((2, 3, 4, 5), 9)}
  )
  c["embed_docstring"] = case(nn.Embed(5, 3), {"x": np.array([[0, 1, 2], [-1, -2, -3]], np.int32)})
  c["embed_ids"] = case(nn.Embed(10, 4), {"x": ids((2, 3, 4), 10, 10)})
  c["embed_out_of_range"] = case(nn.Embed(5, 3), {"x": np.array([0, 5, -6, 4, -5], np.int32)})
  c["embed_single"] = case(nn.Embed(1, 3), {"x": np.array([[0, 3], [7, 0]], np.int32)})
  embed = nn.Embed(6, 4)
  x, q = ids((2, 3), 6, 11), normal((2, 3, 4), 12)
  variables = embed.init(jax.random.PRNGKey(SEED), x)
  c["embed_attend"] = {
    "inputs": {"x": x, "query": q},
    "variables": to_numpy(variables),
    "output": to_numpy(embed.apply(variables, q, method=embed.attend)),
  }
  write("linear", c)


if __name__ == "__main__":
  main()
