"""Flax checkpoints of scanned and vmapped models (flax 0.12.8): the bytes
`flax.serialization.to_bytes` writes (what `flax.training.checkpoints.save_checkpoint` puts in a
checkpoint file) for the variables `init` gives with `PRNGKey(0)`: params stacked on a layer
axis (`nn.scan`) and on a member axis (`nn.vmap`), with batch stats.

Run with `.golden-venv/bin/python scripts/golden/transforms_checkpoints.py`; writes
`flax-runtime/tests/data/checkpoints/transforms/<name>.msgpack`. The Rust tests check that
the library reads them, writes the same bytes for its own `init`, and applies them.
"""

import pathlib

import jax
import jax.numpy as jnp
from flax import serialization

import transforms_scan as scan
import transforms_vmap as vmap

OUT = pathlib.Path(__file__).resolve().parents[2] / "flax-runtime" / "tests" / "data" / "checkpoints" / "transforms"


def save(name, module, *args):
  variables = module.init(jax.random.PRNGKey(0), *args)
  data = serialization.to_bytes(variables)
  (OUT / f"{name}.msgpack").write_bytes(data)
  print(f"wrote {name} ({len(data)} bytes)")


def main():
  OUT.mkdir(parents=True, exist_ok=True)
  save("scan_residual_mlp", scan.ResidualMLP(n_layers=4), jnp.ones((1, 2)))
  save("scan_nested", scan.NestedScan(), jnp.ones((2, 3)))
  save("vmap_mlp", vmap.LinenVmapMLP(), jnp.ones((3, 4)))
  save("vmap_batch_norm", vmap.LinenStatefulVmapMLP(), jnp.ones((3, 6, 2)), False)


if __name__ == "__main__":
  main()
