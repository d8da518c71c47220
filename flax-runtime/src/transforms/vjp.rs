//! `vjp` (Flax's `nn.vjp`): a module's output with a function that maps a cotangent of the
//! output to cotangents of the module's variables and of the inputs.
//!
//! ```
//! use flax::prelude::*;
//!
//! /// The spec's `LearnScale` (L16900-16913).
//! #[module]
//! pub struct LearnScale {}
//!
//! #[module]
//! impl LearnScale {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor, y: &Tensor) -> Result<Tensor> {
//!         let p = cx.param("scale", nn::initializers::zeros(), &[])?;
//!         Ok(p * x * y)
//!     }
//! }
//!
//! #[module]
//! pub struct Foo {}
//!
//! #[module]
//! impl Foo {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor, y: &Tensor) -> Result<(Tensor, Variables, Tensor, Tensor)> {
//!         let primals = (x.shallow_clone(), y.shallow_clone());
//!         let (z, bwd) = nn::vjp(|mdl: &LearnScale, cx, (x, y): (Tensor, Tensor)| mdl.call(cx, &x, &y), &LearnScale::new(), cx, primals)?;
//!         let (params_grad, (x_grad, y_grad)) = bwd.call(&z.ones_like())?;
//!         Ok((z, params_grad, x_grad, y_grad))
//!     }
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let (x, y) = (Tensor::from_slice(&[1f32, 2., 3.]), Tensor::from_slice(&[4f32, 5., 6.]));
//! let v = Foo::new().init(PRNGKey::new(0), &x, &y)?;
//! let (z, params_grad, x_grad, _) = Foo::new().apply(&v, &x, &y)?;
//! // d(sum(p x y))/dp = sum(x y) = 32
//! assert_eq!(params_grad.tensor(&["params", "scale"]).unwrap().double_value(&[]), 32.0);
//! assert_eq!(Vec::<f32>::try_from(&x_grad)?, [0.0; 3]); // p is 0 after init
//! # Ok(())
//! # }
//! ```
//!
//! The gradients come from libtorch's autograd, computed when the returned [`VjpFn`] is
//! called (as often as needed). Variables that already take part in a graph (a training
//! step differentiating through the `vjp`) are kept in it, and the cotangents are then
//! differentiable too; otherwise the function's inputs are detached copies, so nothing leaks
//! into the caller's tensors. As in Flax, only the variables that exist before the call get
//! a cotangent (during `init`, those the call creates do not).

use crate::core::errors::{Error, Result};
use crate::core::filter::CollectionFilter;
use crate::core::frozen_dict::FrozenDict;
use crate::core::module::Module;
use crate::core::scope::Scope;
use crate::transforms::axes::Lifting;
use crate::transforms::lifted::{in_frame_of, map_value, run_lifted};
use crate::transforms::remat::{array_leaves, replace_arrays};
use crate::tree::{self, Tree};
use tch::Tensor;

/// The backward function [`vjp`] returns: maps a cotangent of the output to the cotangents
/// of the differentiated variables (`{collection: subtree}`, paths relative to the module)
/// and of the primals.
pub struct VjpFn<X, Y> {
    outputs: Vec<Tensor>,
    output: std::marker::PhantomData<fn() -> Y>,
    variables: FrozenDict,
    primals: X,
    create_graph: bool,
    lifting: Lifting,
}

/// Flax's `nn.vjp(fn, mdl, *primals)`: runs `f(module, scope, primals)` in the module's scope
/// and returns its output with the backward function, which differentiates with respect to
/// the module's `params` and the primals.
pub fn vjp<M: Module, X: Tree, Y: Tree>(
    f: impl FnOnce(&M, &mut Scope<'_>, X) -> Result<Y>,
    module: &M,
    cx: &mut Scope<'_>,
    primals: X,
) -> Result<(Y, VjpFn<X, Y>)> {
    vjp_with(f, module, cx, primals, "params")
}

/// [`vjp`] with the differentiated collections chosen (Flax's `vjp_variables`).
pub fn vjp_with<M: Module, X: Tree, Y: Tree>(
    f: impl FnOnce(&M, &mut Scope<'_>, X) -> Result<Y>,
    module: &M,
    cx: &mut Scope<'_>,
    primals: X,
    vjp_variables: impl Into<CollectionFilter>,
) -> Result<(Y, VjpFn<X, Y>)> {
    let vjp_variables = vjp_variables.into();
    let owner = module.module_handle().token;
    in_frame_of(cx, module.module_handle(), M::TYPE_NAME, |cx| {
        let lifting = Lifting::new("vjp", cx);
        tch::with_grad(|| {
            let mut create_graph = false;
            let (variables, differentiated) =
                differentiable_variables(cx.frame_variables(), &vjp_variables, &mut create_graph)?;
            let primals = tree::tree_map(&primals, |t| differentiable(t, &mut create_graph))?;
            let rngs = cx.rng_streams().clone();
            let x = tree::shallow_clone(&primals)?;
            let run = run_lifted(cx, variables, rngs, CollectionFilter::Everything, owner, |inner| {
                f(module, inner, x)
            })?;
            cx.set_rng_counters(run.counters);
            cx.publish(run.state);
            let outputs = tree::leaves(&run.out).into_iter().map(Tensor::shallow_clone).collect();
            let backward = VjpFn {
                outputs,
                output: std::marker::PhantomData,
                variables: differentiated,
                primals,
                create_graph,
                lifting,
            };
            Ok((run.out, backward))
        })
    })
}

impl<X: Tree, Y: Tree> VjpFn<X, Y> {
    /// The cotangents `(variables, primals)` for the output cotangent `cotangent` (of the
    /// output's structure and shapes).
    pub fn call(&self, cotangent: &Y) -> Result<(FrozenDict, X)> {
        let cotangents = tree::leaves(cotangent);
        if cotangents.len() != self.outputs.len() {
            return Err(self.lifting.error(format!(
                "the cotangent has {} arrays, the output {}",
                cotangents.len(),
                self.outputs.len()
            )));
        }
        tch::with_grad(|| {
            let mut total: Option<Tensor> = None;
            for (out, cot) in self.outputs.iter().zip(&cotangents) {
                if out.size() != cot.size() {
                    return Err(self.lifting.error(format!(
                        "a cotangent of shape {:?} for an output of shape {:?}",
                        cot.size(),
                        out.size()
                    )));
                }
                if !out.requires_grad() {
                    continue;
                }
                let term = out.f_mul(&cot.f_to_kind(out.kind())?)?.f_sum(out.kind())?;
                total = Some(match total {
                    None => term,
                    Some(t) => t.f_add(&term)?,
                });
            }
            let variable_leaves = array_leaves(&self.variables);
            let n_variables = variable_leaves.len();
            let inputs: Vec<Tensor> = variable_leaves
                .into_iter()
                .chain(tree::leaves(&self.primals).into_iter().map(Tensor::shallow_clone))
                .collect();
            let grads = match total {
                Some(total) if !inputs.is_empty() => {
                    Tensor::f_run_backward(&[total], &inputs, true, self.create_graph)?
                }
                _ => inputs.iter().map(|_| Tensor::new()).collect(),
            };
            let mut grads =
                grads
                    .into_iter()
                    .zip(&inputs)
                    .map(|(g, x)| if g.defined() { Ok(g) } else { Ok(x.f_zeros_like()?) });
            let variable_grads: Vec<Tensor> = grads.by_ref().take(n_variables).collect::<Result<_>>()?;
            let variables = replace_arrays(&self.variables, &variable_grads)?;
            let primals = tree::tree_map(&self.primals, |_| grads.next().expect("one gradient per input"))?;
            Ok((variables, primals))
        })
    }
}

/// A tensor the function can be differentiated with respect to: itself when it is already
/// part of a graph (then the cotangents are differentiable too), else a detached copy that
/// requires gradients.
fn differentiable(t: &Tensor, create_graph: &mut bool) -> Result<Tensor> {
    if t.requires_grad() {
        *create_graph = true;
        return Ok(t.shallow_clone());
    }
    if !t.f_is_floating_point()? {
        return Err(Error::Value(format!("vjp requires real-valued inputs, got {:?}", t.f_kind()?)));
    }
    Ok(t.f_detach()?.f_set_requires_grad(true)?)
}

/// The module's variables with the differentiated collections made differentiable, and those
/// collections alone.
fn differentiable_variables(
    variables: FrozenDict,
    filter: &CollectionFilter,
    create_graph: &mut bool,
) -> Result<(FrozenDict, FrozenDict)> {
    let (mut all, mut differentiated) = (FrozenDict::new(), FrozenDict::new());
    for (collection, value) in variables.into_inner() {
        if filter.matches(&collection) {
            let value = map_value(&value, &mut |t| differentiable(t, create_graph))?;
            differentiated.insert(collection.clone(), value.clone());
            all.insert(collection, value);
        } else {
            all.insert(collection, value);
        }
    }
    Ok((all, differentiated))
}
