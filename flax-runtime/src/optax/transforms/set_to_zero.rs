//! `optax.set_to_zero`: freezing.

use crate::core::errors::Result;
use crate::optax::leafwise::zip_leaves_mut;
use crate::optax::transformation::{EmptyState, GradientTransformation};
use crate::tree::Tree;

/// Replaces every update by zeros (`optax.set_to_zero`): with
/// [`multi_transform`](crate::optax::multi_transform), how part of a model is frozen. Zeroes
/// the gradient buffers in place, one kernel per leaf.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetToZero;

/// Updates of zero.
pub fn set_to_zero() -> SetToZero {
    SetToZero
}

impl<P: Tree> GradientTransformation<P> for SetToZero {
    type State = EmptyState;

    fn init(&self, _params: &P) -> Result<EmptyState> {
        Ok(())
    }

    fn update(&self, mut updates: P, state: EmptyState, _params: Option<&P>) -> Result<(P, EmptyState)> {
        zip_leaves_mut(&mut updates, [], |g, []| {
            let _ = g.f_zero_()?;
            Ok(())
        })?;
        Ok((updates, state))
    }
}
