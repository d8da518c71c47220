"""Golden vectors for `nn.Dropout` (flax 0.12.8): masks drawn from the `dropout` stream (or
another `rng_collection`) with `jax.random.PRNGKey(1)`, as `make_rng` derives them.

Run with `.golden-venv/bin/python scripts/golden/layers_stochastic.py`; writes
`flax-runtime/tests/data/layers/stochastic.msgpack` (format: `layers_common.py`).
"""

import jax
import flax.linen as nn

from layers_common import SEED, normal, to_numpy, write

DROPOUT_SEED = 1


class Mlp(nn.Module):
  """The example of Flax's Dropout docstring, with a second dropout layer called twice."""

  @nn.compact
  def __call__(self, x, train):
    x = nn.Dense(4)(x)
    x = nn.Dropout(0.5, deterministic=not train)(x)
    drop = nn.Dropout(0.25)
    return drop(drop(x, deterministic=not train), deterministic=not train)


def dropout_case(module, x, rngs_name="dropout", init_args=(), apply_args=(), apply_kwargs=None):
  variables = module.init(jax.random.PRNGKey(SEED), x, *init_args)
  out = module.apply(
    variables, x, *apply_args, rngs={rngs_name: jax.random.PRNGKey(DROPOUT_SEED)}, **(apply_kwargs or {})
  )
  return {"inputs": {"x": x}, "variables": to_numpy(variables), "output": to_numpy(out)}


def main():
  c = {}
  c["dropout"] = dropout_case(nn.Dropout(0.5, deterministic=False), normal((4, 6), 1))
  c["dropout_broadcast"] = dropout_case(
    nn.Dropout(0.3, broadcast_dims=(0, -1)), normal((3, 4, 5), 2),
    init_args=(True,), apply_kwargs={"deterministic": False},
  )
  c["dropout_collection"] = dropout_case(
    nn.Dropout(0.9, rng_collection="noise", deterministic=False), normal((2, 50), 3), rngs_name="noise"
  )
  c["mlp"] = dropout_case(Mlp(), normal((2, 3), 4), init_args=(False,), apply_args=(True,))
  write("stochastic", c)


if __name__ == "__main__":
  main()
