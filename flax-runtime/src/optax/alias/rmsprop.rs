//! `optax.rmsprop`.

use crate::core::errors::Result;
use crate::optax::alias::delegate_setters;
use crate::optax::scalar_or_schedule::ScalarOrSchedule;
use crate::optax::transformation::GradientTransformation;
use crate::optax::transforms::{
    chain, scale_by_learning_rate, scale_by_rms, trace, Chain, MaybeState, Scale, ScaleByRms,
    ScaleByRmsState, Trace, TraceState,
};
use crate::tree::Tree;

/// RMSProp (`optax.rmsprop`): `chain(scale_by_rms(...) or scale_by_stddev(...) when centered,
/// scale_by_learning_rate(learning_rate), trace(momentum) or identity)`.
#[derive(Debug, Clone)]
pub struct RmsProp<L = f64> {
    scale_by_rms: ScaleByRms,
    learning_rate: Scale<L>,
    momentum: Option<f64>,
    nesterov: bool,
}

/// RMSProp with learning rate `learning_rate` and Optax's defaults (`decay = 0.9`,
/// `eps = 1e-8`, no momentum).
pub fn rmsprop<L: ScalarOrSchedule>(learning_rate: L) -> RmsProp<L> {
    RmsProp {
        scale_by_rms: scale_by_rms(),
        learning_rate: scale_by_learning_rate(learning_rate),
        momentum: None,
        nesterov: false,
    }
}

impl<L> RmsProp<L> {
    delegate_setters!(
        scale_by_rms: decay(f64),
        eps(f64),
        initial_scale(f64),
        eps_in_sqrt(bool),
        centered(bool),
        bias_correction(bool),
    );

    /// The decay rate of a momentum applied after the learning rate (default none).
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = Some(momentum);
        self
    }

    /// Nesterov momentum (default false; ignored without momentum).
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    fn links(&self) -> Chain<(&ScaleByRms, &Scale<L>, Option<Trace>)> {
        let momentum = self.momentum.map(|decay| trace(decay).nesterov(self.nesterov));
        chain((&self.scale_by_rms, &self.learning_rate, momentum))
    }
}

impl<P: Tree, L: ScalarOrSchedule> GradientTransformation<P> for RmsProp<L> {
    type State = (ScaleByRmsState<P>, L::State, MaybeState<TraceState<P>>);

    fn init(&self, params: &P) -> Result<Self::State> {
        self.links().init(params)
    }

    fn update(&self, updates: P, state: Self::State, params: Option<&P>) -> Result<(P, Self::State)> {
        self.links().update(updates, state, params)
    }
}
