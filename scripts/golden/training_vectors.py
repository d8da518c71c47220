"""Golden vectors for `flax::training`, written by real Flax, Optax and clu.

Run from the repository root:

    .golden-venv/bin/python scripts/golden/training_vectors.py

(clu and its one extra dependency, wrapt, are in requirements.txt; an existing venv gets them
with `pip install --no-deps clu==0.0.12 wrapt`.)

It writes `flax-runtime/tests/data/training.msgpack` (flax.serialization.msgpack_serialize of
a nested dict), which `tests/training_golden.rs` reads:

- `early_stopping/<case>`: `min_delta`, `patience`, the `metrics` fed to `update` one by one,
  and after each update `has_improved`, `best_metric`, `patience_count`, `should_stop`
  (Flax 0.12.8 keeps `has_improved` as a field; the spec's 0.6.10 returns it from `update`:
  the same values);
- `lr_schedule/<case>`: the arguments of one `create_*_learning_rate_schedule` call and the
  schedule at steps 0..STEPS-1 (float32, as Flax computes it);
- `metrics/<case>`: model outputs of a few batches, the state (`total`, `count`) of each
  clu metric after merging them into `empty()`, and `compute()`;
- `flax_basics`: the spec's Flax Basics linear regression (L940-1315) run verbatim: the loss
  of the true parameters, the loss at each of the 101 gradient-descent steps (learning rate
  0.3) and of the 101 Adam steps that follow, and the final parameters;
- `train_state`: a Flax `TrainState` subclass with `batch_stats`, SGD with momentum, after
  STATE_STEPS `apply_gradients` with fixed gradients, serialized with `to_bytes`, and the
  gradients.

It also writes `flax-runtime/tests/data/quickstart_steps.msgpack`, which
`tests/quickstart_cnn.rs` reads: the spec's quickstart loop (`train_step` then
`compute_metrics`, SGD(0.01, momentum 0.9), clu metrics in the `TrainState`) run for
QUICKSTART_STEPS batches of 8 random images from `init(PRNGKey(0), ones([1, 28, 28, 1]))`: the
batches, the metrics' state and `compute()`, and the final parameters (small leaves whole;
for every leaf its sum and sum of squares in float64, as the 3 MB of parameters would not fit
in a small file).

Every input is deterministic (a seeded numpy generator), so regenerating gives identical files.
"""

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from clu import metrics
from flax import linen as nn
from flax import serialization, struct, traverse_util
from flax.training import early_stopping, lr_schedule, train_state

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "flax-runtime", "tests", "data", "training.msgpack")
RNG = np.random.default_rng(0)
STEPS = 40
STATE_STEPS = 3
QUICKSTART_STEPS = 3
QUICKSTART_OUT = os.path.join(os.path.dirname(OUT), "quickstart_steps.msgpack")


def f32(x):
  return np.asarray(x, dtype=np.float32)


def early_stopping_cases():
  cases = {
    # Flax's docstring example: stops at epoch 7.
    "docstring": (1e-3, 2, [4, 3, 3, 3, 2, 2, 2, 2, 1, 1]),
    # patience 0 stops at the first non-improving update; equal values never improve.
    "patience_0": (0.0, 0, [1.0, 1.0, 0.5, 0.7]),
    # improvements smaller than min_delta do not count; exactly min_delta does not either.
    "min_delta": (0.5, 1, [10.0, 9.6, 9.5, 9.4, 8.9, 8.0, 8.0, 8.0, 7.0]),
    # a first metric of inf keeps the best metric infinite: the next update improves.
    "inf_first": (0.0, 1, [math.inf, 3.0, 4.0, 5.0, 6.0, 2.0]),
    # once should_stop is true it stays true, even after an improvement.
    "sticky": (0.0, 1, [5.0, 6.0, 7.0, 1.0, 2.0]),
  }
  out = {}
  for name, (min_delta, patience, values) in cases.items():
    state = early_stopping.EarlyStopping(min_delta=min_delta, patience=patience)
    rows = {"has_improved": [], "best_metric": [], "patience_count": [], "should_stop": []}
    for v in values:
      state = state.update(v)
      rows["has_improved"].append(state.has_improved)
      rows["best_metric"].append(state.best_metric)
      rows["patience_count"].append(state.patience_count)
      rows["should_stop"].append(state.should_stop)
    out[name] = {
      "min_delta": np.float64(min_delta),
      "patience": np.int64(patience),
      "metrics": np.asarray(values, np.float64),
      **{k: np.asarray(v, np.float64 if k == "best_metric" else np.int64) for k, v in rows.items()},
    }
  return out


def lr_schedule_cases():
  steps = np.arange(STEPS)
  cases = {
    "constant": ("constant", dict(base_learning_rate=0.1, steps_per_epoch=7)),
    "constant_warmup": ("constant", dict(base_learning_rate=0.1, steps_per_epoch=7, warmup_length=2.5)),
    "stepped": ("stepped", dict(base_learning_rate=0.2, steps_per_epoch=5, lr_sched_steps=[[1, 0.5], [2.5, 0.1], [6, 0.01]])),
    "stepped_warmup": ("stepped", dict(base_learning_rate=0.2, steps_per_epoch=5, lr_sched_steps=[[1, 0.5], [3, 0.1]], warmup_length=1.5)),
    # 0.5 * 5 = 2.5 and 1.5 * 5 = 7.5: numpy rounds half to even (2 and 8).
    "stepped_ties": ("stepped", dict(base_learning_rate=1.0, steps_per_epoch=5, lr_sched_steps=[[0.5, 0.5], [1.5, 0.25]])),
    "cosine": ("cosine", dict(base_learning_rate=0.3, steps_per_epoch=4, halfcos_epochs=5)),
    "cosine_warmup": ("cosine", dict(base_learning_rate=0.3, steps_per_epoch=4, halfcos_epochs=6, warmup_length=2)),
  }
  makers = {
    "constant": lr_schedule.create_constant_learning_rate_schedule,
    "stepped": lr_schedule.create_stepped_learning_rate_schedule,
    "cosine": lr_schedule.create_cosine_learning_rate_schedule,
  }
  out = {}
  for name, (kind, kwargs) in cases.items():
    fn = makers[kind](**kwargs)
    values = np.asarray([np.float32(fn(int(s))) for s in steps], np.float32)
    args = {k: np.asarray(v, np.float64) for k, v in kwargs.items()}
    out[name] = {"args": args, "values": values}
  return out


@struct.dataclass
class Metrics(metrics.Collection):
  accuracy: metrics.Accuracy
  loss: metrics.Average.from_output("loss")


def metrics_cases():
  out = {}
  # Per-batch mean losses and unmasked accuracy, as in the quickstart.
  batches = []
  collection = Metrics.empty()
  for _ in range(3):
    logits = f32(RNG.normal(size=(5, 4)))
    labels = RNG.integers(0, 4, size=(5,)).astype(np.int32)
    loss = f32(RNG.uniform())
    update = Metrics.single_from_model_output(logits=jnp.asarray(logits), labels=jnp.asarray(labels), loss=jnp.asarray(loss))
    collection = collection.merge(update)
    batches.append({"logits": logits, "labels": labels.astype(np.int64), "loss": loss})
  computed = collection.compute()
  out["quickstart"] = {
    "batches": {str(i): b for i, b in enumerate(batches)},
    "accuracy": {"total": f32(collection.accuracy.total), "count": np.int64(collection.accuracy.count)},
    "loss": {"total": f32(collection.loss.total), "count": np.int64(collection.loss.count)},
    "computed": {k: f32(v) for k, v in computed.items()},
  }
  # A padded evaluation: per-example losses, a mask that drops the padding.
  batches = []
  collection = Metrics.empty()
  for n_valid in (6, 2):
    logits = f32(RNG.normal(size=(6, 3)))
    labels = RNG.integers(0, 3, size=(6,)).astype(np.int32)
    loss = f32(RNG.uniform(size=(6,)))
    mask = np.arange(6) < n_valid
    update = Metrics.single_from_model_output(
      logits=jnp.asarray(logits), labels=jnp.asarray(labels), loss=jnp.asarray(loss), mask=jnp.asarray(mask))
    collection = collection.merge(update)
    batches.append({"logits": logits, "labels": labels.astype(np.int64), "loss": loss, "mask": mask})
  computed = collection.compute()
  out["masked"] = {
    "batches": {str(i): b for i, b in enumerate(batches)},
    "accuracy": {"total": f32(collection.accuracy.total), "count": np.int64(collection.accuracy.count)},
    "loss": {"total": f32(collection.loss.total), "count": np.int64(collection.loss.count)},
    "computed": {k: f32(v) for k, v in computed.items()},
  }
  return out


def flax_basics_case():
  """The spec's code, with JAX 0.10's random bits (the spec's printed values are older JAX's)."""
  model = nn.Dense(features=5)
  key1, key2 = jax.random.split(jax.random.PRNGKey(0))
  x = jax.random.normal(key1, (10,))
  params = model.init(key2, x)
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  W = jax.random.normal(k1, (10, 5))
  b = jax.random.normal(k2, (5,))
  true_params = {"params": {"bias": b, "kernel": W}}
  key_sample, key_noise = jax.random.split(k1)
  x_samples = jax.random.normal(key_sample, (20, 10))
  y_samples = jnp.dot(x_samples, W) + b + 0.1 * jax.random.normal(key_noise, (20, 5))

  def mse(params, x_batched, y_batched):
    def squared_error(x, y):
      pred = model.apply(params, x)
      return jnp.inner(y - pred, y - pred) / 2.0
    return jnp.mean(jax.vmap(squared_error)(x_batched, y_batched), axis=0)

  loss_grad_fn = jax.value_and_grad(mse)
  gd_losses = []
  for _ in range(101):
    loss_val, grads = loss_grad_fn(params, x_samples, y_samples)
    params = jax.tree_util.tree_map(lambda p, g: p - 0.3 * g, params, grads)
    gd_losses.append(loss_val)
  tx = optax.adam(learning_rate=0.3)
  opt_state = tx.init(params)
  adam_losses = []
  for _ in range(101):
    loss_val, grads = loss_grad_fn(params, x_samples, y_samples)
    updates, opt_state = tx.update(grads, opt_state)
    params = optax.apply_updates(params, updates)
    adam_losses.append(loss_val)
  return {
    "true_loss": f32(mse(true_params, x_samples, y_samples)),
    "gd_losses": f32(gd_losses),
    "adam_losses": f32(adam_losses),
    "params": jax.tree_util.tree_map(f32, params["params"]),
  }


class TrainState(train_state.TrainState):
  batch_stats: Any


def train_state_case():
  params = {"Dense_0": {"kernel": f32(RNG.normal(size=(3, 2))), "bias": f32(RNG.normal(size=(2,)))}}
  batch_stats = {"BatchNorm_0": {"mean": f32(RNG.normal(size=(2,))), "var": f32(RNG.uniform(size=(2,)))}}
  grads = [
    {"Dense_0": {"kernel": f32(RNG.normal(size=(3, 2))), "bias": f32(RNG.normal(size=(2,)))}}
    for _ in range(STATE_STEPS)
  ]
  state = TrainState.create(
    apply_fn=None, params=params, tx=optax.sgd(0.1, momentum=0.9), batch_stats=batch_stats)
  for g in grads:
    state = state.apply_gradients(grads=g)
  return {
    "initial_params": params,
    "batch_stats": batch_stats,
    "grads": {str(i): g for i, g in enumerate(grads)},
    "bytes": np.frombuffer(serialization.to_bytes(state), np.uint8),
  }


class CNN(nn.Module):
  """The spec's quickstart CNN (L232-249)."""

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


class QuickstartState(train_state.TrainState):
  metrics: Metrics


def quickstart_case():
  """The spec's `create_train_state`, `train_step` and `compute_metrics`, verbatim."""
  cnn = CNN()
  params = cnn.init(jax.random.PRNGKey(0), jnp.ones([1, 28, 28, 1]))["params"]
  state = QuickstartState.create(
    apply_fn=cnn.apply, params=params, tx=optax.sgd(0.01, 0.9), metrics=Metrics.empty())

  @jax.jit
  def train_step(state, batch):
    def loss_fn(params):
      logits = state.apply_fn({"params": params}, batch["image"])
      return optax.softmax_cross_entropy_with_integer_labels(logits=logits, labels=batch["label"]).mean()
    grads = jax.grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads)

  @jax.jit
  def compute_metrics(*, state, batch):
    logits = state.apply_fn({"params": state.params}, batch["image"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits=logits, labels=batch["label"]).mean()
    metric_updates = state.metrics.single_from_model_output(logits=logits, labels=batch["label"], loss=loss)
    return state.replace(metrics=state.metrics.merge(metric_updates))

  batches = {}
  for i in range(QUICKSTART_STEPS):
    batch = {
      "image": f32(RNG.uniform(size=(8, 28, 28, 1))),
      "label": RNG.integers(0, 10, size=(8,)).astype(np.int32),
    }
    state = train_step(state, batch)
    state = compute_metrics(state=state, batch=batch)
    batches[str(i)] = {"image": batch["image"], "label": batch["label"].astype(np.int64)}
  leaves = {}
  for path, leaf in traverse_util.flatten_dict(jax.device_get(state.params), sep="/").items():
    leaf = np.asarray(leaf, np.float64)
    entry = {"sum": np.float64(leaf.sum()), "sum_of_squares": np.float64((leaf * leaf).sum())}
    if leaf.size <= 20000:
      entry["value"] = f32(leaf)
    leaves[path] = entry
  m = state.metrics
  return {
    "batches": batches,
    "step": np.int64(state.step),
    "params": leaves,
    "accuracy": {"total": f32(m.accuracy.total), "count": np.int64(m.accuracy.count)},
    "loss": {"total": f32(m.loss.total), "count": np.int64(m.loss.count)},
  }


def main():
  vectors = {
    "early_stopping": early_stopping_cases(),
    "lr_schedule": lr_schedule_cases(),
    "metrics": metrics_cases(),
    "train_state": train_state_case(),
    "flax_basics": flax_basics_case(),
  }
  with open(OUT, "wb") as f:
    f.write(serialization.msgpack_serialize(vectors))
  print(f"wrote {os.path.normpath(OUT)}")
  with open(QUICKSTART_OUT, "wb") as f:
    f.write(serialization.msgpack_serialize(quickstart_case()))
  print(f"wrote {os.path.normpath(QUICKSTART_OUT)}")


if __name__ == "__main__":
  main()
