//! `RNN`, `Bidirectional` and `flip_sequences` against Flax 0.12.8
//! (`scripts/golden/layers_rnn.py`).

mod layers_golden;

use flax::nn::{self, Bidirectional, ConvLSTMCell, GRUCell, LSTMCell, OptimizedLSTMCell, RNNCellBase, RNN};
use flax::prelude::*;
use flax::tree;
use flax::Rngs;
use layers_golden::{assert_close, assert_same_tree, key, Case, Golden};

/// `nn.RNN(nn.LSTMCell(4))` written inline, then a `Dense`: Flax's params are `LSTMCell_0`
/// (the cell keeps this module as parent) and `Dense_0`.
#[module]
pub struct InlineRnn {}

#[module]
impl InlineRnn {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let (_, y) = nn::RNN::new(nn::LSTMCell::new(), 4).call(cx, x, None, None)?;
        nn::Dense::new(2).call(cx, &y)
    }
}

/// Both RNNs and their cells written inline: params `GRUCell_0`, `LSTMCell_0`.
#[module]
pub struct InlineBidirectional {}

#[module]
impl InlineBidirectional {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let m =
            nn::Bidirectional::new(nn::RNN::new(nn::GRUCell::new(), 4), nn::RNN::new(nn::LSTMCell::new(), 3));
        Ok(m.call(cx, x, None, None)?.1)
    }
}

/// One RNN built inline and called twice: one `LSTMCell_0`.
#[module]
pub struct SharedRnn {}

#[module]
impl SharedRnn {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let rnn = nn::RNN::new(nn::LSTMCell::new(), 4);
        let (_, a) = rnn.call(cx, x, None, None)?;
        let (_, b) = rnn.call(cx, x, None, None)?;
        Ok(a + b)
    }
}

/// A user module holding a module in a field.
#[module]
pub struct Holder {
    #[submodule]
    pub inner: nn::Dense,
}

#[module]
impl Holder {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        self.inner.call(cx, x)
    }
}

/// Modules built inline and handed to a `Holder` keep their parent: `Dense_0`, `Dense_1`,
/// `named`, `Dense_2`.
#[module]
pub struct InlineHolders {}

#[module]
impl InlineHolders {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let d = nn::Dense::new(3);
        let y = Holder::new(d).call(cx, x)? + Holder::new(nn::Dense::new(3)).call(cx, x)?;
        let y = y + Holder::new(nn::Dense::new(3).name("named")).call(cx, x)?;
        Ok(y + nn::Dense::new(3).call(cx, x)?)
    }
}

/// A tanh cell with dropout on its output (the golden script's `DropoutCell`).
#[module]
pub struct DropoutCell {
    pub features: i64,
}

#[module]
impl DropoutCell {
    #[compact]
    pub fn call(&self, cx: &mut Scope, carry: &Tensor, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let from_x = nn::Dense::new(self.features).call(cx, x)?;
        let from_h = nn::Dense::new(self.features).use_bias(false).call(cx, carry)?;
        let h = (from_x + from_h).tanh();
        let h = nn::Dropout::new(0.5).deterministic(Some(false)).call(cx, &h, None)?;
        Ok((h.shallow_clone(), h))
    }
}

impl RNNCellBase for DropoutCell {
    type Carry = Tensor;

    fn step(&self, cx: &mut Scope<'_>, carry: &Tensor, inputs: &Tensor) -> Result<(Tensor, Tensor)> {
        self.call(cx, carry, inputs)
    }

    fn initialize_carry(_: PRNGKey, batch_dims: &[i64], size: &[i64], device: Device) -> Result<Tensor> {
        Ok(Tensor::zeros([batch_dims, size].concat(), (Kind::Float, device)))
    }
}

/// Checks `init` and `(carry, outputs)`; `carry_names` are the golden carry's leaves in the
/// order of the Rust carry's leaves.
fn check<C: RNNCellBase>(
    c: &Case<'_>,
    m: &RNN<C>,
    initial: Option<&C::Carry>,
    seq_lengths: Option<&Tensor>,
    carry_names: &[&str],
) {
    let x = c.input("x");
    assert_same_tree(
        &format!("{}: init", c.name),
        &m.init(key(), &x, initial, seq_lengths).unwrap(),
        &c.variables(),
    );
    let (carry, y) = m.apply(&c.variables(), &x, initial, seq_lengths).unwrap();
    assert_close(&format!("{}: outputs", c.name), &y, &c.output());
    let leaves = tree::leaves(&carry);
    assert_eq!(leaves.len(), carry_names.len());
    for (leaf, name) in leaves.iter().zip(carry_names) {
        assert_close(&format!("{}: carry {name}", c.name), leaf, &c.tensor(&["carry", name]));
    }
}

#[test]
fn rnn_matches_flax() {
    let g = Golden::load("rnn");
    let lstm = || RNN::new(LSTMCell::new(), 4);
    check(&g.case("lstm"), &lstm(), None, None, &["c", "h"]);
    check(&g.case("gru_time_major"), &RNN::new(GRUCell::new(), 3).time_major(true), None, None, &["h"]);
    check(&g.case("lstm_reverse"), &lstm().reverse(true), None, None, &["c", "h"]);
    check(
        &g.case("lstm_reverse_keep_order"),
        &lstm().reverse(true).keep_order(true),
        None,
        None,
        &["c", "h"],
    );
    let c = g.case("lstm_seq_lengths");
    check(&c, &lstm(), None, Some(&c.input("seq_lengths")), &["c", "h"]);
    let c = g.case("lstm_reverse_seq_lengths");
    let m = RNN::new(OptimizedLSTMCell::new(), 4).reverse(true).keep_order(true);
    check(&c, &m, None, Some(&c.input("seq_lengths")), &["c", "h"]);
    let c = g.case("gru_initial_carry");
    check(&c, &RNN::new(GRUCell::new(), 3), Some(&c.input("initial_carry")), None, &["h"]);
    check(&g.case("gru_multi_batch"), &RNN::new(GRUCell::new(), 3), None, None, &["h"]);
    let conv = RNN::new(ConvLSTMCell::new(3, vec![3, 3]), [5, 5, 3]);
    check(&g.case("conv_lstm"), &conv, None, None, &["c", "h"]);

    let c = g.case("bidirectional");
    let x = c.input("x");
    let m = Bidirectional::new(RNN::new(GRUCell::new(), 4), RNN::new(LSTMCell::new(), 3));
    assert_same_tree("bidirectional: init", &m.init(key(), &x, None, None).unwrap(), &c.variables());
    let ((forward, (bc, bh)), y) = m.apply(&c.variables(), &x, None, None).unwrap();
    assert_close("bidirectional: outputs", &y, &c.output());
    assert_close("bidirectional: forward h", &forward, &c.tensor(&["carry", "forward", "h"]));
    assert_close("bidirectional: backward c", &bc, &c.tensor(&["carry", "backward", "c"]));
    assert_close("bidirectional: backward h", &bh, &c.tensor(&["carry", "backward", "h"]));

    let c = g.case("bidirectional_seq_lengths");
    let lengths = c.input("seq_lengths");
    let m = Bidirectional::new(RNN::new(LSTMCell::new(), 2), RNN::new(LSTMCell::new(), 2));
    assert_same_tree(
        "bidirectional_seq_lengths: init",
        &m.init(key(), &x, None, Some(&lengths)).unwrap(),
        &c.variables(),
    );
    let (((fc, fh), (bc, bh)), y) = m.apply(&c.variables(), &x, None, Some(&lengths)).unwrap();
    assert_close("bidirectional_seq_lengths: outputs", &y, &c.output());
    for (t, path) in
        [(&fc, ["forward", "c"]), (&fh, ["forward", "h"]), (&bc, ["backward", "c"]), (&bh, ["backward", "h"])]
    {
        assert_close(
            &format!("bidirectional_seq_lengths: {path:?}"),
            t,
            &c.tensor(&["carry", path[0], path[1]]),
        );
    }

    check_inline(&g);
    let c = g.case("dropout_split");
    let x = c.input("x");
    let m = RNN::new(DropoutCell::new(4), 4).split_rngs([("params", false), ("dropout", true)]);
    let rngs = Rngs::from([("params", key()), ("dropout", PRNGKey::new(1))]);
    assert_same_tree("dropout_split: init", &m.init(rngs, &x, None, None).unwrap(), &c.variables());
    let options = ApplyOptions::new().rngs([("dropout", PRNGKey::new(2))]);
    let ((_, y), _) = m.apply_with(&c.variables(), options, &x, None, None).unwrap();
    assert_close("dropout_split: outputs", &y, &c.output());

    let c = g.case("flip_sequences");
    let flipped = nn::flip_sequences(&c.input("x"), Some(&c.input("seq_lengths")), 1, false).unwrap();
    assert_close("flip_sequences", &flipped, &c.output());
    g.assert_all_seen();
}

/// The modules built inline: Flax's param paths and outputs.
fn check_inline(g: &Golden) {
    let c = g.case("inline_rnn");
    let x = c.input("x");
    c.check(|| InlineRnn::new().init(key(), &x), |v| InlineRnn::new().apply(v, &x));
    let c = g.case("inline_bidirectional");
    c.check(|| InlineBidirectional::new().init(key(), &x), |v| InlineBidirectional::new().apply(v, &x));
    let c = g.case("inline_shared");
    c.check(|| SharedRnn::new().init(key(), &x), |v| SharedRnn::new().apply(v, &x));
    let c = g.case("inline_holders");
    c.check(|| InlineHolders::new().init(key(), &x), |v| InlineHolders::new().apply(v, &x));
}

#[test]
fn typed_views_agree_with_inline_construction_names() {
    let x = Tensor::ones([2, 5, 3], (Kind::Float, Device::Cpu));
    let v = InlineRnn::new().init(key(), &x).unwrap();
    let view = InlineRnn::params(&v).unwrap();
    assert!(view.dense_0.kernel.equal(v.tensor(&["params", "Dense_0", "kernel"]).unwrap()));
    assert!(view.tree.unwrap().get_dict("LSTMCell_0").is_some(), "the cell is reached through `tree`");
    // `Dense_1` is constructed in a `Holder`'s arguments and named there: the macro's counter
    // agrees with the run time's, so `dense_2` is `Dense_2`, not `Dense_1`.
    let v = InlineHolders::new().init(key(), &x).unwrap();
    let view = InlineHolders::params(&v).unwrap();
    assert!(view.dense_2.kernel.equal(v.tensor(&["params", "Dense_2", "kernel"]).unwrap()));
    assert!(!view.dense_2.kernel.equal(v.tensor(&["params", "Dense_1", "kernel"]).unwrap()));
    let v = InlineBidirectional::new().init(key(), &x).unwrap();
    assert!(InlineBidirectional::params(&v).unwrap().tree.unwrap().get_dict("GRUCell_0").is_some());
}

#[test]
fn cell_params_live_under_cell() {
    let x = Tensor::ones([2, 3, 5], (Kind::Float, Device::Cpu));
    let v = RNN::new(GRUCell::new(), 4).init(key(), &x, None, None).unwrap();
    assert!(v.tensor(&["params", "cell", "hn", "bias"]).is_some());
    let err = RNN::new(GRUCell::new(), [2, 2]).init(key(), &x, None, None).unwrap_err();
    assert!(err.to_string().contains("cell_size must be an int"), "{err}");
    let err =
        RNN::new(GRUCell::new(), 4).init(key(), &Tensor::ones([3], (Kind::Float, Device::Cpu)), None, None);
    assert!(err.unwrap_err().to_string().contains("RNN needs inputs with a time axis"));
}

/// Apply with the fused operator and with the per-step scan: same outputs, carries and
/// gradients (of the params and of the inputs) within 1e-5; the fused path runs exactly when
/// `fused` is on, and never during `init`.
fn fused_equals_per_step<C: RNNCellBase>(what: &str, rnn: RNN<C>, x: &Tensor, initial: Option<&C::Carry>) {
    let before = nn::fused_run_count();
    let variables = rnn.init(key(), x, initial, None).unwrap();
    assert_eq!(nn::fused_run_count(), before, "{what}: init keeps the per-step path");
    // A fixed random projection of everything, so that every output and carry element counts.
    let loss = |m: &RNN<C>, v: &Variables, x: &Tensor| -> flax::Result<(Tensor, Vec<Tensor>)> {
        let (carry, y) = m.apply(v, x, initial, None)?;
        let mut parts = vec![y];
        parts.extend(tree::leaves(&carry).into_iter().map(Tensor::shallow_clone));
        let mut total = Tensor::from(0.0f64);
        for p in &parts {
            // Deterministic, not drawn from libtorch's global generator, which the tests of
            // this binary running on other threads draw from too.
            let w =
                (Tensor::arange(p.numel() as i64, (Kind::Float, Device::Cpu)) * 0.37).sin().reshape(p.size());
            total += (p * w).sum(Kind::Double);
        }
        Ok((total, parts))
    };
    let run = |m: &RNN<C>| {
        let count = nn::fused_run_count();
        let inputs = (variables.clone(), x.shallow_clone());
        let ((grads, x_grad), parts) = flax::grad_with_aux(&inputs, |(v, x)| loss(m, v, x)).unwrap();
        let ran_fused = nn::fused_run_count() - count;
        (grads, parts, x_grad, ran_fused)
    };
    let (fused_grads, fused_parts, fused_x_grad, fused_runs) = run(&rnn);
    let (step_grads, step_parts, step_x_grad, step_runs) = run(&rnn.clone().fused(false));
    assert_eq!(fused_runs, 1, "{what}: the fused path ran");
    assert_eq!(step_runs, 0, "{what}: fused(false) takes the per-step path");
    for (i, (a, b)) in fused_parts.iter().zip(&step_parts).enumerate() {
        assert_close(&format!("{what}: output {i}"), a, b);
    }
    assert_same_tree(&format!("{what}: param gradients"), &fused_grads, &step_grads);
    assert_close(&format!("{what}: input gradients"), &fused_x_grad, &step_x_grad);
}

#[test]
fn fused_path_equals_the_per_step_path() {
    tch::manual_seed(0);
    let x = Tensor::randn([3, 7, 5], (Kind::Float, Device::Cpu));
    let time_major = x.transpose(0, 1).contiguous();
    let multi = Tensor::randn([2, 3, 7, 5], (Kind::Float, Device::Cpu));
    let lstm = || RNN::new(LSTMCell::new(), 6);
    let gru = || RNN::new(GRUCell::new(), 4);
    fused_equals_per_step("lstm", lstm(), &x, None);
    fused_equals_per_step("lstm time major", lstm().time_major(true), &time_major, None);
    fused_equals_per_step("lstm reverse", lstm().reverse(true), &x, None);
    fused_equals_per_step("lstm reverse keep_order", lstm().reverse(true).keep_order(true), &x, None);
    fused_equals_per_step("lstm batch dims", lstm(), &multi, None);
    fused_equals_per_step("optimized lstm", RNN::new(OptimizedLSTMCell::new(), 6), &x, None);
    let carry = (
        Tensor::randn([3, 6], (Kind::Float, Device::Cpu)),
        Tensor::randn([3, 6], (Kind::Float, Device::Cpu)),
    );
    fused_equals_per_step("lstm initial carry", lstm(), &x, Some(&carry));
    fused_equals_per_step("gru", gru(), &x, None);
    fused_equals_per_step("gru time major", gru().time_major(true), &time_major, None);
    fused_equals_per_step("gru reverse", gru().reverse(true), &x, None);
    fused_equals_per_step(
        "gru reverse keep_order time major",
        gru().reverse(true).keep_order(true).time_major(true),
        &time_major,
        None,
    );
    fused_equals_per_step("gru batch dims", gru(), &multi, None);
    let h = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
    fused_equals_per_step("gru initial carry", gru(), &x, Some(&h));
    let x64 = x.to_kind(Kind::Double);
    let v = RNN::new(GRUCell::new().param_dtype(Kind::Double), 4).init(key(), &x64, None, None).unwrap();
    let count = nn::fused_run_count();
    let (h, y) = RNN::new(GRUCell::new().param_dtype(Kind::Double), 4).apply(&v, &x64, None, None).unwrap();
    assert_eq!((h.kind(), y.kind()), (Kind::Double, Kind::Double));
    assert_eq!(nn::fused_run_count(), count + 1, "float64 runs fused too");
}

/// Cells that are not plain LSTM/GRU cells, and calls the fused operator does not fit, take the
/// per-step path.
#[test]
fn the_fused_path_is_only_taken_where_it_is_exact() {
    let x = Tensor::randn([2, 4, 3], (Kind::Float, Device::Cpu));
    let lengths = Tensor::from_slice(&[2i64, 4]);
    let not_fused = |what: &str, f: &dyn Fn() -> flax::Result<()>| {
        let count = nn::fused_run_count();
        f().unwrap();
        assert_eq!(nn::fused_run_count(), count, "{what}");
    };
    let lstm = RNN::new(LSTMCell::new(), 4);
    let v = lstm.init(key(), &x, None, None).unwrap();
    not_fused("seq_lengths", &|| lstm.apply(&v, &x, None, Some(&lengths)).map(drop));
    let custom = RNN::new(LSTMCell::new().gate_fn(|t| Ok(t.sigmoid())), 4);
    not_fused("a custom gate_fn", &|| custom.apply(&v, &x, None, None).map(drop));
    let half = RNN::new(LSTMCell::new().dtype(Some(Kind::Double)), 4);
    not_fused("a dtype override", &|| half.apply(&v, &x, None, None).map(drop));
    let captured = ApplyOptions::new().capture_intermediates(true);
    not_fused("capture_intermediates", &|| lstm.apply_with(&v, captured.clone(), &x, None, None).map(drop));
    let conv = RNN::new(ConvLSTMCell::new(3, vec![3, 3]), [5, 5, 3]);
    let xc = Tensor::randn([1, 2, 5, 5, 2], (Kind::Float, Device::Cpu));
    let vc = conv.init(key(), &xc, None, None).unwrap();
    not_fused("ConvLSTMCell", &|| conv.apply(&vc, &xc, None, None).map(drop));
    // Missing params are the per-step path's error, not a crash of the fused one.
    let err = lstm.apply(&Variables::new(), &x, None, None).unwrap_err();
    assert!(
        matches!(err, flax::Error::ScopeParamNotFound { .. } | flax::Error::ScopeCollectionNotFound { .. }),
        "{err}"
    );
}
