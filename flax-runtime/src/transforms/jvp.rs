//! `jvp` (Flax's `nn.jvp`): a module's output with its Jacobian-vector product, the
//! directional derivative along tangents of the inputs and of the variables, by libtorch's
//! forward-mode AD (dual tensors on a forward-grad level, through the C++ shim).
//!
//! ```
//! use flax::prelude::*;
//!
//! /// The spec's `LearnScale` (L16801-16816), with its `scale` initialised to 2.
//! #[module]
//! pub struct LearnScale {}
//!
//! #[module]
//! impl LearnScale {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
//!         let p = cx.param("test", nn::initializers::constant(2.0), &[])?;
//!         Ok(p * x)
//!     }
//! }
//!
//! #[module]
//! pub struct Foo {}
//!
//! #[module]
//! impl Foo {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
//!         let scale = LearnScale::new();
//!         // d(p x) along (dp = 1, dx = 0) is x.
//!         let vars_t = Variables::new().copy([(
//!             "params",
//!             flax::Value::Dict(FrozenDict::new().copy([("test", flax::Value::Tensor(Tensor::from(1f32)))])),
//!         )]);
//!         let (_, out_t) = nn::jvp(|mdl: &LearnScale, cx, x: Tensor| mdl.call(cx, &x), &scale, cx, x.shallow_clone(), x.zeros_like(), &vars_t)?;
//!         Ok(out_t)
//!     }
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let x = Tensor::from_slice(&[1f32, 2., 3.]);
//! let v = Foo::new().init(PRNGKey::new(0), &x)?;
//! assert_eq!(Vec::<f32>::try_from(&Foo::new().apply(&v, &x)?)?, [1.0, 2.0, 3.0]);
//! # Ok(())
//! # }
//! ```
//!
//! Variables without a tangent in `variable_tangents` (`{collection: subtree}`, paths
//! relative to the module) have a zero tangent, as in Flax; as in Flax, no tangents are
//! returned for the variables. libtorch allows one forward-AD level per process at a time,
//! so concurrent `jvp`s on several threads take turns, and a `jvp` inside a `jvp` is an
//! error.

use crate::core::errors::{Error, Result};
use crate::core::filter::CollectionFilter;
use crate::core::forward_ad;
use crate::core::frozen_dict::{FrozenDict, Value};
use crate::core::module::Module;
use crate::core::scope::Scope;
use crate::transforms::lifted::{in_frame_of, run_lifted};
use crate::tree::{self, Tree};
use tch::Tensor;

/// Flax's `nn.jvp(fn, mdl, primals, tangents, variable_tangents)`: runs `f(module, scope,
/// primals)` in the module's scope and returns its output and the output's tangent.
pub fn jvp<M: Module, X: Tree, Y: Tree>(
    f: impl FnOnce(&M, &mut Scope<'_>, X) -> Result<Y>,
    module: &M,
    cx: &mut Scope<'_>,
    primals: X,
    tangents: X,
    variable_tangents: &FrozenDict,
) -> Result<(Y, Y)> {
    let owner = module.module_handle().token;
    in_frame_of(cx, module.module_handle(), M::TYPE_NAME, |cx| {
        let variables = cx.frame_variables();
        let mut dual_vars = Vec::new();
        let all_tangents = Value::Dict(variable_tangents.clone());
        collect_dual_variables(&Value::Dict(variables.clone()), Some(&all_tangents), "", &mut dual_vars);
        let (x_primals, x_tangents) = (tree::leaves(&primals), tree::leaves(&tangents));
        if x_primals.len() != x_tangents.len() {
            return Err(Error::Value(format!(
                "jvp: the tangents have {} arrays, the primals {}",
                x_tangents.len(),
                x_primals.len()
            )));
        }
        let n_vars = dual_vars.len();
        let inputs: Vec<Tensor> = dual_vars
            .iter()
            .map(|(_, p, _)| p.shallow_clone())
            .chain(x_primals.into_iter().map(Tensor::shallow_clone))
            .collect();
        let input_tangents: Vec<Tensor> = dual_vars
            .iter()
            .map(|(_, _, t)| t.shallow_clone())
            .chain(x_tangents.into_iter().map(Tensor::shallow_clone))
            .collect();
        let rngs = cx.rng_streams().clone();
        let mut template = None;
        let mut after = None;
        let (out, out_t) = forward_ad::jvp(&inputs, &input_tangents, |duals| {
            let paths: Vec<&str> = dual_vars.iter().map(|(path, _, _)| path.as_str()).collect();
            let variables = with_arrays(&variables, &paths, &duals[..n_vars])?;
            let x = tree::tree_unflatten(&primals, duals[n_vars..].iter().map(Tensor::shallow_clone))?;
            let run = run_lifted(cx, variables, rngs, CollectionFilter::Everything, owner, |inner| {
                f(module, inner, x)
            })?;
            let leaves = tree::leaves(&run.out).into_iter().map(Tensor::shallow_clone).collect();
            template = Some(run.out);
            after = Some((run.counters, run.state));
            Ok(leaves)
        })?;
        let (template, (counters, state)) = template.zip(after).expect("the function ran");
        cx.set_rng_counters(counters);
        cx.publish(state);
        Ok((tree::tree_unflatten(&template, out)?, tree::tree_unflatten(&template, out_t)?))
    })
}

/// The floating-point arrays of `value` that have a tangent in `tangents` (same paths):
/// `(path, primal, tangent)`.
fn collect_dual_variables(
    value: &Value,
    tangents: Option<&Value>,
    path: &str,
    out: &mut Vec<(String, Tensor, Tensor)>,
) {
    match (value, tangents) {
        (Value::Dict(d), Some(Value::Dict(t))) => {
            for (k, v) in d.iter() {
                collect_dual_variables(v, t.get(k), &format!("{path}/{k}"), out);
            }
        }
        (Value::Tensor(p), Some(Value::Tensor(t))) if p.is_floating_point() => {
            out.push((path.to_owned(), p.shallow_clone(), t.to_kind(p.kind())));
        }
        // A partitioned variable's value, its tangent boxed or not.
        (Value::Boxed(b), Some(t)) => {
            collect_dual_variables(b.unbox(), Some(t.as_boxed().map_or(t, |t| t.unbox())), path, out)
        }
        _ => {}
    }
}

/// `dict` with the arrays at `paths` (as [`collect_dual_variables`] names them) replaced.
fn with_arrays(dict: &FrozenDict, paths: &[&str], arrays: &[Tensor]) -> Result<FrozenDict> {
    fn walk(value: &Value, path: &str, paths: &[&str], arrays: &[Tensor]) -> Value {
        match value {
            Value::Dict(d) => Value::Dict(
                d.iter()
                    .map(|(k, v)| (k.to_owned(), walk(v, &format!("{path}/{k}"), paths, arrays)))
                    .collect(),
            ),
            Value::Tensor(_) => match paths.iter().position(|p| *p == path) {
                Some(i) => Value::Tensor(arrays[i].shallow_clone()),
                None => value.clone(),
            },
            Value::Boxed(b) => Value::Boxed(Box::new(b.replace_boxed(walk(b.unbox(), path, paths, arrays)))),
            other => other.clone(),
        }
    }
    match walk(&Value::Dict(dict.clone()), "", paths, arrays) {
        Value::Dict(d) => Ok(d),
        _ => unreachable!("a dict maps to a dict"),
    }
}
