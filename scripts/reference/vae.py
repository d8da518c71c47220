"""Flax's VAE example on binarized Fashion-MNIST in real Flax and Optax, on the protocol of
`examples/examples/vae.rs`, to compare the Rust example's test ELBO with Flax's.

Run from the repository root (CPU here, or any JAX device):

    .golden-venv/bin/python scripts/reference/vae.py [--seed 0] [--num-epochs 10]

The model is the upstream example's (`examples/vae/models.py` of google/flax): an MLP encoder
784-500-(mean, logvar) with 20 latents, the reparameterisation trick, an MLP decoder
20-500-784 giving logits; the loss is the negative ELBO, binary cross-entropy plus the KL
divergence to the standard normal prior, per image. Adam(1e-3), batches of 128. Same protocol
as the Rust example, which differs from upstream's on these points, each for a reason:
- the data is Fashion-MNIST (Debian's `dataset-fashion-mnist`, `--data`) binarized at 0.5
  (pixel >= 128), 60,000 training and 10,000 test images (upstream: tfds' `binarized_mnist`);
- the reparameterisation key comes from an RNG stream, `self.make_rng('reparam')`, given as
  `rngs={'reparam': key}` (upstream passes the key as an argument);
- the training order is `jax.random.permutation(fold_in(shuffle_rng, epoch), 60000)`, the
  last partial batch dropped (upstream: a shuffle buffer over repeated data, 390 steps an
  epoch); the key of step `s` is `fold_in(train_rng, s)`;
- 10 epochs by default (upstream 30) so that a run takes minutes on a CPU.
Keys: `init_rng, reparam_init_rng, train_rng, shuffle_rng, z_rng, eval_rng =
split(PRNGKey(seed), 6)`. After each epoch, the whole test set is evaluated with `eval_rng`.
It prints the log lines, then one JSON line with the final numbers.
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


class Encoder(nn.Module):
    latents: int

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(500, name="fc1")(x)
        x = nn.relu(x)
        mean_x = nn.Dense(self.latents, name="fc2_mean")(x)
        logvar_x = nn.Dense(self.latents, name="fc2_logvar")(x)
        return mean_x, logvar_x


class Decoder(nn.Module):
    @nn.compact
    def __call__(self, z):
        z = nn.Dense(500, name="fc1")(z)
        z = nn.relu(z)
        z = nn.Dense(784, name="fc2")(z)
        return z


class VAE(nn.Module):
    latents: int = 20

    def setup(self):
        self.encoder = Encoder(self.latents)
        self.decoder = Decoder()

    def __call__(self, x):
        mean, logvar = self.encoder(x)
        z = reparameterize(self.make_rng("reparam"), mean, logvar)
        recon_x = self.decoder(z)
        return recon_x, mean, logvar

    def generate(self, z):
        return nn.sigmoid(self.decoder(z))


def reparameterize(rng, mean, logvar):
    std = jnp.exp(0.5 * logvar)
    eps = jax.random.normal(rng, logvar.shape)
    return mean + eps * std


@jax.vmap
def kl_divergence(mean, logvar):
    return -0.5 * jnp.sum(1 + logvar - jnp.square(mean) - jnp.exp(logvar))


@jax.vmap
def binary_cross_entropy_with_logits(logits, labels):
    logits = nn.log_sigmoid(logits)
    return -jnp.sum(labels * logits + (1.0 - labels) * jnp.log(-jnp.expm1(logits)))


def compute_metrics(recon_x, x, mean, logvar):
    bce_loss = binary_cross_entropy_with_logits(recon_x, x).mean()
    kld_loss = kl_divergence(mean, logvar).mean()
    return {"bce": bce_loss, "kld": kld_loss, "loss": bce_loss + kld_loss}


def make_train_step(model):
    @jax.jit
    def train_step(state, batch, z_rng):
        def loss_fn(params):
            recon_x, mean, logvar = model.apply({"params": params}, batch, rngs={"reparam": z_rng})
            bce_loss = binary_cross_entropy_with_logits(recon_x, batch).mean()
            kld_loss = kl_divergence(mean, logvar).mean()
            return bce_loss + kld_loss

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    return train_step


def make_eval(model):
    @jax.jit
    def evaluate(params, images, z, z_rng):
        recon_images, mean, logvar = model.apply({"params": params}, images, rngs={"reparam": z_rng})
        metrics = compute_metrics(recon_images, images, mean, logvar)
        samples = model.apply({"params": params}, z, method=VAE.generate)
        return metrics, recon_images[:8], samples

    return evaluate


def load_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_binarized(data_dir, prefix):
    for name in (f"{prefix}-images-idx3-ubyte", f"{prefix}-images-idx3-ubyte.gz"):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            images = load_idx(path).astype(np.float32) / 255.0
            return jnp.asarray((images > 0.5).reshape(len(images), -1).astype(np.float32))
    raise FileNotFoundError(f"no {prefix}-images-idx3-ubyte[.gz] in {data_dir}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-epochs", type=int, default=10)
    parser.add_argument("--latents", type=int, default=20)
    args = parser.parse_args()

    train_ds, test_ds = load_binarized(args.data, "train"), load_binarized(args.data, "t10k")
    init_rng, reparam_init_rng, train_rng, shuffle_rng, z_rng, eval_rng = jax.random.split(
        jax.random.PRNGKey(args.seed), 6
    )
    model = VAE(latents=args.latents)
    init_data = jnp.ones((args.batch_size, 784), jnp.float32)
    params = model.init({"params": init_rng, "reparam": reparam_init_rng}, init_data)["params"]
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(args.learning_rate))
    z = jax.random.normal(z_rng, (64, args.latents))
    train_step, evaluate = make_train_step(model), make_eval(model)

    steps_per_epoch = len(train_ds) // args.batch_size
    start = time.time()
    step = 0
    for epoch in range(1, args.num_epochs + 1):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_rng, epoch), len(train_ds)))
        loss_sum = 0.0
        for i in range(steps_per_epoch):
            step += 1
            batch = train_ds[perm[i * args.batch_size : (i + 1) * args.batch_size]]
            state, loss = train_step(state, batch, jax.random.fold_in(train_rng, step))
            loss_sum += float(loss)
        metrics, _, _ = evaluate(state.params, test_ds, z, eval_rng)
        print(
            f"eval epoch: {epoch}, train_loss: {loss_sum / steps_per_epoch:.4f}, loss: {metrics['loss']:.4f}, "
            f"BCE: {metrics['bce']:.4f}, KLD: {metrics['kld']:.4f}",
            flush=True,
        )
    summary = {
        "seed": args.seed,
        "epochs": args.num_epochs,
        "test_loss": float(metrics["loss"]),
        "test_bce": float(metrics["bce"]),
        "test_kld": float(metrics["kld"]),
        "seconds": time.time() - start,
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
