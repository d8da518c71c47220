//! `fully_shard`: a module whose parameters the sharded mode gathers only while the module
//! runs, as PyTorch's FSDP gathers each wrapped module (its `fully_shard` / wrap policy).
//!
//! In [`Gathering::PerUnit`](super::Gathering::PerUnit) steps ([`Fsdp::value_and_grad`]),
//! the model is applied to this rank's pieces of the parameters, and each `fully_shard` unit
//! all-gathers its own parameters just before its body runs. The unit runs as a
//! [`remat`](crate::nn::remat) module (a custom autograd function that keeps only its inputs:
//! the pieces and the unit's input), so the full parameters are freed as soon as the body
//! returns. In the backward pass the unit gathers them again, recomputes its body, and its
//! parameters' gradients are reduce-scattered at once (the gather's own backward), before the
//! units below it run theirs. So a rank holds its pieces and the full parameters of about one
//! unit at a time, for a second forward pass of compute and a second all-gather per unit.
//! With [prefetch](Fsdp::prefetch) (the default), each of those all-gathers but a step's
//! first was started while the unit before it (in the backward pass: after it) computed.
//!
//! Outside such a step (`init`, one process, unsharded data-parallel training, the
//! whole-model mode) a unit is its module, called plainly: the same parameters under the
//! same names (`Dense_0`, not a lifted name), the same values. In a sharded init
//! ([`Fsdp::init`], [`eval_shape`](super::eval_shape)) a unit also cuts its parameters down
//! to this rank's pieces (or to their shapes) as soon as it has created them, so that the
//! whole model's parameters never exist in one process.
//!
//! ```no_run
//! use flax::distributed::{eval_shape, fully_shard, Fsdp, Gathering, ProcessGroup, ShardingSpec};
//! use flax::prelude::*;
//!
//! #[module]
//! struct Deep {}
//!
//! #[module]
//! impl Deep {
//!     #[compact]
//!     fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
//!         let mut x = x.shallow_clone();
//!         for _ in 0..8 {
//!             x = fully_shard(nn::Dense::new(1024)).call(cx, &x, |dense, cx, x: Tensor| Ok(dense.call(cx, &x)?.relu()))?;
//!         }
//!         Ok(x)
//!     }
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let group = ProcessGroup::initialize()?;
//! let x = Tensor::ones([8, 1024], (Kind::Float, Device::Cpu));
//! // The spec from the parameters' shapes, then this rank's pieces of them: no process holds
//! // more than one unit's full parameters (see `Fsdp::init`).
//! let shapes = eval_shape(|| Deep::new().init(PRNGKey::new(0), &x))?.get_dict("params").cloned().unwrap_or_default();
//! let spec = ShardingSpec::largest_divisible_axis(&shapes, group.world_size())?;
//! let fsdp = Fsdp::new(&group, spec)?.gathering(Gathering::PerUnit);
//! let pieces = fsdp.init(|| Deep::new().init(PRNGKey::new(0), &x))?.get_dict("params").cloned().unwrap_or_default();
//! let (loss, grads) = fsdp.value_and_grad(&pieces, |p| {
//!     let variables = Variables::new().copy([("params", flax::Value::Dict(p.clone()))]);
//!     Ok(Deep::new().apply(&variables, &x)?.square().mean(Kind::Float))
//! })?;
//! println!("peak gathered parameters: {} bytes", fsdp.peak_gathered_bytes());
//! # Ok(())
//! # }
//! ```

use super::fsdp::{split_rows, Fsdp};
use super::sharded_init::{finish_unit, unit_init, UnitInit};
use super::sharding_spec::LeafSharding;
use crate::core::custom_function::custom_vjp;
use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{FrozenDict, Value};
use crate::core::module::Module;
use crate::core::scalar_ops::ScalarOps;
use crate::core::scope::Scope;
use crate::transforms::lifted::in_frame_of;
use crate::transforms::remat::{remat_frame_mapped, RematPolicy};
use crate::tree::{self, Tree};
use std::cell::Cell;
use std::marker::PhantomData;
use tch::Tensor;

/// A module made a unit by [`fully_shard`]: it runs in the module's own frame, under the
/// module's own name.
#[derive(Clone, Debug)]
pub struct FullyShard<M: Module> {
    module: M,
}

/// Makes `module` a unit of the sharded mode's per-unit gathering: in a
/// [`Gathering::PerUnit`](super::Gathering::PerUnit) step its parameters are gathered just
/// before it runs and freed after, and gathered again for its backward pass (see the module
/// docs); elsewhere it is `module`, named as `module` is (`Dense_0`).
pub fn fully_shard<M: Module>(module: M) -> FullyShard<M> {
    FullyShard { module }
}

impl<M: Module + Send + 'static> FullyShard<M> {
    /// Runs `body(module, scope, x)` on `x`. As with [`remat`](crate::nn::remat()), `body`
    /// runs again in the backward pass of a per-unit step, so it, the module and the input and
    /// output trees are `Send + 'static`.
    ///
    /// # Errors
    /// `body`'s; in a per-unit step, as [`Fsdp::gather`] and, from the backward pass,
    /// [`Error::Value`] when the unit is recomputed outside its step (on another thread).
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
        let (handle, module) = (self.module.module_handle(), self.module.clone());
        let owner = handle.token;
        let init = if cx.is_initializing() { unit_init() } else { None };
        // In a sharded init, a unit called again finds its pieces and gathers them.
        let sharded =
            ACTIVE.with(Cell::get).is_some() && (!cx.is_initializing() || init == Some(UnitInit::Pieces));
        in_frame_of(cx, handle, M::TYPE_NAME, |cx| {
            let path: Vec<String> = cx.path().into_iter().map(str::to_owned).collect();
            let (policy, view) = match sharded {
                true => (RematPolicy::NothingSaveable, Some(path.clone())),
                false => (RematPolicy::EverythingSaveable, None),
            };
            let view = move |variables: FrozenDict| match &view {
                Some(path) => with_active(|fsdp| gathered_view(fsdp, path, variables)),
                None => Ok(variables),
            };
            let y = remat_frame_mapped(cx, owner, policy, x, view, move |cx, x| body(&module, cx, x))?;
            match init {
                Some(init) => finish_unit(cx, &path, init).map(|()| y),
                None => Ok(y),
            }
        })
    }
}

thread_local! {
    /// The `Fsdp` whose per-unit step runs on this thread (set by [`activate`]).
    static ACTIVE: Cell<Option<*const ()>> = const { Cell::new(None) };
}

/// Makes `fsdp` the one the units on this thread gather with, until dropped.
pub(super) struct Active<'a> {
    previous: Option<*const ()>,
    _fsdp: PhantomData<&'a ()>,
}

/// Sets `fsdp` as this thread's active sharded mode for the guard's lifetime.
pub(super) fn activate<'a>(fsdp: &'a Fsdp<'_>) -> Active<'a> {
    let previous = ACTIVE.with(|active| active.replace(Some((fsdp as *const Fsdp<'_>).cast())));
    Active { previous, _fsdp: PhantomData }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        ACTIVE.with(|active| active.set(self.previous));
    }
}

/// Runs `f` with this thread's active sharded mode.
pub(super) fn with_active<R>(f: impl FnOnce(&Fsdp<'_>) -> Result<R>) -> Result<R> {
    let Some(fsdp) = ACTIVE.with(Cell::get) else {
        return Err(Error::Value(
            "fully_shard: a unit gathered its parameters outside its Fsdp step (its backward pass \
             ran on another thread, or after value_and_grad returned)"
                .to_owned(),
        ));
    };
    // SAFETY: `ACTIVE` holds a pointer only while the `Active` guard that borrows the `Fsdp`
    // lives (it is reset when the guard drops, by return or unwinding), and the guard is
    // private to this module's callers, which never leak it; `f` cannot keep the reference.
    f(unsafe { &*fsdp.cast::<Fsdp<'_>>() })
}

/// A unit's variables with its split parameters gathered, differentiably: the gather's
/// backward reduce-scatters their gradients. `path` is the unit's module path.
fn gathered_view(fsdp: &Fsdp<'_>, path: &[String], variables: FrozenDict) -> Result<FrozenDict> {
    let Some(params) = variables.get_dict("params") else { return Ok(variables) };
    let world = fsdp.group().world_size();
    let (mut split, mut paths) = (Vec::new(), Vec::new());
    let layouts: Vec<Option<LeafSharding>> = tree::leaves_with_path(params)
        .into_iter()
        .map(|(leaf_path, leaf)| {
            let full: Vec<String> = path.iter().cloned().chain(leaf_path).collect();
            let layout = fsdp.spec().find(&full, &leaf.size(), false, world).cloned();
            if let Some(layout) = &layout {
                split.push(layout.clone());
                paths.push(full);
            }
            layout
        })
        .collect();
    if split.is_empty() {
        return Ok(variables);
    }
    let leaves = tree::leaves(params);
    let pieces: Vec<Tensor> =
        leaves.iter().zip(&layouts).filter(|(_, l)| l.is_some()).map(|(t, _)| t.shallow_clone()).collect();
    let mut fulls = gather_differentiable(fsdp, split, paths, &pieces)?.into_iter();
    let leaves = leaves.into_iter().zip(&layouts).map(|(leaf, layout)| match layout {
        Some(_) => fulls.next().expect("one full leaf per piece"),
        None => leaf.shallow_clone(),
    });
    let params = tree::tree_unflatten(params, leaves.collect::<Vec<_>>())?;
    Ok(variables.copy([("params", Value::Dict(params))]))
}

/// The full leaves of `pieces` (split as `layouts` say, at `paths`), recorded as an autograd
/// function whose backward is the reduce-scatter of their gradients, averaged over the ranks.
fn gather_differentiable(
    fsdp: &Fsdp<'_>,
    layouts: Vec<LeafSharding>,
    paths: Vec<Vec<String>>,
    pieces: &[Tensor],
) -> Result<Vec<Tensor>> {
    let layouts_forward = layouts.clone();
    custom_vjp(
        pieces,
        move |pieces| {
            let refs: Vec<&LeafSharding> = layouts_forward.iter().collect();
            Ok((fsdp.gather_unit(&paths, &refs, pieces)?, Vec::new()))
        },
        move |_, grads| {
            with_active(|fsdp| {
                let world = fsdp.group().world_size();
                let rows = layouts
                    .iter()
                    .zip(grads)
                    .map(|(layout, grad)| split_rows(layout, grad, world))
                    .collect::<Result<Vec<_>>>()?;
                let summed = fsdp.group().psum_scatter(&rows)?;
                summed.iter().map(|piece| Ok(Some(piece.try_div_scalar(world)?))).collect()
            })
        },
    )
}
