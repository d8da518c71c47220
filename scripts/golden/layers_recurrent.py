"""Golden vectors for Flax's recurrent cells (flax 0.12.8): `LSTMCell`, `OptimizedLSTMCell`,
`GRUCell`, `ConvLSTMCell`, stepped several times with the same params, and their carries.

Run with `.golden-venv/bin/python scripts/golden/layers_recurrent.py`; writes
`flax-runtime/tests/data/layers/recurrent.msgpack`: per case the inputs (`xs`, one entry per
step along axis 0), the initial carry drawn by `initialize_carry(PRNGKey(1), …)` with a
`normal(1.0)` carry initializer (`carry`, `carry_c`/`carry_h` for pairs), Flax's `init`
variables, each step's output (`output`: `{"0": …, "1": …}`) and the final carry (`final`).

0.12.8's cells take `features` and `initialize_carry(rng, input_shape)`; the spec's 0.6.10
ones take the size from the carry and `initialize_carry(rng, batch_dims, size, init_fn)`,
which splits the key the same way, so the carries are the same.
"""

import jax
import flax.linen as nn

from layers_common import SEED, normal, to_numpy, write

CARRY_SEED = 1


def run(cell, xs):
  carry = cell.initialize_carry(jax.random.PRNGKey(CARRY_SEED), xs[0].shape)
  variables = cell.init(jax.random.PRNGKey(SEED), carry, xs[0])
  inputs = {"xs": xs}
  if isinstance(carry, tuple):
    inputs["carry_c"], inputs["carry_h"] = carry
  else:
    inputs["carry"] = carry
  outputs = {}
  for t in range(xs.shape[0]):
    carry, y = cell.apply(variables, carry, xs[t])
    outputs[str(t)] = y
  final = {"c": carry[0], "h": carry[1]} if isinstance(carry, tuple) else {"h": carry}
  return {"inputs": inputs, "variables": to_numpy(variables), "output": to_numpy(outputs), "final": to_numpy(final)}


def main():
  normal_init = nn.initializers.normal(1.0)
  c = {}
  xs = normal((3, 2, 3), 1)
  c["lstm"] = run(nn.LSTMCell(features=4, carry_init=normal_init), xs)
  c["optimized_lstm"] = run(nn.OptimizedLSTMCell(features=4, carry_init=normal_init), xs)
  c["lstm_batch_dims"] = run(nn.LSTMCell(features=2, carry_init=normal_init), normal((2, 2, 3, 4), 2))
  c["gru"] = run(nn.GRUCell(features=5, carry_init=normal_init), xs)
  c["conv_lstm"] = run(
    nn.ConvLSTMCell(features=3, kernel_size=(3, 3), carry_init=normal_init), normal((2, 2, 5, 5, 2), 3)
  )
  write("recurrent", c)


if __name__ == "__main__":
  main()
