"""Golden vectors for `nn.pool`, `nn.max_pool`, `nn.min_pool`, `nn.avg_pool` (flax 0.12.8),
and the spec's quickstart CNN (spec L232-249).

Run with `.golden-venv/bin/python scripts/golden/layers_pooling.py`; writes
`flax-runtime/tests/data/layers/pooling.msgpack`: `{case: {"inputs": {"x": …}, "output": …}}`
(pooling has no variables). The `cnn` case holds only its input and output: its 824,458
params are what `init` with `PRNGKey(0)` gives, which the Rust side reproduces exactly, so the
output checks every layer of the network end to end without storing the params.
"""

import jax
import flax.linen as nn
from flax.linen import pooling  # min_pool is not re-exported by flax.linen
from jax import lax

from layers_common import normal, to_numpy, write


class CNN(nn.Module):
  """The spec's quickstart CNN."""

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(features=32, kernel_size=(3, 3))(x)
    x = nn.relu(x)
    x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = nn.Conv(features=64, kernel_size=(3, 3))(x)
    x = nn.relu(x)
    x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))  # flatten
    x = nn.Dense(features=256)(x)
    x = nn.relu(x)
    x = nn.Dense(features=10)(x)
    return x


def pooled(fn, x, **kwargs):
  return {"inputs": {"x": x}, "output": to_numpy(fn(x, **kwargs))}


def main():
  c = {}
  c["max_2x2_valid"] = pooled(nn.max_pool, normal((2, 6, 6, 3), 1), window_shape=(2, 2), strides=(2, 2))
  c["max_3x3_same_stride2"] = pooled(
    nn.max_pool, normal((2, 7, 8, 3), 2), window_shape=(3, 3), strides=(2, 2), padding="SAME"
  )
  c["max_pairs"] = pooled(
    nn.max_pool, normal((1, 5, 6, 2), 3), window_shape=(3, 2), strides=(2, 1), padding=((1, 2), (0, 1))
  )
  c["max_1d_same"] = pooled(nn.max_pool, normal((2, 9, 3), 4), window_shape=(3,), strides=(2,), padding="SAME")
  c["max_3d"] = pooled(nn.max_pool, normal((1, 4, 4, 4, 2), 5), window_shape=(2, 2, 2), strides=(2, 1, 2))
  c["max_4d"] = pooled(nn.max_pool, normal((1, 3, 3, 3, 3, 2), 6), window_shape=(2, 2, 2, 2), padding="SAME")
  c["max_unbatched"] = pooled(nn.max_pool, normal((6, 6, 3), 7), window_shape=(2, 2))
  c["max_multi_batch"] = pooled(nn.max_pool, normal((2, 3, 5, 5, 2), 8), window_shape=(2, 2), padding="SAME")
  c["avg_2x2"] = pooled(nn.avg_pool, normal((2, 6, 6, 3), 9), window_shape=(2, 2), strides=(2, 2))
  c["avg_same"] = pooled(nn.avg_pool, normal((2, 5, 6, 2), 10), window_shape=(3, 3), padding="SAME")
  c["avg_same_exclude_pad"] = pooled(
    nn.avg_pool, normal((2, 5, 6, 2), 10), window_shape=(3, 3), padding="SAME", count_include_pad=False
  )
  c["avg_wide_pairs_exclude_pad"] = pooled(
    nn.avg_pool,
    normal((1, 4, 5, 2), 11),
    window_shape=(3, 2),
    strides=(2, 2),
    padding=((2, 2), (0, 3)),
    count_include_pad=False,
  )
  c["avg_1d_same_stride2"] = pooled(
    nn.avg_pool, normal((2, 9, 3), 12), window_shape=(4,), strides=(2,), padding="SAME"
  )
  c["avg_3d"] = pooled(nn.avg_pool, normal((1, 4, 5, 4, 2), 13), window_shape=(2, 3, 2), padding="SAME")
  c["avg_multi_batch_exclude_pad"] = pooled(
    nn.avg_pool, normal((2, 2, 5, 2), 14), window_shape=(2,), padding="SAME", count_include_pad=False
  )
  c["min_same_stride2"] = pooled(
    pooling.min_pool, normal((2, 7, 7, 2), 15), window_shape=(3, 3), strides=(2, 2), padding="SAME"
  )
  c["pool_mul"] = pooled(
    lambda x: nn.pool(x, 1.0, lax.mul, (2, 2), (1, 2), "SAME"), normal((1, 4, 5, 2), 16)
  )
  c["pool_add_pairs"] = pooled(
    lambda x: nn.pool(x, 0.0, lax.add, (2,), None, ((1, 0),)), normal((2, 5, 3), 17)
  )
  cnn = CNN()
  x = normal((2, 28, 28, 1), 18)
  variables = cnn.init(jax.random.PRNGKey(0), x)
  c["cnn"] = {"inputs": {"x": x}, "output": to_numpy(cnn.apply(variables, x))}
  write("pooling", c)


if __name__ == "__main__":
  main()
