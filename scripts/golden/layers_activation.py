"""Golden vectors for the activation functions of `flax.linen` (jax 0.10.2) and `nn.PReLU`.

Run with `.golden-venv/bin/python scripts/golden/layers_activation.py`; writes
`flax-runtime/tests/data/layers/activation.msgpack`: `{case: {"inputs": {...}, "output": …}}`
for the functions (an output may be a `{"0": …, "1": …}` pair), and the usual layer format
(`layers_common.py`) for PReLU.
"""

import numpy as np
import flax.linen as nn
import jax.numpy as jnp

from layers_common import case, normal, to_numpy, write


def fn_case(f, **inputs):
  out = f(*inputs.values())
  if isinstance(out, tuple):
    out = {str(i): o for i, o in enumerate(out)}
  return {"inputs": inputs, "output": to_numpy(out)}


def main():
  x = normal((4, 6), 1) * 3
  x[0, :4] = [0.0, -30.0, 30.0, 6.0]
  mask = normal((4, 6), 2) > 0
  mask[1] = False  # a row masked entirely
  c = {}
  for name in ["relu", "relu6", "sigmoid", "tanh", "silu", "swish", "hard_sigmoid", "hard_silu", "hard_swish",
               "hard_tanh", "softplus", "log_sigmoid", "soft_sign", "selu"]:
    c[name] = fn_case(getattr(nn, name), x=x)
  c["elu"] = fn_case(nn.elu, x=x)
  c["elu_alpha"] = fn_case(lambda x: nn.elu(x, alpha=0.5), x=x)
  c["celu"] = fn_case(nn.celu, x=x)
  c["celu_alpha"] = fn_case(lambda x: nn.celu(x, alpha=2.0), x=x)
  c["leaky_relu"] = fn_case(nn.leaky_relu, x=x)
  c["leaky_relu_slope"] = fn_case(lambda x: nn.leaky_relu(x, negative_slope=0.2), x=x)
  c["gelu"] = fn_case(nn.gelu, x=x)
  c["gelu_exact"] = fn_case(lambda x: nn.gelu(x, approximate=False), x=x)
  c["glu"] = fn_case(nn.glu, x=x)
  c["glu_axis0"] = fn_case(lambda x: nn.glu(x, axis=0), x=x)
  c["softmax"] = fn_case(nn.softmax, x=x)
  c["softmax_axes"] = fn_case(lambda x: nn.softmax(x, axis=(0, 1)), x=x)
  c["softmax_where"] = fn_case(lambda x, m: nn.softmax(x, where=m), x=x, mask=mask)
  c["log_softmax"] = fn_case(nn.log_softmax, x=x)
  c["log_softmax_axis0"] = fn_case(lambda x: nn.log_softmax(x, axis=0), x=x)
  c["log_softmax_where"] = fn_case(lambda x, m: nn.log_softmax(x, where=m), x=x, mask=mask)
  c["logsumexp"] = fn_case(nn.logsumexp, x=x)
  c["logsumexp_axis_keepdims"] = fn_case(lambda x: nn.logsumexp(x, axis=1, keepdims=True), x=x)
  b = normal((4, 6), 3)
  c["logsumexp_b"] = fn_case(lambda x, b: nn.logsumexp(x, axis=0, b=b), x=x, b=b)
  c["logsumexp_sign"] = fn_case(lambda x, b: nn.logsumexp(x, axis=(0, 1), b=b, return_sign=True), x=x, b=b)
  c["standardize"] = fn_case(nn.standardize, x=x)
  c["standardize_axes"] = fn_case(lambda x: nn.standardize(x, axis=(0, 1), epsilon=1e-3), x=x)
  c["standardize_where"] = fn_case(lambda x, m: nn.standardize(x, where=m | (np.arange(6) < 2)), x=x, mask=mask)
  mean, var = normal((4, 1), 4), np.abs(normal((4, 1), 5))
  c["standardize_given"] = fn_case(lambda x, m, v: nn.standardize(x, mean=m, variance=v), x=x, mean=mean, variance=var)
  labels = np.array([[0, 1, 2], [-1, 3, 1]], np.int32)
  c["one_hot"] = fn_case(lambda l: nn.one_hot(l, 3), labels=labels)
  c["one_hot_axis0_int"] = fn_case(lambda l: nn.one_hot(l, 4, dtype=jnp.int32, axis=0), labels=labels)
  c["prelu"] = case(nn.PReLU(), {"x": x})
  c["prelu_init"] = case(nn.PReLU(negative_slope_init=0.25), {"x": x})
  write("activation", c)


if __name__ == "__main__":
  main()
