//! `optax.lamb`.

use crate::core::errors::Result;
use crate::optax::alias::delegate_setters;
use crate::optax::scalar_or_schedule::ScalarOrSchedule;
use crate::optax::transformation::{EmptyState, GradientTransformation};
use crate::optax::transforms::{
    add_decayed_weights, chain, scale_by_adam, scale_by_learning_rate, scale_by_trust_ratio,
    AddDecayedWeights, Chain, Scale, ScaleByAdam, ScaleByAdamState, ScaleByTrustRatio,
};
use crate::tree::{KeyPath, Tree};
use tch::Tensor;

/// LAMB (`optax.lamb`): `chain(scale_by_adam(eps=1e-6), add_decayed_weights(weight_decay,
/// mask), scale_by_trust_ratio(), scale_by_learning_rate(learning_rate))`. Needs the
/// parameters in `update`.
#[derive(Debug, Clone)]
pub struct Lamb<L = f64, W = f64> {
    scale_by_adam: ScaleByAdam,
    add_decayed_weights: AddDecayedWeights<W>,
    scale_by_trust_ratio: ScaleByTrustRatio,
    learning_rate: Scale<L>,
}

/// LAMB with learning rate `learning_rate` and Optax's defaults (`eps = 1e-6`, no weight
/// decay).
pub fn lamb<L: ScalarOrSchedule>(learning_rate: L) -> Lamb<L, f64> {
    Lamb {
        scale_by_adam: scale_by_adam().eps(1e-6),
        add_decayed_weights: add_decayed_weights(0.0),
        scale_by_trust_ratio: scale_by_trust_ratio(),
        learning_rate: scale_by_learning_rate(learning_rate),
    }
}

impl<L, W> Lamb<L, W> {
    delegate_setters!(scale_by_adam: b1(f64), b2(f64), eps(f64), eps_root(f64));

    /// The weight decay, a number or a schedule (default 0).
    pub fn weight_decay<V: ScalarOrSchedule>(self, weight_decay: V) -> Lamb<L, V> {
        Lamb {
            scale_by_adam: self.scale_by_adam,
            add_decayed_weights: self.add_decayed_weights.with_weight_decay(weight_decay),
            scale_by_trust_ratio: self.scale_by_trust_ratio,
            learning_rate: self.learning_rate,
        }
    }

    /// Decays only the leaves for which `mask(path, leaf)` is true (see
    /// [`AddDecayedWeights::mask`]).
    pub fn mask(mut self, mask: impl Fn(&KeyPath<'_>, &Tensor) -> bool + Send + Sync + 'static) -> Self {
        self.add_decayed_weights = self.add_decayed_weights.mask(mask);
        self
    }

    fn links(&self) -> Chain<(&ScaleByAdam, &AddDecayedWeights<W>, &ScaleByTrustRatio, &Scale<L>)> {
        chain((
            &self.scale_by_adam,
            &self.add_decayed_weights,
            &self.scale_by_trust_ratio,
            &self.learning_rate,
        ))
    }
}

impl<P: Tree, L: ScalarOrSchedule, W: ScalarOrSchedule> GradientTransformation<P> for Lamb<L, W> {
    type State = (ScaleByAdamState<P>, W::State, EmptyState, L::State);

    fn init(&self, params: &P) -> Result<Self::State> {
        self.links().init(params)
    }

    fn update(&self, updates: P, state: Self::State, params: Option<&P>) -> Result<(P, Self::State)> {
        self.links().update(updates, state, params)
    }
}
