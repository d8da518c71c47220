"""Golden vectors for empty batches (flax 0.12.8, optax 0.2.8, clu 0.0.12): what Flax gives
for a batch (or a feature axis) of zero elements.

Run with `.golden-venv/bin/python scripts/golden/empty_batches.py`; writes
`flax-runtime/tests/data/layers/empty_batches.msgpack`:

    {layer case: {"inputs": {"x"}, "variables", "output"}   (see `layers_common.py`),
     loss case: {"inputs": {...}, "output"},
     metric case: {"inputs": {...}, "total", "count", "merged_total", "merged_count", "merged"}}

Normalization layers return an empty array of the input's shape (their statistics are never
computed from it in evaluation; LayerNorm, RMSNorm and GroupNorm have none to save). Optax's
losses are per example, so an empty batch gives an empty loss. clu's `Average` over no values
holds `total = 0`, `count = 0` (its `compute()` is 0/0 = NaN; merged with a real batch it is
that batch's mean). The Rust test is `flax-runtime/tests/empty_batches.rs`.
"""

import numpy as np
import flax.linen as nn
import optax
from clu import metrics

from layers_common import case, normal, to_numpy, write


def loss(fn, **inputs):
  return {"inputs": inputs, "output": to_numpy(fn(*inputs.values()))}


def main():
  c = {}
  empty_batch = np.zeros((0, 4), np.float32)
  c["layer_norm_empty_batch"] = case(nn.LayerNorm(), {"x": empty_batch})
  c["layer_norm_zero_features"] = case(nn.LayerNorm(), {"x": np.zeros((2, 0), np.float32)})
  c["rms_norm_empty_batch"] = case(nn.RMSNorm(), {"x": empty_batch})
  c["group_norm_empty_batch"] = case(nn.GroupNorm(num_groups=2), {"x": empty_batch})
  c["group_norm_empty_spatial"] = case(nn.GroupNorm(num_groups=2), {"x": np.zeros((2, 0, 4), np.float32)})
  c["batch_norm_eval_empty_batch"] = case(nn.BatchNorm(use_running_average=True), {"x": empty_batch})
  logits = np.zeros((0, 3), np.float32)
  c["softmax_cross_entropy"] = loss(optax.losses.softmax_cross_entropy, logits=logits, labels=logits)
  c["softmax_cross_entropy_with_integer_labels"] = loss(
    optax.losses.softmax_cross_entropy_with_integer_labels, logits=logits, labels=np.zeros((0,), np.int32)
  )
  c["sigmoid_binary_cross_entropy"] = loss(optax.losses.sigmoid_binary_cross_entropy, logits=logits, labels=logits)
  c["l2_loss"] = loss(optax.losses.l2_loss, predictions=logits)
  c["huber_loss"] = loss(optax.losses.huber_loss, predictions=logits)
  values, batch = np.zeros((0,), np.float32), normal((5,), 1)
  empty = metrics.Average.from_model_output(values)
  merged = empty.merge(metrics.Average.from_model_output(batch))
  c["average_empty_values"] = {
    "inputs": {"values": values, "batch": batch},
    "total": to_numpy(empty.total),
    "count": to_numpy(empty.count),
    "merged_total": to_numpy(merged.total),
    "merged_count": to_numpy(merged.count),
    "merged": to_numpy(merged.compute()),
  }
  assert np.isnan(empty.compute())
  write("empty_batches", c)


if __name__ == "__main__":
  main()
