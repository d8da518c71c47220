//! `nn::jit`, `nn::map_variables` and `nn::vjp` against Flax 0.12.8
//! (`scripts/golden/transforms_misc.py`).

mod layers_golden;

use flax::prelude::*;
use flax::tree;
use flax::Value;
use layers_golden::{assert_close, assert_same_tree, key, Golden};

#[module]
pub struct JitModel {}

#[module]
impl JitModel {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::jit(nn::Dense::new(4)).call(cx, |m, cx| m.call(cx, x))?;
        nn::jit(nn::Dense::new(2)).call(cx, |m, cx| m.call(cx, &x.relu()))
    }
}

/// Flax's `CausalDense` (the `map_variables` docstring).
#[module]
pub struct CausalDense {
    pub features: i64,
}

#[module]
impl CausalDense {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let initializing = cx.is_initializing();
        let mask =
            move |v: FrozenDict| if initializing { Ok(v) } else { tree::tree_map(&v, |t| Ok(t.triu(0))) };
        nn::map_variables(nn::Dense::new(self.features).use_bias(false))
            .mapped_collections("params")
            .trans_in_fn(mask)
            .init(initializing)
            .call(cx, |dense, cx| dense.call(cx, x))
    }
}

#[module]
pub struct Doubled {}

#[module]
impl Doubled {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::map_variables(nn::Dense::new(3))
            .mapped_collections("params")
            .trans_in_fn(|v| tree::tree_map(&v, |t| Ok(t * 2)))
            .init(cx.is_initializing())
            .call(cx, |dense, cx| dense.call(cx, x))
    }
}

#[module]
pub struct LearnScale {}

#[module]
impl LearnScale {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let p = cx.param("scale", nn::initializers::zeros(), &[])?;
        Ok(p * x * y)
    }
}

/// The spec's `nn.vjp` example (L16900-16913).
#[module]
pub struct Foo {}

#[module]
impl Foo {
    #[compact]
    pub fn call(
        &self,
        cx: &mut Scope,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<(Tensor, Variables, Tensor, Tensor)> {
        let primals = (x.shallow_clone(), y.shallow_clone());
        let (z, bwd) = nn::vjp(
            |m: &LearnScale, cx, (x, y): (Tensor, Tensor)| m.call(cx, &x, &y),
            &LearnScale::new(),
            cx,
            primals,
        )?;
        let (params_grad, (x_grad, y_grad)) = bwd.call(&z.ones_like())?;
        Ok((z, params_grad, x_grad, y_grad))
    }
}

#[module]
pub struct DenseVjp {}

#[module]
impl DenseVjp {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, cot: &Tensor) -> Result<(Tensor, Variables, Tensor)> {
        let (y, bwd) = nn::vjp(
            |m: &nn::Dense, cx, x: Tensor| m.call(cx, &x),
            &nn::Dense::new(3),
            cx,
            x.shallow_clone(),
        )?;
        let (params_grad, x_grad) = bwd.call(cot)?;
        Ok((y, params_grad, x_grad))
    }
}

fn golden() -> Golden {
    Golden::load("transforms")
}

#[test]
fn jit_names_the_module_as_flax() {
    let g = golden();
    let c = g.case("jit");
    let (m, x) = (JitModel::new(), c.input("x"));
    c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
}

#[test]
fn map_variables_views_masked_and_doubled_params() {
    let g = golden();
    let c = g.case("causal_dense");
    let (m, x) = (CausalDense::new(3), c.input("x"));
    c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
    let c = g.case("doubled");
    let (m, x) = (Doubled::new(), c.input("x"));
    c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
}

#[test]
fn spec_vjp_example() {
    let g = golden();
    let c = g.case("vjp_spec");
    let (x, y) = (c.input("x"), c.input("y"));
    assert_same_tree("vjp: init", &Foo::new().init(key(), &x, &y).unwrap(), &c.variables());
    let (z, _, xg, yg) = Foo::new().init_with_output(key(), &x, &y).unwrap().0;
    let init = g.case("vjp_spec_init");
    assert_close("vjp init: z", &z, &init.output_at(&["0"]));
    assert_close("vjp init: x_grad", &xg, &init.output_at(&["2"]));
    assert_close("vjp init: y_grad", &yg, &init.output_at(&["3"]));
    let variables = Variables::new().copy([(
        "params",
        Value::Dict(FrozenDict::new().copy([(
            "LearnScale_0",
            Value::Dict(FrozenDict::new().copy([("scale", Value::Tensor(Tensor::from(0.5f32)))])),
        )])),
    )]);
    let (z, params_grad, xg, yg) = Foo::new().apply(&variables, &x, &y).unwrap();
    assert_close("vjp: z", &z, &c.output_at(&["0"]));
    assert_close(
        "vjp: params grad",
        params_grad.tensor(&["params", "scale"]).unwrap(),
        &c.output_at(&["1", "params", "scale"]),
    );
    assert_close("vjp: x_grad", &xg, &c.output_at(&["2"]));
    assert_close("vjp: y_grad", &yg, &c.output_at(&["3"]));
}

#[test]
fn vjp_of_a_dense_layer() {
    let g = golden();
    let c = g.case("vjp_dense");
    let (m, x, cot) = (DenseVjp::new(), c.input("x"), c.input("cot"));
    assert_same_tree("vjp_dense: init", &m.init(key(), &x, &cot).unwrap(), &c.variables());
    let (y, params_grad, x_grad) = m.apply(&c.variables(), &x, &cot).unwrap();
    assert_close("vjp_dense: y", &y, &c.output_at(&["0"]));
    assert_close(
        "vjp_dense: kernel grad",
        params_grad.tensor(&["params", "kernel"]).unwrap(),
        &c.output_at(&["1", "params", "kernel"]),
    );
    assert_close(
        "vjp_dense: bias grad",
        params_grad.tensor(&["params", "bias"]).unwrap(),
        &c.output_at(&["1", "params", "bias"]),
    );
    assert_close("vjp_dense: x grad", &x_grad, &c.output_at(&["2"]));
    // The cotangents are differentiable when the variables take part in an outer graph:
    // the gradient of sum(x_grad) = sum(cot @ kernel^T) with respect to the kernel.
    let params = c.variables().get_dict("params").unwrap().clone();
    let grads = flax::grad(&params, |p| {
        let vars = Variables::new().copy([("params", Value::Dict(p.clone()))]);
        Ok(m.apply(&vars, &x, &cot)?.2.sum(Kind::Float))
    })
    .unwrap();
    // d sum_ijk cot[i,k] kernel[j,k] / d kernel[j,k] = sum_i cot[i,k], for every row j.
    let expected = cot.sum_dim_intlist([0i64].as_slice(), true, Kind::Float).expand([3, 3], false);
    assert_close("vjp_dense: second order", grads.tensor(&["Dense_0", "kernel"]).unwrap(), &expected);
}

#[test]
fn every_golden_case_has_a_test() {
    let g = golden();
    for name in ["jit", "causal_dense", "doubled", "vjp_spec", "vjp_spec_init", "vjp_dense"] {
        g.case(name);
    }
    g.assert_all_seen();
}
