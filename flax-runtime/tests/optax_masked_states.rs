//! `optax::masked` and `optax::multi_transform` states in Optax's layout, against real Optax
//! 0.2.8 (`scripts/golden/optax_masked_states.py` writes `tests/data/optax_masked_states.msgpack`):
//! the inner states mirror the parameters with `{}` (Flax's form of `optax.MaskedNode()`) at
//! the leaves another transformation owns, so a state restored from Optax's bytes continues
//! the steps with Optax's updates, and writes Optax's bytes back.

use flax::optax::{self, GradientTransformation, ScaleByAdamState};
use flax::serialization::{from_bytes, msgpack_restore, to_bytes};
use flax::tch::{Kind, Tensor};
use flax::tree::{self, Key, KeyPath};
use flax::{FrozenDict, Scalar, Value};

const TOLERANCE: f64 = 1e-6;
/// The steps the golden script saved the state after (0 is `init`), and the last step.
const SAVED_AT: [i64; 3] = [0, 3, 6];
const STEPS: i64 = 6;

fn vectors() -> FrozenDict {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/optax_masked_states.msgpack");
    match msgpack_restore(&std::fs::read(path).unwrap()).unwrap() {
        Value::Dict(dict) => dict,
        other => panic!("optax_masked_states.msgpack is not a dict: {other:?}"),
    }
}

fn dict<'v>(v: &'v FrozenDict, path: &[&str]) -> &'v FrozenDict {
    v.get_path(path).and_then(Value::as_dict).unwrap_or_else(|| panic!("no golden dict at {path:?}"))
}

/// Step `step` of a stacked tree, as fresh tensors (transformations update their inputs in
/// place).
fn at(stacked: &FrozenDict, step: i64) -> FrozenDict {
    tree::tree_map(stacked, |t| Ok(t.get(step).copy())).unwrap()
}

/// The bytes Optax's state had after `step` steps (`to_bytes(opt_state)`).
fn optax_bytes(v: &FrozenDict, case: &str, step: i64) -> Vec<u8> {
    match v.get_path(&[case, &format!("state_{step}")]) {
        Some(Value::Scalar(Scalar::Bytes(bytes))) => bytes.clone(),
        other => panic!("{case}: no state bytes after step {step}: {other:?}"),
    }
}

fn is_backbone(path: &KeyPath<'_>) -> bool {
    path.keys().contains(&Key::Name("backbone"))
}

/// The guide's freezing optimizer (spec L3591-3901), as the golden script builds it.
fn multi_transform() -> optax::MultiTransform {
    optax::multi_transform(
        [("trainable", optax::adam(5e-3).boxed()), ("frozen", optax::set_to_zero().boxed())],
        |path, _| if is_backbone(path) { "frozen" } else { "trainable" },
    )
}

fn masked() -> impl GradientTransformation<FrozenDict, State = optax::MaskedState<AdamState>> {
    optax::masked(optax::adam(0.05), |path, _| path.keys().contains(&Key::Name("head")))
}

/// `optax.adam`'s state over a masked tree: `scale_by_adam`'s, then the learning rate's.
type AdamState = (ScaleByAdamState<Value>, ());

fn assert_close(name: &str, actual: &Tensor, expected: &Tensor) {
    assert_eq!(actual.size(), expected.size(), "{name}: shape");
    let difference = (actual.to_kind(Kind::Double) - expected.to_kind(Kind::Double)).abs().max();
    let difference = difference.double_value(&[]);
    assert!(difference <= TOLERANCE, "{name}: differs from Optax's by {difference}");
}

fn assert_trees_close(name: &str, actual: &FrozenDict, expected: &FrozenDict) {
    let (actual, expected) = (tree::leaves_with_path(actual), tree::leaves_with_path(expected));
    assert_eq!(actual.len(), expected.len(), "{name}: leaves");
    for ((path, a), (expected_path, e)) in actual.into_iter().zip(expected) {
        assert_eq!(path, expected_path, "{name}");
        assert_close(&format!("{name}/{}", path.join("/")), a, e);
    }
}

/// Bytes that are Optax's up to the float32 rounding of the moments (libtorch's `lerp` and
/// XLA's `(1 - b) * g + b * m` round differently in the last bit): the same length, and
/// decoded, the same keys in the same order, the same dtypes and shapes, and values within
/// 1e-6.
fn assert_same_bytes_but_rounding(name: &str, written: &[u8], optax: &[u8]) {
    assert_eq!(written.len(), optax.len(), "{name}: length");
    assert_same_values(name, &msgpack_restore(written).unwrap(), &msgpack_restore(optax).unwrap());
}

fn assert_same_values(name: &str, written: &Value, optax: &Value) {
    match (written, optax) {
        (Value::Dict(w), Value::Dict(o)) => {
            assert_eq!(w.keys().collect::<Vec<_>>(), o.keys().collect::<Vec<_>>(), "{name}: keys");
            for ((key, w), (_, o)) in w.iter().zip(o.iter()) {
                assert_same_values(&format!("{name}/{key}"), w, o);
            }
        }
        (Value::Tensor(w), Value::Tensor(o)) => {
            assert_eq!(w.kind(), o.kind(), "{name}: dtype");
            assert_close(name, w, o);
        }
        (w, o) => panic!("{name}: {w:?} where Optax has {o:?}"),
    }
}

/// Runs `tx` from Optax's state after `from` steps to the last step, checking the updates
/// and parameters of each step and the bytes of the state after it: the state restored from
/// Optax's bytes writes them back unchanged, and the states after the following steps write
/// Optax's bytes up to the rounding of the moments.
fn continue_from<T: GradientTransformation<FrozenDict>>(case: &str, tx: &T, from: i64) -> T::State {
    let v = vectors();
    let initial = dict(&v, &["params"]).clone();
    let template = tx.init(&initial).unwrap();
    let mut state = from_bytes(&template, &optax_bytes(&v, case, from)).unwrap();
    assert_eq!(to_bytes(&state).unwrap(), optax_bytes(&v, case, from), "{case}: restored after step {from}");
    let mut params = if from == 0 { initial } else { at(dict(&v, &[case, "params"]), from - 1) };
    for step in from..STEPS {
        let grads = at(dict(&v, &["grads"]), step);
        let (updates, next) = tx.update(grads, state, Some(&params)).unwrap();
        assert_trees_close(&format!("{case} step {step}"), &updates, &at(dict(&v, &[case, "updates"]), step));
        params = optax::apply_updates(params, &updates).unwrap();
        assert_trees_close(&format!("{case} params {step}"), &params, &at(dict(&v, &[case, "params"]), step));
        state = next;
        if SAVED_AT.contains(&(step + 1)) {
            let name = format!("{case}: the state after step {}", step + 1);
            assert_same_bytes_but_rounding(
                &name,
                &to_bytes(&state).unwrap(),
                &optax_bytes(&v, case, step + 1),
            );
        }
    }
    state
}

#[test]
fn init_writes_optaxs_bytes() {
    let v = vectors();
    let params = dict(&v, &["params"]);
    assert_eq!(
        to_bytes(&multi_transform().init(params).unwrap()).unwrap(),
        optax_bytes(&v, "multi_transform", 0)
    );
    assert_eq!(to_bytes(&masked().init(params).unwrap()).unwrap(), optax_bytes(&v, "masked", 0));
}

#[test]
fn multi_transform_continues_from_optaxs_state() {
    for from in SAVED_AT {
        continue_from("multi_transform", &multi_transform(), from);
    }
}

#[test]
fn masked_continues_from_optaxs_state() {
    for from in SAVED_AT {
        continue_from("masked", &masked(), from);
    }
}

#[test]
fn adams_moments_are_reached_by_label_and_path() {
    let v = vectors();
    let state = continue_from("multi_transform", &multi_transform(), 3);
    let expected = msgpack_restore(&optax_bytes(&v, "multi_transform", STEPS)).unwrap();
    let adam = &state.inner_states["trainable"].inner_state.downcast_ref::<AdamState>().unwrap().0;
    let mu = adam.mu.tensor(&["head", "kernel"]).unwrap();
    let optax_mu = ["inner_states", "trainable", "inner_state", "0", "mu", "head", "kernel"];
    assert_close("mu", mu, expected.tensor(&optax_mu).unwrap());
    // The frozen leaves are Optax's `MaskedNode()`: an empty dict, no moments.
    let masked_node = adam.mu.get_path(&["backbone", "Dense_0", "kernel"]).unwrap();
    assert!(matches!(masked_node, Value::Dict(d) if d.is_empty()));
    assert_eq!(tree::num_leaves(&adam.mu), 2, "the head's kernel and bias");

    let state = continue_from("masked", &masked(), 3);
    assert!(state.inner_state.0.nu.tensor(&["head", "bias"]).is_some());
    assert!(state.inner_state.0.nu.tensor(&["backbone", "Dense_1", "bias"]).is_none());
}

#[test]
fn update_and_apply_follows_optax() {
    let v = vectors();
    let (tx, case) = (multi_transform(), "multi_transform");
    let mut params = dict(&v, &["params"]).clone();
    let mut state = tx.init(&params).unwrap();
    for step in 0..STEPS {
        (params, state) = tx.update_and_apply(at(dict(&v, &["grads"]), step), state, params).unwrap();
        assert_trees_close(&format!("fused params {step}"), &params, &at(dict(&v, &[case, "params"]), step));
    }
    let expected = msgpack_restore(&optax_bytes(&v, case, STEPS)).unwrap();
    let restored = tree::from_state_dict(&tx.init(&params).unwrap(), &expected).unwrap();
    for ((path, a), (_, e)) in
        tree::leaves_with_path(&state).into_iter().zip(tree::leaves_with_path(&restored))
    {
        assert_close(&path.join("/"), a, e);
    }
}

#[test]
fn a_state_of_another_mask_is_refused() {
    let v = vectors();
    let params = dict(&v, &["params"]);
    let everything = optax::masked(optax::adam(0.05), |_, _| true);
    let refused = from_bytes(&everything.init(params).unwrap(), &optax_bytes(&v, "masked", 3));
    let Err(flax::Error::StateDictMismatch { mismatched, .. }) = refused else { panic!("{refused:?}") };
    assert!(
        mismatched.iter().any(|m| m.contains("backbone/Dense_0/kernel: expected Array")),
        "{mismatched:?}"
    );
}
