//! `optax.clip_by_global_norm`.

use crate::core::errors::Result;
use crate::core::scalar_ops::ScalarOps;
use crate::optax::leafwise::zip_float_leaves_mut;
use crate::optax::transformation::{EmptyState, GradientTransformation};
use crate::tree::{self, Tree};
use tch::Tensor;

/// Rescales all updates together so that their global L2 norm is at most `max_norm`
/// (`optax.clip_by_global_norm`): unchanged when the norm is below `max_norm`, else
/// multiplied by `max_norm / norm`.
///
/// The norm and the factor stay on the device: one norm kernel per leaf, three for the
/// global norm and the factor, one multiplication per leaf, and no synchronisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipByGlobalNorm {
    max_norm: f64,
}

/// Global-norm clipping to `max_norm`.
pub fn clip_by_global_norm(max_norm: f64) -> ClipByGlobalNorm {
    ClipByGlobalNorm { max_norm }
}

impl ClipByGlobalNorm {
    /// `min(1, max_norm / global_norm)` as a 0-dimensional tensor.
    fn factor<P: Tree>(&self, updates: &P) -> Result<Option<Tensor>> {
        let norms = tree::leaves(updates).into_iter().map(Tensor::f_norm).collect::<Result<Vec<_>, _>>()?;
        if norms.is_empty() {
            return Ok(None);
        }
        let global_norm = Tensor::f_stack(&norms, 0)?.f_norm()?;
        Ok(Some(global_norm.f_reciprocal()?.try_mul_scalar(self.max_norm)?.try_clamp_max(1.0)?))
    }
}

impl<P: Tree> GradientTransformation<P> for ClipByGlobalNorm {
    type State = EmptyState;

    fn init(&self, _params: &P) -> Result<EmptyState> {
        Ok(())
    }

    fn update(&self, mut updates: P, state: EmptyState, _params: Option<&P>) -> Result<(P, EmptyState)> {
        let _no_grad = tch::no_grad_guard();
        if let Some(factor) = self.factor(&updates)? {
            zip_float_leaves_mut(&mut updates, [], |g, []| {
                let _ = g.f_mul_(&factor)?;
                Ok(())
            })?;
        }
        Ok((updates, state))
    }
}
