//! `optax.sgd`.

use crate::core::errors::Result;
use crate::optax::fused;
use crate::optax::scalar_or_schedule::ScalarOrSchedule;
use crate::optax::transformation::{update_then_apply, GradientTransformation};
use crate::optax::transforms::{
    chain, scale_by_learning_rate, trace, Chain, MaybeState, Scale, Trace, TraceState,
};
use crate::tree::{self, Tree};
use tch::{Kind, Tensor};

/// Stochastic gradient descent, with optional (Nesterov) momentum (`optax.sgd`):
/// `chain(trace(momentum) or identity, scale_by_learning_rate(learning_rate))`.
///
/// With momentum, `update` is three kernels per leaf and `apply_updates` one more;
/// [`update_and_apply`](GradientTransformation::update_and_apply) (what
/// `TrainState::apply_gradients` calls) is one `_fused_sgd_` call for the whole tree.
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

    /// One `_fused_sgd_` call when the trace (if any) is kept in the parameters' dtype and
    /// every tensor suits the kernel; `update` then `apply_updates` otherwise.
    fn update_and_apply(&self, grads: P, state: Self::State, params: P) -> Result<(P, Self::State)> {
        let (trace, lr_state) = state;
        let momentum = match (&trace.0, self.momentum) {
            (Some(trace), Some(decay)) if decay != 0.0 => Some((tree::leaves(&trace.trace), decay)),
            (None, None) => None,
            // A zero decay (the kernel would not read the buffers) or a state from elsewhere.
            _ => return update_then_apply(self, grads, (trace, lr_state), params),
        };
        let (p, g) = (tree::leaves(&params), tree::leaves(&grads));
        let written: Vec<&[&Tensor]> =
            [Some(&p[..]), momentum.as_ref().map(|(b, _)| &b[..])].into_iter().flatten().collect();
        if !fused::fusable(&written, &g) {
            return update_then_apply(self, grads, (trace, lr_state), params);
        }
        let (factor, lr_state) = self.learning_rate.next(lr_state);
        let (bufs, decay) = momentum.map_or((None, 0.0), |(b, decay)| (Some(b), decay));
        // Optax ignores `nesterov` without momentum.
        let nesterov = self.nesterov && bufs.is_some();
        fused::sgd(&p, &g, bufs.as_deref(), decay, -factor, nesterov)?;
        drop((p, g, bufs));
        Ok((tree::with_sorted_keys(params), (trace, lr_state)))
    }
}
