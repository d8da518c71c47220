//! `TrainState`: create, apply_gradients, extension with `#[derive(Tree)]` extra fields,
//! replacement by struct update syntax, and its state dict (Flax's layout, strict restore).
//! The numerics against real Flax are in `training_golden.rs`.

use flax::optax::{self, GradientTransformation};
use flax::prelude::*;
use flax::serialization::{from_bytes, to_bytes};
use flax::training::metrics::{Accuracy, Average, Collection, Loss};
use flax::training::TrainState;
use flax::tree::{self, Tree};
use flax::{Error, Value};

#[module]
struct Linear;

#[module]
impl Linear {
    #[compact]
    fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(2).call(cx, x)
    }
}

#[derive(Tree, Collection)]
struct Metrics {
    accuracy: Accuracy,
    loss: Average<Loss>,
}

/// The Flax subclass of the dropout and BatchNorm guides, plus the quickstart's metrics.
#[derive(Tree)]
struct Extra {
    batch_stats: FrozenDict,
    metrics: Metrics,
    dropout_key: PRNGKey,
}

fn x() -> Tensor {
    Tensor::from_slice(&[1.0f32, -1.0, 0.5, 2.0, 0.0, 1.0]).reshape([2, 3])
}

fn params_of(variables: &Variables) -> FrozenDict {
    variables.get_dict("params").unwrap().clone()
}

fn variables_of(params: &FrozenDict) -> Variables {
    flax::frozen_dict! { "params": params }
}

fn loss(model: &Linear, params: &FrozenDict) -> Result<Tensor> {
    let logits = model.apply(&variables_of(params), &x())?;
    let labels = Tensor::from_slice(&[0i64, 1]);
    Ok(optax::losses::softmax_cross_entropy_with_integer_labels(&logits, &labels)?.mean(Kind::Float))
}

fn copied(params: &FrozenDict) -> FrozenDict {
    tree::tree_map(params, |t| Ok(t.copy())).unwrap()
}

#[test]
fn create_then_apply_gradients_steps_the_optimizer() {
    let model = Linear::new();
    let params = params_of(&model.init(PRNGKey::new(0), &x()).unwrap());
    let initial_loss = loss(&model, &params).unwrap().double_value(&[]);
    // The same two steps by hand, with the optimizer alone.
    let tx = optax::sgd(0.1).momentum(0.9);
    let mut expected = copied(&params);
    let mut opt_state = tx.init(&expected).unwrap();
    let mut state = TrainState::create(model, params, tx.clone()).unwrap();
    assert_eq!(state.step, 0);
    for _ in 0..2 {
        let grads = flax::grad(&state.params, |p| loss(&state.apply_fn, p)).unwrap();
        state = state.apply_gradients(grads).unwrap();
        let grads = flax::grad(&expected, |p| loss(&state.apply_fn, p)).unwrap();
        let (updates, next) = tx.update(grads, opt_state, Some(&expected)).unwrap();
        expected = optax::apply_updates(expected, &updates).unwrap();
        opt_state = next;
    }
    assert_eq!(state.step, 2);
    let (actual, expected) = (tree::leaves_with_path(&state.params), tree::leaves_with_path(&expected));
    // `apply_gradients` runs SGD as one fused kernel: equal up to fused multiply-adds.
    for ((path, a), (_, e)) in actual.iter().zip(&expected) {
        assert!(a.allclose(e, 1e-6, 1e-7, false), "{path:?}");
    }
    assert!(loss(&state.apply_fn, &state.params).unwrap().double_value(&[]) < initial_loss);
}

/// The data pointers of a tree's leaves, in order.
fn data_ptrs<T: Tree>(tree: &T) -> Vec<usize> {
    tree::leaves(tree).iter().map(|t| t.data_ptr() as usize).collect()
}

/// Flax's state is immutable: params kept aside (`best = state.params`, for early stopping)
/// keep their values however the training goes on. Here the optimizer updates in place, so a
/// clone shares the tensors until `apply_gradients` copies what is shared; the usual loop,
/// where nothing else holds the state, is updated in place with no copies.
#[test]
fn params_kept_aside_keep_their_values_and_the_usual_loop_copies_nothing() {
    let model = Linear::new();
    let params = params_of(&model.init(PRNGKey::new(0), &x()).unwrap());
    let mut state = TrainState::create(model, params, optax::adam(0.1)).unwrap();
    for step in 0..3 {
        let before = data_ptrs(&state);
        let grads = flax::grad(&state.params, |p| loss(&state.apply_fn, p)).unwrap();
        state = state.apply_gradients(grads).unwrap();
        // The first step may move a parameter into its gradient's layout (`optax/fused.rs`).
        assert!(step == 0 || data_ptrs(&state) == before, "updated in place");
    }
    let best_params = state.params.clone();
    let kept = copied(&best_params);
    let grads = flax::grad(&state.params, |p| loss(&state.apply_fn, p)).unwrap();
    let state = state.apply_gradients(grads).unwrap();
    for ((now, then), stepped) in
        tree::leaves(&best_params).iter().zip(tree::leaves(&kept)).zip(tree::leaves(&state.params))
    {
        assert!(now.equal(then), "the kept params changed");
        assert!(!stepped.equal(then), "the step updated the params");
    }
}

/// The transfer-learning guide's state (a `multi_transform` whose labels are not in sorted
/// order) with its params kept aside: copying the shared params leaves the optimizer state's
/// label order alone, so the next steps still find their labels.
#[test]
fn a_multi_transform_state_steps_while_its_params_are_kept_aside() {
    let model = Linear::new();
    let params = params_of(&model.init(PRNGKey::new(0), &x()).unwrap());
    let tx = optax::multi_transform(
        [("trainable", optax::adam(0.1).boxed()), ("frozen", optax::set_to_zero().boxed())],
        |path, _| if path.to_string().ends_with("bias") { "frozen" } else { "trainable" },
    );
    let mut state = TrainState::create(model, params, tx).unwrap();
    let kept = state.params.clone();
    let bias = kept.tensor(&["Dense_0", "bias"]).unwrap().copy();
    for _ in 0..3 {
        let grads = flax::grad(&state.params, |p| loss(&state.apply_fn, p)).unwrap();
        state = state.apply_gradients(grads).unwrap();
    }
    assert!(state.params.tensor(&["Dense_0", "bias"]).unwrap().equal(&bias), "frozen");
    assert!(!state
        .params
        .tensor(&["Dense_0", "kernel"])
        .unwrap()
        .equal(kept.tensor(&["Dense_0", "kernel"]).unwrap()));
}

/// The Optax guide's loop as a Flax user writes it: two optimizers from one `params`, each
/// on its own clone. `apply_updates` copies a shared leaf before adding to it, so neither
/// loop sees the other's steps and `params` keeps its initial values.
#[test]
fn apply_updates_on_a_clone_leaves_the_original_alone() {
    let model = Linear::new();
    let params = params_of(&model.init(PRNGKey::new(0), &x()).unwrap());
    let initial = copied(&params);
    let tx = optax::sgd(0.1);
    let (mut p1, mut p2) = (params.clone(), params.clone());
    for step in 0..3 {
        let grads = flax::grad(&p1, |p| loss(&model, p)).unwrap();
        let (updates, _) = tx.update(grads, tx.init(&p1).unwrap(), Some(&p1)).unwrap();
        let before = data_ptrs(&p1);
        p1 = optax::apply_updates(p1, &updates).unwrap();
        // The first step copies the leaves `params` and `p2` share; then p1 is its own.
        assert_eq!(data_ptrs(&p1) == before, step > 0, "step {step}");
    }
    let grads = flax::grad(&p2, |p| loss(&model, p)).unwrap();
    let (updates, _) = tx.update(grads, tx.init(&p2).unwrap(), Some(&p2)).unwrap();
    p2 = optax::apply_updates(p2, &updates).unwrap();
    for ((original, start), (a, b)) in tree::leaves(&params)
        .iter()
        .zip(tree::leaves(&initial))
        .zip(tree::leaves(&p1).iter().zip(tree::leaves(&p2)))
    {
        assert!(original.equal(start), "params changed");
        assert!(!a.equal(b), "p1 took three steps, p2 one");
    }
}

#[test]
fn extra_fields_are_replaced_by_struct_update_and_saved_at_the_top_level() {
    let model = Linear::new();
    let params = params_of(&model.init(PRNGKey::new(0), &x()).unwrap());
    let stats = FrozenDict::from_iter([(
        "mean".to_owned(),
        Value::Tensor(Tensor::zeros([2], (Kind::Float, Device::Cpu))),
    )]);
    let extra = Extra { batch_stats: stats, metrics: Metrics::empty(), dropout_key: PRNGKey::new(7) };
    let state = TrainState::create_with(model, params, optax::adam(1e-3), extra).unwrap();

    let grads = flax::grad(&state.params, |p| loss(&state.apply_fn, p)).unwrap();
    let logits = state.apply_fn.apply(&variables_of(&state.params), &x()).unwrap();
    let labels = Tensor::from_slice(&[0i64, 1]);
    let batch_loss = Tensor::from(0.25f32);
    let update =
        Metrics::single_from_model_output(&[("logits", &logits), ("labels", &labels), ("loss", &batch_loss)])
            .unwrap();
    let state = state.apply_gradients(grads).unwrap();
    let metrics = state.extra.metrics.merge(&update).unwrap();
    let state = TrainState { extra: Extra { metrics, ..state.extra }, ..state };
    assert_eq!(state.step, 1);
    assert_eq!(state.extra.dropout_key, PRNGKey::new(7));
    assert_eq!(state.extra.metrics.loss.count.int64_value(&[]), 1);

    let saved = tree::to_state_dict(&state);
    let keys: Vec<&str> = saved.as_dict().unwrap().keys().collect();
    assert_eq!(keys, ["step", "params", "opt_state", "batch_stats", "metrics", "dropout_key"]);
    let paths: Vec<String> = tree::leaves_with_path(&state).into_iter().map(|(p, _)| p.join("/")).collect();
    assert!(paths.contains(&"batch_stats/mean".to_owned()), "{paths:?}");
    assert!(paths.contains(&"metrics/loss/total".to_owned()), "{paths:?}");

    // A round trip through Flax's msgpack restores every field into a fresh template.
    let bytes = to_bytes(&state).unwrap();
    let template = TrainState::create_with(
        Linear::new(),
        tree::tree_map(&state.params, |t| Ok(t.zeros_like())).unwrap(),
        optax::adam(1e-3),
        Extra {
            batch_stats: state.extra.batch_stats.clone(),
            metrics: Metrics::empty(),
            dropout_key: PRNGKey::new(0),
        },
    )
    .unwrap();
    let restored = from_bytes(&template, &bytes).unwrap();
    assert_eq!(restored.step, 1);
    assert_eq!(restored.extra.dropout_key, PRNGKey::new(7), "the key is saved, not the template's");
    assert_eq!(restored.extra.metrics.loss.count.int64_value(&[]), 1);
    for ((path, a), (_, e)) in tree::leaves_with_path(&restored).iter().zip(tree::leaves_with_path(&state)) {
        assert!(a.equal(e), "{path:?}");
    }
}

#[test]
fn restore_reports_every_missing_and_unexpected_field() {
    let params = FrozenDict::from_iter([(
        "w".to_owned(),
        Value::Tensor(Tensor::ones([2], (Kind::Float, Device::Cpu))),
    )]);
    #[derive(Tree)]
    struct Stats {
        batch_stats: FrozenDict,
    }
    let with_stats = TrainState::create_with(
        (),
        params.clone(),
        optax::sgd(0.1),
        Stats { batch_stats: FrozenDict::new() },
    )
    .unwrap();
    let plain = TrainState::create((), params, optax::sgd(0.1)).unwrap();
    // A plain state's bytes lack batch_stats; a state with stats has a key the plain one lacks.
    let err = from_bytes(&with_stats, &to_bytes(&plain).unwrap()).err().unwrap();
    assert!(matches!(&err, Error::StateDictMismatch { missing, .. } if missing == &["batch_stats"]), "{err}");
    let err = from_bytes(&plain, &to_bytes(&with_stats).unwrap()).err().unwrap();
    assert!(
        matches!(&err, Error::StateDictMismatch { unexpected, .. } if unexpected == &["batch_stats"]),
        "{err}"
    );
}

#[test]
fn an_extra_field_may_not_shadow_a_base_field() {
    #[derive(Tree)]
    struct Clash {
        step: i64,
    }
    let params = vec![Tensor::ones([1], (Kind::Float, Device::Cpu))];
    let err = TrainState::create_with((), params, optax::sgd(0.1), Clash { step: 3 }).err().unwrap();
    assert!(err.to_string().contains("\"step\""), "{err}");
}

#[test]
fn extra_fields_that_are_not_a_struct_sit_under_extra() {
    let params = vec![Tensor::ones([1], (Kind::Float, Device::Cpu))];
    let state = TrainState::create_with((), params, optax::sgd(0.1), Tensor::from(2.0f32)).unwrap();
    let saved = tree::to_state_dict(&state);
    let keys: Vec<&str> = saved.as_dict().unwrap().keys().collect();
    assert_eq!(keys, ["step", "params", "opt_state", "extra"]);
    let restored = from_bytes(&state, &to_bytes(&state).unwrap()).unwrap();
    assert_eq!(restored.extra.double_value(&[]), 2.0);
}
