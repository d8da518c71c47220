"""Golden vectors for `nn.Conv`, `nn.ConvLocal` and `nn.ConvTranspose` (flax 0.12.8).

Run with `.golden-venv/bin/python scripts/golden/layers_conv.py`; writes
`flax-runtime/tests/data/layers/conv.msgpack` (format: `layers_common.py`). The Rust test
`flax-runtime/tests/layers_conv.rs` builds the same layers case by case.

Every configuration the layer library promises: 1-D/2-D/3-D, unbatched and several batch
dimensions, strides (with SAME's asymmetric padding), each padding form, input and kernel
dilation, feature groups, masks; ConvTranspose with SAME/VALID/CIRCULAR, kernel dilation,
explicit pads and transposed kernels; ConvLocal.
"""

import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from layers_common import case, normal, write


def conv_cases():
  c = {}
  c["conv2d_same"] = case(nn.Conv(4, (3, 3)), {"x": normal((2, 6, 6, 3), 1)})
  # SAME with stride 2: (1, 1) on the 7-row axis, asymmetric (0, 1) on the 8-column axis.
  c["conv2d_same_stride2"] = case(nn.Conv(5, (3, 3), strides=2), {"x": normal((2, 7, 8, 3), 2)})
  # An even kernel: SAME pads (1, 2).
  c["conv2d_same_even_kernel"] = case(nn.Conv(3, (4, 4)), {"x": normal((1, 5, 6, 2), 3)})
  c["conv1d_valid"] = case(nn.Conv(4, (3,), padding="VALID"), {"x": normal((2, 8, 3), 4)})
  c["conv1d_causal_dilated"] = case(
    nn.Conv(4, (3,), padding="CAUSAL", kernel_dilation=2), {"x": normal((2, 9, 3), 5)}
  )
  c["conv2d_circular_stride2"] = case(
    nn.Conv(4, (3, 3), strides=2, padding="CIRCULAR"), {"x": normal((1, 8, 7, 3), 6)}
  )
  c["conv2d_int_padding"] = case(nn.Conv(4, (3, 3), padding=2), {"x": normal((2, 5, 5, 2), 7)})
  c["conv2d_int_per_dim"] = case(nn.Conv(4, (3, 3), padding=(1, 0)), {"x": normal((2, 5, 6, 2), 8)})
  c["conv2d_pairs"] = case(
    nn.Conv(4, (3, 2), padding=((2, 0), (1, 3))), {"x": normal((2, 5, 6, 2), 9)}
  )
  c["conv2d_negative_pad"] = case(
    nn.Conv(4, (3, 3), padding=((1, -1), (0, 0))), {"x": normal((1, 6, 6, 2), 10)}
  )
  c["conv2d_kernel_dilation"] = case(
    nn.Conv(4, (3, 3), kernel_dilation=(2, 1), strides=(1, 2)), {"x": normal((2, 9, 8, 2), 11)}
  )
  c["conv2d_input_dilation"] = case(
    nn.Conv(4, (3, 3), input_dilation=2, padding=((1, 1), (1, 2))), {"x": normal((2, 4, 5, 2), 12)}
  )
  c["conv2d_input_dilation_strided"] = case(
    nn.Conv(3, (2, 3), input_dilation=(2, 3), strides=2, kernel_dilation=2, padding=((0, 0), (1, 1))),
    {"x": normal((1, 5, 4, 2), 13)},
  )
  c["conv2d_groups"] = case(nn.Conv(4, (3, 3), feature_group_count=2), {"x": normal((2, 5, 5, 6), 14)})
  c["conv2d_depthwise"] = case(
    nn.Conv(8, (3, 3), feature_group_count=4, strides=2), {"x": normal((2, 6, 6, 4), 15)}
  )
  c["conv2d_groups_input_dilation"] = case(
    nn.Conv(4, (2, 2), feature_group_count=2, input_dilation=2, padding=((1, 0), (0, 1))),
    {"x": normal((1, 3, 3, 4), 16)},
  )
  c["conv2d_unbatched"] = case(nn.Conv(4, (3, 3)), {"x": normal((5, 5, 3), 17)})
  c["conv1d_multi_batch"] = case(nn.Conv(4, (3,)), {"x": normal((2, 3, 8, 3), 18)})
  c["conv3d"] = case(nn.Conv(4, (2, 3, 3), strides=(1, 2, 2)), {"x": normal((2, 4, 6, 6, 2), 19)})
  mask = np.tril(np.ones((3, 3, 4), np.float32))
  c["conv1d_mask"] = case(
    nn.Conv(4, (3,), mask=jnp.asarray(mask), padding="VALID"), {"x": normal((1, 8, 3), 20)}
  )
  c["conv1d_mask"]["inputs"]["mask"] = mask
  c["conv2d_no_bias"] = case(nn.Conv(4, (3, 3), use_bias=False), {"x": normal((1, 4, 4, 2), 21)})
  return c


def conv_local_cases():
  c = {}
  c["local1d_valid"] = case(nn.ConvLocal(4, (3,), padding="VALID"), {"x": normal((2, 8, 3), 30)})
  c["local2d_circular_stride2"] = case(
    nn.ConvLocal(4, (3, 3), strides=2, padding="CIRCULAR"), {"x": normal((1, 8, 3), 31)}
  )
  c["local2d_same"] = case(nn.ConvLocal(3, (3, 2)), {"x": normal((2, 5, 4, 2), 32)})
  c["local2d_dilated"] = case(
    nn.ConvLocal(3, (2, 2), kernel_dilation=2, strides=(2, 1), padding=((1, 0), (0, 1))),
    {"x": normal((2, 5, 5, 2), 33)},
  )
  return c


def conv_transpose_cases():
  c = {}
  c["transpose1d_valid"] = case(nn.ConvTranspose(4, (3,), padding="VALID"), {"x": normal((1, 8, 3), 40)})
  c["transpose2d_same_stride2"] = case(
    nn.ConvTranspose(4, (3, 3), strides=(2, 2)), {"x": normal((2, 5, 4, 3), 41)}
  )
  c["transpose2d_valid_stride2"] = case(
    nn.ConvTranspose(3, (3, 2), strides=(2, 3), padding="VALID"), {"x": normal((2, 4, 3, 2), 42)}
  )
  c["transpose2d_circular_transposed"] = case(
    nn.ConvTranspose(4, (6, 6), strides=(2, 2), padding="CIRCULAR", transpose_kernel=True),
    {"x": normal((1, 15, 15, 3), 43)},
  )
  c["transpose1d_circular"] = case(
    nn.ConvTranspose(3, (4,), strides=(3,), padding="CIRCULAR"), {"x": normal((2, 5, 2), 44)}
  )
  c["transpose2d_dilation_same"] = case(
    nn.ConvTranspose(4, (3, 3), strides=(2, 1), kernel_dilation=(2, 2)), {"x": normal((1, 4, 5, 2), 45)}
  )
  c["transpose2d_pairs"] = case(
    nn.ConvTranspose(3, (3, 3), strides=(2, 2), padding=((2, 1), (0, 3))), {"x": normal((1, 4, 4, 2), 46)}
  )
  c["transpose2d_same_transposed"] = case(
    nn.ConvTranspose(4, (4, 4), strides=(2, 2), transpose_kernel=True), {"x": normal((2, 3, 3, 2), 47)}
  )
  c["transpose1d_unbatched"] = case(nn.ConvTranspose(4, 3, strides=(2,)), {"x": normal((6, 3), 48)})
  c["transpose1d_multi_batch"] = case(nn.ConvTranspose(2, (2,)), {"x": normal((2, 2, 5, 3), 49)})
  c["transpose3d"] = case(
    nn.ConvTranspose(2, (2, 2, 3), strides=(2, 1, 2)), {"x": normal((1, 3, 2, 3, 2), 50)}
  )
  mask = np.tril(np.ones((3, 3, 4), np.float32))
  c["transpose1d_mask"] = case(
    nn.ConvTranspose(4, (3,), mask=jnp.asarray(mask), padding="VALID", use_bias=False),
    {"x": normal((1, 8, 3), 51)},
  )
  c["transpose1d_mask"]["inputs"]["mask"] = mask
  return c


def main():
  cases = {}
  cases.update(conv_cases())
  cases.update(conv_local_cases())
  cases.update(conv_transpose_cases())
  write("conv", cases)


if __name__ == "__main__":
  main()
