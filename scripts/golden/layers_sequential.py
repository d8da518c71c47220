"""Golden vectors for `nn.Sequential` (flax 0.12.8): which module owns each layer's params
(`layers_{i}` for layers made outside any module, the enclosing module's `Dense_0`, … for
layers made in its compact method), tuple/dict outputs passed on as positional/keyword
arguments, and convolutions as layers (a Flax `Sequential` CNN's names, `layers_0`, …).

Run with `.golden-venv/bin/python scripts/golden/layers_sequential.py`; writes
`flax-runtime/tests/data/layers/sequential.msgpack` (format: `layers_common.py`).
"""

import jax.numpy as jnp
import flax.linen as nn

from layers_common import case, normal, write


class InCompact(nn.Module):
  """A Sequential written inline: its Dense layers are this module's `Dense_0`, `Dense_1`."""

  @nn.compact
  def __call__(self, x):
    y = nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(3)])(x)
    return nn.Dense(2)(y)


class Holder(nn.Module):
  """A Sequential assigned in `setup`: its layers are `seq/layers_{i}`."""

  def setup(self):
    self.seq = nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(2)])

  def __call__(self, x):
    return self.seq(x)


class Pair(nn.Module):
  """Two positional arguments in, a dict out."""

  @nn.compact
  def __call__(self, a, b):
    return {"left": nn.Dense(3)(a), "right": b}


class Merge(nn.Module):
  """Called with keyword arguments, declared in another order than the dict's."""

  @nn.compact
  def __call__(self, right, left):
    return nn.Dense(2)(jnp.concatenate([left, right], axis=-1))


def main():
  x = {"x": normal((2, 3), 1)}
  c = {}
  c["dense_relu_dense"] = case(nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(2)]), x)
  c["nested"] = case(nn.Sequential([nn.Sequential([nn.Dense(4), nn.relu]), nn.Dense(2)]), x)
  c["in_compact"] = case(InCompact(), x)
  c["setup_field"] = case(Holder(), x)
  c["tuple_and_dict"] = case(
    nn.Sequential([nn.Dense(4), lambda y: (y, jnp.tanh(y)), Pair(), Merge()]), x
  )
  c["shape_inference"] = case(
    nn.Sequential([nn.Dense(4), lambda y: nn.Dense(y.shape[-1] * 2)(y), nn.relu]), x
  )
  images = {"x": normal((2, 6, 6, 3), 2)}
  c["cnn"] = case(
    nn.Sequential([
      nn.Conv(4, (3, 3)), nn.relu, nn.ConvTranspose(3, (2, 2), strides=(2, 2)),
      nn.ConvLocal(2, (3, 3), padding="VALID"),
    ]),
    images,
  )
  write("sequential", c)


if __name__ == "__main__":
  main()
