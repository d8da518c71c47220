"""Flax's seq2seq example (an LSTM encoder-decoder that learns to add numbers given as
strings) in real Flax and Optax, on the protocol of `examples/examples/seq2seq.rs`, to compare
the Rust example's exact-match accuracy with Flax's.

Run from the repository root (CPU here, or any JAX device):

    .golden-venv/bin/python scripts/reference/seq2seq.py [--seed 0] [--num-train-steps 6000]

The model is the upstream example's (`examples/seq2seq/models.py` of google/flax): an
`nn.RNN(nn.LSTMCell)` encoder stopped at each query's EOS, and an `nn.RNN` of a
`DecoderLSTMCell` (LSTMCell then Dense over the vocabulary) started from the encoder's carry
and the "=" token, with teacher forcing in training. Same protocol as the Rust example, which
differs from upstream's on these points, each for a reason:
- the decoder feeds back its greedy prediction (argmax) when not teacher-forced, instead of a
  `jax.random.categorical` sample, so that evaluation is deterministic;
- the problems come from `jax.random.randint` (upstream: Python's `random`, with a TODO to use
  `jax.random`), so both implementations see the same ones: the batch of step `s` from
  `fold_in(train_rng, s)`, a fixed test set of `--num-test` problems from `test_rng`, where
  `init_rng, train_rng, test_rng = split(PRNGKey(seed), 3)`;
- every `--decode-frequency` steps the log shows the mean training loss and teacher-forced
  sequence accuracy since the last log, and the test set's loss and greedy exact-match accuracy;
- the default size is smaller than upstream's (hidden 128 and 6,000 steps, upstream 512 and
  10,000) so that a run takes minutes on a CPU.
It prints the log lines, a few decoded test problems, then one JSON line with the final
numbers.
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax.training import train_state


class CharacterTable:
    """Encodes and decodes between strings and token ids: 0 is padding, 1 is EOS, then the
    sorted characters."""

    def __init__(self, chars, max_len_query_digit=3):
        self._chars = sorted(set(chars))
        self._char_indices = {ch: idx + 2 for idx, ch in enumerate(self._chars)}
        self._indices_char = {idx + 2: ch for idx, ch in enumerate(self._chars)}
        self._indices_char[self.pad_id] = "_"
        self._max_len_query_digit = max_len_query_digit

    pad_id = 0
    eos_id = 1

    @property
    def vocab_size(self):
        return len(self._chars) + 2

    @property
    def max_input_len(self):
        return self._max_len_query_digit * 2 + 2

    @property
    def max_output_len(self):
        return self._max_len_query_digit + 3

    def encode(self, inputs):
        return np.array([self._char_indices[c] for c in inputs] + [self.eos_id])

    def decode(self, tokens):
        chars = []
        for t in tokens.tolist():
            if t == self.eos_id:
                break
            chars.append(self._indices_char[t])
        return "".join(chars)

    def encode_onehot(self, strings, max_len):
        tokens = np.zeros((len(strings), max_len), np.int32)
        for i, s in enumerate(strings):
            encoded = self.encode(s)
            tokens[i, : len(encoded)] = encoded
        return jax.nn.one_hot(tokens, self.vocab_size, dtype=jnp.float32)

    def decode_onehot(self, batch):
        return [self.decode(row) for row in np.asarray(batch).argmax(-1)]

    def get_batch(self, key, batch_size):
        """`batch_size` problems `a+b` (a < 100, b < 10^digits, the smaller first) from `key`."""
        max_digit = 10**self._max_len_query_digit - 1
        k1, k2 = jax.random.split(key)
        a = np.asarray(jax.random.randint(k1, (batch_size,), 0, 100))
        b = np.asarray(jax.random.randint(k2, (batch_size,), 0, max_digit + 1))
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        queries = [f"{x}+{y}" for x, y in zip(lo, hi)]
        answers = [f"={x + y}" for x, y in zip(lo, hi)]
        return {
            "query": self.encode_onehot(queries, self.max_input_len),
            "answer": self.encode_onehot(answers, self.max_output_len),
        }


def mask_sequences(sequence_batch, lengths):
    return sequence_batch * (lengths[:, None] > jnp.arange(sequence_batch.shape[1])[None])


def get_sequence_lengths(sequence_batch, eos_id):
    """The length of each one-hot sequence, EOS included."""
    eos_row = sequence_batch[:, :, eos_id]
    eos_idx = jnp.argmax(eos_row, axis=-1)
    return jnp.where(eos_row[jnp.arange(eos_row.shape[0]), eos_idx], eos_idx + 1, sequence_batch.shape[1])


class DecoderLSTMCell(nn.RNNCellBase):
    """LSTMCell then Dense over the vocabulary; feeds back its greedy prediction unless
    teacher-forced."""

    features: int
    teacher_force: bool
    vocab_size: int

    @nn.compact
    def __call__(self, carry, x):
        lstm_state, last_prediction = carry
        if not self.teacher_force:
            x = last_prediction
        lstm_state, y = nn.LSTMCell(self.features)(lstm_state, x)
        logits = nn.Dense(features=self.vocab_size)(y)
        predicted_token = jnp.argmax(logits, axis=-1)
        prediction = jax.nn.one_hot(predicted_token, self.vocab_size, dtype=jnp.float32)
        return (lstm_state, prediction), logits

    @property
    def num_feature_axes(self):
        return 1


class Seq2seq(nn.Module):
    teacher_force: bool
    hidden_size: int
    vocab_size: int
    eos_id: int = 1

    @nn.compact
    def __call__(self, encoder_inputs, decoder_inputs):
        encoder = nn.RNN(nn.LSTMCell(self.hidden_size), return_carry=True, name="encoder")
        decoder = nn.RNN(
            DecoderLSTMCell(self.hidden_size, self.teacher_force, self.vocab_size), name="decoder"
        )
        seq_lengths = self.get_seq_lengths(encoder_inputs)
        encoder_state, _ = encoder(encoder_inputs, seq_lengths=seq_lengths)
        logits = decoder(decoder_inputs[:, :-1], initial_carry=(encoder_state, decoder_inputs[:, 0]))
        return logits

    def get_seq_lengths(self, inputs):
        inputs = jnp.argmax(inputs, axis=-1)
        return jnp.argmax(inputs == self.eos_id, axis=-1)


def cross_entropy_loss(logits, labels, lengths):
    xe = jnp.sum(nn.log_softmax(logits) * labels, axis=-1)
    return -jnp.mean(mask_sequences(xe, lengths))


def compute_metrics(logits, labels, eos_id):
    lengths = get_sequence_lengths(labels, eos_id)
    loss = cross_entropy_loss(logits, labels, lengths)
    token_accuracy = jnp.argmax(logits, -1) == jnp.argmax(labels, -1)
    sequence_accuracy = jnp.sum(mask_sequences(token_accuracy, lengths), axis=-1) == lengths
    return {"loss": loss, "accuracy": jnp.mean(sequence_accuracy)}


def get_model(ctable, hidden_size, teacher_force):
    return Seq2seq(teacher_force=teacher_force, hidden_size=hidden_size, vocab_size=ctable.vocab_size,
                   eos_id=ctable.eos_id)


@jax.jit
def train_step(state, batch):
    labels = batch["answer"][:, 1:]

    def loss_fn(params):
        logits = state.apply_fn({"params": params}, batch["query"], batch["answer"])
        return cross_entropy_loss(logits, labels, get_sequence_lengths(labels, 1)), logits

    (_, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads=grads), compute_metrics(logits, labels, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=0.003)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--num-train-steps", type=int, default=6000)
    parser.add_argument("--decode-frequency", type=int, default=200)
    parser.add_argument("--max-len-query-digit", type=int, default=3)
    parser.add_argument("--num-test", type=int, default=1000)
    args = parser.parse_args()

    ctable = CharacterTable("0123456789+= ", args.max_len_query_digit)
    init_rng, train_rng, test_rng = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    model = get_model(ctable, args.hidden_size, teacher_force=True)
    shape = lambda n: jnp.ones((1, n, ctable.vocab_size), jnp.float32)
    params = model.init({"params": init_rng}, shape(ctable.max_input_len), shape(ctable.max_output_len))["params"]
    print(jax.tree_util.tree_map(jnp.shape, params))
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(args.learning_rate))
    greedy = get_model(ctable, args.hidden_size, teacher_force=False)
    test = ctable.get_batch(test_rng, args.num_test)
    start_token = ctable.encode_onehot(["="], 2)[:, :1]
    decoder_inputs = jnp.tile(start_token, (args.num_test, ctable.max_output_len, 1))

    @jax.jit
    def evaluate(params, query, answer, decoder_inputs):
        """The test set's teacher-forced loss, and its greedy decoding."""
        forced = compute_metrics(model.apply({"params": params}, query, answer), answer[:, 1:], 1)
        return forced["loss"], greedy.apply({"params": params}, query, decoder_inputs)

    start = time.time()
    sums = np.zeros(2)
    for step in range(1, args.num_train_steps + 1):
        batch = ctable.get_batch(jax.random.fold_in(train_rng, step), args.batch_size)
        state, metrics = train_step(state, batch)
        sums += np.array([metrics["loss"], metrics["accuracy"]], np.float64)
        if step % args.decode_frequency == 0:
            test_loss, logits = evaluate(state.params, test["query"], test["answer"], decoder_inputs)
            inferred = ctable.decode_onehot(logits)
            golden = ctable.decode_onehot(test["answer"][:, 1:])
            exact = np.mean([i == g for i, g in zip(inferred, golden)])
            loss, accuracy = sums / args.decode_frequency
            sums[:] = 0
            print(f"step: {step}, train_loss: {loss:.4f}, train_accuracy: {accuracy * 100:.2f}, "
                  f"test_loss: {float(test_loss):.4f}, test_exact_match: {exact * 100:.2f}", flush=True)
    seconds = time.time() - start
    questions = ctable.decode_onehot(test["query"])
    for q, i, g in list(zip(questions, inferred, golden))[:8]:
        print(f"DECODE: {q} = {i} {'(CORRECT)' if i == g else f'(INCORRECT) correct={g}'}")
    print(json.dumps({"seed": args.seed, "steps": args.num_train_steps, "hidden_size": args.hidden_size,
                      "test_exact_match": exact * 100, "test_loss": float(test_loss), "seconds": seconds,
                      "device": str(jax.devices()[0]), "jax": jax.__version__}), flush=True)


if __name__ == "__main__":
    main()
