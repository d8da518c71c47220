//! `optax.adamw`.

use crate::core::errors::Result;
use crate::optax::alias::adam::{fused_config, fused_step};
use crate::optax::alias::delegate_setters;
use crate::optax::scalar_or_schedule::ScalarOrSchedule;
use crate::optax::transformation::{update_then_apply, GradientTransformation};
use crate::optax::transforms::{
    add_decayed_weights, chain, scale_by_adam, scale_by_learning_rate, AddDecayedWeights, Chain, Scale,
    ScaleByAdam, ScaleByAdamState,
};
use crate::tree::{self, KeyPath, Tree};
use tch::{Kind, Tensor};

/// Adam with decoupled weight decay (`optax.adamw`): `chain(scale_by_adam(...),
/// add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))`. Needs
/// the parameters in `update`.
#[derive(Debug, Clone)]
pub struct AdamW<L = f64, W = f64> {
    scale_by_adam: ScaleByAdam,
    add_decayed_weights: AddDecayedWeights<W>,
    learning_rate: Scale<L>,
}

/// AdamW with learning rate `learning_rate` and Optax's defaults (weight decay 1e-4).
pub fn adamw<L: ScalarOrSchedule>(learning_rate: L) -> AdamW<L, f64> {
    AdamW {
        scale_by_adam: scale_by_adam(),
        add_decayed_weights: add_decayed_weights(1e-4),
        learning_rate: scale_by_learning_rate(learning_rate),
    }
}

impl<L, W> AdamW<L, W> {
    delegate_setters!(scale_by_adam: b1(f64), b2(f64), eps(f64), eps_root(f64), mu_dtype(Kind), nesterov(bool));

    /// The weight decay, a number or a schedule (default 1e-4).
    pub fn weight_decay<V: ScalarOrSchedule>(self, weight_decay: V) -> AdamW<L, V> {
        AdamW {
            scale_by_adam: self.scale_by_adam,
            add_decayed_weights: self.add_decayed_weights.with_weight_decay(weight_decay),
            learning_rate: self.learning_rate,
        }
    }

    /// Decays only the leaves for which `mask(path, leaf)` is true (see
    /// [`AddDecayedWeights::mask`]).
    pub fn mask(mut self, mask: impl Fn(&KeyPath<'_>, &Tensor) -> bool + Send + Sync + 'static) -> Self {
        self.add_decayed_weights = self.add_decayed_weights.mask(mask);
        self
    }

    fn links(&self) -> Chain<(&ScaleByAdam, &AddDecayedWeights<W>, &Scale<L>)> {
        chain((&self.scale_by_adam, &self.add_decayed_weights, &self.learning_rate))
    }
}

impl<P: Tree, L: ScalarOrSchedule, W: ScalarOrSchedule> GradientTransformation<P> for AdamW<L, W> {
    type State = (ScaleByAdamState<P>, W::State, L::State);

    fn init(&self, params: &P) -> Result<Self::State> {
        self.links().init(params)
    }

    fn update(&self, updates: P, state: Self::State, params: Option<&P>) -> Result<(P, Self::State)> {
        self.links().update(updates, state, params)
    }

    /// One `_fused_adamw_` call when the configuration and tensors suit it (and no mask
    /// limits the weight decay); `update` then `apply_updates` otherwise.
    fn update_and_apply(&self, grads: P, state: Self::State, params: P) -> Result<(P, Self::State)> {
        let config = fused_config(&self.scale_by_adam, &params, &grads, &state.0);
        let (Some(config), false) = (config, self.add_decayed_weights.is_masked()) else {
            return update_then_apply(self, grads, state, params);
        };
        let (adam, decay_state, lr_state) = state;
        let (weight_decay, decay_state) = self.add_decayed_weights.next(decay_state);
        let (factor, lr_state) = self.learning_rate.next(lr_state);
        let adam = fused_step(config, &params, &grads, adam, -factor, Some(weight_decay))?;
        Ok((tree::with_sorted_keys(params), (adam, decay_state, lr_state)))
    }
}
