//! Multiplying updates by a number or a schedule: `optax.scale`, `optax.scale_by_schedule`
//! and `optax.scale_by_learning_rate`, one transformation with the state Optax gives each.

use crate::core::errors::Result;
use crate::core::scalar_ops::ScalarOps;
use crate::optax::count::Count;
use crate::optax::leafwise::zip_float_leaves_mut;
use crate::optax::scalar_or_schedule::ScalarOrSchedule;
use crate::optax::schedules::Schedule;
use crate::optax::transformation::GradientTransformation;
use crate::tree::Tree;

/// The state of a transformation driven by a schedule: the number of updates so far
/// (`optax.ScaleByScheduleState`; an int32 array in Optax, a host integer here so that
/// evaluating the schedule never waits for the device).
#[derive(Tree, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleByScheduleState {
    /// The step the schedule is evaluated at next.
    pub count: Count,
}

/// Multiplies every update by a number or by a schedule of the step.
///
/// Made by [`scale`], [`scale_by_schedule`] and [`scale_by_learning_rate`]; its state is
/// Optax's for each: [`EmptyState`](crate::optax::EmptyState) for a number,
/// [`ScaleByScheduleState`] for a schedule. One kernel per leaf.
#[derive(Debug, Clone)]
pub struct Scale<L = f64> {
    factor: L,
    sign: f64,
}

/// Multiplies the updates by `step_size` (`optax.scale`).
pub fn scale(step_size: f64) -> Scale<f64> {
    Scale { factor: step_size, sign: 1.0 }
}

/// Multiplies the updates by `step_size_fn(count)` (`optax.scale_by_schedule`).
pub fn scale_by_schedule(step_size_fn: Schedule) -> Scale<Schedule> {
    Scale { factor: step_size_fn, sign: 1.0 }
}

/// Multiplies the updates by minus the learning rate, a number or a schedule
/// (`optax.scale_by_learning_rate`): the last step of every optimizer, turning a descent
/// direction into a step. [`Scale::flip_sign`]`(false)` keeps the sign.
pub fn scale_by_learning_rate<L: ScalarOrSchedule>(learning_rate: L) -> Scale<L> {
    Scale { factor: learning_rate, sign: -1.0 }
}

impl<L> Scale<L> {
    /// Whether to scale by the negated value (Optax's `flip_sign`, true for
    /// [`scale_by_learning_rate`]).
    pub fn flip_sign(mut self, flip_sign: bool) -> Self {
        self.sign = if flip_sign { -1.0 } else { 1.0 };
        self
    }
}

impl<L: ScalarOrSchedule> Scale<L> {
    /// The factor of this step (the sign included) and the next state.
    pub(crate) fn next(&self, state: L::State) -> (f64, L::State) {
        let (value, state) = self.factor.next(state);
        (self.sign * value, state)
    }
}

impl<P: Tree, L: ScalarOrSchedule> GradientTransformation<P> for Scale<L> {
    type State = L::State;

    fn init(&self, _params: &P) -> Result<L::State> {
        Ok(self.factor.init_state())
    }

    fn update(&self, mut updates: P, state: L::State, _params: Option<&P>) -> Result<(P, L::State)> {
        let (factor, state) = self.next(state);
        zip_float_leaves_mut(&mut updates, [], |g, []| {
            let _ = g.try_mul_scalar_(factor)?;
            Ok(())
        })?;
        Ok((updates, state))
    }
}
