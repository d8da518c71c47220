//! Optax, the optimizer library Flax trains with: gradient transformations, optimizers,
//! schedules and losses, with Optax 0.2.8's names, defaults and numerics.
//!
//! An optimizer is a [`GradientTransformation`]: `init` makes its state (a [`Tree`](crate::tree::Tree), so it
//! checkpoints like the parameters), `update` turns gradients into updates, and
//! [`apply_updates`] adds them to the parameters:
//!
//! ```
//! use flax::optax::{self, GradientTransformation};
//! use flax::tch::{Device, Kind, Tensor};
//! use flax::tree::Tree;
//!
//! #[derive(Tree)]
//! struct Params {
//!     w: Tensor,
//!     b: Tensor,
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
//! let y = Tensor::from_slice(&[3.0f32, 5.0, 7.0]);
//! let mut params = Params {
//!     w: Tensor::zeros([], (Kind::Float, Device::Cpu)),
//!     b: Tensor::zeros([], (Kind::Float, Device::Cpu)),
//! };
//! let schedule = optax::warmup_cosine_decay_schedule(0.0, 0.1, 10, 200, 0.0, 1.0)?;
//! let tx = optax::chain((optax::clip_by_global_norm(1.0), optax::adam(schedule)));
//! let mut state = tx.init(&params)?;
//! for _ in 0..200 {
//!     let (_loss, grads) = flax::value_and_grad(&params, |p| {
//!         let prediction = &x * &p.w + &p.b;
//!         Ok(optax::losses::l2_loss(&prediction, Some(&y))?.mean(Kind::Float))
//!     })?;
//!     let (updates, new_state) = tx.update(grads, state, Some(&params))?;
//!     params = optax::apply_updates(params, &updates)?;
//!     state = new_state;
//! }
//! assert!((params.w.double_value(&[]) - 2.0).abs() < 0.1);
//! # Ok(())
//! # }
//! ```
//!
//! Rust-side differences, each documented where it applies:
//! - `update` consumes the gradients and the state and reuses their buffers (in place, under
//!   `no_grad`), and [`apply_updates`] consumes the parameters: ownership is the donation
//!   `jax.jit` asks for, and a training step allocates no optimizer tensors. `apply_updates`
//!   and `TrainState::apply_gradients` first copy any parameter that something else still
//!   shares (a clone of the params), so clones keep their values as in JAX; the gradients and
//!   the optimizer state are written in place, so keep a copy of those you hand over by value
//!   with `tree_map(.., copy)`;
//! - [`GradientTransformation::update_and_apply`] (what `TrainState::apply_gradients` calls)
//!   runs `sgd`, `adam` and `adamw` as one libtorch fused kernel over all parameters
//!   (`_fused_sgd_`, `_fused_adam_`, `_fused_adamw_`, through the C++ shim in `csrc/`) where
//!   the configuration allows, instead of several kernels per parameter; equal to `update`
//!   then [`apply_updates`] up to float rounding (Adam's bias corrections are computed in
//!   double precision, about 1e-5 of an update from Optax's float32);
//! - hyper-parameters with defaults are builder methods (`optax::adam(1e-3).b2(0.99)`);
//!   schedules and losses, which are functions, take all of Optax's arguments;
//! - step counts are host integers ([`Count`], saturating at `i32::MAX` like Optax's int32),
//!   so schedules are evaluated without waiting for the device; they are saved as Optax's
//!   0-d int32 arrays, so optimizer states write Flax's checkpoint bytes;
//! - a learning rate or weight decay is an `f64` or a [`Schedule`], and its kind is part of
//!   the optimizer's type ([`ScalarOrSchedule`]): the state is exactly Optax's for each;
//! - masks and labels ([`masked`], [`multi_transform`], weight-decay masks) are functions of
//!   a leaf's key path and value ([`masked_tree`] also takes Optax's tree of booleans); masked transformations see the tree's state dict (a
//!   [`Value`](crate::Value)) with `{}`, Flax's form of Optax's `MaskedNode`, in place of the
//!   unselected leaves, so their states have Optax's layout; [`multi_transform`] takes its
//!   transformations boxed ([`GradientTransformation::boxed`]), since each Rust
//!   transformation has its own type.

mod alias;
mod boxed;
mod count;
mod dyn_state;
mod elementwise;
mod fused;
pub(crate) mod leafwise;
pub mod losses;
mod numerics;
mod scalar_or_schedule;
mod schedules;
mod transformation;
mod transforms;
pub(crate) mod update;

pub use alias::{adagrad, adam, adamw, lamb, rmsprop, sgd, Adagrad, Adam, AdamW, Lamb, RmsProp, Sgd};
pub use boxed::BoxedTransformation;
pub use count::Count;
pub use dyn_state::{DynState, MAX_ZIPPED};
pub use elementwise::Elementwise;
pub use scalar_or_schedule::ScalarOrSchedule;
pub use schedules::{
    constant_schedule, cosine_decay_schedule, exponential_decay, join_schedules, linear_schedule,
    piecewise_constant_schedule, polynomial_schedule, warmup_cosine_decay_schedule, Schedule,
};
pub use transformation::{EmptyState, GradientTransformation};
pub use transforms::{
    add_decayed_weights, chain, clip, clip_by_global_norm, identity, masked, masked_tree, multi_transform,
    scale, scale_by_adam, scale_by_learning_rate, scale_by_rms, scale_by_rss, scale_by_schedule,
    scale_by_stddev, scale_by_trust_ratio, set_to_zero, trace, AddDecayedWeights, Chain, Clip,
    ClipByGlobalNorm, Identity, Mask, Masked, MaskedState, MaybeState, MultiTransform, MultiTransformState,
    Scale, ScaleByAdam, ScaleByAdamState, ScaleByRms, ScaleByRmsState, ScaleByRss, ScaleByRssState,
    ScaleByScheduleState, ScaleByTrustRatio, SetToZero, Trace, TraceState, WeightDecaySchedule,
};
pub use update::apply_updates;
