//! `nn::vmap` against Flax 0.12.8 (`scripts/golden/transforms_vmap.py`): stacked and shared
//! variables with Flax's values for the same seed, batched `apply` (libtorch's vmap), the
//! loop `init` runs, `axis_name` collectives in BatchNorm, per-member dropout keys, the spec's
//! vmap of a module method, gradients, and bad input.

mod layers_golden;

use flax::nn;
use flax::prelude::*;
use flax::{Error, Value};
use layers_golden::{assert_close, assert_same_tree, key, Case, Golden};

#[module]
pub struct MLP {}

#[module]
impl MLP {
    #[compact]
    pub fn call(&self, cx: &mut Scope, xs: &Tensor) -> Result<Tensor> {
        let h = nn::Dense::new(4).name("hidden").call(cx, xs)?.relu();
        nn::Dense::new(1).name("out").call(cx, &h)
    }
}

/// The spec's `LinenVmapMLP` (L11072-11103).
#[module]
pub struct LinenVmapMLP {}

#[module]
impl LinenVmapMLP {
    #[compact]
    pub fn call(&self, cx: &mut Scope, xs: &Tensor) -> Result<Tensor> {
        nn::vmap(MLP::new())
            .variable_axes([("params", 0)])
            .split_rngs([("params", true)])
            .in_axes(0)
            .name("mlp")
            .call(cx, xs, |mlp, cx, x: Tensor| mlp.call(cx, &x))
    }
}

/// The spec's `ManualVmapMLP` (L10684-10696): vmap by hand, before lifted transforms. A
/// detached `MLP` (constructed but never called through `cx`, so it takes no name, as
/// `MLP(parent=None)`) is initialised once per member with Flax's split keys, the stacked
/// params are one param `mlp`, and apply runs batched on libtorch's vmap.
#[module]
pub struct ManualVmapMLP {}

#[module]
impl ManualVmapMLP {
    #[compact]
    pub fn call(&self, cx: &mut Scope, xs: &Tensor) -> Result<Tensor> {
        let mlp = MLP::new();
        let n = xs.size()[0];
        let init_fn = |rng: PRNGKey| -> Result<Value> {
            let members = rng.split(n as usize).into_iter().zip(xs.unbind(0));
            let params = members.map(|(k, x)| mlp.init(k, &x)).collect::<Result<Vec<_>>>()?;
            Ok(Value::Dict(flax::tree::tree_stack(&params, 0)?.get_dict("params").unwrap().clone()))
        };
        let mlp_params = cx.param_tree("mlp", init_fn)?;
        let template = Variables::new().copy([("params", mlp_params)]);
        let mut inputs: Vec<Tensor> =
            flax::tree::leaves(&template).into_iter().map(Tensor::shallow_clone).collect();
        inputs.push(xs.shallow_clone());
        let in_dims = vec![Some(0); inputs.len()];
        let out = flax::core::batching::vmap(n, &in_dims, &inputs, &[0], |per_member| {
            let (x, params) = per_member.split_last().unwrap();
            let variables = flax::tree::tree_unflatten(&template, params.iter().map(Tensor::shallow_clone))?;
            Ok(vec![mlp.apply(&variables, x)?])
        })?;
        Ok(out.into_iter().next().unwrap())
    }
}

#[module]
pub struct Shared {}

#[module]
impl Shared {
    #[compact]
    pub fn call(&self, cx: &mut Scope, xs: &Tensor) -> Result<Tensor> {
        nn::vmap(MLP::new())
            .variable_axes([("params", None)])
            .split_rngs([("params", false)])
            .in_axes(1)
            .out_axes(1)
            .call(cx, xs, |mlp, cx, x: Tensor| mlp.call(cx, &x))
    }
}

#[module]
pub struct StatefulMLP {}

#[module]
impl StatefulMLP {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = nn::Dense::new(4).name("hidden").call(cx, x)?;
        let h = nn::BatchNorm::new().axis_name(Some("batch".to_owned())).call(cx, &h, Some(!train))?.relu();
        nn::Dense::new(1).name("out").call(cx, &h)
    }
}

#[module]
pub struct LinenStatefulVmapMLP {}

#[module]
impl LinenStatefulVmapMLP {
    #[compact]
    pub fn call(&self, cx: &mut Scope, xs: &Tensor, train: bool) -> Result<Tensor> {
        nn::vmap(StatefulMLP::new())
            .variable_axes([("params", Some(0)), ("batch_stats", None)])
            .split_rngs([("params", true)])
            .axis_name("batch")
            .name("mlp")
            .call(cx, xs, |mlp, cx, x: Tensor| mlp.call(cx, &x, train))
    }
}

#[module]
pub struct Noisy {}

#[module]
impl Noisy {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = nn::Dense::new(3).call(cx, x)?;
        nn::Dropout::new(0.5).deterministic(Some(false)).call(cx, &h, None)
    }
}

#[module]
pub struct NoisyEnsemble {}

#[module]
impl NoisyEnsemble {
    #[compact]
    pub fn call(&self, cx: &mut Scope, xs: &Tensor) -> Result<Tensor> {
        nn::vmap(Noisy::new())
            .variable_axes([("params", 0)])
            .split_rngs([("params", true), ("dropout", true)])
            .call(cx, xs, |m, cx, x: Tensor| m.call(cx, &x))
    }
}

/// The spec's vmap of a module method (L10523-10568): `inner` applies a `Dense` made by
/// `call` three times, vmapped with the module's params stacked.
#[module]
pub struct Foo {}

#[module]
impl Foo {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let dense = nn::Dense::new(x.size()[1]);
        let fn_ = |cx: &mut Scope, x: &Tensor| -> Result<Tensor> { Ok(dense.call(cx, x)? + 1) };
        nn::vmap_fn().in_axes(0).variable_axes([("params", 0)]).split_rngs([("params", true)]).call_here(
            cx,
            x,
            |cx, x: Tensor| self.inner(cx, x, &fn_),
        )
    }

    pub fn inner(
        &self,
        cx: &mut Scope,
        x: Tensor,
        fn_: &dyn Fn(&mut Scope, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let mut x = x;
        for _ in 0..3 {
            x = fn_(cx, &x)?;
        }
        Ok(x)
    }
}

fn check_grads(c: &Case<'_>, loss: impl Fn(&Variables) -> flax::Result<Tensor>) {
    let params = c.variables().get_dict("params").unwrap().clone();
    let grads = flax::grad(&params, |p| {
        let vars = c.variables().copy([("params", Value::Dict(p.clone()))]);
        Ok(loss(&vars)?.sum(Kind::Float))
    })
    .unwrap();
    assert_same_tree(&format!("{}: grads", c.name), &grads, &c.dict("grads"));
}

fn golden() -> Golden {
    Golden::load("vmap")
}

#[test]
fn spec_linen_vmap_mlp() {
    let g = golden();
    for name in ["linen_vmap_mlp", "ensemble"] {
        let c = g.case(name);
        let (m, xs) = (LinenVmapMLP::new(), c.input("xs"));
        c.check(|| m.init(key(), &xs), |v| m.apply(v, &xs));
        check_grads(&c, |v| m.apply(v, &xs));
    }
}

#[test]
fn spec_manual_vmap_mlp() {
    let g = golden();
    let c = g.case("manual_vmap_mlp");
    let (m, xs) = (ManualVmapMLP::new(), c.input("xs"));
    c.check(|| m.init(key(), &xs), |v| m.apply(v, &xs));
    check_grads(&c, |v| m.apply(v, &xs));
    // The spec's printed tree: hidden kernel (3, 4, 4), out kernel (3, 4, 1).
    let v = m.init(key(), &xs).unwrap();
    assert_eq!(v.tensor(&["params", "mlp", "hidden", "kernel"]).unwrap().size(), [3, 4, 4]);
    assert_eq!(v.tensor(&["params", "mlp", "out", "kernel"]).unwrap().size(), [3, 4, 1]);
}

#[test]
fn shared_params_on_other_axes() {
    let g = golden();
    let c = g.case("shared");
    let (m, xs) = (Shared::new(), c.input("xs"));
    c.check(|| m.init(key(), &xs), |v| m.apply(v, &xs));
    check_grads(&c, |v| m.apply(v, &xs));
}

#[test]
fn spec_vmap_of_a_module_method() {
    let g = golden();
    let c = g.case("method");
    let (m, x) = (Foo::new(), c.input("x"));
    c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
    check_grads(&c, |v| m.apply(v, &x));
}

#[test]
fn batch_norm_averages_over_the_mapped_axis() {
    let g = golden();
    let c = g.case("batch_norm");
    let (m, xs) = (LinenStatefulVmapMLP::new(), c.input("xs"));
    assert_same_tree("batch_norm: init", &m.init(key(), &xs, false).unwrap(), &c.variables());
    let (y, updated) =
        m.apply_with(&c.variables(), ApplyOptions::new().mutable("batch_stats"), &xs, true).unwrap();
    assert_close("batch_norm: train output", &y, &c.output());
    assert_same_tree("batch_norm: updated", &updated, &c.updated());
    assert_close(
        "batch_norm: eval output",
        &m.apply(&c.variables(), &xs, false).unwrap(),
        &c.tensor(&["eval_output"]),
    );
}

#[test]
fn dropout_draws_per_member_keys() {
    let g = golden();
    let c = g.case("dropout");
    let (m, xs) = (NoisyEnsemble::new(), c.input("xs"));
    let rngs = Rngs::from([("params", key()), ("dropout", PRNGKey::new(1))]);
    assert_same_tree(
        "dropout: init",
        &m.init_with(ApplyOptions::new().rngs(rngs), &xs).unwrap().1,
        &c.variables(),
    );
    let options = ApplyOptions::new().rngs([("dropout", PRNGKey::new(2))]);
    assert_close("dropout: output", &m.apply_with(&c.variables(), options, &xs).unwrap().0, &c.output());
}

#[test]
fn every_golden_case_has_a_test() {
    let g = golden();
    for name in ["linen_vmap_mlp", "manual_vmap_mlp", "ensemble", "shared", "method", "batch_norm", "dropout"]
    {
        g.case(name);
    }
    g.assert_all_seen();
}

#[test]
fn apply_runs_batched_and_equals_the_loop() {
    // The members' outputs equal each member applied alone with its slice of the params.
    let xs = Tensor::randn([4, 7, 2], (Kind::Float, Device::Cpu));
    let m = LinenVmapMLP::new();
    let v = m.init(key(), &xs).unwrap();
    let y = m.apply(&v, &xs).unwrap();
    for i in 0..4 {
        let member = v.get_dict("params").unwrap().get_dict("mlp").unwrap();
        let slice = |path: [&str; 2]| member.tensor(&path).unwrap().get(i);
        let h = (xs.get(i).matmul(&slice(["hidden", "kernel"])) + slice(["hidden", "bias"])).relu();
        let expected = h.matmul(&slice(["out", "kernel"])) + slice(["out", "bias"]);
        assert!(y.get(i).allclose(&expected, 1e-5, 1e-5, false), "member {i}");
    }
    assert_eq!(flax::core::batching::functorch_depth(), 0, "a vmap level was left on the stack");
}

#[test]
fn bad_input_names_the_transform_and_the_axis() {
    let xs = Tensor::ones([3, 4], (Kind::Float, Device::Cpu));
    let v = LinenVmapMLP::new().init(key(), &xs).unwrap();
    match LinenVmapMLP::new().apply(&v, &Tensor::ones([5, 4], (Kind::Float, Device::Cpu))) {
        Err(Error::Transform { transform: "vmap", scope, message }) => {
            assert_eq!(scope, "/mlp");
            assert!(message.contains("inconsistent batch axis sizes"), "{message}");
        }
        other => panic!("expected a vmap error, got {other:?}"),
    }
    match Shared::new().init(key(), &Tensor::ones([3], (Kind::Float, Device::Cpu))) {
        Err(Error::Transform { message, .. }) => {
            assert!(message.contains("axis 1 is out of range"), "{message}")
        }
        other => panic!("expected a vmap error, got {other:?}"),
    }
    assert_eq!(flax::core::batching::functorch_depth(), 0);
}

/// Reports whether it runs on a libtorch vmap level.
#[module]
pub struct Probe {}

#[module]
impl Probe {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let batched = flax::core::batching::current_level().is_some();
        let y = nn::Dense::new(2).call(cx, x)?;
        Ok(y.zeros_like() + f64::from(u8::from(batched)))
    }
}

#[module]
pub struct ProbeEnsemble {}

#[module]
impl ProbeEnsemble {
    #[compact]
    pub fn call(&self, cx: &mut Scope, xs: &Tensor) -> Result<Tensor> {
        nn::vmap(Probe::new()).variable_axes([("params", 0)]).split_rngs([("params", true)]).call(
            cx,
            xs,
            |m, cx, x: Tensor| m.call(cx, &x),
        )
    }
}

#[test]
fn init_loops_and_apply_is_one_batched_call() {
    let xs = Tensor::ones([3, 5, 4], (Kind::Float, Device::Cpu));
    let (during_init, v) = ProbeEnsemble::new().init_with_output(key(), &xs).unwrap();
    assert_eq!(during_init.sum(Kind::Float).double_value(&[]), 0.0, "init runs the members one by one");
    let during_apply = ProbeEnsemble::new().apply(&v, &xs).unwrap();
    assert_eq!(during_apply.mean(Kind::Float).double_value(&[]), 1.0, "apply runs on a vmap level");
}

/// The checkpoint Flax writes for a model (`scripts/golden/transforms_checkpoints.py`).
fn flax_checkpoint(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/checkpoints/transforms/{name}.msgpack", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn checkpoints_of_vmapped_models_are_flax_bytes_both_ways() {
    let xs = Tensor::ones([3, 4], (Kind::Float, Device::Cpu));
    let ours = LinenVmapMLP::new().init(key(), &xs).unwrap();
    let bytes = flax_checkpoint("vmap_mlp");
    assert_eq!(
        flax::serialization::to_bytes(&ours).unwrap(),
        bytes,
        "vmap_mlp: our bytes differ from Flax's"
    );
    let restored = flax::serialization::from_bytes(&ours, &bytes).unwrap();
    assert_close(
        "vmap_mlp: apply",
        &LinenVmapMLP::new().apply(&restored, &xs).unwrap(),
        &LinenVmapMLP::new().apply(&ours, &xs).unwrap(),
    );

    let xs = Tensor::ones([3, 6, 2], (Kind::Float, Device::Cpu));
    let m = LinenStatefulVmapMLP::new();
    let ours = m.init(key(), &xs, false).unwrap();
    let bytes = flax_checkpoint("vmap_batch_norm");
    assert_eq!(
        flax::serialization::to_bytes(&ours).unwrap(),
        bytes,
        "vmap_batch_norm: our bytes differ from Flax's"
    );
    let restored = flax::serialization::from_bytes(&ours, &bytes).unwrap();
    assert_close(
        "vmap_batch_norm: apply",
        &m.apply(&restored, &xs, false).unwrap(),
        &m.apply(&ours, &xs, false).unwrap(),
    );
}
