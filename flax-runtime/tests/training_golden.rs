//! `flax::training` against real Flax 0.12.8, Optax 0.2.8 and clu 0.0.12
//! (`scripts/golden/training_vectors.py` writes `tests/data/training.msgpack`):
//! EarlyStopping sequences, the three lr_schedule functions, clu's Average/Accuracy/Collection,
//! a Flax TrainState subclass serialized after three SGD-momentum steps, and the spec's Flax
//! Basics linear regression run end to end.

use flax::optax;
use flax::serialization::{from_bytes, msgpack_restore, to_bytes};
use flax::tch::{Kind, Tensor};
use flax::training::lr_schedule::{
    create_constant_learning_rate_schedule, create_cosine_learning_rate_schedule,
    create_stepped_learning_rate_schedule,
};
use flax::training::metrics::{Accuracy, Average, Collection, Loss, Metric};
use flax::training::{EarlyStopping, TrainState};
use flax::tree::{self, Tree};
use flax::{FrozenDict, Value};

const TOLERANCE: f64 = 1e-6;

fn vectors() -> FrozenDict {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/training.msgpack")).unwrap();
    match msgpack_restore(&bytes).unwrap() {
        Value::Dict(dict) => dict,
        other => panic!("training.msgpack is not a dict: {other:?}"),
    }
}

fn tensor(v: &FrozenDict, path: &[&str]) -> Tensor {
    v.tensor(path).unwrap_or_else(|| panic!("no golden tensor at {path:?}")).shallow_clone()
}

fn f64s(v: &FrozenDict, path: &[&str]) -> Vec<f64> {
    Vec::try_from(tensor(v, path).to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn scalar(v: &FrozenDict, path: &[&str]) -> f64 {
    tensor(v, path).to_kind(Kind::Double).double_value(&[])
}

fn close(a: f64, e: f64) -> bool {
    (a - e).abs() <= TOLERANCE * (1.0 + e.abs()) || (a.is_infinite() && a == e)
}

fn assert_tensor_close(name: &str, actual: &Tensor, expected: &Tensor) {
    assert_eq!(actual.size(), expected.size(), "{name}: shape");
    let a = Vec::<f64>::try_from(actual.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    let e = Vec::<f64>::try_from(expected.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    for (i, (a, e)) in a.iter().zip(&e).enumerate() {
        assert!(close(*a, *e), "{name}[{i}]: {a} != Flax's {e}");
    }
}

#[test]
fn early_stopping_follows_flax_update_by_update() {
    let v = vectors();
    let cases = v.get_dict("early_stopping").unwrap();
    assert_eq!(cases.len(), 5);
    for (name, _) in cases.iter() {
        let at = |field: &str| f64s(cases, &[name, field]);
        let mut state = EarlyStopping::new(
            scalar(cases, &[name, "min_delta"]),
            scalar(cases, &[name, "patience"]) as i64,
        );
        for (i, metric) in at("metrics").into_iter().enumerate() {
            let improved;
            (improved, state) = state.update(metric);
            let context = format!("{name}, update {i} ({metric})");
            assert_eq!(improved, at("has_improved")[i] != 0.0, "{context}: has_improved");
            assert_eq!(state.best_metric, at("best_metric")[i], "{context}: best_metric");
            assert_eq!(state.patience_count, at("patience_count")[i] as i64, "{context}: patience_count");
            assert_eq!(state.should_stop, at("should_stop")[i] != 0.0, "{context}: should_stop");
        }
    }
}

#[test]
fn lr_schedules_match_flax_at_every_step() {
    let v = vectors();
    let cases = v.get_dict("lr_schedule").unwrap();
    assert_eq!(cases.len(), 7);
    for (name, _) in cases.iter() {
        let args = cases.get_path(&[name, "args"]).and_then(Value::as_dict).unwrap();
        let arg = |key: &str| args.get(key).map(|_| scalar(args, &[key]));
        let base = arg("base_learning_rate").unwrap();
        let steps_per_epoch = arg("steps_per_epoch").unwrap() as i64;
        let warmup = arg("warmup_length").unwrap_or(0.0);
        let schedule = if name.starts_with("constant") {
            create_constant_learning_rate_schedule(base, steps_per_epoch, warmup)
        } else if name.starts_with("stepped") {
            let steps: Vec<(f64, f64)> =
                f64s(args, &["lr_sched_steps"]).chunks_exact(2).map(|s| (s[0], s[1])).collect();
            create_stepped_learning_rate_schedule(base, steps_per_epoch, &steps, warmup)
        } else {
            create_cosine_learning_rate_schedule(
                base,
                steps_per_epoch,
                arg("halfcos_epochs").unwrap(),
                warmup,
            )
        };
        for (step, expected) in f64s(cases, &[name, "values"]).into_iter().enumerate() {
            let actual = schedule.value(step as i64);
            assert!(close(actual, expected), "{name} at step {step}: {actual} != Flax's {expected}");
        }
    }
}

#[derive(Tree, Collection)]
struct Metrics {
    accuracy: Accuracy,
    loss: Average<Loss>,
}

#[test]
fn clu_metrics_match_after_merging_batches() {
    let v = vectors();
    for case in ["quickstart", "masked"] {
        let batches = v.get_path(&["metrics", case, "batches"]).and_then(Value::as_dict).unwrap();
        let mut metrics = Metrics::empty();
        for (i, _) in batches.iter() {
            let get = |key: &str| batches.tensor(&[i, key]).map(Tensor::shallow_clone);
            let (logits, labels, loss) =
                (get("logits").unwrap(), get("labels").unwrap(), get("loss").unwrap());
            let mut outputs = vec![("logits", &logits), ("labels", &labels), ("loss", &loss)];
            let mask = get("mask");
            outputs.extend(mask.as_ref().map(|m| ("mask", m)));
            metrics = metrics.merge(&Metrics::single_from_model_output(&outputs).unwrap()).unwrap();
        }
        let at = |path: &[&str]| tensor(&v, &[&["metrics", case], path].concat());
        assert_tensor_close(
            &format!("{case} accuracy.total"),
            &metrics.accuracy.total,
            &at(&["accuracy", "total"]),
        );
        assert_tensor_close(
            &format!("{case} accuracy.count"),
            &metrics.accuracy.count,
            &at(&["accuracy", "count"]),
        );
        assert_tensor_close(&format!("{case} loss.total"), &metrics.loss.total, &at(&["loss", "total"]));
        assert_tensor_close(&format!("{case} loss.count"), &metrics.loss.count, &at(&["loss", "count"]));
        let computed = metrics.compute().unwrap();
        assert_eq!(computed.keys().copied().collect::<Vec<_>>(), ["accuracy", "loss"]);
        for (name, value) in &computed {
            assert_tensor_close(&format!("{case} compute {name}"), value, &at(&["computed", name]));
        }
    }
}

#[test]
fn train_state_subclass_round_trips_with_flax_bytes() {
    #[derive(Tree)]
    struct Extra {
        batch_stats: FrozenDict,
    }
    let v = vectors();
    let golden = v.get_dict("train_state").unwrap();
    let dict = |key: &str| golden.get_dict(key).unwrap().clone();
    let copied = |d: FrozenDict| tree::tree_map(&d, |t| Ok(t.copy())).unwrap();
    let params = copied(dict("initial_params"));
    let extra = Extra { batch_stats: copied(dict("batch_stats")) };
    let mut state = TrainState::create_with((), params, optax::sgd(0.1).momentum(0.9), extra).unwrap();
    for (_, grads) in dict("grads").iter() {
        state = state.apply_gradients(copied(grads.as_dict().unwrap().clone())).unwrap();
    }
    assert_eq!(state.step, 3);

    let flax_bytes = Vec::<u8>::try_from(tensor(golden, &["bytes"])).unwrap();
    let from_flax = from_bytes(&state, &flax_bytes).unwrap();
    assert_eq!(from_flax.step, 3);
    let (ours, theirs) = (tree::leaves_with_path(&state), tree::leaves_with_path(&from_flax));
    assert_eq!(ours.len(), 6, "params (2), momentum trace (2) and batch_stats (2)");
    for ((path, a), (other_path, e)) in ours.iter().zip(&theirs) {
        assert_eq!(path, other_path);
        assert_tensor_close(&path.join("/"), a, e);
    }
    // Flax's state dict layout, byte for byte once the values agree.
    let ours = to_bytes(&from_flax).unwrap();
    assert_eq!(ours, flax_bytes);
}

#[test]
fn metric_errors_are_typed() {
    let logits = Tensor::zeros([2, 3], (Kind::Float, flax::tch::Device::Cpu));
    let float_labels = Tensor::zeros([2], (Kind::Float, flax::tch::Device::Cpu));
    let err = Accuracy::from_model_output(&[("logits", &logits), ("labels", &float_labels)]).unwrap_err();
    assert!(matches!(err, flax::Error::Value(_)), "{err}");
    let err = Accuracy::from_model_output(&[("logits", &logits)]).unwrap_err();
    assert!(err.to_string().contains("\"labels\""), "{err}");
    let one_label = Tensor::zeros([1], (Kind::Int64, flax::tch::Device::Cpu));
    let err = Accuracy::from_model_output(&[("logits", &logits), ("labels", &one_label)]).unwrap_err();
    assert!(err.to_string().contains("do not match"), "{err}");
    let labels = Tensor::zeros([2], (Kind::Int64, flax::tch::Device::Cpu));
    let bad_mask = Tensor::ones([3], (Kind::Bool, flax::tch::Device::Cpu));
    let err = Accuracy::from_model_output(&[("logits", &logits), ("labels", &labels), ("mask", &bad_mask)])
        .unwrap_err();
    assert!(err.to_string().contains("same leading dimension"), "{err}");
}

/// The spec's Flax Basics linear regression (`examples/examples/linear_regression.rs`): the
/// data and initial parameters from JAX's random bits, 101 gradient-descent steps written by
/// hand over the variable tree, then 101 Adam steps; every loss and the final parameters
/// equal JAX's.
#[test]
fn flax_basics_linear_regression_matches_jax() {
    use flax::prelude::*;
    use flax::random::normal;

    let v = vectors();
    let golden = v.get_dict("flax_basics").unwrap();
    let options = (Kind::Float, flax::tch::Device::Cpu);
    let model = nn::Dense::new(5);
    let (key1, key2) = PRNGKey::new(0).split2();
    let mut params = model.init(key2, &normal(key1, &[10], options).unwrap()).unwrap();
    let (k1, k2) = PRNGKey::new(0).split2();
    let (w, b) = (normal(k1, &[10, 5], options).unwrap(), normal(k2, &[5], options).unwrap());
    let (key_sample, key_noise) = k1.split2();
    let x = normal(key_sample, &[20, 10], options).unwrap();
    let y = x.matmul(&w) + &b + normal(key_noise, &[20, 5], options).unwrap() * 0.1;
    let mse = |params: &Variables| -> flax::Result<Tensor> {
        let error = &y - model.apply(params, &x)?;
        Ok(error.square().sum_dim_intlist([-1i64].as_slice(), false, Kind::Float).mean(Kind::Float) / 2.0)
    };
    let true_params = FrozenDict::from_iter([(
        "params".to_owned(),
        Value::Dict(FrozenDict::from_iter([
            ("bias".to_owned(), Value::Tensor(b)),
            ("kernel".to_owned(), Value::Tensor(w)),
        ])),
    )]);
    assert_tensor_close("true loss", &mse(&true_params).unwrap(), &tensor(golden, &["true_loss"]));

    let expected = f64s(golden, &["gd_losses"]);
    for (i, expected) in expected.into_iter().enumerate() {
        let (loss, grads) = flax::value_and_grad(&params, mse).unwrap();
        params = tree::tree_zip_map(&params, &grads, |p, g| Ok(p - g * 0.3)).unwrap();
        assert!(
            close(loss.double_value(&[]), expected),
            "gradient descent step {i}: {loss} != JAX's {expected}"
        );
    }
    let tx = optax::adam(0.3);
    let mut opt_state = optax::GradientTransformation::init(&tx, &params).unwrap();
    for (i, expected) in f64s(golden, &["adam_losses"]).into_iter().enumerate() {
        let (loss, grads) = flax::value_and_grad(&params, mse).unwrap();
        let (updates, next) = optax::GradientTransformation::update(&tx, grads, opt_state, None).unwrap();
        (params, opt_state) = (optax::apply_updates(params, &updates).unwrap(), next);
        assert!(close(loss.double_value(&[]), expected), "Adam step {i}: {loss} != JAX's {expected}");
    }
    for name in ["bias", "kernel"] {
        let actual = params.tensor(&["params", name]).unwrap();
        assert_tensor_close(name, actual, &tensor(golden, &["params", name]));
    }
}
