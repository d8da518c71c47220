"""Golden vectors for `nn.RNN` and `nn.Bidirectional` (flax 0.12.8): LSTM, GRU and ConvLSTM
cells over sequences, batch-major and time-major, reversed (with and without keep_order),
with seq_lengths (padding kept at the end; the carry after the last valid step), an initial
carry, several batch dims, and both directions merged.

Run with `.golden-venv/bin/python scripts/golden/layers_rnn.py`; writes
`flax-runtime/tests/data/layers/rnn.msgpack`: per case the inputs, Flax's `init` variables,
`output` (the outputs) and `carry` (`{"c", "h"}`, `{"h"}`, or for Bidirectional
`{"forward": …, "backward": …}`), all from `return_carry=True`.

Also Flax's parameter paths for modules built inline in a compact method (an `RNN` whose
cell is constructed in its arguments: the cell is the parent's child `LSTMCell_0`, a sibling
of `RNN_0`; a `Bidirectional` of such RNNs; a user module holding an inline-constructed
module in a field, which keeps its parent), and an RNN over a cell using dropout, with the
`dropout` stream split per step (`split_rngs={"params": False, "dropout": True}`).
"""

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from layers_common import SEED, case, normal, to_numpy, write


class InlineRNN(nn.Module):
  """`nn.RNN(nn.LSTMCell(4))` built inline, then a `Dense`: params `LSTMCell_0`, `Dense_0`."""

  @nn.compact
  def __call__(self, x):
    y = nn.RNN(nn.LSTMCell(4))(x)
    return nn.Dense(2)(y)


class InlineBidirectional(nn.Module):
  """Both RNNs and their cells built inline: params `GRUCell_0`, `LSTMCell_0`."""

  @nn.compact
  def __call__(self, x):
    return nn.Bidirectional(nn.RNN(nn.GRUCell(4)), nn.RNN(nn.LSTMCell(3)))(x)


class SharedRNN(nn.Module):
  """One RNN (and cell) built inline and called twice: one `LSTMCell_0`."""

  @nn.compact
  def __call__(self, x):
    rnn = nn.RNN(nn.LSTMCell(4))
    return rnn(x) + rnn(x)


class Holder(nn.Module):
  """A user module holding a module in a field."""
  inner: nn.Module

  @nn.compact
  def __call__(self, x):
    return self.inner(x)


class InlineHolders(nn.Module):
  """Modules built inline and handed to a `Holder` keep their parent: `Dense_0`, `Dense_1`,
  `named`, `Dense_2`; no `Holder_k` has params."""

  @nn.compact
  def __call__(self, x):
    d = nn.Dense(3)
    y = Holder(d)(x) + Holder(nn.Dense(3))(x)
    y = y + Holder(nn.Dense(3, name="named"))(x)
    return y + nn.Dense(3)(x)


class DropoutCell(nn.RNNCellBase):
  """A tanh RNN cell with dropout on its output: `Dense_0` (input), `Dense_1` (carry, no
  bias), `Dropout_0`."""
  features: int

  @nn.compact
  def __call__(self, carry, x):
    h = nn.tanh(nn.Dense(self.features)(x) + nn.Dense(self.features, use_bias=False)(carry))
    h = nn.Dropout(0.5, deterministic=False)(h)
    return h, h

  def initialize_carry(self, rng, input_shape):
    return jnp.zeros(input_shape[:-1] + (self.features,))

  @property
  def num_feature_axes(self):
    return 1


def carry_dict(carry):
  """A cell's carry as a dict: `{"c", "h"}` for LSTMs, `{"h"}` for GRUs."""
  return {"c": carry[0], "h": carry[1]} if isinstance(carry, tuple) else {"h": carry}


def run(module, x, **kwargs):
  inputs = {"x": x}
  for name in ("seq_lengths", "initial_carry"):
    if name in kwargs and not isinstance(kwargs[name], tuple):
      inputs[name] = kwargs[name]
  variables = module.init(jax.random.PRNGKey(SEED), x, **kwargs)
  carry, outputs = module.apply(variables, x, return_carry=True, **kwargs)
  if isinstance(module, nn.Bidirectional):
    carry = {"forward": carry_dict(carry[0]), "backward": carry_dict(carry[1])}
  else:
    carry = carry_dict(carry)
  return {"inputs": inputs, "variables": to_numpy(variables), "output": to_numpy(outputs),
          "carry": to_numpy(carry)}


def main():
  c = {}
  x = normal((2, 5, 3), 1)
  lengths = np.array([2, 5], np.int32)
  c["lstm"] = run(nn.RNN(nn.LSTMCell(4)), x)
  c["gru_time_major"] = run(nn.RNN(nn.GRUCell(3), time_major=True), normal((5, 2, 3), 2))
  c["lstm_reverse"] = run(nn.RNN(nn.LSTMCell(4), reverse=True), x)
  c["lstm_reverse_keep_order"] = run(nn.RNN(nn.LSTMCell(4), reverse=True, keep_order=True), x)
  c["lstm_seq_lengths"] = run(nn.RNN(nn.LSTMCell(4)), x, seq_lengths=lengths)
  c["lstm_reverse_seq_lengths"] = run(
    nn.RNN(nn.OptimizedLSTMCell(4), reverse=True, keep_order=True), x, seq_lengths=lengths
  )
  c["gru_initial_carry"] = run(nn.RNN(nn.GRUCell(3)), x, initial_carry=normal((2, 3), 3))
  c["gru_multi_batch"] = run(nn.RNN(nn.GRUCell(3)), normal((2, 3, 4, 2), 4))
  c["conv_lstm"] = run(nn.RNN(nn.ConvLSTMCell(3, kernel_size=(3, 3))), normal((2, 4, 5, 5, 2), 5))
  c["bidirectional"] = run(nn.Bidirectional(nn.RNN(nn.GRUCell(4)), nn.RNN(nn.LSTMCell(3))), x)
  c["bidirectional_seq_lengths"] = run(
    nn.Bidirectional(nn.RNN(nn.LSTMCell(2)), nn.RNN(nn.LSTMCell(2))), x, seq_lengths=lengths
  )
  c["inline_rnn"] = case(InlineRNN(), {"x": x})
  c["inline_bidirectional"] = case(InlineBidirectional(), {"x": x})
  c["inline_shared"] = case(SharedRNN(), {"x": x})
  c["inline_holders"] = case(InlineHolders(), {"x": x})
  dropout_rnn = nn.RNN(DropoutCell(4), split_rngs={"params": False, "dropout": True})
  rngs = {"params": jax.random.PRNGKey(SEED), "dropout": jax.random.PRNGKey(1)}
  variables = dropout_rnn.init(rngs, x)
  outputs = dropout_rnn.apply(variables, x, rngs={"dropout": jax.random.PRNGKey(2)})
  c["dropout_split"] = {"inputs": {"x": x}, "variables": to_numpy(variables), "output": to_numpy(outputs)}
  flips = normal((3, 4, 2), 6)
  c["flip_sequences"] = {
    "inputs": {"x": flips, "seq_lengths": np.array([1, 4, 2], np.int32)},
    "output": to_numpy(nn.recurrent.flip_sequences(flips, np.array([1, 4, 2]), 1, False)),
  }
  write("rnn", c)


if __name__ == "__main__":
  main()
