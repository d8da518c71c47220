//! `optax.adagrad`.

use crate::core::errors::Result;
use crate::optax::alias::delegate_setters;
use crate::optax::scalar_or_schedule::ScalarOrSchedule;
use crate::optax::transformation::GradientTransformation;
use crate::optax::transforms::{
    chain, scale_by_learning_rate, scale_by_rss, Chain, Scale, ScaleByRss, ScaleByRssState,
};
use crate::tree::Tree;

/// Adagrad (`optax.adagrad`): `chain(scale_by_rss(...), scale_by_learning_rate(learning_rate))`.
#[derive(Debug, Clone)]
pub struct Adagrad<L = f64> {
    scale_by_rss: ScaleByRss,
    learning_rate: Scale<L>,
}

/// Adagrad with learning rate `learning_rate` and Optax's defaults
/// (`initial_accumulator_value = 0.1`, `eps = 1e-7`).
pub fn adagrad<L: ScalarOrSchedule>(learning_rate: L) -> Adagrad<L> {
    Adagrad { scale_by_rss: scale_by_rss(), learning_rate: scale_by_learning_rate(learning_rate) }
}

impl<L> Adagrad<L> {
    delegate_setters!(scale_by_rss: initial_accumulator_value(f64), eps(f64));

    fn links(&self) -> Chain<(&ScaleByRss, &Scale<L>)> {
        chain((&self.scale_by_rss, &self.learning_rate))
    }
}

impl<P: Tree, L: ScalarOrSchedule> GradientTransformation<P> for Adagrad<L> {
    type State = (ScaleByRssState<P>, L::State);

    fn init(&self, params: &P) -> Result<Self::State> {
        self.links().init(params)
    }

    fn update(&self, updates: P, state: Self::State, params: Option<&P>) -> Result<(P, Self::State)> {
        self.links().update(updates, state, params)
    }
}
