//! `optax.adam`.

use crate::core::errors::Result;
use crate::optax::alias::delegate_setters;
use crate::optax::scalar_or_schedule::ScalarOrSchedule;
use crate::optax::transformation::GradientTransformation;
use crate::optax::transforms::{
    chain, scale_by_adam, scale_by_learning_rate, Chain, Scale, ScaleByAdam, ScaleByAdamState,
};
use crate::tree::Tree;
use tch::Kind;

/// Adam (`optax.adam`): `chain(scale_by_adam(...), scale_by_learning_rate(learning_rate))`;
/// NAdam with [`nesterov`](Self::nesterov).
#[derive(Debug, Clone)]
pub struct Adam<L = f64> {
    scale_by_adam: ScaleByAdam,
    learning_rate: Scale<L>,
}

/// Adam with learning rate `learning_rate` (a number or a schedule) and Optax's defaults.
pub fn adam<L: ScalarOrSchedule>(learning_rate: L) -> Adam<L> {
    Adam { scale_by_adam: scale_by_adam(), learning_rate: scale_by_learning_rate(learning_rate) }
}

impl<L> Adam<L> {
    delegate_setters!(scale_by_adam: b1(f64), b2(f64), eps(f64), eps_root(f64), mu_dtype(Kind), nesterov(bool));

    fn links(&self) -> Chain<(&ScaleByAdam, &Scale<L>)> {
        chain((&self.scale_by_adam, &self.learning_rate))
    }
}

impl<P: Tree, L: ScalarOrSchedule> GradientTransformation<P> for Adam<L> {
    type State = (ScaleByAdamState<P>, L::State);

    fn init(&self, params: &P) -> Result<Self::State> {
        self.links().init(params)
    }

    fn update(&self, updates: P, state: Self::State, params: Option<&P>) -> Result<(P, Self::State)> {
        self.links().update(updates, state, params)
    }
}
