//! `optax.ScalarOrSchedule`: a hyper-parameter that is a number or a [`Schedule`].

use crate::optax::count::Count;
use crate::optax::schedules::Schedule;
use crate::optax::transformation::EmptyState;
use crate::optax::transforms::ScaleByScheduleState;
use crate::tree::Tree;

/// A learning rate or weight decay: an `f64`, or a [`Schedule`] of the step.
///
/// The kind is part of the optimizer's type, so the state is exactly Optax's for each: a
/// number keeps no state ([`EmptyState`]), a schedule keeps the step count it is evaluated at
/// ([`ScaleByScheduleState`]).
pub trait ScalarOrSchedule: Clone + Send + Sync + 'static {
    /// What the value needs to remember between steps.
    type State: Tree + Send + 'static;

    /// The state before the first step.
    fn init_state(&self) -> Self::State;

    /// The value for the step `state` describes, and the state for the next step.
    fn next(&self, state: Self::State) -> (f64, Self::State);

    /// Whether this is the number 0 (Optax skips a weight decay of exactly `0.0`).
    fn is_zero(&self) -> bool;
}

impl ScalarOrSchedule for f64 {
    type State = EmptyState;

    fn init_state(&self) -> EmptyState {}

    fn next(&self, state: EmptyState) -> (f64, EmptyState) {
        (*self, state)
    }

    fn is_zero(&self) -> bool {
        *self == 0.0
    }
}

impl ScalarOrSchedule for Schedule {
    type State = ScaleByScheduleState;

    fn init_state(&self) -> ScaleByScheduleState {
        ScaleByScheduleState { count: Count(0) }
    }

    fn next(&self, state: ScaleByScheduleState) -> (f64, ScaleByScheduleState) {
        (self.value(state.count.0), ScaleByScheduleState { count: state.count.increment() })
    }

    fn is_zero(&self) -> bool {
        false
    }
}
