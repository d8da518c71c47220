"""Golden vectors for importing PyTorch weights (`flax::serialization::pytorch`) and for
Flax-layout safetensors files (`flax::serialization::safetensors`).

Run from the repository root, with the golden venv (flax, numpy, safetensors) and the torch
that `scripts/bootstrap.sh` installs into `.venv` (it is put on the path here, so torch is not
installed twice):

    .golden-venv/bin/python scripts/golden/pytorch_vectors.py

It writes, under `flax-runtime/tests/data/pytorch/`, with `safetensors.torch.save_file`:

- `mlp.safetensors`: the `state_dict()` of `torch.nn.Sequential(Linear(4, 8), ReLU(),
  Linear(8, 3))` (seed 0): keys `0.weight`, `0.bias`, `2.weight`, `2.bias`;
- `mlp_io.safetensors`: an input batch `x` (5, 4) and the torch model's output `y` (5, 3);
- `layers.safetensors`: the `state_dict()` of a module holding a `Conv2d`, a `Conv1d`, a
  `BatchNorm2d` (after three training steps, so its running statistics are not trivial, with
  `num_batches_tracked`), a `LayerNorm` and an `Embedding`;
- `layers_io.safetensors`: inputs in Flax's channels-last layout and the torch modules' outputs
  (in eval mode), transposed to channels-last: what the converted weights must reproduce with
  Flax's formulas. The Flax-layout weights are applied with `flax.linen` here too
  (`nn.Conv(padding='VALID')`, `nn.BatchNorm(momentum=0.9, use_running_average=True)`,
  `nn.LayerNorm(epsilon=1e-5)`, `nn.Embed`), asserting agreement within 1e-5, so every
  conversion is checked against Flax itself when the vectors are made;

and under `flax-runtime/tests/data/safetensors/` a Flax-layout file:

- `flax_params.safetensors`: the params of a Flax MLP (`Dense_0`, `Dense_1`; PRNGKey(0))
  flattened with `flax.traverse_util.flatten_dict(params, sep='.')` and written by
  `safetensors.flax.save_file(..., metadata={'format': 'flax'})`, as transformers'
  `FlaxPreTrainedModel.save_pretrained(safe_serialization=True)` writes them;
- `flax_params.msgpack`: the same params by `flax.serialization.to_bytes`, to compare values.
"""

import glob
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.extend(glob.glob(str(ROOT / '.venv/lib/python3*/site-packages')))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import safetensors.flax  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402
from flax import linen as nn  # noqa: E402
from flax import serialization, traverse_util  # noqa: E402

OUT = ROOT / 'flax-runtime/tests/data/pytorch'
FLAX_OUT = ROOT / 'flax-runtime/tests/data/safetensors'
TOL = 1e-5


def np_of(t):
  return t.detach().cpu().numpy()


def to_torch(a):
  return torch.from_numpy(np.ascontiguousarray(a))


def mlp():
  torch.manual_seed(0)
  model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
  x = torch.randn(5, 4)
  y = model(x)
  safetensors.torch.save_file(model.state_dict(), OUT / 'mlp.safetensors')
  safetensors.torch.save_file({'x': x, 'y': y.detach()}, OUT / 'mlp_io.safetensors')


class Layers(torch.nn.Module):

  def __init__(self):
    super().__init__()
    self.conv = torch.nn.Conv2d(3, 4, kernel_size=(2, 3))
    self.conv1d = torch.nn.Conv1d(2, 3, kernel_size=3, bias=False)
    self.bn = torch.nn.BatchNorm2d(4, momentum=0.1)
    self.ln = torch.nn.LayerNorm(5)
    self.emb = torch.nn.Embedding(6, 3)


def layers():
  torch.manual_seed(1)
  model = Layers()
  with torch.no_grad():
    model.bn.weight.uniform_(0.5, 1.5)
    model.bn.bias.uniform_(-0.5, 0.5)
    model.ln.weight.uniform_(0.5, 1.5)
    model.ln.bias.uniform_(-0.5, 0.5)
  model.train()
  for _ in range(3):
    model.bn(torch.randn(8, 4, 5, 5) * 2 + 1)
  model.eval()
  state = model.state_dict()
  assert int(state['bn.num_batches_tracked']) == 3

  io = {}
  # Conv2d: NHWC in, NHWC out.
  x = np.asarray(torch.randn(2, 6, 7, 3))
  y = model.conv(to_torch(x.transpose(0, 3, 1, 2)))
  io['conv_x'], io['conv_y'] = x, np_of(y).transpose(0, 2, 3, 1)
  # Conv1d: NLC in, NLC out.
  x = np.asarray(torch.randn(2, 8, 2))
  y = model.conv1d(to_torch(x.transpose(0, 2, 1)))
  io['conv1d_x'], io['conv1d_y'] = x, np_of(y).transpose(0, 2, 1)
  # BatchNorm2d in eval mode: NHWC in and out.
  x = np.asarray(torch.randn(2, 3, 3, 4))
  y = model.bn(to_torch(x.transpose(0, 3, 1, 2)))
  io['bn_x'], io['bn_y'] = x, np_of(y).transpose(0, 2, 3, 1)
  x = np.asarray(torch.randn(3, 5))
  io['ln_x'], io['ln_y'] = x, np_of(model.ln(to_torch(x)))
  ids = np.array([[0, 5, 2], [3, 3, 1]], np.int64)
  io['emb_ids'], io['emb_y'] = ids, np_of(model.emb(to_torch(ids)))

  check_with_flax(state, io)
  safetensors.torch.save_file(state, OUT / 'layers.safetensors')
  safetensors.torch.save_file({k: to_torch(v) for k, v in io.items()}, OUT / 'layers_io.safetensors')


def check_with_flax(state, io):
  """Applies the spec's conversions and flax.linen's modules: the torch outputs must match."""
  s = {k: np_of(v) for k, v in state.items()}

  def close(name, flax_out):
    np.testing.assert_allclose(np.asarray(flax_out), io[name], atol=TOL, rtol=0, err_msg=name)

  conv = {'kernel': s['conv.weight'].transpose(2, 3, 1, 0), 'bias': s['conv.bias']}
  close('conv_y', nn.Conv(4, (2, 3), padding='VALID').apply({'params': conv}, io['conv_x']))
  conv1d = {'kernel': s['conv1d.weight'].transpose(2, 1, 0)}
  close('conv1d_y', nn.Conv(3, (3,), padding='VALID', use_bias=False).apply({'params': conv1d}, io['conv1d_x']))
  bn = {'params': {'scale': s['bn.weight'], 'bias': s['bn.bias']},
        'batch_stats': {'mean': s['bn.running_mean'], 'var': s['bn.running_var']}}
  close('bn_y', nn.BatchNorm(momentum=0.9, use_running_average=True).apply(bn, io['bn_x']))
  ln = {'params': {'scale': s['ln.weight'], 'bias': s['ln.bias']}}
  close('ln_y', nn.LayerNorm(epsilon=1e-5).apply(ln, io['ln_x']))
  emb = {'params': {'embedding': s['emb.weight']}}
  close('emb_y', nn.Embed(6, 3).apply(emb, io['emb_ids']))


class FlaxMlp(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(8)(x))
    return nn.Dense(3)(x)


def flax_params():
  params = FlaxMlp().init(jax.random.PRNGKey(0), jnp.ones((1, 4)))['params']
  flat = traverse_util.flatten_dict(params, sep='.')
  safetensors.flax.save_file(flat, FLAX_OUT / 'flax_params.safetensors', metadata={'format': 'flax'})
  (FLAX_OUT / 'flax_params.msgpack').write_bytes(serialization.to_bytes(params))


def main():
  OUT.mkdir(parents=True, exist_ok=True)
  FLAX_OUT.mkdir(parents=True, exist_ok=True)
  mlp()
  layers()
  flax_params()
  print(f'wrote {OUT} and {FLAX_OUT} (torch {torch.__version__}, flax, safetensors)')


if __name__ == '__main__':
  main()
