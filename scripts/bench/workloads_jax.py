"""The workloads of `flax-runtime/benches/workloads.rs` in Flax (linen) with `jax.jit`, as
its users write them: the same modules (`nn.Embed`, `nn.LayerNorm`,
`nn.MultiHeadDotProductAttention`, `nn.Dense`, `nn.gelu`; the ImageNet example's
`ResNetBlock` with `nn.BatchNorm`), `optax.softmax_cross_entropy_with_integer_labels`,
`optax.adam`/`optax.sgd` through `TrainState`, each step one jitted function; the quickstart
step is `scripts/reference/quickstart.py`'s `train_step` as it is. Same shapes, initializers
(Flax's defaults) and hyper-parameters as the Rust bench.

Run by `scripts/bench/workloads.py` with `.golden-venv/bin/python`: `workloads_jax.py
--warmup W` (the first step compiles), then the protocol of `workload_serve.py`. Threads: XLA's
CPU client sizes its thread pools from the CPUs the process may run on, so the driver's
`taskset` sets them (see README-workloads.md for how that was checked).
"""

import argparse
import functools
import os
import sys

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax.training import train_state

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import quickstart  # noqa: E402  the spec's CNN and jitted train_step
from workload_serve import serve  # noqa: E402

VOCAB, D_MODEL, HEADS, MLP_DIM, LAYERS, SEQ_LEN = 1024, 256, 4, 1024, 2, 64


class EncoderBlock(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=HEADS)(h, h)
        h = nn.Dense(MLP_DIM)(nn.LayerNorm()(x))
        return x + nn.Dense(x.shape[-1])(nn.gelu(h, approximate=True))


class Encoder(nn.Module):
    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(VOCAB, D_MODEL)(tokens) + nn.Embed(SEQ_LEN, D_MODEL)(jnp.arange(tokens.shape[1]))
        for _ in range(LAYERS):
            x = EncoderBlock()(x)
        return nn.Dense(VOCAB)(nn.LayerNorm()(x))


class ResNetBlock(nn.Module):
    features: int
    strides: int

    @nn.compact
    def __call__(self, x, train):
        conv = functools.partial(nn.Conv, use_bias=False)
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
        y = nn.relu(norm()(conv(self.features, (3, 3), self.strides)(x)))
        y = norm()(conv(self.features, (3, 3))(y))
        residual = x
        if residual.shape != y.shape:
            residual = norm()(conv(self.features, (1, 1), self.strides)(x))
        return nn.relu(residual + y)


class ResNet(nn.Module):
    @nn.compact
    def __call__(self, x, train):
        x = nn.Conv(16, (3, 3), use_bias=False)(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        for stage, features in enumerate((16, 32, 64)):
            for block in range(2):
                x = ResNetBlock(features, 2 if stage > 0 and block == 0 else 1)(x, train)
        return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))


class BatchStatsState(train_state.TrainState):
    batch_stats: dict


@jax.jit
def transformer_step(state, tokens, labels):
    def loss_fn(params):
        logits = state.apply_fn({"params": params}, tokens)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    return state.apply_gradients(grads=jax.grad(loss_fn)(state.params))


@jax.jit
def resnet_step(state, images, labels):
    def loss_fn(params):
        logits, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, images, True,
                                         mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates

    grads, updates = jax.grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads=grads).replace(batch_stats=updates["batch_stats"])


@jax.jit
def infer(params, tokens):
    return Encoder().apply({"params": params}, tokens)


def stepper(step, state, *args):
    """A workload: each call advances `state` by one jitted step and returns it."""
    box = [state]

    def run():
        box[0] = step(box[0], *args)
        return box[0]
    return run


def workloads():
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    encoder = Encoder()
    params = encoder.init(keys[0], jnp.zeros((1, SEQ_LEN), jnp.int32))["params"]
    tokens = jax.random.randint(keys[1], (16, SEQ_LEN), 0, VOCAB)
    targets = jax.random.randint(keys[2], (16, SEQ_LEN), 0, VOCAB)
    state = train_state.TrainState.create(apply_fn=encoder.apply, params=params, tx=optax.adam(1e-3))
    images = jax.random.uniform(keys[3], (64, 32, 32, 3))
    resnet = ResNet()
    variables = resnet.init(keys[0], images[:1], False)
    resnet_state = BatchStatsState.create(apply_fn=resnet.apply, params=variables["params"],
                                          tx=optax.sgd(0.1, 0.9), batch_stats=variables["batch_stats"])
    one = jax.random.randint(keys[4], (1, SEQ_LEN), 0, VOCAB)
    quick_x = jax.random.uniform(keys[5], (32, 28, 28, 1))
    quick_y = jax.random.randint(keys[5], (32,), 0, 10)
    return {
        "transformer_train": stepper(transformer_step, state, tokens, targets),
        "resnet_train": stepper(resnet_step, resnet_state, images, jax.random.randint(keys[4], (64,), 0, 10)),
        "transformer_infer_b1": lambda: infer(params, one),
        "quickstart_train_b32": stepper(quickstart.train_step, quickstart.create_train_state(0), quick_x, quick_y),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, help="ignored: taskset decides (see the docstring)")
    args = parser.parse_args()
    serve(workloads(), args.warmup, jax.block_until_ready)


if __name__ == "__main__":
    main()
