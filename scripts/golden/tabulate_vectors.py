"""Writes Flax's `Module.tabulate` tables for the test modules of
`flax-runtime/tests/tabulate.rs` into `flax-runtime/tests/data/tabulate/*.txt`, and Flax's
byte-size strings into `bytes_repr.tsv`.

Run with the golden venv (scripts/golden/setup.sh):

    .golden-venv/bin/python scripts/golden/tabulate_vectors.py

The tables are what `tabulate` returns, as plain text (`force_terminal=False`: no ANSI styles,
as in Flax's documentation) on a console 80 columns wide unless a case says otherwise.

Differences between Flax 0.12.8 and the 0.6.10 the spec documents, handled here:
- 0.12.8's default `mutable` is `DenyList('intermediates')`; 0.6.10's is `True`, which is
  what the Rust side implements, so every call passes `mutable=True`.
- Flax orders the collection columns by iterating a Python `set` (the order changes with
  PYTHONHASHSEED). The Rust side uses the order of the variables, so `Table` is patched to
  put the collections in that order.
Otherwise 0.12.8's tables are laid out exactly as the spec's.
"""

import pathlib

import jax
import jax.numpy as jnp
import flax.linen as nn
import flax.linen.summary as summary

OUT = pathlib.Path(__file__).resolve().parents[2] / "flax-runtime" / "tests" / "data" / "tabulate"


class Foo(nn.Module):
  """The example of Flax's `Module.tabulate` docstring."""

  @nn.compact
  def __call__(self, x):
    h = nn.Dense(4)(x)
    return nn.Dense(2)(h)


class Block(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Dense(4)(x)
    return nn.Dense(3)(nn.relu(x))


class Net(nn.Module):
  """Two levels of submodules, for `depth`."""

  @nn.compact
  def __call__(self, x):
    x = Block()(x)
    x = Block()(x)
    return nn.Dense(2)(x)


class Encoder(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(3)(x)

  def encode(self, x):
    return self(x)


class Shared(nn.Module):
  """A module called twice and a method other than `__call__`, for `show_repeated`."""

  @nn.compact
  def __call__(self, x):
    h = Encoder().encode(x)
    dense = nn.Dense(3)
    return dense(dense(h))


class WithStats(nn.Module):
  """A second collection, `batch_stats`, created after `params`."""

  @nn.compact
  def __call__(self, x):
    y = nn.Dense(3)(x)
    mean = self.variable('batch_stats', 'mean', jnp.zeros, (3,))
    self.variable('batch_stats', 'count', lambda: jnp.zeros((), jnp.int32))
    return y - mean.value


class Pair(nn.Module):
  @nn.compact
  def __call__(self, x, y, scale):
    return nn.Dense(2)(x) * scale, nn.Dense(2)(y)


class TwoInputs(nn.Module):
  """Several arguments (one a bool) and a tuple output."""

  @nn.compact
  def __call__(self, x, y):
    a, b = Pair()(x, y, True)
    return a + b


class NoArgs(nn.Module):
  """No argument but the scope: an empty inputs cell, a param of the root module."""

  @nn.compact
  def __call__(self):
    return self.param('w', nn.initializers.zeros, (2,))


class Big(nn.Module):
  """Enough parameters for thousands separators and megabytes."""

  @nn.compact
  def __call__(self, x):
    return nn.Dense(1024)(x)


def ones(*shape):
  return jnp.ones(shape, jnp.float32)


# name: (module, args, tabulate keyword arguments, console width)
CASES = {
  'foo': (Foo(), (ones(16, 9),), {}, 80),
  'foo_width20': (Foo(), (ones(16, 9),), {}, 20),
  'net': (Net(), (ones(2, 5),), {}, 80),
  'net_depth1': (Net(), (ones(2, 5),), {'depth': 1}, 80),
  'net_depth0': (Net(), (ones(2, 5),), {'depth': 0}, 80),
  'net_width60': (Net(), (ones(2, 5),), {}, 60),
  'shared': (Shared(), (ones(2, 3),), {}, 80),
  'shared_repeated': (Shared(), (ones(2, 3),), {'show_repeated': True}, 80),
  'encoder_method': (Encoder(), (ones(2, 3),), {'method': Encoder.encode}, 80),
  'with_stats': (WithStats(), (ones(2, 5),), {}, 80),
  'two_inputs': (TwoInputs(), (ones(1, 3), ones(1, 4)), {}, 80),
  'no_args': (NoArgs(), (), {}, 80),
  'big': (Big(), (ones(1, 1000),), {}, 80),
}

# Byte counts around each unit boundary, ties of the one-decimal rounding, and thousands
# separators in the scaled value.
BYTE_COUNTS = [
  0, 1, 40, 160, 999, 1000, 1001, 1049, 1050, 1051, 1250, 1350, 1949, 1950, 10280, 73984,
  999_949, 999_999, 1_000_000, 1_000_001, 1_250_000, 3_212_288, 3_297_832, 999_999_999,
  1_000_000_000, 1_000_000_001, 1_250_000_000, 1_350_000_000, 123_456_789_012,
  1_234_567_890_123_456,
]


class OrderedTable(summary.Table):
  """`summary.Table` with the collections in the order of the variables."""

  order: list = []

  def __init__(self, module, collections, rows):
    super().__init__(module, tuple(sorted(collections, key=self.order.index)), rows)


def table(module, args, kwargs, width):
  OrderedTable.order = list(module.init(jax.random.key(0), *args, mutable=True).keys())
  console = {'force_terminal': False, 'width': width}
  return module.tabulate(jax.random.key(0), *args, mutable=True, console_kwargs=console, **kwargs)


def main():
  OUT.mkdir(parents=True, exist_ok=True)
  summary.Table = OrderedTable
  for name, (module, args, kwargs, width) in CASES.items():
    (OUT / f'{name}.txt').write_text(table(module, args, kwargs, width), encoding='utf-8')
  lines = [f'{n}\t{summary._bytes_repr(n)}\n' for n in BYTE_COUNTS]
  (OUT / 'bytes_repr.tsv').write_text(''.join(lines), encoding='utf-8')
  print(f'wrote {len(CASES)} tables and {len(BYTE_COUNTS)} byte sizes to {OUT}')


if __name__ == '__main__':
  main()
