//! `nn::scan` against Flax 0.12.8 (`scripts/golden/transforms_scan.py`): `init` trees
//! (stacked, broadcast and carried variables, with Flax's values for the same seed), `apply`
//! outputs, gradients through the loop, updated collections, and the errors of bad input.

mod layers_golden;

use flax::nn::{self, LSTMCell};
use flax::prelude::*;
use flax::{Error, Value};
use layers_golden::{assert_close, assert_same_tree, key, Case, Golden};

#[module]
pub struct ResidualMLPBlock {}

#[module]
impl ResidualMLPBlock {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = nn::Dense::new(2).call(cx, x)?.relu();
        Ok(x + h)
    }
}

/// The spec's `ResidualMLP` (L16386-16405).
#[module]
pub struct ResidualMLP {
    pub n_layers: i64,
}

#[module]
impl ResidualMLP {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let (x, ()) = nn::scan(ResidualMLPBlock::new())
            .variable_axes([("params", 0)])
            .variable_broadcast(false)
            .split_rngs([("params", true)])
            .length(self.n_layers)
            .call(cx, x.shallow_clone(), &(), |block, cx, x, ()| Ok((block.call(cx, &x)?, ())))?;
        Ok(x)
    }
}

/// The spec's scanned LSTM (L16327-16350).
#[module]
pub struct ScanLSTM {
    pub features: i64,
}

#[module]
impl ScanLSTM {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let zeros = nn::initializers::zeros();
        let carry =
            LSTMCell::initialize_carry(PRNGKey::new(0), &[x.size()[0]], self.features, &zeros, x.device())?;
        let (_, y) = nn::scan(LSTMCell::new())
            .variable_broadcast("params")
            .split_rngs([("params", false)])
            .in_axes(1)
            .out_axes(1)
            .call(cx, carry, x, |cell, cx, carry, x: Tensor| cell.call(cx, &carry, &x))?;
        Ok(y)
    }
}

#[module]
pub struct Accumulate {}

#[module]
impl Accumulate {
    #[compact]
    pub fn call(&self, cx: &mut Scope, c: &Tensor, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let c = c + nn::Dense::new(3).call(cx, x)?;
        let y = c.tanh();
        Ok((c, y))
    }
}

#[module]
pub struct ReverseScan {}

#[module]
impl ReverseScan {
    #[compact]
    pub fn call(&self, cx: &mut Scope, xs: &Tensor) -> Result<(Tensor, Tensor)> {
        let c = Tensor::zeros([xs.size()[0], 3], (Kind::Float, xs.device()));
        nn::scan(Accumulate::new())
            .variable_axes([("params", 0)])
            .split_rngs([("params", true)])
            .in_axes(1)
            .out_axes(1)
            .reverse(true)
            .call(cx, c, xs, |m, cx, c, x: Tensor| m.call(cx, &c, &x))
    }
}

#[module]
pub struct Pair {}

#[module]
impl Pair {
    #[compact]
    pub fn call(
        &self,
        cx: &mut Scope,
        c: &Tensor,
        a: &Tensor,
        b: &Tensor,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let h = nn::Dense::new(2).call(cx, a)? * b;
        let c = c + h.sum(Kind::Float);
        let doubled = &h * 2;
        Ok((c, (h, doubled)))
    }
}

#[module]
pub struct PairScan {}

#[module]
impl PairScan {
    #[compact]
    pub fn call(&self, cx: &mut Scope, a: &Tensor, b: &Tensor) -> Result<(Tensor, (Tensor, Tensor))> {
        let c = Tensor::zeros([], (Kind::Float, a.device()));
        let xs = (a.shallow_clone(), b.shallow_clone());
        nn::scan(Pair::new()).variable_axes([("params", 0)]).split_rngs([("params", true)]).out_axes(1).call(
            cx,
            c,
            &xs,
            |m, cx, c, (a, b)| m.call(cx, &c, &a, &b),
        )
    }
}

#[module]
pub struct Inner {}

#[module]
impl Inner {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        Ok(nn::Dense::new(3).call(cx, x)?.tanh())
    }
}

#[module]
pub struct Outer {}

#[module]
impl Outer {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let (x, ()) = nn::scan(Inner::new())
            .variable_axes([("params", 0)])
            .split_rngs([("params", true)])
            .length(2)
            .call(cx, x.shallow_clone(), &(), |m, cx, x, ()| Ok((m.call(cx, &x)?, ())))?;
        nn::Dense::new(3).call(cx, &x)
    }
}

#[module]
pub struct NestedScan {}

#[module]
impl NestedScan {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let (x, ()) = nn::scan(Outer::new())
            .variable_axes([("params", 0)])
            .split_rngs([("params", true)])
            .length(3)
            .call(cx, x.shallow_clone(), &(), |m, cx, x, ()| Ok((m.call(cx, &x)?, ())))?;
        Ok(x)
    }
}

/// Counts its calls in a carried collection.
#[module]
pub struct Counted {}

#[module]
impl Counted {
    #[compact]
    pub fn call(&self, cx: &mut Scope, c: &Tensor, x: &Tensor) -> Result<Tensor> {
        let counter = cx.variable("counter", "i", |cx| Ok(Tensor::zeros([], (Kind::Int, cx.device()))))?;
        let count = counter.value(cx)?;
        counter.set_value(cx, count + 1)?;
        Ok(nn::Dense::new(2).call(cx, c)? + x)
    }
}

/// Scans a module in its own scope (Flax's functional `nn.scan`), after one direct call
/// that creates the carried counter.
#[module]
pub struct CarryScan {}

#[module]
impl CarryScan {
    #[compact]
    pub fn call(&self, cx: &mut Scope, c: &Tensor, xs: &Tensor) -> Result<Tensor> {
        let counted = Counted::new();
        let c = counted.call(cx, c, &xs.get(0))?;
        let (c, ()) = nn::scan_fn()
            .variable_carry("counter")
            .variable_broadcast("params")
            .split_rngs([("params", false)])
            .call(cx, &counted, c, xs, |m, cx, c, x: Tensor| Ok((m.call(cx, &c, &x)?, ())))?;
        Ok(c)
    }
}

#[module]
pub struct NormBlock {}

#[module]
impl NormBlock {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Dense::new(4).call(cx, x)?;
        let x = nn::BatchNorm::new().use_running_average(Some(false)).call(cx, &x, None)?;
        let x = nn::Dropout::new(0.5).deterministic(Some(false)).call(cx, &x, None)?;
        Ok(x.relu())
    }
}

#[module]
pub struct NormScan {}

#[module]
impl NormScan {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let (x, ()) = nn::scan(NormBlock::new())
            .variable_axes([("params", 0), ("batch_stats", 0)])
            .split_rngs([("params", true), ("dropout", true)])
            .length(3)
            .call(cx, x.shallow_clone(), &(), |m, cx, x, ()| Ok((m.call(cx, &x)?, ())))?;
        Ok(x)
    }
}

/// Checks the gradient of the sum of `loss`'s output with respect to the params.
fn check_grads(c: &Case<'_>, loss: impl Fn(&Variables) -> flax::Result<Tensor>) {
    let params = c.variables().get_dict("params").unwrap().clone();
    let grads = flax::grad(&params, |p| {
        let vars = Variables::new().copy([("params", Value::Dict(p.clone()))]);
        Ok(loss(&vars)?.sum(Kind::Float))
    })
    .unwrap();
    assert_same_tree(&format!("{}: grads", c.name), &grads, &c.dict("grads"));
}

#[test]
fn spec_residual_mlp_stacks_params_with_flax_values() {
    let g = Golden::load("scan");
    let c = g.case("residual_mlp");
    let m = ResidualMLP::new(4);
    let x = c.input("x");
    c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
    check_grads(&c, |v| m.apply(v, &x));
}

#[test]
fn spec_scanned_lstm_broadcasts_params() {
    let g = Golden::load("scan");
    let c = g.case("lstm");
    let m = ScanLSTM::new(4);
    let x = c.input("x");
    c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
    check_grads(&c, |v| m.apply(v, &x));
}

#[test]
fn reverse_scan_keeps_outputs_in_input_order() {
    let g = Golden::load("scan");
    let c = g.case("reverse");
    let m = ReverseScan::new();
    let xs = c.input("xs");
    assert_same_tree("reverse: init", &m.init(key(), &xs).unwrap(), &c.variables());
    let (carry, ys) = m.apply(&c.variables(), &xs).unwrap();
    assert_close("reverse: carry", &carry, &c.output_at(&["0"]));
    assert_close("reverse: ys", &ys, &c.output_at(&["1"]));
    check_grads(&c, |v| Ok(m.apply(v, &xs)?.0));
}

#[test]
fn tuples_of_scanned_inputs_and_outputs() {
    let g = Golden::load("scan");
    let c = g.case("pair");
    let m = PairScan::new();
    let (a, b) = (c.input("a"), c.input("b"));
    assert_same_tree("pair: init", &m.init(key(), &a, &b).unwrap(), &c.variables());
    let (carry, (h, doubled)) = m.apply(&c.variables(), &a, &b).unwrap();
    assert_close("pair: carry", &carry, &c.output_at(&["0"]));
    assert_close("pair: h", &h, &c.output_at(&["1", "0"]));
    assert_close("pair: 2h", &doubled, &c.output_at(&["1", "1"]));
    check_grads(&c, |v| Ok(m.apply(v, &a, &b)?.0));
}

#[test]
fn nested_scans_split_keys_as_flax() {
    let g = Golden::load("scan");
    let c = g.case("nested");
    let m = NestedScan::new();
    let x = c.input("x");
    c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
    check_grads(&c, |v| m.apply(v, &x));
}

#[test]
fn carried_collections_thread_through_the_loop() {
    let g = Golden::load("scan");
    let c = g.case("carry");
    let m = CarryScan::new();
    let (c0, xs) = (c.input("c"), c.input("xs"));
    // init runs the loop too: the counter is 1 + 3.
    assert_same_tree("carry: init", &m.init(key(), &c0, &xs).unwrap(), &c.variables());
    let (y, updated) =
        m.apply_with(&c.variables(), ApplyOptions::new().mutable("counter"), &c0, &xs).unwrap();
    assert_close("carry: output", &y, &c.output());
    assert_same_tree("carry: updated", &updated, &c.updated());
    // Without `mutable`, the carried collection cannot be written, as in Flax.
    assert!(matches!(m.apply(&c.variables(), &c0, &xs), Err(Error::ModifyScopeVariable { .. })));
}

#[test]
fn stacked_batch_stats_and_split_dropout_keys() {
    let g = Golden::load("scan");
    let c = g.case("norm_dropout");
    let m = NormScan::new();
    let x = c.input("x");
    let rngs = Rngs::from([("params", key()), ("dropout", PRNGKey::new(1))]);
    let (_, variables) = m.init_with(ApplyOptions::new().rngs(rngs), &x).unwrap();
    assert_same_tree("norm_dropout: init", &variables, &c.variables());
    let options = ApplyOptions::new().mutable("batch_stats").rngs([("dropout", PRNGKey::new(2))]);
    let (y, updated) = m.apply_with(&c.variables(), options, &x).unwrap();
    assert_close("norm_dropout: output", &y, &c.output());
    assert_same_tree("norm_dropout: updated", &updated, &c.updated());
}

#[test]
fn every_golden_case_has_a_test() {
    let g = Golden::load("scan");
    for name in ["residual_mlp", "lstm", "reverse", "pair", "nested", "carry", "norm_dropout"] {
        g.case(name);
    }
    g.assert_all_seen();
}

/// Forgets to map `params`: the layers cannot create their params in the loop.
#[module]
pub struct Unmapped {}

#[module]
impl Unmapped {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let (x, ()) = nn::scan(ResidualMLPBlock::new()).length(2).call(
            cx,
            x.shallow_clone(),
            &(),
            |block, cx, x, ()| Ok((block.call(cx, &x)?, ())),
        )?;
        Ok(x)
    }
}

#[test]
fn a_variable_in_an_unmapped_collection_is_explained() {
    let x = Tensor::ones([1, 2], (Kind::Float, Device::Cpu));
    match Unmapped::new().init(key(), &x) {
        Err(Error::Transform { transform: "scan", message, .. }) => {
            assert!(message.contains("collection \"params\", which this scan does not map"), "{message}");
            assert!(message.contains("/ScanResidualMLPBlock_0/Dense_0"), "{message}");
        }
        other => panic!("expected a scan error, got {other:?}"),
    }
}

#[test]
fn bad_input_names_the_transform_and_the_axis() {
    let x = Tensor::ones([1, 2], (Kind::Float, Device::Cpu));
    let v = ResidualMLP::new(4).init(key(), &x).unwrap();
    // Params stacked for 4 layers, applied as 3.
    match ResidualMLP::new(3).apply(&v, &x) {
        Err(Error::Transform { transform: "scan", scope, message }) => {
            assert_eq!(scope, "/ScanResidualMLPBlock_0");
            assert!(message.contains("size 4 on axis 0") && message.contains("size 3"), "{message}");
        }
        other => panic!("expected a scan error, got {other:?}"),
    }
    // Scanned inputs of different lengths.
    let (a, b) = (
        Tensor::ones([5, 2, 3], (Kind::Float, Device::Cpu)),
        Tensor::ones([4, 2, 2], (Kind::Float, Device::Cpu)),
    );
    match PairScan::new().init(key(), &a, &b) {
        Err(Error::Transform { message, .. }) => {
            assert!(message.contains("inconsistent scan lengths"), "{message}")
        }
        other => panic!("expected a scan error, got {other:?}"),
    }
    // An in_axes out of range.
    let xs = Tensor::ones([2], (Kind::Float, Device::Cpu));
    match ReverseScan::new().init(key(), &xs) {
        Err(Error::Transform { message, .. }) => {
            assert!(message.contains("axis 1 is out of range"), "{message}")
        }
        other => panic!("expected a scan error, got {other:?}"),
    }
}

/// The checkpoint Flax writes for a model (`scripts/golden/transforms_checkpoints.py`).
fn flax_checkpoint(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/checkpoints/transforms/{name}.msgpack", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Checks that our `init` writes Flax's checkpoint bytes, and that Flax's bytes restore to
/// variables `apply` gives the same output with.
fn check_flax_bytes(name: &str, ours: &Variables, apply: impl Fn(&Variables) -> flax::Result<Tensor>) {
    let bytes = flax_checkpoint(name);
    assert_eq!(flax::serialization::to_bytes(ours).unwrap(), bytes, "{name}: our bytes differ from Flax's");
    let restored = flax::serialization::from_bytes(ours, &bytes).unwrap();
    assert_close(&format!("{name}: apply"), &apply(&restored).unwrap(), &apply(ours).unwrap());
}

#[test]
fn checkpoints_of_scanned_models_are_flax_bytes_both_ways() {
    let x = Tensor::ones([1, 2], (Kind::Float, Device::Cpu));
    let m = ResidualMLP::new(4);
    check_flax_bytes("scan_residual_mlp", &m.init(key(), &x).unwrap(), |v| m.apply(v, &x));
    let x = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
    let m = NestedScan::new();
    check_flax_bytes("scan_nested", &m.init(key(), &x).unwrap(), |v| m.apply(v, &x));
}
