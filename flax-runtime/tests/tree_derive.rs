//! `#[derive(Tree)]`: generated traversals, static fields, renames, and state dicts that
//! equal Flax 0.12.8's `serialization.to_state_dict` for the same dataclass
//! (`scripts/golden/tree.py`, `TrainStateLike`).

mod golden_json;

use flax::tch::{Device, Kind, Tensor};
use flax::tree::{self, Tree};
use flax::{Error, FrozenDict, Scalar, Value};
use golden_json::{encode, load, value};

#[derive(Tree, Debug)]
struct DenseParams {
    kernel: Tensor,
    bias: Option<Tensor>,
}

#[derive(Tree, Debug)]
struct MlpParams {
    #[tree(rename = "Dense_0")]
    dense_0: DenseParams,
    #[tree(rename = "Dense_1")]
    dense_1: DenseParams,
}

/// Flax's `TrainStateLike` of the golden script: a scalar `step` (in the state dict), a
/// static `learning_rate` (`pytree_node=False`, not in it).
#[derive(Tree, Debug)]
struct TrainStateLike {
    step: i64,
    params: MlpParams,
    opt_state: (Tensor, ()),
    extra: Vec<Option<Tensor>>,
    #[tree(static)]
    learning_rate: f64,
}

#[derive(Tree)]
struct Generic<P> {
    r#type: P,
    layers: Vec<P>,
    #[tree(static)]
    label: String,
}

#[derive(Tree)]
struct Positional(Tensor, #[tree(static)] u8, i64);

#[derive(Tree)]
struct Unit;

fn t(values: &[f32]) -> Tensor {
    Tensor::from_slice(values)
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::try_from(t).unwrap()
}

/// The golden state's values, built natively.
fn train_state() -> TrainStateLike {
    TrainStateLike {
        step: 3,
        params: MlpParams {
            dense_0: DenseParams {
                kernel: Tensor::arange(6, (Kind::Float, Device::Cpu)).reshape([2, 3]),
                bias: Some(t(&[0.5, -1.0, 2.0])),
            },
            dense_1: DenseParams {
                kernel: Tensor::arange(3, (Kind::Float, Device::Cpu)).reshape([3, 1]),
                bias: None,
            },
        },
        opt_state: (t(&[1.0, 1.0]), ()),
        extra: vec![Some(t(&[7.0])), None],
        learning_rate: 0.1,
    }
}

/// A target of the same structure with other values.
fn zeros_like(state: &TrainStateLike) -> TrainStateLike {
    let zeroed = tree::tree_map(state, |x| Ok(x.zeros_like())).unwrap();
    TrainStateLike { step: 0, learning_rate: 0.3, ..zeroed }
}

#[test]
fn state_dict_equals_flax() {
    let golden = load("state_dict");
    assert_eq!(encode(&tree::to_state_dict(&train_state())), golden["train_state"]);
}

#[test]
fn from_state_dict_restores_flax_state_into_a_typed_target() {
    let golden = value(&load("state_dict")["train_state"]);
    let target = zeros_like(&train_state());
    let restored = tree::from_state_dict(&target, &golden).unwrap();
    assert_eq!(restored.step, 3);
    assert_eq!(restored.learning_rate, 0.3, "static fields come from the target");
    assert_eq!(values(restored.params.dense_0.bias.as_ref().unwrap()), [0.5, -1.0, 2.0]);
    assert_eq!(restored.params.dense_1.kernel.size(), [3, 1]);
    assert!(restored.params.dense_1.bias.is_none());
    assert_eq!(values(restored.extra[0].as_ref().unwrap()), [7.0]);
    assert!(restored.extra[1].is_none());
}

#[test]
fn typed_trees_round_trip_through_flax_bytes() {
    let bytes = flax::serialization::to_bytes(&train_state()).unwrap();
    let restored = flax::serialization::from_bytes(&zeros_like(&train_state()), &bytes).unwrap();
    assert_eq!((restored.step, restored.learning_rate), (3, 0.3));
    assert_eq!(values(&restored.params.dense_0.kernel.flatten(0, -1)), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(values(restored.extra[0].as_ref().unwrap()), [7.0]);
}

#[test]
fn from_state_dict_reports_every_mismatch_in_one_error() {
    let Value::Dict(golden) = value(&load("state_dict")["train_state"]) else { panic!("not a dict") };
    let params = golden.get_dict("params").unwrap();
    let dense_0 = params.get_dict("Dense_0").unwrap();
    let bad_dense_0 = dense_0.copy([("kernel", Value::Tensor(t(&[1.0])))]);
    let (dense_0_rest, _) = bad_dense_0.pop("bias").unwrap();
    let bad_dense_1 = params.get_dict("Dense_1").unwrap().copy([("bias", Value::Tensor(t(&[0.0])))]);
    let bad_params =
        params.copy([("Dense_0", Value::Dict(dense_0_rest)), ("Dense_1", Value::Dict(bad_dense_1))]);
    let (without_step, _) = golden.pop("step").unwrap();
    let bad = without_step
        .copy([("params", Value::Dict(bad_params)), ("learning_rate", Value::Scalar(Scalar::Float(0.1)))]);

    match tree::from_state_dict(&train_state(), &Value::Dict(bad)) {
        Err(Error::StateDictMismatch { missing, unexpected, mismatched }) => {
            assert_eq!(missing, ["params/Dense_0/bias", "step"]);
            assert_eq!(unexpected, ["learning_rate", "params/Dense_1/bias"]);
            assert_eq!(mismatched, [
                "params/Dense_0/kernel: expected Array(shape=(2, 3), dtype=float32), found Array(shape=(1,), dtype=float32)"
            ]);
        }
        other => panic!("expected a state dict mismatch, got {other:?}"),
    }
}

#[test]
fn a_none_field_accepts_an_absent_or_none_entry() {
    let params = DenseParams { kernel: t(&[1.0]), bias: None };
    let state = tree::to_state_dict(&params);
    assert_eq!(state.as_dict().unwrap().keys().collect::<Vec<_>>(), ["kernel"]);
    let python_style: FrozenDict =
        [("kernel".to_owned(), Value::Tensor(t(&[2.0]))), ("bias".to_owned(), Value::Scalar(Scalar::None))]
            .into_iter()
            .collect();
    let restored = tree::from_state_dict(&params, &Value::Dict(python_style)).unwrap();
    assert_eq!(values(&restored.kernel), [2.0]);
    assert!(restored.bias.is_none());
}

#[test]
fn paths_use_field_names_renames_and_indices() {
    let paths: Vec<String> =
        tree::leaves_with_path(&train_state()).into_iter().map(|(path, _)| path.join("/")).collect();
    assert_eq!(
        paths,
        ["params/Dense_0/kernel", "params/Dense_0/bias", "params/Dense_1/kernel", "opt_state/0", "extra/0"]
    );
    let generic = Generic { r#type: t(&[1.0]), layers: vec![t(&[2.0])], label: "x".into() };
    let paths: Vec<Vec<String>> =
        tree::leaves_with_path(&generic).into_iter().map(|(path, _)| path).collect();
    assert_eq!(paths, [vec!["type".to_owned()], vec!["layers".to_owned(), "0".to_owned()]]);
    let positional = Positional(t(&[1.0]), 7, 2);
    assert_eq!(tree::leaves_with_path(&positional)[0].0, ["0"]);
    assert_eq!(tree::num_leaves(&Unit), 0);
}

#[test]
fn maps_copy_static_and_scalar_fields_from_the_first_tree() {
    let state = train_state();
    let halved = tree::tree_map(&state, |x| Ok(x / 2)).unwrap();
    assert_eq!((halved.step, halved.learning_rate), (3, 0.1));
    assert_eq!(values(&halved.opt_state.0), [0.5, 0.5]);

    let positional = tree::tree_map(&Positional(t(&[4.0]), 7, 2), |x| Ok(x.neg())).unwrap();
    assert_eq!((values(&positional.0), positional.1, positional.2), (vec![-4.0], 7, 2));
    let generic = Generic { r#type: 1.5f64, layers: vec![2.5], label: "x".into() };
    let copied = tree::shallow_clone(&generic).unwrap();
    assert_eq!((copied.r#type, copied.layers, copied.label), (1.5, vec![2.5], "x".to_owned()));
}

#[test]
fn zips_report_structure_mismatches_inside_derived_structs() {
    let a = train_state();
    let mut b = train_state();
    b.params.dense_1.bias = Some(t(&[0.0]));
    match tree::tree_zip_map(&a, &b, |x, y| Ok(x + y)) {
        Err(Error::TreeStructureMismatch { path, .. }) => assert_eq!(path, "params/Dense_1/bias"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("structures that differ were zipped"),
    }
    let summed = tree::tree_zip_map(&a, &train_state(), |x, y| Ok(x + y)).unwrap();
    assert_eq!(values(&summed.extra[0].as_ref().unwrap().shallow_clone()), [14.0]);
}

#[test]
fn in_place_updates_reach_every_leaf_of_a_derived_struct() {
    let mut state = train_state();
    let grads = tree::tree_map(&state, |x| Ok(x.ones_like())).unwrap();
    tree::tree_zip_for_each_mut(&mut state, &grads, |p, g| {
        let _ = p.f_sub_(g)?;
        Ok(())
    })
    .unwrap();
    assert_eq!(values(&state.params.dense_0.bias.unwrap()), [-0.5, -2.0, 1.0]);
    assert_eq!(values(&state.opt_state.0), [0.0, 0.0]);
}

#[test]
fn state_dict_round_trips_generic_and_positional_structs() {
    let generic = Generic { r#type: 4i64, layers: vec![5, 6], label: "kept".into() };
    let state = tree::to_state_dict(&generic);
    assert_eq!(state.as_dict().unwrap().keys().collect::<Vec<_>>(), ["type", "layers"]);
    let target = Generic { r#type: 0i64, layers: vec![0, 0], label: "target".into() };
    let restored = tree::from_state_dict(&target, &state).unwrap();
    assert_eq!((restored.r#type, restored.layers, restored.label), (4, vec![5, 6], "target".to_owned()));

    let positional = Positional(t(&[1.0, 2.0]), 9, 3);
    let state = tree::to_state_dict(&positional);
    assert_eq!(state.as_dict().unwrap().keys().collect::<Vec<_>>(), ["0", "2"]);
    let restored = tree::from_state_dict(&Positional(t(&[0.0, 0.0]), 1, 0), &state).unwrap();
    assert_eq!((values(&restored.0), restored.1, restored.2), (vec![1.0, 2.0], 1, 3));
    assert!(tree::from_state_dict(&Unit, &tree::to_state_dict(&Unit)).is_ok());
}
