//! The spec's quickstart CNN (spec L232-249): its variable tree, its parameter count, its
//! `tabulate` table (spec L279-313, character for character) and its output, which equals
//! Flax's for the same seed (`scripts/golden/layers_pooling.py`, case `cnn`); and its training
//! loop (TrainState, SGD with momentum, clu metrics), which equals Flax's for three steps
//! (`scripts/golden/training_vectors.py`).

mod layers_golden;
mod quickstart;

use flax::optax;
use flax::prelude::*;
use flax::serialization::msgpack_restore;
use flax::training::metrics::Collection;
use flax::training::TrainState;
use flax::Value;
use layers_golden::{assert_close, key, Golden, TOL};
use quickstart::{compute_metrics, train_step, Extra, Metrics, CNN};

fn template() -> Tensor {
    Tensor::ones([1, 28, 28, 1], (Kind::Float, Device::Cpu))
}

#[test]
fn tree_and_parameter_count() {
    let variables = CNN::new().init(key(), &template()).unwrap();
    let params = variables.get_dict("params").unwrap();
    let mut shapes = Vec::new();
    for (layer, value) in params.iter() {
        let Value::Dict(leaves) = value else { panic!("{layer} is not a dict") };
        for (name, leaf) in leaves.iter() {
            shapes.push((format!("{layer}/{name}"), leaf.as_tensor().unwrap().size()));
        }
    }
    shapes.sort();
    let expected: Vec<(String, Vec<i64>)> = [
        ("Conv_0/bias", vec![32]),
        ("Conv_0/kernel", vec![3, 3, 1, 32]),
        ("Conv_1/bias", vec![64]),
        ("Conv_1/kernel", vec![3, 3, 32, 64]),
        ("Dense_0/bias", vec![256]),
        ("Dense_0/kernel", vec![3136, 256]),
        ("Dense_1/bias", vec![10]),
        ("Dense_1/kernel", vec![256, 10]),
    ]
    .into_iter()
    .map(|(p, s)| (p.to_owned(), s))
    .collect();
    assert_eq!(shapes, expected);
    let count: i64 = shapes.iter().map(|(_, s)| s.iter().product::<i64>()).sum();
    assert_eq!(count, 824_458);
}

#[test]
fn tabulate_is_the_spec_table() {
    let spec = include_str!("data/tabulate/spec_cnn.txt");
    let table = CNN::new().tabulate(key(), &template()).unwrap();
    assert_eq!(table, format!("\n{spec}\n"));
}

#[test]
fn output_matches_flax_for_the_same_seed() {
    let g = Golden::load("pooling");
    let c = g.case("cnn");
    let x = c.input("x");
    let model = CNN::new();
    let variables = model.init(key(), &x).unwrap();
    assert_close("cnn output", &model.apply(&variables, &x).unwrap(), &c.output());
}

/// The quickstart's training loop for three batches equals Flax's (`scripts/golden/
/// training_vectors.py` writes `quickstart_steps.msgpack`): the parameters after three
/// SGD-momentum steps and the merged clu metrics, within float32 rounding of the
/// convolutions' gradients (XLA and libtorch sum in different orders).
#[test]
fn training_steps_match_flax() {
    let bytes =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/quickstart_steps.msgpack")).unwrap();
    let Value::Dict(golden) = msgpack_restore(&bytes).unwrap() else { panic!("not a dict") };
    let tensor = |path: &[&str]| golden.tensor(path).unwrap_or_else(|| panic!("no {path:?}")).shallow_clone();
    let cnn = CNN::new();
    let params = cnn.init(key(), &template()).unwrap().get_dict("params").unwrap().clone();
    let tx = optax::sgd(0.01).momentum(0.9);
    let mut state = TrainState::create_with(cnn, params, tx, Extra { metrics: Metrics::empty() }).unwrap();
    for (i, _) in golden.get_dict("batches").unwrap().iter() {
        let (image, label) = (tensor(&["batches", i, "image"]), tensor(&["batches", i, "label"]));
        state = train_step(state, &image, &label).unwrap();
        state = compute_metrics(state, &image, &label).unwrap();
    }
    assert_eq!(state.step, 3);
    let metrics = &state.extra.metrics;
    assert!(metrics.accuracy.total.equal(&tensor(&["accuracy", "total"])));
    assert_eq!(metrics.accuracy.count.int64_value(&[]), tensor(&["accuracy", "count"]).int64_value(&[]));
    assert_eq!(metrics.loss.count.int64_value(&[]), 3);
    assert_close("loss total", &metrics.loss.total, &tensor(&["loss", "total"]));

    let leaves = golden.get_dict("params").unwrap();
    assert_eq!(leaves.len(), 8);
    for (path, _) in leaves.iter() {
        let names: Vec<&str> = path.split('/').collect();
        let actual = state.params.tensor(&names).unwrap().to_kind(Kind::Double);
        let stat = |name: &str| tensor(&["params", path, name]).double_value(&[]);
        let sum = actual.sum(Kind::Double).double_value(&[]);
        let sum_of_squares = actual.square().sum(Kind::Double).double_value(&[]);
        for (what, actual, expected) in
            [("sum", sum, stat("sum")), ("sum of squares", sum_of_squares, stat("sum_of_squares"))]
        {
            let tolerance = TOL + TOL * expected.abs();
            assert!((actual - expected).abs() <= tolerance, "{path}: {what} {actual} != Flax's {expected}");
        }
        if let Some(value) = golden.tensor(&["params", path, "value"]) {
            assert_close(path, &actual.to_kind(Kind::Float), value);
        }
    }
}
