//! Every transformation, optimizer, schedule and loss of `flax::optax` against real Optax
//! 0.2.8 (`scripts/golden/optax_vectors.py` writes `tests/data/optax.msgpack`): 10 steps on
//! the same parameters and gradients, the updates and parameters after each step, and the
//! final state's state dict, within 1e-6 (absolute, plus 1e-6 relative).

use flax::optax::{self, GradientTransformation, Schedule};
use flax::serialization::msgpack_restore;
use flax::tch::{Kind, Tensor};
use flax::tree::{self, Key, KeyPath, Tree};
use flax::{FrozenDict, Scalar, Value};

const STEPS: i64 = 10;
const TOLERANCE: f64 = 1e-6;

/// The golden script's parameter tree.
#[derive(Tree, Debug)]
struct Params {
    w: Tensor,
    b: Tensor,
    s: Tensor,
}

fn vectors() -> FrozenDict {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/optax.msgpack")).unwrap();
    match msgpack_restore(&bytes).unwrap() {
        Value::Dict(dict) => dict,
        other => panic!("optax.msgpack is not a dict: {other:?}"),
    }
}

fn golden(v: &FrozenDict, path: &[&str]) -> Tensor {
    v.tensor(path).unwrap_or_else(|| panic!("no golden tensor at {path:?}")).shallow_clone()
}

/// Fresh tensors (the transformations update their inputs in place).
fn params_at(v: &FrozenDict, path: &[&str], step: Option<i64>) -> Params {
    let leaf = |name: &str| {
        let mut full = path.to_vec();
        full.push(name);
        let t = golden(v, &full);
        step.map_or(t.copy(), |i| t.get(i).copy())
    };
    Params { w: leaf("w"), b: leaf("b"), s: leaf("s") }
}

/// Same shape, and every element within 1e-6 plus 1e-6 of its magnitude (float32 rounding
/// of values in the hundreds, as momentum sums reach, is above 1e-6 in absolute terms).
fn assert_close(name: &str, actual: &Tensor, expected: &Tensor) {
    assert_eq!(actual.size(), expected.size(), "{name}: shape");
    let (a, e) = (actual.to_kind(Kind::Double), expected.to_kind(Kind::Double));
    let difference = (&a - &e).abs();
    let excess = (&difference - e.abs() * TOLERANCE).max().double_value(&[]);
    assert!(
        excess <= TOLERANCE,
        "{name}: differs from Optax's by up to {}",
        difference.max().double_value(&[])
    );
}

fn assert_tree_close(name: &str, actual: &Params, expected: &Params) {
    for ((path, a), (_, e)) in
        tree::leaves_with_path(actual).into_iter().zip(tree::leaves_with_path(expected))
    {
        assert_close(&format!("{name}/{}", path.join("/")), a, e);
    }
}

/// Our state dict against the one Flax wrote for Optax's state: same keys, close values
/// (counts are host integers here, int32 arrays there).
fn assert_state_close(name: &str, actual: &Value, expected: &Value) {
    match (actual, expected) {
        (Value::Dict(a), Value::Dict(e)) => {
            let mut keys: Vec<&str> = a.keys().collect();
            let mut expected_keys: Vec<&str> = e.keys().collect();
            keys.sort_unstable();
            expected_keys.sort_unstable();
            assert_eq!(keys, expected_keys, "{name}: keys");
            for key in keys {
                assert_state_close(&format!("{name}/{key}"), a.get(key).unwrap(), e.get(key).unwrap());
            }
        }
        (Value::Scalar(Scalar::Int(count)), Value::Tensor(e)) => {
            assert_eq!(e.kind(), Kind::Int, "{name}: Optax's counts are int32");
            assert_eq!(*count, e.int64_value(&[]), "{name}");
        }
        (Value::Tensor(a), Value::Tensor(e)) => assert_close(name, a, e),
        (a, e) => panic!("{name}: {a:?} where Optax has {e:?}"),
    }
}

/// Runs `tx` for the golden steps and compares with the case `name`.
fn check<T: GradientTransformation<Params>>(name: &str, tx: T) {
    let v = vectors();
    let case = ["transforms", name];
    let mut params = params_at(&v, &["params"], None);
    let mut state = tx.init(&params).unwrap();
    for step in 0..STEPS {
        let grads = params_at(&v, &["grads"], Some(step));
        let (updates, new_state) = tx.update(grads, state, Some(&params)).unwrap();
        let expected = params_at(&v, &[&case[..], &["updates"]].concat(), Some(step));
        assert_tree_close(&format!("{name} step {step} updates"), &updates, &expected);
        params = optax::apply_updates(params, &updates).unwrap();
        let expected = params_at(&v, &[&case[..], &["params"]].concat(), Some(step));
        assert_tree_close(&format!("{name} step {step} params"), &params, &expected);
        state = new_state;
    }
    if let Some(expected) = v.get_path(&[&case[..], &["state"]].concat()) {
        assert_state_close(&format!("{name} state"), &tree::to_state_dict(&state), expected);
    }
}

/// The schedule the golden script's scheduled cases share.
fn schedule() -> Schedule {
    optax::warmup_cosine_decay_schedule(0.0, 0.1, 3, 10, 0.01, 1.0).unwrap()
}

/// The golden script's mask and labels: by the leaf's name, "b" apart.
fn is_b(path: &KeyPath<'_>) -> bool {
    path.keys().last() == Some(&Key::Name("b"))
}

#[test]
fn sgd_matches_optax() {
    check("sgd", optax::sgd(0.1));
    check("sgd_momentum", optax::sgd(0.1).momentum(0.9));
    check("sgd_nesterov", optax::sgd(0.1).momentum(0.9).nesterov(true));
    check("sgd_schedule", optax::sgd(schedule()).momentum(0.5));
}

#[test]
fn adam_matches_optax() {
    check("adam", optax::adam(0.05));
    check("adam_nesterov", optax::adam(0.05).b1(0.8).b2(0.99).nesterov(true));
    check("adam_eps_root", optax::adam(0.05).eps(1e-3).eps_root(1e-4));
    check("adam_schedule", optax::adam(schedule()));
}

#[test]
fn adamw_matches_optax() {
    check("adamw", optax::adamw(0.05).weight_decay(0.1));
    check("adamw_schedules", optax::adamw(schedule()).weight_decay(optax::linear_schedule(0.5, 0.0, 10, 0)));
    check("adamw_mask", optax::adamw(0.05).weight_decay(0.1).mask(|path, _| !is_b(path)));
}

#[test]
fn rmsprop_matches_optax() {
    check("rmsprop", optax::rmsprop(0.05));
    check("rmsprop_centered", optax::rmsprop(0.05).decay(0.8).centered(true));
    check("rmsprop_momentum", optax::rmsprop(0.05).momentum(0.9).nesterov(true).eps_in_sqrt(false));
    check("rmsprop_bias_correction", optax::rmsprop(0.05).bias_correction(true).initial_scale(0.1));
}

#[test]
fn adagrad_matches_optax() {
    check("adagrad", optax::adagrad(0.1));
    check("adagrad_zero_init", optax::adagrad(0.1).initial_accumulator_value(0.0).eps(0.0));
}

#[test]
fn lamb_matches_optax() {
    check("lamb", optax::lamb(0.05));
    check("lamb_weight_decay", optax::lamb(0.05).weight_decay(0.1));
}

#[test]
fn transformations_match_optax() {
    check("scale", optax::scale(-0.5));
    check("scale_by_schedule", optax::scale_by_schedule(schedule()));
    check("trace", optax::trace(0.9));
    check("trace_nesterov", optax::trace(0.5).nesterov(true));
    check("scale_by_adam", optax::scale_by_adam());
    check("add_decayed_weights", optax::add_decayed_weights(0.1));
    check("add_decayed_weights_schedule", optax::add_decayed_weights(optax::linear_schedule(0.2, 0.0, 8, 0)));
    check("clip_by_global_norm", optax::clip_by_global_norm(5.0));
    check("clip", optax::clip(0.7));
    check("set_to_zero", optax::set_to_zero());
}

#[test]
fn combinators_match_optax() {
    check(
        "chain",
        optax::chain((optax::clip_by_global_norm(5.0), optax::scale_by_adam(), optax::scale(-0.05))),
    );
    check("masked", optax::masked(optax::sgd(0.1).momentum(0.9), |path, _| !is_b(path)));
    check(
        "multi_transform",
        optax::multi_transform(
            [("adam", optax::adam(0.05).boxed()), ("frozen", optax::set_to_zero().boxed())],
            |path, _| if is_b(path) { "frozen" } else { "adam" },
        ),
    );
}

#[test]
fn schedules_match_optax() {
    let v = vectors();
    let schedules: [(&str, Schedule); 11] = [
        ("constant", optax::constant_schedule(0.3)),
        ("linear", optax::linear_schedule(1.0, 0.1, 5, 2)),
        ("polynomial", optax::polynomial_schedule(1.0, 0.2, 2.0, 6, 1)),
        ("cosine_decay", optax::cosine_decay_schedule(1.0, 7, 0.1, 1.0).unwrap()),
        ("cosine_decay_exponent", optax::cosine_decay_schedule(0.5, 9, 0.0, 2.0).unwrap()),
        ("warmup_cosine_decay", optax::warmup_cosine_decay_schedule(0.0, 1.0, 3, 10, 0.1, 1.0).unwrap()),
        ("exponential_decay", optax::exponential_decay(1.0, 3, 0.5, 1, false, None)),
        ("exponential_decay_staircase", optax::exponential_decay(2.0, 3, 0.5, 0, true, Some(0.4))),
        ("exponential_growth", optax::exponential_decay(0.1, 2, 1.5, 0, false, Some(0.5))),
        (
            "piecewise_constant",
            optax::piecewise_constant_schedule(1.0, [(3, 0.5), (6, 0.1), (10, 2.0)]).unwrap(),
        ),
        (
            "join_schedules",
            optax::join_schedules(
                vec![
                    optax::constant_schedule(1.0),
                    optax::linear_schedule(1.0, 0.0, 4, 0),
                    optax::constant_schedule(0.25),
                ],
                vec![4, 9],
            )
            .unwrap(),
        ),
    ];
    for (name, schedule) in schedules {
        let expected = golden(&v, &["schedules", name]);
        let values: Vec<f32> = (0..expected.size()[0]).map(|count| schedule.value(count) as f32).collect();
        assert_close(name, &Tensor::from_slice(&values), &expected);
    }
}

#[test]
fn losses_match_optax() {
    use optax::losses;
    let v = vectors();
    let input = |name: &str| golden(&v, &["losses", name]);
    let (logits, predictions, targets) = (input("logits"), input("predictions"), input("targets"));
    let cases = [
        ("softmax_cross_entropy", losses::softmax_cross_entropy(&logits, &input("probs"))),
        (
            "softmax_cross_entropy_with_integer_labels",
            losses::softmax_cross_entropy_with_integer_labels(&logits, &input("int_labels")),
        ),
        (
            "sigmoid_binary_cross_entropy",
            losses::sigmoid_binary_cross_entropy(&logits, &input("binary_labels")),
        ),
        ("l2_loss", losses::l2_loss(&predictions, Some(&targets))),
        ("l2_loss_no_targets", losses::l2_loss(&predictions, None)),
        ("huber_loss", losses::huber_loss(&predictions, Some(&targets), 1.0)),
        ("huber_loss_delta", losses::huber_loss(&predictions, Some(&targets), 0.5)),
    ];
    for (name, loss) in cases {
        assert_close(name, &loss.unwrap(), &input(name));
    }
}
