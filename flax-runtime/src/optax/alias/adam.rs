//! `optax.adam`.

use crate::core::errors::Result;
use crate::optax::alias::delegate_setters;
use crate::optax::fused::{self, AdamConfig};
use crate::optax::scalar_or_schedule::ScalarOrSchedule;
use crate::optax::transformation::{update_then_apply, GradientTransformation};
use crate::optax::transforms::{
    chain, scale_by_adam, scale_by_learning_rate, Chain, Scale, ScaleByAdam, ScaleByAdamState,
};
use crate::tree::{self, Tree};
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

    /// One `_fused_adam_` call when the configuration (no `eps_root`, no Nesterov, moments
    /// in the parameters' dtype) and the tensors suit it; `update` then `apply_updates`
    /// otherwise.
    fn update_and_apply(&self, grads: P, state: Self::State, params: P) -> Result<(P, Self::State)> {
        let Some(config) = fused_config(&self.scale_by_adam, &params, &grads, &state.0) else {
            return update_then_apply(self, grads, state, params);
        };
        let (adam, lr_state) = state;
        let (factor, lr_state) = self.learning_rate.next(lr_state);
        let adam = fused_step(config, &params, &grads, adam, -factor, None)?;
        Ok((tree::with_sorted_keys(params), (adam, lr_state)))
    }
}

/// The fused kernels' configuration, when they implement `scale_by_adam`'s (no `eps_root`,
/// no Nesterov, moments in the parameters' dtype) for these tensors.
pub(super) fn fused_config<P: Tree>(
    scale_by_adam: &ScaleByAdam,
    params: &P,
    grads: &P,
    state: &ScaleByAdamState<P>,
) -> Option<AdamConfig> {
    let config = scale_by_adam.fused_config()?;
    let [p, g, mu, nu] = [params, grads, &state.mu, &state.nu].map(tree::leaves);
    fused::fusable(&[&p, &mu, &nu], &g).then_some(config)
}

/// One fused Adam (or, with a weight decay, AdamW) step over the whole tree, in place:
/// Optax's `scale_by_adam` state after it.
pub(super) fn fused_step<P: Tree>(
    config: AdamConfig,
    params: &P,
    grads: &P,
    state: ScaleByAdamState<P>,
    lr: f64,
    weight_decay: Option<f64>,
) -> Result<ScaleByAdamState<P>> {
    let count = state.count.increment();
    let [p, g, mu, nu] = [params, grads, &state.mu, &state.nu].map(tree::leaves);
    fused::adam(&p, &g, &mu, &nu, count.0, lr, config, weight_decay)?;
    drop((p, g, mu, nu));
    Ok(ScaleByAdamState { count, ..state })
}
