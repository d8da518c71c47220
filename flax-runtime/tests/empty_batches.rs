//! Empty batches (and empty feature axes) against Flax 0.12.8, Optax and clu
//! (`scripts/golden/empty_batches.py`): normalization layers give empty outputs with Flax's
//! parameters, losses are per example and so empty, and metrics over no values keep finite
//! accumulators (`total = 0`, `count = 0`). `BatchNorm` in training refuses an empty batch
//! (`tests/bad_inputs.rs`), since its statistics would be NaN in `batch_stats`.

mod layers_golden;

use flax::nn::{BatchNorm, GroupNorm, LayerNorm, RMSNorm};
use flax::optax::losses;
use flax::prelude::*;
use flax::training::metrics::{Accuracy, Average, Metric};
use layers_golden::{assert_close, key, Golden};

#[test]
fn normalization_layers_give_flax_empty_outputs() {
    let g = Golden::load("empty_batches");
    let check = |name: &str,
                 init: &dyn Fn(&Tensor) -> flax::Result<Variables>,
                 apply: &dyn Fn(&Variables, &Tensor) -> flax::Result<Tensor>| {
        let c = g.case(name);
        let x = c.input("x");
        c.check(|| init(&x), |v| apply(v, &x));
    };
    let ln = LayerNorm::new();
    check("layer_norm_empty_batch", &|x| ln.init(key(), x), &|v, x| ln.apply(v, x));
    check("layer_norm_zero_features", &|x| ln.init(key(), x), &|v, x| ln.apply(v, x));
    let rms = RMSNorm::new();
    check("rms_norm_empty_batch", &|x| rms.init(key(), x), &|v, x| rms.apply(v, x));
    let gn = GroupNorm::new().num_groups(Some(2));
    check("group_norm_empty_batch", &|x| gn.init(key(), x), &|v, x| gn.apply(v, x));
    check("group_norm_empty_spatial", &|x| gn.init(key(), x), &|v, x| gn.apply(v, x));
    let bn = BatchNorm::new().use_running_average(Some(true));
    check("batch_norm_eval_empty_batch", &|x| bn.init(key(), x, None), &|v, x| bn.apply(v, x, None));
    for name in [
        "softmax_cross_entropy",
        "softmax_cross_entropy_with_integer_labels",
        "sigmoid_binary_cross_entropy",
        "l2_loss",
        "huber_loss",
        "average_empty_values",
    ] {
        g.case(name); // the tests below
    }
    g.assert_all_seen();
}

#[test]
fn losses_of_an_empty_batch_are_empty() {
    let g = Golden::load("empty_batches");
    let logits = g.case("softmax_cross_entropy").input("logits");
    let labels = g.case("softmax_cross_entropy_with_integer_labels").input("labels");
    let cases: [(&str, flax::Result<Tensor>); 5] = [
        ("softmax_cross_entropy", losses::softmax_cross_entropy(&logits, &logits)),
        (
            "softmax_cross_entropy_with_integer_labels",
            losses::softmax_cross_entropy_with_integer_labels(&logits, &labels.to_kind(Kind::Int64)),
        ),
        ("sigmoid_binary_cross_entropy", losses::sigmoid_binary_cross_entropy(&logits, &logits)),
        ("l2_loss", losses::l2_loss(&logits, None)),
        ("huber_loss", losses::huber_loss(&logits, None, 1.0)),
    ];
    for (name, loss) in cases {
        let loss = loss.unwrap_or_else(|e| panic!("{name}: {e}"));
        let c = g.case(name);
        assert_eq!(loss.kind(), c.output().kind(), "{name}: dtype");
        assert_close(name, &loss, &c.output());
    }
}

#[test]
fn metrics_over_no_values_keep_finite_state() {
    let g = Golden::load("empty_batches");
    let c = g.case("average_empty_values");
    let empty = Average::<flax::training::metrics::Values>::from_values(&c.input("values"), None).unwrap();
    assert_close("total", &empty.total, &c.tensor(&["total"]));
    assert_close("count", &empty.count, &c.tensor(&["count"]));
    // clu's compute over nothing is 0 / 0; the state itself (what a TrainState saves) is finite.
    assert!(empty.compute().unwrap().isnan().int64_value(&[]) == 1);
    let batch = Average::from_values(&c.input("batch"), None).unwrap();
    let merged = empty.merge(&batch).unwrap();
    assert_close("merged_total", &merged.total, &c.tensor(&["merged_total"]));
    assert_close("merged_count", &merged.count, &c.tensor(&["merged_count"]));
    assert_close("merged", &merged.compute().unwrap(), &c.tensor(&["merged"]));

    // Accuracy over an empty batch, and an all-false mask: nothing counted, nothing NaN.
    let logits = Tensor::zeros([0, 3], (Kind::Float, Device::Cpu));
    let labels = Tensor::zeros([0], (Kind::Int64, Device::Cpu));
    let accuracy = Accuracy::from_model_output(&[("logits", &logits), ("labels", &labels)]).unwrap();
    let mask = Tensor::zeros([4], (Kind::Bool, Device::Cpu));
    let masked = Average::<flax::training::metrics::Values>::from_values(
        &Tensor::ones([4], (Kind::Float, Device::Cpu)),
        Some(&mask),
    )
    .unwrap();
    for (total, count) in [(&accuracy.total, &accuracy.count), (&masked.total, &masked.count)] {
        assert_eq!((total.double_value(&[]), count.int64_value(&[])), (0.0, 0));
    }
}
