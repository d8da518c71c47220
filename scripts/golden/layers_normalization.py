"""Golden vectors for `nn.BatchNorm`, `nn.LayerNorm`, `nn.RMSNorm` and `nn.GroupNorm`
(flax 0.12.8).

Run with `.golden-venv/bin/python scripts/golden/layers_normalization.py`; writes
`flax-runtime/tests/data/layers/normalization.msgpack` (format: `layers_common.py`).

BatchNorm cases train one step (`mutable=['batch_stats']`: `output` and the `updated`
running averages), then evaluate with the updated averages (`eval_output`).
"""

import jax
import flax.linen as nn

from layers_common import SEED, case, normal, to_numpy, write


def batch_norm(module, x, call_flag=False):
  """Init, one training step, then evaluation with the updated statistics."""
  flag = {"use_running_average": False} if call_flag else {}
  variables = module.init(jax.random.PRNGKey(SEED), x, **flag)
  y, updated = module.apply(variables, x, mutable=["batch_stats"], **flag)
  evaluated = {"params": variables["params"], **updated} if "params" in variables else dict(updated)
  bound = module.clone(use_running_average=True) if not call_flag else module
  eval_flag = {"use_running_average": True} if call_flag else {}
  y_eval = bound.apply(evaluated, x, **eval_flag)
  return {
    "inputs": {"x": x},
    "variables": to_numpy(variables),
    "output": to_numpy(y),
    "updated": to_numpy(updated),
    "eval_output": to_numpy(y_eval),
  }


def main():
  c = {}
  c["batch_norm"] = batch_norm(nn.BatchNorm(use_running_average=False), normal((4, 5, 3), 1) * 2 + 1)
  c["batch_norm_nhwc_momentum"] = batch_norm(
    nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-3), normal((2, 4, 4, 3), 2)
  )
  c["batch_norm_axis1_no_scale"] = batch_norm(
    nn.BatchNorm(use_running_average=False, axis=1, use_scale=False), normal((4, 3, 5), 3)
  )
  c["batch_norm_call_flag"] = batch_norm(nn.BatchNorm(), normal((6, 4), 4) - 3, call_flag=True)
  c["layer_norm"] = case(nn.LayerNorm(), {"x": normal((2, 3, 4), 5) * 3})
  c["layer_norm_axes"] = case(
    nn.LayerNorm(reduction_axes=(1, 2), feature_axes=-1, use_bias=False, epsilon=1e-3),
    {"x": normal((2, 3, 4), 6)},
  )
  c["layer_norm_feature_axes"] = case(
    nn.LayerNorm(reduction_axes=(1, 2), feature_axes=(1, 2)), {"x": normal((2, 3, 4), 7)}
  )
  c["rms_norm"] = case(nn.RMSNorm(), {"x": normal((2, 3, 4), 8) + 1})
  c["rms_norm_axes"] = case(nn.RMSNorm(reduction_axes=(-2, -1), use_scale=False), {"x": normal((2, 3, 4), 9)})
  c["group_norm"] = case(nn.GroupNorm(num_groups=2), {"x": normal((2, 4, 4, 6), 10)})
  c["group_norm_group_size"] = case(nn.GroupNorm(num_groups=None, group_size=3), {"x": normal((2, 5, 6), 11)})
  c["group_norm_2d"] = case(nn.GroupNorm(num_groups=1), {"x": normal((3, 4), 12)})
  c["group_norm_no_scale"] = case(
    nn.GroupNorm(num_groups=4, use_scale=False, epsilon=1e-2), {"x": normal((2, 3, 4, 8), 13)}
  )
  write("normalization", c)


if __name__ == "__main__":
  main()
