"""A small decoder-only character-level transformer language model in real Flax and Optax,
on the protocol of `examples/examples/lm.rs`, to compare the Rust example's validation bits
per character with Flax's.

Run from the repository root (CPU here, or any JAX device):

    .golden-venv/bin/python scripts/reference/lm.py [--seed 0] [--num-train-steps 800]

The model follows Flax's `examples/lm1b` (a `TransformerLM` decoder: token embedding, learned
position embedding, pre-LayerNorm blocks of causal `MultiHeadDotProductAttention` and an MLP,
a final LayerNorm and a Dense over the vocabulary), with the block stack under `nn.scan`
(`variable_axes={"params": 0, "cache": 0}`), and is trained the way nanoGPT trains its
character-level model: AdamW with a linear warmup and a cosine decay, gradient clipping by
global norm, weight decay on the kernels and embeddings only. No dropout, so that both
implementations compute the same function. Same protocol as the Rust example:
- corpus: every fortune file of Debian's `fortunes` package (`/usr/share/games/fortunes`, the
  files that are neither `.dat` indexes nor `.u8` links, in name order, concatenated) or
  `--data FILE`; the vocabulary is its sorted characters; the first 90% is the training
  split, the rest the validation split;
- `init_rng, train_rng, val_rng, sample_rng = split(PRNGKey(seed), 4)`; the batch of step `s`
  is `batch_size` windows of the training split at offsets `randint(fold_in(train_rng, s))`;
- every `--eval-interval` steps the log shows the mean training loss since the last log and
  the loss on `--eval-batches` fixed validation batches (`fold_in(val_rng, i)`);
- at the end, the loss on the whole validation split cut into consecutive windows of
  `block_size + 1` characters, in nats and bits per character.
It prints the log lines, a sample, then one JSON line with the final numbers.
"""

import argparse
import glob
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax.training import train_state

FORTUNES = "/usr/share/games/fortunes"


def read_corpus(path):
    """The text of `path`, or of Debian's fortune files when `path` is None."""
    if path is not None:
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    files = sorted(f for f in glob.glob(os.path.join(FORTUNES, "*"))
                   if not f.endswith(".dat") and not os.path.islink(f) and os.path.isfile(f))
    return b"".join(open(f, "rb").read() for f in files).decode("utf-8")


class Block(nn.Module):
    """A pre-LayerNorm transformer block; `(x, mask) -> (x, None)` for `nn.scan`."""

    num_heads: int
    decode: bool = False

    @nn.compact
    def __call__(self, x, mask):
        features = x.shape[-1]
        y = nn.LayerNorm()(x)
        y = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, decode=self.decode)(y, mask=mask)
        x = x + y
        y = nn.LayerNorm()(x)
        y = nn.Dense(4 * features)(y)
        y = nn.gelu(y)
        y = nn.Dense(features)(y)
        return x + y, None


class TransformerLM(nn.Module):
    vocab_size: int
    block_size: int
    num_layers: int
    num_heads: int
    emb_dim: int
    decode: bool = False

    @nn.compact
    def __call__(self, tokens):
        length = tokens.shape[1]
        x = nn.Embed(self.vocab_size, self.emb_dim, embedding_init=nn.initializers.normal(stddev=1.0))(tokens)
        pos_embedding = self.param("pos_embedding", nn.initializers.normal(stddev=0.02),
                                   (1, self.block_size, self.emb_dim))
        mask = None
        if self.decode:
            is_initialized = self.has_variable("cache", "cache_index")
            cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, dtype=jnp.int32))
            if is_initialized:
                i = cache_index.value
                cache_index.value = i + 1
                pos_embedding = jax.lax.dynamic_slice(pos_embedding, (0, i, 0), (1, 1, self.emb_dim))
            else:
                pos_embedding = pos_embedding[:, :length]
        else:
            pos_embedding = pos_embedding[:, :length]
            mask = nn.make_causal_mask(tokens)
        x = x + pos_embedding
        blocks = nn.scan(Block, variable_axes={"params": 0, "cache": 0}, split_rngs={"params": True},
                         in_axes=nn.broadcast, length=self.num_layers)
        x, _ = blocks(self.num_heads, self.decode, name="blocks")(x, mask)
        x = nn.LayerNorm()(x)
        return nn.Dense(self.vocab_size)(x)


def get_batch(data, key, batch_size, block_size):
    """`batch_size` windows of `block_size + 1` characters at offsets drawn from `key`."""
    offsets = np.asarray(jax.random.randint(key, (batch_size,), 0, len(data) - block_size))
    windows = np.stack([data[o:o + block_size + 1] for o in offsets])
    return windows[:, :-1], windows[:, 1:]


def decay_mask(params):
    """Weight decay on kernels and embeddings, not on biases and LayerNorm scales."""
    return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key not in ("bias", "scale"), params)


def loss_fn(params, apply_fn, x, y):
    logits = apply_fn({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@jax.jit
def train_step(state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(state.params, state.apply_fn, x, y)
    return state.apply_gradients(grads=grads), loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--emb-dim", type=int, default=64)
    parser.add_argument("--num-train-steps", type=int, default=800)
    parser.add_argument("--eval-interval", type=int, default=100)
    parser.add_argument("--eval-batches", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.8)
    args = parser.parse_args()

    text = read_corpus(args.data)
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = np.array([index[c] for c in text], np.int32)
    n = int(0.9 * len(data))
    train, val = data[:n], data[n:]
    print(f"corpus: {len(data)} characters, vocabulary {len(chars)}, train {len(train)}, val {len(val)}")

    init_rng, train_rng, val_rng, sample_rng = jax.random.split(jax.random.PRNGKey(args.seed), 4)
    config = dict(vocab_size=len(chars), block_size=args.block_size, num_layers=args.num_layers,
                  num_heads=args.num_heads, emb_dim=args.emb_dim)
    model = TransformerLM(**config)
    params = model.init(init_rng, jnp.ones((1, args.block_size), jnp.int32))["params"]
    print(jax.tree_util.tree_map(jnp.shape, params))
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.learning_rate, args.warmup_steps,
                                                  args.num_train_steps, args.learning_rate / 10)
    tx = optax.chain(optax.clip_by_global_norm(1.0),
                     optax.adamw(schedule, b1=0.9, b2=0.99, weight_decay=args.weight_decay, mask=decay_mask))
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    eval_loss = jax.jit(lambda params, x, y: loss_fn(params, model.apply, x, y))
    val_batches = [get_batch(val, jax.random.fold_in(val_rng, i), args.batch_size, args.block_size)
                   for i in range(args.eval_batches)]

    start = time.time()
    loss_sum = 0.0
    for step in range(1, args.num_train_steps + 1):
        x, y = get_batch(train, jax.random.fold_in(train_rng, step), args.batch_size, args.block_size)
        state, loss = train_step(state, x, y)
        loss_sum += float(loss)
        if step % args.eval_interval == 0 or step == args.num_train_steps:
            steps = (step - 1) % args.eval_interval + 1
            val_loss = np.mean([float(eval_loss(state.params, x, y)) for x, y in val_batches])
            print(f"step: {step}, train_loss: {loss_sum / steps:.4f}, val_loss: {val_loss:.4f}, "
                  f"val_bpc: {val_loss / math.log(2):.4f}, lr: {float(schedule(step)):.6f}", flush=True)
            loss_sum = 0.0
    seconds = time.time() - start

    # The whole validation split in consecutive windows of block_size + 1 characters.
    windows = len(val) // (args.block_size + 1)
    val_windows = val[: windows * (args.block_size + 1)].reshape(windows, args.block_size + 1)
    total = 0.0
    for i in range(0, windows, 256):
        chunk = val_windows[i:i + 256]
        total += float(eval_loss(state.params, chunk[:, :-1], chunk[:, 1:])) * len(chunk)
    val_loss = total / windows

    # A sample with the decode cache, from a newline.
    decoder = TransformerLM(**config, decode=True)
    cache = decoder.init(init_rng, jnp.ones((1, args.block_size), jnp.int32))["cache"]

    @jax.jit
    def decode_step(cache, token, key):
        logits, updates = decoder.apply({"params": state.params, "cache": cache}, token, mutable=["cache"])
        return updates["cache"], jax.random.categorical(key, logits[:, -1] / args.temperature)

    token = jnp.array([[index["\n"]]], jnp.int32)
    sample = []
    for i in range(args.block_size):
        cache, next_token = decode_step(cache, token, jax.random.fold_in(sample_rng, i))
        sample.append(chars[int(next_token[0])])
        token = next_token[:, None]
    print("sample:\n" + "".join(sample))
    print(json.dumps({"seed": args.seed, "steps": args.num_train_steps, **config, "batch_size": args.batch_size,
                      "val_loss": val_loss, "val_bpc": val_loss / math.log(2), "seconds": seconds,
                      "device": str(jax.devices()[0]), "jax": jax.__version__}), flush=True)


if __name__ == "__main__":
    main()
