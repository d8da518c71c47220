"""Golden vectors for windows that do not fit their input (flax 0.12.8): pooling and
convolutions whose window, after padding (VALID, negative pads, dilation), is larger than the
input. XLA's shape rule gives those dimensions zero windows, so Flax returns a zero-size array
(e.g. `(2, 0, 0, 4)`) instead of raising; `init` still creates the usual parameters (ConvLocal's
kernel has a zero-size output grid), and the gradient of anything through the empty result is
zero.

Run with `.golden-venv/bin/python scripts/golden/layers_empty_windows.py`; writes
`flax-runtime/tests/data/layers/empty_windows.msgpack`:

    {pooling case: {"inputs": {"x"}, "output", "grad_x" (floats only)},
     module case: {"inputs": {"x"}, "variables", "output", "grads"}}   (see `layers_common.py`)

`grad_x` is the gradient of `output.sum()` with respect to `x`; `grads` the gradient of
`apply(variables, x).sum()` with respect to the variables. The Rust test
`flax-runtime/tests/layers_empty_windows.rs` runs each case.

Also checked here, not stored: the configurations Flax refuses (ConvLocal's default
`lecun_normal` on a zero-size kernel divides by zero; negative padding larger than the input),
which the Rust test expects as typed errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn
from flax.linen import pooling  # min_pool is not re-exported by flax.linen
from jax import lax

from layers_common import case, normal, to_numpy, write


def pooled(fn, x, grad=True, **kwargs):
  out = fn(x, **kwargs)
  entry = {"inputs": {"x": x}, "output": to_numpy(out)}
  if grad and jnp.issubdtype(x.dtype, jnp.floating):
    entry["grad_x"] = to_numpy(jax.grad(lambda x: fn(x, **kwargs).astype(jnp.float32).sum())(x))
  return entry


def with_grads(module, x):
  entry = case(module, {"x": x})
  entry["grads"] = to_numpy(jax.grad(lambda v: module.apply(v, x).sum())(entry["variables"]))
  return entry


def pooling_cases():
  x = normal((2, 2, 2, 4), 1)
  c = {}
  c["max_valid"] = pooled(nn.max_pool, x, window_shape=(3, 3))
  c["max_valid_strided"] = pooled(nn.max_pool, x, window_shape=(3, 3), strides=(2, 2))
  c["min_valid"] = pooled(pooling.min_pool, x, window_shape=(3, 3))
  c["avg_valid"] = pooled(nn.avg_pool, x, window_shape=(3, 3))
  c["avg_valid_exclude_pad"] = pooled(nn.avg_pool, x, window_shape=(3, 3), count_include_pad=False)
  # One dimension empty, the other not.
  c["max_one_dim_empty"] = pooled(nn.max_pool, normal((2, 5, 2, 3), 2), window_shape=(3, 3))
  c["avg_3d_one_dim_empty"] = pooled(nn.avg_pool, normal((1, 2, 2, 2, 4), 3), window_shape=(3, 1, 1))
  c["max_1d"] = pooled(nn.max_pool, normal((2, 2, 4), 4), window_shape=(3,))
  c["max_4d"] = pooled(nn.max_pool, normal((1, 2, 3, 3, 3, 2), 5), window_shape=(3, 2, 2, 2))
  # JAX cannot differentiate reduce_window with negative padding (a negative slice start).
  c["max_negative_pad"] = pooled(nn.max_pool, x, grad=False, window_shape=(2, 2), padding=((-1, 0), (0, 0)))
  # Pads cropping more than the input: reduce_window still gives zero windows (convolutions
  # refuse it, below).
  c["avg_over_cropped"] = pooled(nn.avg_pool, x, grad=False, window_shape=(1, 1), padding=((-2, -1), (0, 0)))
  c["max_multi_batch"] = pooled(nn.max_pool, normal((2, 3, 2, 2, 4), 6), window_shape=(3, 3))
  # Integers: max keeps the dtype, the average is a float.
  xi = (normal((2, 2, 2, 4), 7) * 10).astype(np.int32)
  c["max_int"] = pooled(nn.max_pool, xi, window_shape=(3, 3))
  c["avg_int"] = pooled(nn.avg_pool, xi, window_shape=(3, 3))
  c["pool_add"] = pooled(lambda x: nn.pool(x, 0.0, lax.add, (3, 3), (1, 1), "VALID"), x)
  return c


def module_cases():
  x = normal((2, 2, 2, 4), 8)
  c = {}
  c["conv_valid"] = with_grads(nn.Conv(5, (3, 3), padding="VALID"), x)
  c["conv_valid_strided"] = with_grads(nn.Conv(5, (3, 3), strides=2, padding="VALID"), x)
  c["conv_kernel_dilation"] = with_grads(nn.Conv(5, (2, 2), padding="VALID", kernel_dilation=2), x)
  c["conv_negative_pad"] = with_grads(nn.Conv(5, (2, 2), padding=((-1, 0), (0, 0))), x)
  c["conv_groups"] = with_grads(nn.Conv(6, (3, 3), padding="VALID", feature_group_count=2), x)
  c["conv_no_bias"] = with_grads(nn.Conv(5, (3, 3), padding="VALID", use_bias=False), x)
  # A 1-D kernel: (2, 2) batch dimensions, the last spatial one empty.
  c["conv_1d_multi_batch"] = with_grads(nn.Conv(5, (3,), padding="VALID"), x)
  c["conv_3d_one_dim_empty"] = with_grads(nn.Conv(2, (3, 3, 3), padding="VALID"), normal((1, 2, 4, 4, 3), 9))
  # Input dilation with explicit pads that leave fewer positions than the kernel.
  c["conv_input_dilation"] = with_grads(
    nn.Conv(5, (4, 4), padding=((-1, 0), (0, 0)), input_dilation=2), x
  )
  # ConvLocal: the kernel has the (empty) output grid; lecun_normal divides by its zero fan,
  # so the case uses zeros (the default is checked to fail below).
  c["conv_local_zeros_init"] = with_grads(
    nn.ConvLocal(5, (3, 3), padding="VALID", kernel_init=nn.initializers.zeros), x
  )
  c["conv_transpose_cropped"] = with_grads(nn.ConvTranspose(5, (3, 3), padding=((-1, -1), (-1, -1))), x)
  return c


def expect_failure(what, fn, message):
  try:
    fn()
  except Exception as e:  # noqa: BLE001 - the failures Flax raises are of several types
    assert message in str(e), f"{what}: {e}"
    print(f"{what}: {type(e).__name__}: {str(e)[:100]}")
  else:
    raise AssertionError(f"{what}: Flax accepted it")


def check_failures():
  x = normal((2, 2, 2, 4), 8)
  key = jax.random.PRNGKey(0)
  expect_failure(
    "ConvLocal lecun_normal", lambda: nn.ConvLocal(5, (3, 3), padding="VALID").init(key, x), "division by zero"
  )
  expect_failure(
    "ConvTranspose over-cropped",
    lambda: nn.ConvTranspose(5, (3, 3), padding=((-2, -2), (0, 0))).init(key, x),
    "Negative padding is larger than the size",
  )
  expect_failure(
    "Conv over-cropped",
    lambda: nn.Conv(5, (1, 1), padding=((-2, -1), (0, 0))).init(key, x),
    "Negative padding is larger than the size",
  )


def main():
  check_failures()
  pools, modules = pooling_cases(), module_cases()
  assert not set(pools) & set(modules)
  write("empty_windows", {**pools, **modules})


if __name__ == "__main__":
  main()
