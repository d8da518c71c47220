//! `optax.trace`: momentum.

use crate::core::errors::Result;
use crate::core::scalar_ops::ScalarOps;
use crate::optax::leafwise::{axpy, full_like, handle, zip_float_leaves_mut};
use crate::optax::transformation::GradientTransformation;
use crate::tree::Tree;
use tch::{Kind, Tensor};

/// The momentum buffer, one tensor per parameter (`optax.TraceState`).
#[derive(Tree, Debug)]
pub struct TraceState<P> {
    /// The decayed sum of past updates.
    pub trace: P,
}

/// Accumulates a decayed sum of the updates and returns it (`optax.trace`):
/// `trace = g + decay * trace`, and the update is `trace`, or `g + decay * trace` with
/// Nesterov momentum. Two kernels per leaf (three with Nesterov).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trace {
    decay: f64,
    nesterov: bool,
    accumulator_dtype: Option<Kind>,
}

/// Momentum with decay rate `decay` (`optax.trace(decay)`).
pub fn trace(decay: f64) -> Trace {
    Trace { decay, nesterov: false, accumulator_dtype: None }
}

impl Trace {
    /// Nesterov momentum (Optax's `nesterov`, default false).
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// The dtype the trace is stored in (Optax's `accumulator_dtype`; default: the
    /// parameters').
    pub fn accumulator_dtype(mut self, kind: Kind) -> Self {
        self.accumulator_dtype = Some(kind);
        self
    }

    /// One leaf: the new trace into the state, the update into `g`.
    fn update_leaf(&self, g: &mut Tensor, trace: &Tensor) -> Result<()> {
        if trace.f_kind()? != g.f_kind()? {
            return self.update_leaf_cast(g, trace);
        }
        let mut trace = handle(trace);
        if self.nesterov {
            let _ = trace.try_mul_scalar_(self.decay)?.f_add_(g)?;
            axpy(g, self.decay, &trace)
        } else {
            axpy(g, self.decay, &trace)?;
            Ok(trace.f_copy_(g)?)
        }
    }

    /// [`update_leaf`](Self::update_leaf) for a trace stored in another dtype: computed in
    /// the updates' dtype, as Optax computes it before casting it for the state.
    fn update_leaf_cast(&self, g: &mut Tensor, trace: &Tensor) -> Result<()> {
        let mut new_trace = trace.f_to_kind(g.f_kind()?)?;
        let _ = new_trace.try_mul_scalar_(self.decay)?.f_add_(g)?;
        handle(trace).f_copy_(&new_trace)?;
        if self.nesterov {
            axpy(g, self.decay, &new_trace)
        } else {
            Ok(g.f_copy_(&new_trace)?)
        }
    }
}

impl<P: Tree> GradientTransformation<P> for Trace {
    type State = TraceState<P>;

    fn init(&self, params: &P) -> Result<TraceState<P>> {
        Ok(TraceState { trace: full_like(params, 0.0, self.accumulator_dtype)? })
    }

    fn update(
        &self,
        mut updates: P,
        state: TraceState<P>,
        _params: Option<&P>,
    ) -> Result<(P, TraceState<P>)> {
        zip_float_leaves_mut(&mut updates, [&state.trace], |g, [trace]| self.update_leaf(g, trace))?;
        Ok((updates, state))
    }
}
