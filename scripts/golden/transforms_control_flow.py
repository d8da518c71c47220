"""Golden vectors for `nn.cond`, `nn.switch` and `nn.while_loop` (flax 0.12.8): the spec's
`CondExample` (L17144-17155) and `WhileLoopExample` (L17068-17087), a three-way switch,
and auto-named submodules in branches. Every branch's variables exist after `init`, and the
chosen branch's are those Flax creates with the `make_rng` counters its earlier branches
left.

Run with `.golden-venv/bin/python scripts/golden/transforms_control_flow.py`; writes
`flax-runtime/tests/data/layers/control_flow.msgpack` in the layout of `layers_common.py`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from layers_common import SEED, normal, to_numpy, write


class CondExample(nn.Module):
  """The spec's `nn.cond` example."""
  @nn.compact
  def __call__(self, x, pred):
    self.variable('state', 'true_count', lambda: 0)
    self.variable('state', 'false_count', lambda: 0)
    def true_fn(mdl, x):
      mdl.variable('state', 'true_count').value += 1
      return nn.Dense(2, name='dense')(x)
    def false_fn(mdl, x):
      mdl.variable('state', 'false_count').value += 1
      return -nn.Dense(2, name='dense')(x)
    return nn.cond(pred, true_fn, false_fn, self, x)


class AutoNamed(nn.Module):
  """Unnamed submodules in each branch: both are `Dense_0`."""
  @nn.compact
  def __call__(self, x, pred):
    return nn.cond(pred, lambda mdl, x: nn.Dense(3)(x), lambda mdl, x: nn.tanh(nn.Dense(3)(x)), self, x)


class SwitchExample(nn.Module):
  @nn.compact
  def __call__(self, x, index):
    def a_fn(mdl, x):
      return nn.Dense(2, name='dense')(x)
    def b_fn(mdl, x):
      return -nn.Dense(2, name='dense')(x)
    def c_fn(mdl, x):
      return nn.relu(nn.Dense(2, name='dense')(x))
    return nn.switch(index, [a_fn, b_fn, c_fn], self, x)


class WhileLoopExample(nn.Module):
  """The spec's `nn.while_loop` example."""
  @nn.compact
  def __call__(self, x):
    def cond_fn(mdl, c):
      return mdl.variables['state']['acc'] < 10
    def body_fn(mdl, c):
      acc = mdl.variable('state', 'acc', lambda: jnp.array(0))
      acc.value += 1
      y = nn.Dense(c.shape[-1])(c)
      return y
    c = x
    if self.is_mutable_collection('params'):
      return body_fn(self, c)
    else:
      return nn.while_loop(cond_fn, body_fn, self, c, carry_variables='state')


def stateful(module, inputs, mutable):
  args = list(inputs.values())
  variables = module.init(jax.random.PRNGKey(SEED), *args)
  out, updated = module.apply(variables, *args, mutable=mutable)
  return {"inputs": to_numpy(inputs), "variables": to_numpy(variables), "output": to_numpy(out),
          "updated": to_numpy(updated)}


def main():
  c = {}
  x = normal((1, 3), 1)
  for pred in (True, False):
    c[f"cond_{str(pred).lower()}"] = stateful(CondExample(), {"x": x, "pred": pred}, ['state'])
    module = AutoNamed()
    variables = module.init(jax.random.PRNGKey(SEED), x, pred)
    c[f"auto_named_{str(pred).lower()}"] = {
      "inputs": {"x": x}, "variables": to_numpy(variables),
      "output": to_numpy(module.apply(variables, x, pred))}
  for index in range(3):
    module = SwitchExample()
    variables = module.init(jax.random.PRNGKey(SEED), x, index)
    c[f"switch_{index}"] = {"inputs": {"x": x}, "variables": to_numpy(variables),
                            "output": to_numpy(module.apply(variables, x, index))}
  c["while_loop"] = stateful(WhileLoopExample(), {"x": normal((2, 2), 2)}, ['state'])
  # Python ints in `state` are saved as 0-d arrays here.
  write("control_flow", c)


if __name__ == "__main__":
  main()
