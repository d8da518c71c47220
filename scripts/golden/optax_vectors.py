"""Golden vectors for `flax::optax` and `flax::value_and_grad`, written by real Optax and JAX.

Run from the repository root:

    .golden-venv/bin/python scripts/golden/optax_vectors.py

It writes `flax-runtime/tests/data/optax.msgpack` (flax.serialization.msgpack_serialize of a
nested dict of numpy arrays), which `tests/optax_golden.rs` and `tests/autodiff_golden.rs`
read:

- `params`, `grads`: a small tree with leaves of three shapes ({"w": (3, 2), "b": (2,),
  "s": ()}) and a fixed sequence of STEPS gradients of it (stacked on a leading axis);
- `transforms/<case>`: for every transformation and optimizer, the updates that `update`
  returned at each step and the parameters after `apply_updates` (stacked the same way),
  and, where the Rust state has Optax's structure, `to_state_dict` of the final state;
- `schedules/<name>`: the schedule evaluated at int32 counts 0..COUNTS-1, as Optax evaluates
  it inside `scale_by_schedule`;
- `losses/<name>`: inputs and the unreduced loss;
- `mlp`: a two-layer Flax MLP's params, a batch, and `jax.value_and_grad` of its mean
  cross-entropy (with the logits as aux).

Every input is deterministic (a seeded numpy generator), so regenerating gives identical files.
The Rust side of each case is spelled out next to it in `tests/optax_golden.rs`, by name.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import serialization

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "flax-runtime", "tests", "data", "optax.msgpack")
STEPS = 10
COUNTS = 16
RNG = np.random.default_rng(0)


def f32(x):
  return np.asarray(x, dtype=np.float32)


def params():
  return {
    "w": f32(RNG.normal(size=(3, 2))),
    "b": f32(RNG.normal(size=(2,))),
    "s": f32(RNG.normal()),
  }


def grad_sequence(template):
  """STEPS gradient trees; step 4 is large (so global-norm clipping triggers) and "b" is zero
  at steps 0 and 6 (Adagrad's zero sum and the trust ratio's zero norm)."""
  out = []
  for step in range(STEPS):
    g = {k: f32(RNG.normal(size=np.shape(v))) for k, v in template.items()}
    if step == 4:
      g = {k: f32(v * 10) for k, v in g.items()}
    if step in (0, 6):
      g["b"] = np.zeros_like(g["b"])
    out.append(g)
  return out


def stack(trees):
  return {k: np.stack([np.asarray(t[k]) for t in trees]) for k in trees[0]}


def schedules():
  return {
    "constant": optax.constant_schedule(0.3),
    "linear": optax.linear_schedule(1.0, 0.1, transition_steps=5, transition_begin=2),
    "polynomial": optax.polynomial_schedule(1.0, 0.2, power=2.0, transition_steps=6, transition_begin=1),
    "cosine_decay": optax.cosine_decay_schedule(1.0, decay_steps=7, alpha=0.1),
    "cosine_decay_exponent": optax.cosine_decay_schedule(0.5, decay_steps=9, alpha=0.0, exponent=2.0),
    "warmup_cosine_decay": optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=3, decay_steps=10,
                                                              end_value=0.1),
    "exponential_decay": optax.exponential_decay(1.0, transition_steps=3, decay_rate=0.5, transition_begin=1),
    "exponential_decay_staircase": optax.exponential_decay(2.0, transition_steps=3, decay_rate=0.5,
                                                           staircase=True, end_value=0.4),
    "exponential_growth": optax.exponential_decay(0.1, transition_steps=2, decay_rate=1.5, end_value=0.5),
    "piecewise_constant": optax.piecewise_constant_schedule(1.0, {3: 0.5, 6: 0.1, 10: 2.0}),
    "join_schedules": optax.join_schedules(
      [optax.constant_schedule(1.0), optax.linear_schedule(1.0, 0.0, 4), optax.constant_schedule(0.25)], [4, 9]),
  }


def label_of(path_tree):
  """The labels the Rust tests give by leaf name: "w" and "s" train with Adam, "b" is frozen."""
  return {"w": "adam", "b": "frozen", "s": "adam"}


def transforms():
  """(case, transformation, whether the Rust state has Optax's structure)."""
  sched = optax.warmup_cosine_decay_schedule(0.0, 0.1, warmup_steps=3, decay_steps=10, end_value=0.01)
  mask = {"w": True, "b": False, "s": True}
  return [
    ("sgd", optax.sgd(0.1), True),
    ("sgd_momentum", optax.sgd(0.1, momentum=0.9), True),
    ("sgd_nesterov", optax.sgd(0.1, momentum=0.9, nesterov=True), True),
    ("sgd_schedule", optax.sgd(sched, momentum=0.5), True),
    ("adam", optax.adam(0.05), True),
    ("adam_nesterov", optax.adam(0.05, b1=0.8, b2=0.99, nesterov=True), True),
    ("adam_eps_root", optax.adam(0.05, eps=1e-3, eps_root=1e-4), True),
    ("adam_schedule", optax.adam(sched), True),
    ("adamw", optax.adamw(0.05, weight_decay=0.1), True),
    ("adamw_schedules", optax.adamw(sched, weight_decay=optax.linear_schedule(0.5, 0.0, 10)), True),
    ("adamw_mask", optax.adamw(0.05, weight_decay=0.1, mask=mask), False),
    ("rmsprop", optax.rmsprop(0.05), True),
    ("rmsprop_centered", optax.rmsprop(0.05, decay=0.8, centered=True), True),
    ("rmsprop_momentum", optax.rmsprop(0.05, momentum=0.9, nesterov=True, eps_in_sqrt=False), True),
    ("rmsprop_bias_correction", optax.rmsprop(0.05, bias_correction=True, initial_scale=0.1), True),
    ("adagrad", optax.adagrad(0.1), True),
    ("adagrad_zero_init", optax.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0), True),
    ("lamb", optax.lamb(0.05), True),
    ("lamb_weight_decay", optax.lamb(0.05, weight_decay=0.1), True),
    ("scale", optax.scale(-0.5), True),
    ("scale_by_schedule", optax.scale_by_schedule(sched), True),
    ("trace", optax.trace(0.9), True),
    ("trace_nesterov", optax.trace(0.5, nesterov=True), True),
    ("scale_by_adam", optax.scale_by_adam(), True),
    ("add_decayed_weights", optax.add_decayed_weights(0.1), True),
    ("add_decayed_weights_schedule", optax.add_decayed_weights(optax.linear_schedule(0.2, 0.0, 8)), True),
    ("clip_by_global_norm", optax.clip_by_global_norm(5.0), True),
    ("clip", optax.clip(0.7), True),
    ("set_to_zero", optax.set_to_zero(), True),
    ("chain", optax.chain(optax.clip_by_global_norm(5.0), optax.scale_by_adam(), optax.scale(-0.05)), True),
    ("masked", optax.masked(optax.sgd(0.1, momentum=0.9), mask), True),
    ("multi_transform", optax.multi_transform({"adam": optax.adam(0.05), "frozen": optax.set_to_zero()},
                                              label_of), True),
  ]


def run(tx, p0, grads):
  state = tx.init(p0)
  p = p0
  updates_seq, params_seq = [], []
  for g in grads:
    updates, state = tx.update(g, state, p)
    p = optax.apply_updates(p, updates)
    updates_seq.append(updates)
    params_seq.append(p)
  return stack(updates_seq), stack(params_seq), state


def to_numpy(tree):
  return jax.tree_util.tree_map(np.asarray, tree)


def transform_section(p0, grads):
  out = {}
  for name, tx, same_structure in transforms():
    updates, ps, state = run(tx, p0, grads)
    case = {"updates": updates, "params": ps}
    if same_structure:
      case["state"] = to_numpy(serialization.to_state_dict(state))
    out[name] = case
  return out


def schedule_section():
  counts = [jnp.asarray(c, jnp.int32) for c in range(COUNTS)]
  return {name: f32([s(c) for c in counts]) for name, s in schedules().items()}


def loss_section():
  logits = f32(RNG.normal(size=(4, 5)) * 3)
  probs = f32(jax.nn.softmax(f32(RNG.normal(size=(4, 5)))))
  int_labels = np.asarray([0, 3, 4, 1], dtype=np.int64)
  binary = f32(RNG.integers(0, 2, size=(4, 5)))
  predictions = f32(RNG.normal(size=(3, 4)) * 2)
  targets = f32(RNG.normal(size=(3, 4)))
  return {
    "logits": logits,
    "probs": probs,
    "int_labels": int_labels,
    "binary_labels": binary,
    "predictions": predictions,
    "targets": targets,
    "softmax_cross_entropy": f32(optax.softmax_cross_entropy(logits, probs)),
    "softmax_cross_entropy_with_integer_labels": f32(
      optax.softmax_cross_entropy_with_integer_labels(logits, int_labels.astype(np.int32))),
    "sigmoid_binary_cross_entropy": f32(optax.sigmoid_binary_cross_entropy(logits, binary)),
    "l2_loss": f32(optax.l2_loss(predictions, targets)),
    "l2_loss_no_targets": f32(optax.l2_loss(predictions)),
    "huber_loss": f32(optax.huber_loss(predictions, targets)),
    "huber_loss_delta": f32(optax.huber_loss(predictions, targets, delta=0.5)),
  }


class Mlp(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(5)(x))
    return nn.Dense(3)(x)


def mlp_section():
  model = Mlp()
  x = f32(RNG.normal(size=(6, 4)))
  labels = np.asarray([0, 2, 1, 1, 0, 2], dtype=np.int64)
  variables = model.init(jax.random.PRNGKey(0), x)

  def loss_fn(params):
    logits = model.apply({"params": params}, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(np.int32)).mean()
    return loss, logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
  return {
    "params": to_numpy(variables["params"]),
    "x": x,
    "labels": labels,
    "loss": f32(loss),
    "logits": f32(logits),
    "grads": to_numpy(grads),
  }


def main():
  p0 = params()
  grads = grad_sequence(p0)
  vectors = {
    "params": p0,
    "grads": stack(grads),
    "transforms": transform_section(p0, grads),
    "schedules": schedule_section(),
    "losses": loss_section(),
    "mlp": mlp_section(),
  }
  data = serialization.msgpack_serialize(vectors)
  with open(OUT, "wb") as f:
    f.write(data)
  print(f"wrote {os.path.normpath(OUT)} ({len(data)} bytes)")


if __name__ == "__main__":
  main()
