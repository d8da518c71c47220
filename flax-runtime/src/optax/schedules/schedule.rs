//! The [`Schedule`] type (`optax.Schedule`) and the constant schedule.

use std::fmt;
use std::sync::Arc;

/// A function from the step count to a value (`optax.Schedule`): what a learning rate or a
/// weight decay may be instead of a number.
///
/// Cheap to clone (the function is shared) and `Send + Sync`, so an optimizer holding one
/// can be moved to a training thread. Any closure makes one with [`Schedule::new`].
#[derive(Clone)]
pub struct Schedule(Arc<dyn Fn(i64) -> f64 + Send + Sync>);

impl Schedule {
    /// A schedule from a function of the step count.
    pub fn new(f: impl Fn(i64) -> f64 + Send + Sync + 'static) -> Self {
        Schedule(Arc::new(f))
    }

    /// The value at step `count` (calling an Optax schedule).
    pub fn value(&self, count: i64) -> f64 {
        (self.0)(count)
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Schedule(<fn>)")
    }
}

/// The same value at every step (`optax.constant_schedule`).
pub fn constant_schedule(value: f64) -> Schedule {
    Schedule::new(move |_| value)
}
