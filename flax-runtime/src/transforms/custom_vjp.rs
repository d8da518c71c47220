//! `custom_vjp` (Flax's `nn.custom_vjp`): a module function with a user-defined backward
//! pass: gradient clipping or sign gradients, straight-through estimators, numerically
//! stable gradients.
//!
//! ```
//! use flax::prelude::*;
//! use flax::tree;
//!
//! /// The spec's `Foo`: a `Dense` whose parameter gradients are replaced by their signs.
//! #[module]
//! pub struct Foo {}
//!
//! #[module]
//! impl Foo {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
//!         let f = |mdl: &nn::Dense, cx: &mut Scope, x: Tensor| mdl.call(cx, &x);
//!         let fwd = |mdl: &nn::Dense, cx: &mut Scope, x: Tensor| nn::vjp(f, mdl, cx, x);
//!         let bwd = |vjp_fn: &nn::VjpFn<Tensor, Tensor>, y_t: &Tensor| {
//!             let (params_t, inputs_t) = vjp_fn.call(y_t)?;
//!             Ok((tree::tree_map(&params_t, |t| Ok(t.sign()))?, inputs_t))
//!         };
//!         Ok(nn::custom_vjp(f, fwd, bwd).call(cx, &nn::Dense::new(1), x.shallow_clone())?.reshape([]))
//!     }
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let x = Tensor::ones([2], (Kind::Float, Device::Cpu));
//! let v = Foo::new().init(PRNGKey::new(0), &x)?;
//! let params = v.get_dict("params").unwrap().clone();
//! let grads = flax::grad(&params, |p| {
//!     let v = Variables::new().copy([("params", flax::Value::Dict(p.clone()))]);
//!     Foo::new().apply(&v, &x)
//! })?;
//! let kernel_grad = grads.tensor(&["Dense_0", "kernel"]).unwrap();
//! assert_eq!(Vec::<f32>::try_from(&kernel_grad.flatten(0, -1))?, [1.0, 1.0]); // sign(x) = 1
//! # Ok(())
//! # }
//! ```
//!
//! `f` runs when no gradient is computed (and during `init`, where it creates the
//! variables); otherwise `forward_fn` runs inside a custom autograd function of libtorch
//! (through the C++ shim) and returns the output with residuals, and `backward_fn` maps the
//! residuals and the output's cotangent to the cotangents of the module's `params` (paths
//! relative to the module, as [`vjp`](super::vjp::vjp) returns them) and of the input. The
//! backward function runs in libtorch's backward pass, after the call has returned, so it
//! and the residuals must be `Send + 'static`; the scope is not available there (as in Flax).
//! Flax's `nondiff_argnums` are values the closures capture.

use crate::core::custom_function::{custom_vjp as custom_function, grad_enabled};
use crate::core::errors::{Error, Result};
use crate::core::filter::CollectionFilter;
use crate::core::frozen_dict::FrozenDict;
use crate::core::module::Module;
use crate::core::naming::NamingGuard;
use crate::core::scope::{RngCounters, Scope};
use crate::transforms::lifted::{in_frame_of, run_lifted};
use crate::transforms::remat::{array_leaves, replace_arrays};
use crate::tree::{self, Tree};
use std::sync::{Arc, Mutex, PoisonError};
use tch::Tensor;

/// A function with a custom backward pass, made by [`custom_vjp`]; run it with
/// [`CustomVjp::call`].
pub struct CustomVjp<F, Fwd, Bwd> {
    f: F,
    forward_fn: Fwd,
    backward_fn: Bwd,
    grad_vars: CollectionFilter,
}

/// Flax's `nn.custom_vjp(fn, forward_fn, backward_fn)`: `fn(module, scope, x)` with the
/// gradient `backward_fn(residuals, output cotangent) -> (params cotangent, x cotangent)`,
/// the residuals coming from `forward_fn(module, scope, x) -> (output, residuals)`.
pub fn custom_vjp<F, Fwd, Bwd>(f: F, forward_fn: Fwd, backward_fn: Bwd) -> CustomVjp<F, Fwd, Bwd> {
    CustomVjp { f, forward_fn, backward_fn, grad_vars: CollectionFilter::from("params") }
}

/// What the forward run leaves for the caller and for the backward pass.
struct Forward<Y, R> {
    output: Option<Y>,
    residuals: Option<R>,
    state: Option<FrozenDict>,
    counters: Option<RngCounters>,
}

impl<F, Fwd, Bwd> CustomVjp<F, Fwd, Bwd> {
    /// The collections whose cotangents `backward_fn` returns (Flax's `grad_vars`, default
    /// `"params"`).
    pub fn grad_vars(mut self, filter: impl Into<CollectionFilter>) -> Self {
        self.grad_vars = filter.into();
        self
    }

    /// Runs the function on `module` (in its own scope, keeping its name) and `x`.
    pub fn call<M, X, Y, R>(self, cx: &mut Scope<'_>, module: &M, x: X) -> Result<Y>
    where
        M: Module,
        X: Tree + Send + 'static,
        Y: Tree + Send + 'static,
        R: Send + 'static,
        F: FnOnce(&M, &mut Scope<'_>, X) -> Result<Y>,
        Fwd: FnOnce(&M, &mut Scope<'_>, X) -> Result<(Y, R)>,
        Bwd: Fn(&R, &Y) -> Result<(FrozenDict, X)> + Send + 'static,
    {
        let owner = module.module_handle().token;
        let CustomVjp { f, forward_fn, backward_fn, grad_vars } = self;
        in_frame_of(cx, module.module_handle(), M::TYPE_NAME, |cx| {
            let variables = cx.frame_variables();
            let (differentiated, rest) = split(variables, &grad_vars);
            let var_leaves = array_leaves(&differentiated);
            let x_leaves: Vec<Tensor> = tree::leaves(&x).into_iter().map(Tensor::shallow_clone).collect();
            let needs_grad = grad_enabled() && var_leaves.iter().chain(&x_leaves).any(Tensor::requires_grad);
            let rngs = cx.rng_streams().clone();
            if cx.is_initializing() || !needs_grad {
                let all = differentiated.copy(rest.iter().map(|(k, v)| (k.to_owned(), v.clone())));
                let run = run_lifted(cx, all, rngs, CollectionFilter::Everything, owner, |inner| {
                    f(module, inner, x)
                })?;
                cx.set_rng_counters(run.counters);
                cx.publish(run.state);
                return Ok(run.out);
            }
            let n_vars = var_leaves.len();
            let inputs: Vec<Tensor> = var_leaves.into_iter().chain(x_leaves).collect();
            let spec = cx.lift_spec(CollectionFilter::Everything, owner);
            let forward = Arc::new(Mutex::new(Forward::<Y, R> {
                output: None,
                residuals: None,
                state: None,
                counters: None,
            }));
            let (shared, x_template) = (Arc::clone(&forward), tree::shallow_clone(&x)?);
            let outputs = custom_function(
                &inputs,
                |inputs| {
                    let detached: Vec<Tensor> = inputs.iter().map(Tensor::detach).collect();
                    let vars = replace_arrays(&differentiated, &detached[..n_vars])?;
                    let vars = vars.copy(rest.iter().map(|(k, v)| (k.to_owned(), v.clone())));
                    let x = tree::tree_unflatten(&x, detached[n_vars..].iter().map(Tensor::shallow_clone))?;
                    let naming = NamingGuard::push(true);
                    let mut inner = spec.scope(vars, rngs, Some(naming.id()));
                    let (y, residuals) = forward_fn(module, &mut inner, x)?;
                    drop(naming);
                    // Detached: libtorch sets the custom function as the history of the tensors
                    // it returns, and the residuals (a vjp of `y`, say) keep `y`'s own graph.
                    let leaves: Vec<Tensor> = tree::leaves(&y).into_iter().map(Tensor::detach).collect();
                    let mut slot = forward.lock().unwrap_or_else(PoisonError::into_inner);
                    slot.residuals = Some(residuals);
                    slot.counters = Some(inner.rng_counters());
                    slot.state = Some(inner.into_state());
                    slot.output = Some(y);
                    Ok((leaves, Vec::new()))
                },
                move |_, output_grads| {
                    let slot = shared.lock().unwrap_or_else(PoisonError::into_inner);
                    let (Some(residuals), Some(y)) = (&slot.residuals, &slot.output) else {
                        return Err(Error::Value(
                            "custom_vjp: the backward pass ran before the forward pass".into(),
                        ));
                    };
                    let cotangent = tree::tree_unflatten(y, output_grads.iter().map(Tensor::shallow_clone))?;
                    let (vars_t, x_t) = backward_fn(residuals, &cotangent)?;
                    input_cotangents(&vars_t, n_vars, &x_t, &x_template)
                },
            )?;
            let mut slot = forward.lock().unwrap_or_else(PoisonError::into_inner);
            let template = slot.output.as_ref().map(tree::shallow_clone).transpose()?;
            let (Some(template), Some(state), Some(counters)) =
                (template, slot.state.take(), slot.counters.take())
            else {
                return Err(Error::Value("custom_vjp: the forward function did not run".into()));
            };
            drop(slot);
            cx.set_rng_counters(counters);
            cx.publish(state);
            tree::tree_unflatten(&template, outputs)
        })
    }
}

/// The module's variables split into the differentiated collections and the others.
fn split(variables: FrozenDict, grad_vars: &CollectionFilter) -> (FrozenDict, FrozenDict) {
    let (mut differentiated, mut rest) = (FrozenDict::new(), FrozenDict::new());
    for (collection, value) in variables.into_inner() {
        if grad_vars.matches(&collection) {
            differentiated.insert(collection, value);
        } else {
            rest.insert(collection, value);
        }
    }
    (differentiated, rest)
}

/// The cotangents `backward_fn` returned, in the custom function's input order: the
/// differentiated variables' arrays (which the returned tree must match), then the input's.
fn input_cotangents<X: Tree>(
    vars_t: &FrozenDict,
    n_vars: usize,
    x_t: &X,
    x_template: &X,
) -> Result<Vec<Option<Tensor>>> {
    let vars = array_leaves(vars_t);
    if vars.len() != n_vars {
        return Err(Error::Value(format!(
            "custom_vjp: backward_fn returned cotangents for {} variable arrays, the module has {n_vars}",
            vars.len()
        )));
    }
    let xs: Vec<&Tensor> = tree::leaves(x_t);
    if xs.len() != tree::num_leaves(x_template) {
        return Err(Error::Value(
            "custom_vjp: backward_fn returned a cotangent of another structure than the input".into(),
        ));
    }
    Ok(vars.into_iter().chain(xs.into_iter().map(Tensor::shallow_clone)).map(Some).collect())
}
