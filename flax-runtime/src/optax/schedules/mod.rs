//! Optax's schedules: a value (a learning rate, a weight decay) as a function of the step.
//!
//! A [`Schedule`] is evaluated on the host from the integer step count that
//! [`scale_by_schedule`](crate::optax::scale_by_schedule) and the optimizers keep in their
//! state, so a schedule costs no device work and no synchronisation. Optax evaluates the same
//! formulas in float32 from an int32 count; these evaluate them in float64, which agrees to
//! float32 rounding.
//!
//! Rust has no default arguments: every function takes all of Optax's parameters, in Optax's
//! order, and its doc gives Optax's defaults.

mod cosine;
mod exponential;
mod join;
mod piecewise;
mod polynomial;
mod schedule;

pub use cosine::{cosine_decay_schedule, warmup_cosine_decay_schedule};
pub use exponential::exponential_decay;
pub use join::join_schedules;
pub use piecewise::piecewise_constant_schedule;
pub use polynomial::{linear_schedule, polynomial_schedule};
pub use schedule::{constant_schedule, Schedule};
