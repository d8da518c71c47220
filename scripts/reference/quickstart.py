"""The spec's quickstart (L153-868) in real Flax and Optax, on the protocol of
`examples/examples/quickstart.rs`, to compare the Rust example's accuracy with Flax's.

Run from the repository root (CPU here, or any JAX device):

    .golden-venv/bin/python scripts/reference/quickstart.py [--seed 0] [--num-epochs 10]

Same as the Rust example: MNIST-format IDX files (`--data`, Fashion-MNIST from Debian's
`dataset-fashion-mnist` by default) scaled to [0, 1]; `CNN().init(PRNGKey(seed),
ones([1, 28, 28, 1]))`; SGD(0.01, momentum 0.9); batches of 32 in the order
`jax.random.permutation(fold_in(PRNGKey(seed), epoch), 60000)`; the spec's `train_step` and
`compute_metrics` (loss and accuracy of each batch with the updated parameters, averaged over
the epoch as clu's `Average` and `Accuracy` do); the whole test set evaluated after each epoch
(its last batch padded and masked). It prints the spec's log lines, then one JSON line with the
final test accuracy.

`scripts/bench/quickstart_train_step.py` imports `CNN`, `create_train_state` and `train_step` from
here, so that the benchmark times exactly this step.
"""

import argparse
import gzip
import json
import os
import struct
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax.training import train_state


class CNN(nn.Module):
    """A simple CNN model (spec L232-249)."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(features=32, kernel_size=(3, 3))(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = nn.Conv(features=64, kernel_size=(3, 3))(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))  # flatten
        x = nn.Dense(features=256)(x)
        x = nn.relu(x)
        x = nn.Dense(features=10)(x)
        return x


def create_train_state(seed, learning_rate=0.01, momentum=0.9):
    """`init(PRNGKey(seed), ones([1, 28, 28, 1]))` and SGD with momentum."""
    cnn = CNN()
    params = cnn.init(jax.random.PRNGKey(seed), jnp.ones([1, 28, 28, 1]))["params"]
    tx = optax.sgd(learning_rate, momentum)
    return train_state.TrainState.create(apply_fn=cnn.apply, params=params, tx=tx)


def loss_of(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits=logits, labels=labels)


@jax.jit
def train_step(state, images, labels):
    """The spec's `train_step`: the gradient of the mean cross-entropy, applied."""

    def loss_fn(params):
        logits = state.apply_fn({"params": params}, images)
        return loss_of(logits, labels).mean()

    grads = jax.grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads)


@jax.jit
def batch_metrics(state, images, labels, mask):
    """Summed loss, summed correct predictions and example count of one (masked) batch."""
    logits = state.apply_fn({"params": state.params}, images)
    correct = (jnp.argmax(logits, -1) == labels) * mask
    return (loss_of(logits, labels) * mask).sum(), correct.sum(), mask.sum()


def load_idx(path):
    """An IDX file (gzipped or not) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_split(data_dir, prefix):
    def find(kind):
        for name in (f"{prefix}-{kind}", f"{prefix}-{kind}.gz"):
            if os.path.exists(os.path.join(data_dir, name)):
                return os.path.join(data_dir, name)
        raise FileNotFoundError(f"no {prefix}-{kind}[.gz] in {data_dir}")

    images = load_idx(find("images-idx3-ubyte")).astype(np.float32)[..., None] / 255.0
    labels = load_idx(find("labels-idx1-ubyte")).astype(np.int32)
    return jnp.asarray(images), jnp.asarray(labels)


def evaluate(state, images, labels, batch_size):
    """Mean loss and accuracy over the whole split; the last batch padded and masked."""
    n = len(labels)
    totals = np.zeros(3)
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size)
        mask = jnp.asarray(idx < n, jnp.float32)
        idx = np.minimum(idx, n - 1)
        totals += np.asarray(batch_metrics(state, images[idx], labels[idx], mask), np.float64)
    return totals[0] / totals[2], totals[1] / totals[2]


def train_epoch(state, images, labels, epoch, seed, batch_size):
    """One epoch in the Rust example's order; the train loss (mean of the batch means, as
    clu's `Average` of a scalar) and accuracy of the updated parameters on each batch."""
    perm = jax.random.permutation(jax.random.fold_in(jax.random.PRNGKey(seed), epoch), len(labels))
    perm = np.asarray(perm)
    ones = jnp.ones([batch_size], jnp.float32)
    loss_sum, correct, count, steps = 0.0, 0.0, 0.0, len(labels) // batch_size
    for i in range(steps):
        idx = perm[i * batch_size : (i + 1) * batch_size]
        x, y = images[idx], labels[idx]
        state = train_step(state, x, y)
        loss, ok, n = batch_metrics(state, x, y, ones)
        loss_sum, correct, count = loss_sum + loss / n, correct + ok, count + n
    return state, float(loss_sum) / steps, float(correct) / float(count)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    train_images, train_labels = load_split(args.data, "train")
    test_images, test_labels = load_split(args.data, "t10k")
    state = create_train_state(args.seed)
    start = time.time()
    for epoch in range(1, args.num_epochs + 1):
        state, loss, accuracy = train_epoch(state, train_images, train_labels, epoch, args.seed, args.batch_size)
        test_loss, test_accuracy = evaluate(state, test_images, test_labels, args.batch_size)
        print(f"train epoch: {epoch}, loss: {loss}, accuracy: {accuracy * 100}", flush=True)
        print(f"test epoch: {epoch}, loss: {test_loss}, accuracy: {test_accuracy * 100}", flush=True)
    summary = {
        "seed": args.seed,
        "epochs": args.num_epochs,
        "test_accuracy": test_accuracy * 100,
        "seconds": time.time() - start,
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
