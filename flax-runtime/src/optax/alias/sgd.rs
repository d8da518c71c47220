//! `optax.sgd`.

use crate::core::errors::Result;
use crate::optax::scalar_or_schedule::ScalarOrSchedule;
use crate::optax::transformation::GradientTransformation;
use crate::optax::transforms::{
    chain, scale_by_learning_rate, trace, Chain, MaybeState, Scale, Trace, TraceState,
};
use crate::tree::Tree;
use tch::Kind;

/// Stochastic gradient descent, with optional (Nesterov) momentum (`optax.sgd`):
/// `chain(trace(momentum) or identity, scale_by_learning_rate(learning_rate))`.
///
/// With momentum, a step is three kernels per leaf plus one to apply the update.
#[derive(Debug, Clone)]
pub struct Sgd<L = f64> {
    momentum: Option<f64>,
    nesterov: bool,
    accumulator_dtype: Option<Kind>,
    learning_rate: Scale<L>,
}

/// SGD with learning rate `learning_rate` (a number or a schedule) and no momentum.
pub fn sgd<L: ScalarOrSchedule>(learning_rate: L) -> Sgd<L> {
    Sgd {
        momentum: None,
        nesterov: false,
        accumulator_dtype: None,
        learning_rate: scale_by_learning_rate(learning_rate),
    }
}

impl<L> Sgd<L> {
    /// The momentum's decay rate (Optax's `momentum`, default none).
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = Some(momentum);
        self
    }

    /// Nesterov momentum (default false; ignored without momentum, as in Optax).
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// The dtype the momentum is stored in (default: the parameters').
    pub fn accumulator_dtype(mut self, kind: Kind) -> Self {
        self.accumulator_dtype = Some(kind);
        self
    }

    fn links(&self) -> Chain<(Option<Trace>, &Scale<L>)> {
        let momentum = self.momentum.map(|decay| {
            let trace = trace(decay).nesterov(self.nesterov);
            self.accumulator_dtype.map_or(trace, |kind| trace.accumulator_dtype(kind))
        });
        chain((momentum, &self.learning_rate))
    }
}

impl<P: Tree, L: ScalarOrSchedule> GradientTransformation<P> for Sgd<L> {
    type State = (MaybeState<TraceState<P>>, L::State);

    fn init(&self, params: &P) -> Result<Self::State> {
        self.links().init(params)
    }

    fn update(&self, updates: P, state: Self::State, params: Option<&P>) -> Result<(P, Self::State)> {
        self.links().update(updates, state, params)
    }
}
