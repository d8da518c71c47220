//! `remat` / `checkpoint` (Flax's `nn.remat`, `nn.checkpoint`): a module whose activations
//! are not kept for the backward pass but recomputed there, trading compute for memory.
//!
//! ```
//! use flax::prelude::*;
//!
//! #[module]
//! pub struct Deep {}
//!
//! #[module]
//! impl Deep {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
//!         let mut x = x.shallow_clone();
//!         for _ in 0..4 {
//!             x = nn::remat(nn::Dense::new(8)).call(cx, &x, |dense, cx, x: Tensor| Ok(dense.call(cx, &x)?.tanh()))?;
//!         }
//!         Ok(x)
//!     }
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let x = Tensor::ones([2, 8], (Kind::Float, Device::Cpu));
//! let v = Deep::new().init(PRNGKey::new(0), &x)?;
//! assert!(v.tensor(&["params", "CheckpointDense_3", "kernel"]).is_some()); // Flax's names
//! let params = v.get_dict("params").unwrap().clone();
//! let grads = flax::grad(&params, |p| {
//!     let v = Variables::new().copy([("params", flax::Value::Dict(p.clone()))]);
//!     Ok(Deep::new().apply(&v, &x)?.sum(Kind::Float))
//! })?;
//! assert_eq!(grads.tensor(&["CheckpointDense_0", "kernel"]).unwrap().size(), [8, 8]);
//! # Ok(())
//! # }
//! ```
//!
//! The module runs inside a custom autograd function of libtorch (through the C++ shim,
//! [`crate::core::custom_function::checkpoint`]): its forward pass records nothing, and the
//! backward pass runs the module again, with the same variables and RNG keys, to get the
//! gradients of its inputs and variables. So the body runs after the call has returned: it
//! must be `Send + 'static` (capture what it needs by value, as Flax's `static_argnums` are
//! fixed), and so must the module and the inputs and outputs. `init`, and calls with no
//! gradient to compute, run the module plainly. Inside a batched `vmap` libtorch refuses
//! custom autograd functions, so there too the module runs plainly (the same values, without
//! the memory saving); put the `vmap` inside the `remat` to save memory.
//!
//! Flax's `policy` (which intermediates may be kept) is [`RematPolicy`]: everything
//! recomputed (the default, JAX's `nothing_saveable`) or nothing (`everything_saveable`);
//! `prevent_cse` and `concrete` have no counterpart in eager execution.

use crate::core::batching;
use crate::core::custom_function::{checkpoint, grad_enabled};
use crate::core::errors::Result;
use crate::core::filter::CollectionFilter;
use crate::core::frozen_dict::FrozenDict;
use crate::core::module::Module;
use crate::core::naming::{Name, NamingGuard};
use crate::core::scope::{RngCounters, Scope};
use crate::transforms::lifted::{map_value, run_lifted, LiftedModule};
use crate::tree::{self, Tree};
use std::sync::{Arc, Mutex, PoisonError};
use tch::Tensor;

/// Which intermediates of a [`remat`] module are kept for the backward pass (Flax's
/// `policy`, from `jax.checkpoint_policies`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RematPolicy {
    /// None: everything is recomputed in the backward pass (`nothing_saveable`, the default).
    #[default]
    NothingSaveable,
    /// All: nothing is recomputed, as without `remat` (`everything_saveable`).
    EverythingSaveable,
}

/// A module lifted by [`remat`]: Flax's `nn.remat(Module)` class (`Checkpoint{Type}`),
/// instantiated.
#[derive(Clone, Debug)]
pub struct Remat<M: Module> {
    lifted: LiftedModule<M>,
    policy: RematPolicy,
}

/// Lifts `module` so that its activations are recomputed in the backward pass (Flax's
/// `nn.remat(Module)`, named `Checkpoint{Type}_{n}` as Flax names it).
pub fn remat<M: Module>(module: M) -> Remat<M> {
    Remat { lifted: LiftedModule::new("Checkpoint", module), policy: RematPolicy::default() }
}

/// Flax's other name for [`remat`].
pub fn checkpoint_module<M: Module>(module: M) -> Remat<M> {
    remat(module)
}

/// What the forward run leaves for the caller: its output, collections and RNG counters.
type ForwardRun<Y> = Arc<Mutex<Option<(Y, FrozenDict, RngCounters)>>>;

impl<M: Module + Send + 'static> Remat<M> {
    /// Which intermediates are kept (default: none).
    pub fn policy(mut self, policy: RematPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Names the lifted module explicitly (Flax's `name=`).
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.lifted.set_name(name.into());
        self
    }

    /// Runs `body(module, scope, x)` on `x`, recomputing it in the backward pass.
    pub fn call<X, Y>(
        &self,
        cx: &mut Scope<'_>,
        x: &X,
        mut body: impl FnMut(&M, &mut Scope<'_>, X) -> Result<Y> + Send + 'static,
    ) -> Result<Y>
    where
        X: Tree + Send + 'static,
        Y: Tree + Send + 'static,
    {
        let (owner, module) = (self.lifted.owner(), self.lifted.module.clone());
        self.lifted.enter(cx, |cx| remat_frame(cx, owner, self.policy, x, move |cx, x| body(&module, cx, x)))
    }
}

/// Runs `body` on `x` in a scope lifted from the running module (whose calls are `owner`'s),
/// recomputing it in the backward pass (see the module docs for when it runs plainly).
pub(crate) fn remat_frame<X, Y>(
    cx: &mut Scope<'_>,
    owner: u64,
    policy: RematPolicy,
    x: &X,
    body: impl FnMut(&mut Scope<'_>, X) -> Result<Y> + Send + 'static,
) -> Result<Y>
where
    X: Tree + Send + 'static,
    Y: Tree + Send + 'static,
{
    remat_frame_mapped(cx, owner, policy, x, Ok, body)
}

/// [`remat_frame`] with the body seeing `view(variables)` instead of the module's variables,
/// on every run, the backward pass's recomputation included, where `view` is differentiated
/// with the body. The sharded mode's units gather their parameters so, keeping only the
/// pieces between runs.
pub(crate) fn remat_frame_mapped<X, Y>(
    cx: &mut Scope<'_>,
    owner: u64,
    policy: RematPolicy,
    x: &X,
    mut view: impl FnMut(FrozenDict) -> Result<FrozenDict> + Send + 'static,
    mut body: impl FnMut(&mut Scope<'_>, X) -> Result<Y> + Send + 'static,
) -> Result<Y>
where
    X: Tree + Send + 'static,
    Y: Tree + Send + 'static,
{
    let variables = cx.frame_variables();
    let plain = cx.is_initializing()
        || !grad_enabled()
        || policy == RematPolicy::EverythingSaveable
        || batching::current_level().is_some();
    if plain {
        let rngs = cx.rng_streams().clone();
        let x = tree::shallow_clone(x)?;
        let run = run_lifted(cx, view(variables)?, rngs, CollectionFilter::Everything, owner, |inner| {
            body(inner, x)
        })?;
        cx.set_rng_counters(run.counters);
        cx.publish(run.state);
        return Ok(run.out);
    }
    let var_leaves = array_leaves(&variables);
    let n_vars = var_leaves.len();
    let inputs: Vec<Tensor> =
        var_leaves.into_iter().chain(tree::leaves(x).into_iter().map(Tensor::shallow_clone)).collect();
    let (spec, rngs) = (cx.lift_spec(CollectionFilter::Everything, owner), cx.rng_streams().clone());
    let x_template = tree::shallow_clone(x)?;
    let forward: ForwardRun<Y> = Arc::new(Mutex::new(None));
    let first = Arc::clone(&forward);
    let outputs = checkpoint(&inputs, move |inputs| {
        let variables = view(replace_arrays(&variables, &inputs[..n_vars])?)?;
        let x = tree::tree_unflatten(&x_template, inputs[n_vars..].iter().map(Tensor::shallow_clone))?;
        let naming = NamingGuard::push(true);
        let mut inner = spec.scope(variables, rngs.clone(), Some(naming.id()));
        let y = body(&mut inner, x);
        drop(naming);
        let y = y?;
        let leaves = tree::leaves(&y).into_iter().map(Tensor::shallow_clone).collect();
        let mut first = first.lock().unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            let counters = inner.rng_counters();
            *first = Some((y, inner.into_state(), counters));
        }
        Ok(leaves)
    })?;
    let (y, state, counters) =
        forward.lock().unwrap_or_else(PoisonError::into_inner).take().expect("the forward pass ran");
    cx.set_rng_counters(counters);
    cx.publish(state);
    tree::tree_unflatten(&y, outputs)
}

/// The arrays of `dict`, in traversal order.
pub(crate) fn array_leaves(dict: &FrozenDict) -> Vec<Tensor> {
    let mut out = Vec::new();
    let _ = map_value(&crate::Value::Dict(dict.clone()), &mut |t| {
        out.push(t.shallow_clone());
        Ok(t.shallow_clone())
    });
    out
}

/// `dict` with its arrays replaced by `arrays`, in traversal order.
pub(crate) fn replace_arrays(dict: &FrozenDict, arrays: &[Tensor]) -> Result<FrozenDict> {
    let mut next = arrays.iter();
    match map_value(&crate::Value::Dict(dict.clone()), &mut |_| {
        next.next().map(Tensor::shallow_clone).ok_or_else(|| crate::Error::Value("too few arrays".into()))
    })? {
        crate::Value::Dict(d) => Ok(d),
        _ => unreachable!("a dict maps to a dict"),
    }
}
