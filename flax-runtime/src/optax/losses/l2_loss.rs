//! `optax.losses.squared_error` and `optax.losses.l2_loss`.

use crate::core::errors::Result;
use crate::core::scalar_ops::ScalarOps;
use crate::optax::losses::errors;
use tch::Tensor;

/// `(predictions - targets)^2` element-wise, or `predictions^2` without targets
/// (`optax.losses.squared_error`).
///
/// # Errors
/// [`Error::Value`](crate::Error::Value) when the predictions are not floating point or the
/// shapes differ.
pub fn squared_error(predictions: &Tensor, targets: Option<&Tensor>) -> Result<Tensor> {
    Ok(errors(predictions, targets)?.f_square()?)
}

/// Half the [`squared_error`] (`optax.losses.l2_loss`).
///
/// # Errors
/// As [`squared_error`].
pub fn l2_loss(predictions: &Tensor, targets: Option<&Tensor>) -> Result<Tensor> {
    Ok(squared_error(predictions, targets)?.try_mul_scalar(0.5)?)
}
