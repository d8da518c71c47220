"""Golden vectors for `setup`-style modules (flax 0.12.8): submodules and params assigned to
attributes in `setup`, named after the attributes (`dense1`, `layers_0`, `blocks_a`), set up
lazily per bound module and used by several methods.

Run with `.golden-venv/bin/python scripts/golden/module_setup.py`; writes
`flax-runtime/tests/data/layers/module_setup.msgpack` (format: `layers_common.py`).
"""

import jax
import jax.numpy as jnp
import flax.linen as nn

from layers_common import SEED, case, normal, to_numpy, write


class ExplicitMLP(nn.Module):
  """The spec's `setup` MLP (a list of submodules: `layers_0`, `layers_1`, …)."""

  features: tuple

  def setup(self):
    self.layers = [nn.Dense(feat) for feat in self.features]

  def __call__(self, inputs):
    x = inputs
    for i, lyr in enumerate(self.layers):
      x = lyr(x)
      if i != len(self.layers) - 1:
        x = nn.relu(x)
    return x


class MLP(nn.Module):
  """The spec's "setup vs compact" MLP."""

  def setup(self):
    self.dense1 = nn.Dense(32)
    self.dense2 = nn.Dense(32)

  def __call__(self, x):
    x = self.dense1(x)
    x = nn.relu(x)
    x = self.dense2(x)
    return x


class Encoder(nn.Module):
  latents: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.latents)(nn.relu(nn.Dense(8)(x)))


class Decoder(nn.Module):
  @nn.compact
  def __call__(self, z):
    return nn.Dense(5)(z)


class AutoEncoder(nn.Module):
  """The spec's AutoEncoder: two methods using the submodules of `setup`."""

  latents: int = 3

  def setup(self):
    self.encoder = Encoder(self.latents)
    self.decoder = Decoder()

  def __call__(self, x):
    z = self.encoder(x)
    return self.decoder(z)

  def generate(self, z):
    return nn.sigmoid(self.decoder(z))


class Blocks(nn.Module):
  """A dict of submodules (`blocks_{key}`) and params declared in `setup`."""

  def setup(self):
    self.blocks = {"a": nn.Dense(4), "b": nn.Dense(5)}
    self.scale = self.param("scale", nn.initializers.normal(1.0), (5,))
    self.offset = self.param("offset", nn.initializers.zeros_init(), (5,))

  def __call__(self, x):
    return self.blocks["b"](nn.relu(self.blocks["a"](x))) * self.scale + self.offset

  def project(self, x):
    return self.blocks["a"](x) * 2.0


class SetupAndCompact(nn.Module):
  """`setup` and a compact method in one module: `dense` and `Dense_0` side by side."""

  def setup(self):
    self.dense = nn.Dense(4)

  @nn.compact
  def __call__(self, x):
    return nn.Dense(2)(nn.relu(self.dense(x)))


class Outer(nn.Module):
  """A compact parent calling two methods of one setup child: the child sets up once per call."""

  @nn.compact
  def __call__(self, x):
    ae = AutoEncoder(latents=2)
    return ae(x) + ae.generate(x[:, :2])


class Stats(nn.Module):
  """`get_variable`/`put_variable` and the module's own `variables` inside a method."""

  @nn.compact
  def __call__(self, x):
    y = nn.Dense(2)(x)
    total = self.get_variable("stats", "total", jnp.zeros(()))
    self.put_variable("stats", "total", total + x.sum())
    own = self.variables
    return y * own["params"]["Dense_0"]["kernel"].sum() + own["stats"]["total"]


class Transfer(nn.Module):
  """The transfer-learning guide's shape: a backbone assigned in `setup`, unbound with its
  variables through `bind(variables).backbone.unbind()`."""

  def setup(self):
    self.backbone = AutoEncoder(latents=2)
    self.head = nn.Dense(3)

  def __call__(self, x):
    return self.head(self.backbone(x))


def unbind_case(x):
  model = Transfer()
  variables = model.init(jax.random.PRNGKey(SEED), *x.values())
  backbone, backbone_variables = model.bind(variables).backbone.unbind()
  out = backbone.apply(backbone_variables, *x.values())
  return {
    "inputs": to_numpy(x),
    "variables": to_numpy(variables),
    "backbone_variables": to_numpy(backbone_variables),
    "output": to_numpy(out),
  }


def method_case(module, init_inputs, method, method_inputs):
  """`init` through `__call__`, then `apply` with `method`."""
  variables = module.init(jax.random.PRNGKey(SEED), *init_inputs.values())
  out = module.apply(variables, *method_inputs.values(), method=method)
  inputs = dict(init_inputs, **method_inputs)
  return {"inputs": to_numpy(inputs), "variables": to_numpy(variables), "output": to_numpy(out)}


def main():
  x = {"x": normal((4, 4), 1)}
  c = {}
  c["explicit_mlp"] = case(ExplicitMLP(features=(3, 4, 5)), x)
  c["mlp"] = case(MLP(), x)
  c["autoencoder"] = case(AutoEncoder(), x)
  c["autoencoder_generate"] = method_case(AutoEncoder(), x, AutoEncoder.generate, {"z": normal((4, 3), 2)})
  c["blocks"] = case(Blocks(), x)
  c["blocks_project"] = method_case(Blocks(), x, Blocks.project, {"y": normal((2, 4), 3)})
  c["setup_and_compact"] = case(SetupAndCompact(), x)
  c["outer"] = case(Outer(), x)
  c["stats"] = case(Stats(), x, mutable=["stats"])
  c["unbind"] = unbind_case(x)
  write("module_setup", c)


if __name__ == "__main__":
  main()
