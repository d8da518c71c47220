//! Sharded initialisation: each rank creates only its pieces of the parameters, as the pjit
//! guide does with `jax.eval_shape(init_fn, …)` (the shapes, to derive the shardings) and
//! `jax.jit(init_fn, out_shardings=…)` (each device computing only its shards).
//!
//! libtorch has no abstract evaluation, so both run the real `init`, but under a mode that
//! the [`fully_shard`](super::fully_shard) units obey: each unit creates its parameters in
//! full (Flax's initialisers draw from the unit's own RNG stream, fixed by its path, so the
//! values are those of a plain `init`), runs, and right after it returns its parameters are
//! replaced by this rank's pieces ([`Fsdp::init`]) or by placeholders of their shape and
//! dtype that own no memory ([`eval_shape`]). A rank so holds the full parameters of one
//! unit at a time (nested units: the outermost one's), plus those created outside any unit,
//! which are cut when `init` returns. What this does not save is compute: every rank runs
//! the whole `init`.
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
//!             x = fully_shard(nn::Dense::new(4096)).call(cx, &x, |dense, cx, x: Tensor| Ok(dense.call(cx, &x)?.relu()))?;
//!         }
//!         Ok(x)
//!     }
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let group = ProcessGroup::initialize()?;
//! let x = Tensor::ones([8, 4096], (Kind::Float, Device::Cpu));
//! // The parameters' shapes, as `jax.eval_shape` gives them, and the spec derived from them.
//! let shapes = eval_shape(|| Deep::new().init(PRNGKey::new(0), &x))?;
//! let shapes = shapes.get_dict("params").cloned().unwrap_or_default();
//! let fsdp = Fsdp::new(&group, ShardingSpec::largest_divisible_axis(&shapes, group.world_size())?)?
//!     .gathering(Gathering::PerUnit);
//! // This rank's pieces: the same bytes as `fsdp.shard(&full_init)`.
//! let pieces = fsdp.init(|| Deep::new().init(PRNGKey::new(0), &x))?;
//! let pieces = pieces.get_dict("params").cloned().unwrap_or_default();
//! let state = fsdp.train_state_from_pieces((), pieces, flax::optax::adam(1e-3))?;
//! # Ok(())
//! # }
//! ```

use super::fsdp::Fsdp;
use super::fully_shard::{activate, with_active};
use crate::core::errors::Result;
use crate::core::frozen_dict::{FrozenDict, Value};
use crate::core::scope::Scope;
use crate::optax::{Elementwise, GradientTransformation};
use crate::training::TrainState;
use crate::tree::{self, Tree};
use std::cell::Cell;
use tch::Tensor;

/// What a `fully_shard` unit does with the parameters it has just initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum UnitInit {
    /// Keeps their shapes and dtypes only ([`eval_shape`]).
    Shapes,
    /// Keeps this rank's pieces of them ([`Fsdp::init`]).
    Pieces,
}

thread_local! {
    /// The sharded init running on this thread, if any (set by [`InitMode::enter`]).
    static MODE: Cell<Option<UnitInit>> = const { Cell::new(None) };
}

/// The sharded init running on this thread: what a unit initialising now must do.
pub(super) fn unit_init() -> Option<UnitInit> {
    MODE.with(Cell::get)
}

/// Sets this thread's sharded init until dropped.
struct InitMode {
    previous: Option<UnitInit>,
}

impl InitMode {
    fn enter(mode: UnitInit) -> Self {
        Self { previous: MODE.with(|m| m.replace(Some(mode))) }
    }
}

impl Drop for InitMode {
    fn drop(&mut self) {
        MODE.with(|m| m.set(self.previous));
    }
}

/// Replaces the parameters the unit running in `cx` (at module path `path`) has just
/// initialised by what `how` keeps of them.
pub(super) fn finish_unit(cx: &mut Scope<'_>, path: &[String], how: UnitInit) -> Result<()> {
    let Some(params) = cx.frame_dict("params").cloned() else { return Ok(()) };
    let params = match how {
        UnitInit::Shapes => tree::tree_map(&params, shape_of)?,
        UnitInit::Pieces => with_active(|fsdp| fsdp.shard_under(path, &params))?,
    };
    cx.publish(FrozenDict::new().copy([("params", Value::Dict(params))]));
    Ok(())
}

/// A tensor of `t`'s shape, dtype and device that owns no memory: one zero, broadcast.
fn shape_of(t: &Tensor) -> Result<Tensor> {
    Ok(Tensor::f_zeros([], (t.kind(), t.device()))?.f_expand(t.size(), false)?)
}

/// The tree `init` returns, every leaf replaced by a placeholder of its shape and dtype that
/// owns no memory (a zero broadcast): what `jax.eval_shape(init_fn)` gives, to derive a
/// [`ShardingSpec`](super::ShardingSpec) from (its rules read only paths, shapes and
/// `with_partitioning` names) before any rank holds the parameters. `init` runs for real,
/// without recording gradients, with each [`fully_shard`](super::fully_shard) unit's
/// parameters cut to placeholders as soon as the unit returns (see the module docs); no
/// communication.
///
/// # Errors
/// `init`'s, and libtorch's.
pub fn eval_shape<T: Tree>(init: impl FnOnce() -> Result<T>) -> Result<T> {
    let _mode = InitMode::enter(UnitInit::Shapes);
    let full = tch::no_grad(init)?;
    tree::tree_map(&full, shape_of)
}

impl Fsdp<'_> {
    /// What `init` returns, with each split parameter cut to this rank's piece: the same
    /// bytes as [`shard`](Self::shard) of a plain `init`'s result, without the whole model
    /// ever existing in this process (`jax.jit(init_fn, out_shardings=…)` of the pjit
    /// guide). Each [`fully_shard`](super::fully_shard) unit keeps only its pieces as soon as
    /// it returns (a unit called again gathers them, a collective); the parameters created
    /// outside any unit are cut when `init` returns. A collective when a unit is called
    /// twice: every rank must run the same `init`. Runs without recording gradients.
    ///
    /// `init` may create more than the variables (a `TrainState` with an [`Elementwise`]
    /// optimizer, as the guide's `init_fn` does); the leaves that follow a parameter are cut
    /// as [`shard`](Self::shard) cuts them.
    ///
    /// # Errors
    /// `init`'s; as [`shard`](Self::shard), and as [`gather`](Self::gather) for a unit called
    /// twice.
    pub fn init<T: Tree>(&self, init: impl FnOnce() -> Result<T>) -> Result<T> {
        let _mode = InitMode::enter(UnitInit::Pieces);
        let _active = activate(self);
        let partly_cut = tch::no_grad(init)?;
        // The units' leaves are pieces already: `shard` cuts only leaves of their parameter's
        // full shape, and a piece that has it (one rank; an axis of length 1) is its own piece.
        self.shard(&partly_cut)
    }

    /// A train state at step 0 from this rank's `pieces` of the parameters (from
    /// [`init`](Self::init)) and the optimizer's state for them: what
    /// [`train_state`](Self::train_state) gives from the full parameters, without
    /// broadcasting or holding them. Only an [`Elementwise`] optimizer, which is exact on
    /// pieces. No communication.
    ///
    /// # Errors
    /// As [`TrainState::create`].
    pub fn train_state_from_pieces<A, P: Tree, T>(
        &self,
        apply_fn: A,
        pieces: P,
        tx: T,
    ) -> Result<TrainState<A, P, T>>
    where
        T: GradientTransformation<P> + Elementwise,
    {
        TrainState::create(apply_fn, pieces, tx)
    }
}
