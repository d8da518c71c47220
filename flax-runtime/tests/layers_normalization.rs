//! `BatchNorm`, `LayerNorm`, `RMSNorm` and `GroupNorm` against Flax 0.12.8
//! (`scripts/golden/layers_normalization.py`), and Flax's `merge_param` rule.

mod layers_golden;

use flax::nn::{BatchNorm, GroupNorm, LayerNorm, RMSNorm};
use flax::prelude::*;
use flax::{Error, Value};
use layers_golden::{assert_close, assert_same_tree, key, Golden};

/// Init, one training step (`batch_stats` mutable) and evaluation with the updated averages.
/// `flag` is `None` when the module has `use_running_average` as an attribute.
fn check_batch_norm(g: &Golden, name: &str, m: BatchNorm, flag: Option<()>) {
    let c = g.case(name);
    let x = c.input("x");
    let (train, eval) = match flag {
        Some(()) => (Some(false), Some(true)),
        None => (None, None),
    };
    let ours = m.init(key(), &x, train).unwrap();
    assert_same_tree(&format!("{name}: init"), &ours, &c.variables());
    let (y, updated) =
        m.apply_with(&c.variables(), ApplyOptions::new().mutable(["batch_stats"]), &x, train).unwrap();
    assert_close(&format!("{name}: train output"), &y, &c.output());
    assert_same_tree(&format!("{name}: updated"), &updated, &c.updated());
    let stats = updated.get("batch_stats").unwrap().clone();
    let evaluated = c.variables().copy([("batch_stats", stats)]);
    let m_eval = if flag.is_some() { m } else { m.use_running_average(Some(true)) };
    let y = m_eval.apply(&evaluated, &x, eval).unwrap();
    assert_close(&format!("{name}: eval output"), &y, &c.tensor(&["eval_output"]));
}

#[test]
fn normalization_matches_flax() {
    let g = Golden::load("normalization");
    let train = || BatchNorm::new().use_running_average(Some(false));
    check_batch_norm(&g, "batch_norm", train(), None);
    check_batch_norm(&g, "batch_norm_nhwc_momentum", train().momentum(0.9).epsilon(1e-3), None);
    check_batch_norm(&g, "batch_norm_axis1_no_scale", train().axis(1).use_scale(false), None);
    check_batch_norm(&g, "batch_norm_call_flag", BatchNorm::new(), Some(()));
    let layer_norms = [
        ("layer_norm", LayerNorm::new()),
        ("layer_norm_axes", LayerNorm::new().reduction_axes([1, 2]).use_bias(false).epsilon(1e-3)),
        ("layer_norm_feature_axes", LayerNorm::new().reduction_axes([1, 2]).feature_axes([1, 2])),
    ];
    for (name, m) in layer_norms {
        let c = g.case(name);
        let x = c.input("x");
        c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
    }
    for (name, m) in [
        ("rms_norm", RMSNorm::new()),
        ("rms_norm_axes", RMSNorm::new().reduction_axes([-2, -1]).use_scale(false)),
    ] {
        let c = g.case(name);
        let x = c.input("x");
        c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
    }
    let group_norms = [
        ("group_norm", GroupNorm::new().num_groups(Some(2))),
        ("group_norm_group_size", GroupNorm::new().num_groups(None).group_size(Some(3))),
        ("group_norm_2d", GroupNorm::new().num_groups(Some(1))),
        ("group_norm_no_scale", GroupNorm::new().num_groups(Some(4)).use_scale(false).epsilon(1e-2)),
    ];
    for (name, m) in group_norms {
        let c = g.case(name);
        let x = c.input("x");
        c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
    }
    g.assert_all_seen();
}

#[test]
fn init_creates_but_does_not_update_the_running_averages() {
    let x = Tensor::randn([8, 3], (Kind::Float, Device::Cpu)) * 5 + 2;
    let v = BatchNorm::new().init(key(), &x, Some(false)).unwrap();
    assert_eq!(v.keys().collect::<Vec<_>>(), ["batch_stats", "params"]);
    let mean = v.tensor(&["batch_stats", "mean"]).unwrap();
    let var = v.tensor(&["batch_stats", "var"]).unwrap();
    assert_eq!((mean.kind(), mean.size()), (Kind::Float, vec![3]));
    assert_eq!(mean.abs().sum(Kind::Float).double_value(&[]), 0.0);
    assert_eq!(var.sum(Kind::Float).double_value(&[]), 3.0);
}

#[test]
fn training_without_mutable_batch_stats_is_flax_s_error() {
    let x = Tensor::ones([4, 3], (Kind::Float, Device::Cpu));
    let m = BatchNorm::new();
    let v = m.init(key(), &x, Some(false)).unwrap();
    match m.apply(&v, &x, Some(false)) {
        Err(Error::ModifyScopeVariable { collection, name, .. }) => {
            assert_eq!((collection.as_str(), name.as_str()), ("batch_stats", "mean"))
        }
        other => panic!("{other:?}"),
    }
    // Evaluation reads them only.
    assert!(m.apply(&v, &x, Some(true)).is_ok());
}

#[module]
pub struct Net {
    #[module(default = None)]
    pub train: Option<bool>,
}

#[module]
impl Net {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, use_running_average: Option<bool>) -> Result<Tensor> {
        let x = flax::nn::Dense::new(3).call(cx, x)?;
        BatchNorm::new().use_running_average(self.train.map(|t| !t)).call(cx, &x, use_running_average)
    }
}

#[test]
fn use_running_average_is_given_exactly_once() {
    let x = Tensor::ones([4, 2], (Kind::Float, Device::Cpu));
    match Net::new().init(key(), &x, None) {
        Err(Error::MergeParam { scope, name, given_twice: false }) => {
            assert_eq!((scope.as_str(), name.as_str()), ("/BatchNorm_0", "use_running_average"));
        }
        other => panic!("{other:?}"),
    }
    let err = Net::new().train(Some(true)).init(key(), &x, Some(true)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/BatchNorm_0: Parameter \"use_running_average\" was passed to the constructor and at call time. Should be \
         passed just once."
    );
    let v = Net::new().train(Some(true)).init(key(), &x, None).unwrap();
    assert!(matches!(v.get_path(&["batch_stats", "BatchNorm_0", "mean"]), Some(Value::Tensor(_))));
}

#[test]
fn group_norm_errors_are_flax_s() {
    let x = Tensor::ones([2, 6], (Kind::Float, Device::Cpu));
    let message = |m: GroupNorm| match m.init(key(), &x) {
        Err(Error::InvalidAttribute { message, .. }) => message,
        other => panic!("{other:?}"),
    };
    assert!(message(GroupNorm::new().group_size(Some(3))).starts_with("Either `num_groups` or `group_size`"));
    assert!(message(GroupNorm::new().num_groups(None)).starts_with("Either `num_groups` or `group_size`"));
    assert_eq!(
        message(GroupNorm::new().num_groups(None).group_size(Some(4))),
        "Number of channels (6) is not multiple of the group size (4)."
    );
    assert_eq!(
        message(GroupNorm::new()),
        "Number of groups (32) does not divide the number of channels (6)."
    );
    assert_eq!(
        message(GroupNorm::new().num_groups(Some(0))),
        "Number of groups (0) does not divide the number of channels (6)."
    );
}

#[test]
fn half_precision_inputs_compute_statistics_in_float32() {
    let x = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
    let m = LayerNorm::new();
    let v = m.init(key(), &x).unwrap();
    let y32 = m.apply(&v, &x).unwrap();
    // float32 params promote a bfloat16 input: the output is float32, as in Flax.
    let y = m.apply(&v, &x.to_kind(Kind::BFloat16)).unwrap();
    assert_eq!(y.kind(), Kind::Float);
    assert!(y.allclose(&y32, 5e-2, 5e-2, false));
    let y = m.clone().dtype(Some(Kind::BFloat16)).apply(&v, &x.to_kind(Kind::BFloat16)).unwrap();
    assert_eq!(y.kind(), Kind::BFloat16);
}
