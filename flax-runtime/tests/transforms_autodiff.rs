//! `nn::remat`, `nn::custom_vjp` and `nn::jvp` against Flax 0.12.8
//! (`scripts/golden/transforms_autodiff.py`), and remat's recomputation.

mod layers_golden;

use flax::prelude::*;
use flax::{tree, Value};
use layers_golden::{assert_close, assert_same_tree, key, Case, Golden};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[module]
pub struct Deep {}

#[module]
impl Deep {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let mut x = x.shallow_clone();
        for _ in 0..3 {
            x = nn::remat(nn::Dense::new(4)).call(cx, &x, |dense, cx, x: Tensor| dense.call(cx, &x))?.tanh();
        }
        Ok(x)
    }
}

#[module]
pub struct NoisyBlock {}

#[module]
impl NoisyBlock {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = nn::Dense::new(4).call(cx, x)?.tanh();
        nn::Dropout::new(0.5).deterministic(Some(false)).call(cx, &h, None)
    }
}

#[module]
pub struct NoisyDeep {}

#[module]
impl NoisyDeep {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let mut x = x.shallow_clone();
        for _ in 0..2 {
            x = nn::remat(NoisyBlock::new()).call(cx, &x, |m, cx, x: Tensor| m.call(cx, &x))?;
        }
        Ok(x)
    }
}

/// Flax's `remat_scan` example (`BigResnet`), smaller.
#[module]
pub struct DenseStack {}

#[module]
impl DenseStack {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::remat_scan(nn::Dense::new(4), [2, 3]).name("dense_stack").call(
            cx,
            x.shallow_clone(),
            |dense, cx, x| dense.call(cx, &x),
        )
    }
}

/// The spec's `nn.custom_vjp` example (L16975-17021).
#[module]
pub struct SignGrad {}

#[module]
impl SignGrad {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let f = |mdl: &nn::Dense, cx: &mut Scope, x: Tensor| mdl.call(cx, &x);
        let fwd = |mdl: &nn::Dense, cx: &mut Scope, x: Tensor| nn::vjp(f, mdl, cx, x);
        let bwd = |vjp_fn: &nn::VjpFn<Tensor, Tensor>, y_t: &Tensor| {
            let (params_t, inputs_t) = vjp_fn.call(y_t)?;
            Ok((tree::tree_map(&params_t, |t| Ok(t.sign()))?, inputs_t))
        };
        Ok(nn::custom_vjp(f, fwd, bwd).call(cx, &nn::Dense::new(1), x.shallow_clone())?.reshape([]))
    }
}

#[module]
pub struct LearnScale {}

#[module]
impl LearnScale {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let p = cx.param("test", nn::initializers::normal(1e-2), &[])?;
        Ok(p * x)
    }
}

/// The spec's `nn.jvp` example (L16801-16816).
#[module]
pub struct JvpSpec {}

#[module]
impl JvpSpec {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let scale = LearnScale::new();
        let ones = Variables::new().copy([(
            "params",
            Value::Dict(FrozenDict::new().copy([("test", Value::Tensor(Tensor::from(1f32)))])),
        )]);
        let (_, out_t) = nn::jvp(
            |mdl: &LearnScale, cx, x: Tensor| mdl.call(cx, &x),
            &scale,
            cx,
            x.shallow_clone(),
            x.zeros_like(),
            &ones,
        )?;
        Ok(out_t)
    }
}

#[module]
pub struct JvpDense {}

#[module]
impl JvpDense {
    #[compact]
    pub fn call(
        &self,
        cx: &mut Scope,
        x: &Tensor,
        x_t: &Tensor,
        k_t: &Tensor,
        b_t: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let dense = nn::Dense::new(3);
        if cx.is_initializing() {
            let _ = dense.call(cx, x)?;
        }
        let kernel = FrozenDict::new().copy([
            ("kernel", Value::Tensor(k_t.shallow_clone())),
            ("bias", Value::Tensor(b_t.shallow_clone())),
        ]);
        let tangents = Variables::new().copy([("params", Value::Dict(kernel))]);
        nn::jvp(
            |m: &nn::Dense, cx, x: Tensor| m.call(cx, &x),
            &dense,
            cx,
            x.shallow_clone(),
            x_t.shallow_clone(),
            &tangents,
        )
    }
}

fn check_grads(c: &Case<'_>, loss: impl Fn(&Variables) -> flax::Result<Tensor>) {
    let params = c.variables().get_dict("params").unwrap().clone();
    let grads = flax::grad(&params, |p| {
        let vars = Variables::new().copy([("params", Value::Dict(p.clone()))]);
        Ok(loss(&vars)?.sum(Kind::Float))
    })
    .unwrap();
    assert_same_tree(&format!("{}: grads", c.name), &grads, &c.dict("grads"));
}

fn golden() -> Golden {
    Golden::load("autodiff")
}

#[test]
fn remat_matches_flax_values_and_gradients() {
    let g = golden();
    let c = g.case("remat");
    let (m, x) = (Deep::new(), c.input("x"));
    c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
    check_grads(&c, |v| m.apply(v, &x));
    let c = g.case("remat_dropout");
    let (m, x) = (NoisyDeep::new(), c.input("x"));
    let rngs = Rngs::from([("params", key()), ("dropout", PRNGKey::new(1))]);
    assert_same_tree(
        "remat_dropout: init",
        &m.init_with(ApplyOptions::new().rngs(rngs), &x).unwrap().1,
        &c.variables(),
    );
    let opts = || ApplyOptions::new().rngs([("dropout", PRNGKey::new(1))]);
    assert_close("remat_dropout: output", &m.apply_with(&c.variables(), opts(), &x).unwrap().0, &c.output());
    check_grads(&c, |v| Ok(m.apply_with(v, opts(), &x)?.0));
}

#[test]
fn remat_scan_stacks_two_levels_with_flax_values() {
    let g = golden();
    let c = g.case("remat_scan");
    let (m, x) = (DenseStack::new(), c.input("x"));
    c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
    check_grads(&c, |v| m.apply(v, &x));
}

#[test]
fn spec_custom_vjp_gives_sign_gradients() {
    let g = golden();
    let c = g.case("custom_vjp");
    let (m, x) = (SignGrad::new(), c.input("x"));
    c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
    check_grads(&c, |v| m.apply(v, &x));
}

#[test]
fn spec_jvp_and_a_dense_jvp() {
    let g = golden();
    let c = g.case("jvp_spec");
    let (m, x) = (JvpSpec::new(), c.input("x"));
    c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
    let c = g.case("jvp_dense");
    let (x, x_t, k_t, b_t) = (c.input("x"), c.input("x_t"), c.input("k_t"), c.input("b_t"));
    let m = JvpDense::new();
    assert_same_tree("jvp_dense: init", &m.init(key(), &x, &x_t, &k_t, &b_t).unwrap(), &c.variables());
    let (y, y_t) = m.apply(&c.variables(), &x, &x_t, &k_t, &b_t).unwrap();
    assert_close("jvp_dense: y", &y, &c.output_at(&["y"]));
    assert_close("jvp_dense: y_t", &y_t, &c.output_at(&["y_t"]));
}

#[test]
fn every_golden_case_has_a_test() {
    let g = golden();
    for name in ["remat", "remat_dropout", "remat_scan", "custom_vjp", "jvp_spec", "jvp_dense"] {
        g.case(name);
    }
    g.assert_all_seen();
}

/// Counts how often its body runs.
#[module]
pub struct Counted {}

#[module]
impl Counted {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, runs: &Arc<AtomicUsize>) -> Result<Tensor> {
        let runs = Arc::clone(runs);
        nn::remat(nn::Dense::new(4)).call(cx, x, move |dense, cx, x: Tensor| {
            runs.fetch_add(1, Ordering::SeqCst);
            dense.call(cx, &x)
        })
    }
}

#[test]
fn remat_recomputes_in_the_backward_pass_only_when_differentiating() {
    let x = Tensor::ones([2, 4], (Kind::Float, Device::Cpu));
    let runs = Arc::new(AtomicUsize::new(0));
    let v = Counted::new().init(key(), &x, &runs).unwrap();
    let _ = Counted::new().apply(&v, &x, &runs).unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2, "init and a plain apply run once each");
    let params = v.get_dict("params").unwrap().clone();
    flax::grad(&params, |p| {
        let vars = Variables::new().copy([("params", Value::Dict(p.clone()))]);
        Ok(Counted::new().apply(&vars, &x, &runs)?.sum(Kind::Float))
    })
    .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 4, "forward once, then once more in the backward pass");
}
