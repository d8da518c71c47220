//! `optax.clip`: element-wise clipping.

use crate::core::errors::Result;
use crate::core::scalar_ops::ScalarOps;
use crate::optax::leafwise::zip_float_leaves_mut;
use crate::optax::transformation::{EmptyState, GradientTransformation};
use crate::tree::Tree;

/// Clips every update element to `[-max_delta, max_delta]` (`optax.clip`). One kernel per
/// leaf.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clip {
    max_delta: f64,
}

/// Element-wise clipping to `[-max_delta, max_delta]`.
pub fn clip(max_delta: f64) -> Clip {
    Clip { max_delta }
}

impl<P: Tree> GradientTransformation<P> for Clip {
    type State = EmptyState;

    fn init(&self, _params: &P) -> Result<EmptyState> {
        Ok(())
    }

    fn update(&self, mut updates: P, state: EmptyState, _params: Option<&P>) -> Result<(P, EmptyState)> {
        zip_float_leaves_mut(&mut updates, [], |g, []| {
            let _ = g.try_clamp_(-self.max_delta, self.max_delta)?;
            Ok(())
        })?;
        Ok((updates, state))
    }
}
