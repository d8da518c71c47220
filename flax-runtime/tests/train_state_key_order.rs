//! Checkpoints byte-compatible with `flax.serialization` after training, not only after
//! `create`: the same models, optimizers and steps as `scripts/golden/train_state_key_order.py`
//! (Flax 0.12.8, Optax 0.2.8), from Flax's initial variables, give `to_bytes` checkpoints whose
//! every msgpack map has Flax's keys in Flax's order (creation order for the `params` that
//! `create` stores, sorted wherever JAX rebuilt a dict: Optax's states, `apply_gradients`'
//! params, `value_and_grad`'s auxiliary `batch_stats`) and the same values within tolerance.

use flax::nn;
use flax::optax::{self, GradientTransformation};
use flax::prelude::*;
use flax::serialization::{msgpack_restore, to_bytes};
use flax::training::TrainState;
use flax::tree::{Key, Tree};
use flax::{ApplyOptions, PRNGKey, Value};

const TOLERANCE: f64 = 1e-5;

/// The Dense(4), relu, Dense(2) of the golden `MLP`.
#[module]
pub struct Mlp;

#[module]
impl Mlp {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Dense::new(4).call(cx, x)?.relu();
        nn::Dense::new(2).call(cx, &x)
    }
}

/// A Dense `proj`, relu, then a BatchNorm `norm`: creation order (`proj`, `norm`) is not
/// sorted order.
#[module]
pub struct Block;

#[module]
impl Block {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = nn::Dense::new(4).name("proj").call(cx, x)?.relu();
        nn::BatchNorm::new().name("norm").call(cx, &x, Some(!train))
    }
}

/// Two blocks, `trunk` then `head` (sorted: `head` first).
#[module]
pub struct Nested;

#[module]
impl Nested {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = Block::new().name("trunk").call(cx, x, train)?;
        Block::new().name("head").call(cx, &x, train)
    }
}

/// The golden `TrainState` subclass's extra field.
#[derive(Tree)]
struct Extra {
    batch_stats: FrozenDict,
}

fn golden(case: &str) -> FrozenDict {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/train_state_key_order.msgpack");
    let all = msgpack_restore(&std::fs::read(path).unwrap()).unwrap();
    all.as_dict().and_then(|d| d.get_dict(case)).unwrap_or_else(|| panic!("no case {case}")).clone()
}

fn tensor(case: &FrozenDict, key: &str) -> Tensor {
    case.tensor(&[key]).unwrap_or_else(|| panic!("no {key}")).shallow_clone()
}

/// A checkpoint stored in the golden file (a `uint8` array of `to_bytes` output).
fn checkpoint(case: &FrozenDict, key: &str) -> Vec<u8> {
    Vec::<u8>::try_from(&tensor(case, key)).unwrap()
}

/// Flax's initial variables, restored in the order of their bytes (creation order).
fn initial_variables(case: &FrozenDict) -> FrozenDict {
    msgpack_restore(&checkpoint(case, "variables")).unwrap().as_dict().unwrap().clone()
}

/// Every map key and list index of `value` as a `/`-joined path, in the order of the bytes.
fn structure(value: &Value, prefix: &str, out: &mut Vec<String>) {
    let mut child = |key: &str, v: &Value| {
        let path = format!("{prefix}/{key}");
        out.push(path.clone());
        structure(v, &path, out);
    };
    match value {
        Value::Dict(d) => d.iter().for_each(|(k, v)| child(k, v)),
        Value::List(l) => l.iter().enumerate().for_each(|(i, v)| child(&i.to_string(), v)),
        _ => {}
    }
}

/// The leaves (tensors and scalars) with their paths, in the order of the bytes.
fn leaves<'v>(value: &'v Value, prefix: &str, out: &mut Vec<(String, &'v Value)>) {
    match value {
        Value::Dict(d) => d.iter().for_each(|(k, v)| leaves(v, &format!("{prefix}/{k}"), out)),
        Value::List(l) => l.iter().enumerate().for_each(|(i, v)| leaves(v, &format!("{prefix}/{i}"), out)),
        leaf => out.push((prefix.to_owned(), leaf)),
    }
}

/// Compares a Rust checkpoint with Flax's: the same key sequence in every map, exactly, and
/// the same leaves (arrays within tolerance, scalars equal).
fn assert_same_checkpoint(what: &str, ours: &[u8], theirs: &[u8]) {
    let (ours, theirs) = (msgpack_restore(ours).unwrap(), msgpack_restore(theirs).unwrap());
    let [mut a, mut b] = [Vec::new(), Vec::new()];
    structure(&ours, "", &mut a);
    structure(&theirs, "", &mut b);
    assert_eq!(a, b, "{what}: the key order differs from Flax's");
    let [mut a, mut b] = [Vec::new(), Vec::new()];
    leaves(&ours, "", &mut a);
    leaves(&theirs, "", &mut b);
    for ((path, x), (_, y)) in a.iter().zip(&b) {
        match (x, y) {
            (Value::Tensor(x), Value::Tensor(y)) => {
                assert_eq!((x.size(), x.kind()), (y.size(), y.kind()), "{what}: {path}");
                let diff = (x.to_kind(Kind::Double) - y.to_kind(Kind::Double)).abs().max().double_value(&[]);
                let scale = y.to_kind(Kind::Double).abs().max().double_value(&[]).max(1.0);
                assert!(diff <= TOLERANCE * scale, "{what}: {path} differs by {diff}");
            }
            _ => assert_eq!(format!("{x:?}"), format!("{y:?}"), "{what}: {path}"),
        }
    }
}

fn mse(pred: &Tensor, y: &Tensor) -> Tensor {
    (pred - y).square().mean(Kind::Float)
}

/// The MLP cases: `state_0` after `create`, then a step per later checkpoint.
fn check_mlp<T: GradientTransformation<FrozenDict>>(name: &str, tx: T) {
    let case = golden(name);
    let (x, y) = (tensor(&case, "x"), tensor(&case, "y"));
    let variables = initial_variables(&case);
    let ours = Mlp::new().init(PRNGKey::new(0), &x).unwrap();
    assert_same_structure(name, &ours, &variables);
    let params = variables.get_dict("params").unwrap().clone();
    let mut state = TrainState::create(Mlp::new(), params, tx).unwrap();
    assert_same_checkpoint(
        &format!("{name}/state_0"),
        &to_bytes(&state).unwrap(),
        &checkpoint(&case, "state_0"),
    );
    for step in 1..=2 {
        let grads = flax::grad(&state.params, |p| {
            let vars = FrozenDict::from_iter([("params".to_owned(), Value::Dict(p.clone()))]);
            Ok(mse(&state.apply_fn.apply(&vars, &x)?, &y))
        })
        .unwrap();
        state = state.apply_gradients(grads).unwrap();
        let what = format!("{name}/state_{step}");
        assert_same_checkpoint(
            &what,
            &to_bytes(&state).unwrap(),
            &checkpoint(&case, &format!("state_{step}")),
        );
    }
}

/// A Rust-initialised model has Flax's variable keys in Flax's (creation) order.
fn assert_same_structure(what: &str, ours: &FrozenDict, flax: &FrozenDict) {
    let [mut a, mut b] = [Vec::new(), Vec::new()];
    structure(&Value::Dict(ours.clone()), "", &mut a);
    structure(&Value::Dict(flax.clone()), "", &mut b);
    assert_eq!(a, b, "{what}: init's key order differs from Flax's");
}

#[test]
fn adam_checkpoints_have_flax_s_key_order_after_training() {
    check_mlp("mlp", optax::adam(1e-2));
}

#[test]
fn masked_optimizer_checkpoints_have_flax_s_key_order_after_training() {
    let adam_on_kernels =
        optax::masked(optax::adam(1e-2), |path, _| path.keys().last() == Some(&Key::Name("kernel")));
    check_mlp("masked", optax::chain((adam_on_kernels, optax::scale(-1e-2))));
}

#[test]
fn nested_modules_with_batch_stats_have_flax_s_key_order_after_training() {
    let case = golden("nested");
    let (x, y) = (tensor(&case, "x"), tensor(&case, "y"));
    let variables = initial_variables(&case);
    assert_same_structure("nested", &Nested::new().init(PRNGKey::new(0), &x, true).unwrap(), &variables);
    let params = variables.get_dict("params").unwrap().clone();
    let extra = Extra { batch_stats: variables.get_dict("batch_stats").unwrap().clone() };
    let tx = optax::adamw(1e-2).weight_decay(1e-2);
    let mut state = TrainState::create_with(Nested::new(), params, tx, extra).unwrap();
    assert_same_checkpoint("nested/state_0", &to_bytes(&state).unwrap(), &checkpoint(&case, "state_0"));
    for step in 1..=2 {
        let (_, batch_stats, grads) = flax::value_and_grad_with_aux(&state.params, |p| {
            let vars = FrozenDict::from_iter([
                ("params".to_owned(), Value::Dict(p.clone())),
                ("batch_stats".to_owned(), Value::Dict(state.extra.batch_stats.clone())),
            ]);
            let options = ApplyOptions::new().mutable(["batch_stats"]);
            let (pred, updated) = state.apply_fn.apply_with(&vars, options, &x, true)?;
            Ok((mse(&pred, &y), updated.get_dict("batch_stats").unwrap().clone()))
        })
        .unwrap();
        state = state.apply_gradients(grads).unwrap();
        state.extra = Extra { batch_stats };
        let what = format!("nested/state_{step}");
        assert_same_checkpoint(
            &what,
            &to_bytes(&state).unwrap(),
            &checkpoint(&case, &format!("state_{step}")),
        );
    }
}
