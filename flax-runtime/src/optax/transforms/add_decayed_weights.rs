//! `optax.add_decayed_weights`: decoupled weight decay.

use crate::core::errors::Result;
use crate::optax::leafwise::axpy;
use crate::optax::scalar_or_schedule::ScalarOrSchedule;
use crate::optax::transformation::{required_params, GradientTransformation};
use crate::optax::transforms::masked::Mask;
use crate::optax::transforms::ScaleByScheduleState;
use crate::tree::{KeyPath, Tree};
use tch::Tensor;

/// The state of a scheduled weight decay (`optax.WeightDecaySchedule`; the same single
/// `count` field as [`ScaleByScheduleState`]).
pub type WeightDecaySchedule = ScaleByScheduleState;

/// Adds `weight_decay * params` to the updates (`optax.add_decayed_weights`); the weight
/// decay is a number or a [`Schedule`](crate::optax::Schedule). Needs the parameters; a
/// weight decay of exactly 0 changes nothing, as in Optax. One kernel per leaf.
#[derive(Debug, Clone)]
pub struct AddDecayedWeights<W = f64> {
    weight_decay: W,
    mask: Option<Mask>,
}

/// Weight decay with rate `weight_decay` on every parameter.
pub fn add_decayed_weights<W: ScalarOrSchedule>(weight_decay: W) -> AddDecayedWeights<W> {
    AddDecayedWeights { weight_decay, mask: None }
}

impl<W> AddDecayedWeights<W> {
    /// Decays only the leaves for which `mask(path, leaf)` is true (Optax's `mask`, e.g.
    /// `|_, p| p.dim() > 1` to spare biases and scales).
    ///
    /// Optax wraps the transformation in `masked`, whose state adds an `inner_state` level;
    /// here the mask is applied inside, and the state is the unmasked one.
    pub fn mask(mut self, mask: impl Fn(&KeyPath<'_>, &Tensor) -> bool + Send + Sync + 'static) -> Self {
        self.mask = Some(Mask::new(mask));
        self
    }

    /// The transformation with another weight decay (a number or a schedule).
    pub(crate) fn with_weight_decay<V>(self, weight_decay: V) -> AddDecayedWeights<V> {
        AddDecayedWeights { weight_decay, mask: self.mask }
    }
}

impl<W: ScalarOrSchedule> AddDecayedWeights<W> {
    /// Whether the decay applies to selected leaves only (a fused kernel applies it to all).
    pub(crate) fn is_masked(&self) -> bool {
        self.mask.is_some()
    }

    /// This step's weight decay and the next state.
    pub(crate) fn next(&self, state: W::State) -> (f64, W::State) {
        self.weight_decay.next(state)
    }
}

impl<P: Tree, W: ScalarOrSchedule> GradientTransformation<P> for AddDecayedWeights<W> {
    type State = W::State;

    fn init(&self, _params: &P) -> Result<W::State> {
        Ok(self.weight_decay.init_state())
    }

    fn update(&self, mut updates: P, state: W::State, params: Option<&P>) -> Result<(P, W::State)> {
        let params = required_params(params)?;
        let (weight_decay, state) = self.weight_decay.next(state);
        if self.weight_decay.is_zero() {
            return Ok((updates, state));
        }
        let _no_grad = tch::no_grad_guard();
        updates.visit_leaves_mut([params], &mut KeyPath::new(), &mut |path, g, [p]| match self
            .mask
            .as_ref()
            .is_none_or(|mask| mask.selects(path, g))
        {
            true => axpy(g, weight_decay, p),
            false => Ok(()),
        })?;
        Ok((updates, state))
    }
}
