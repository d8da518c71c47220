//! `optax.losses.huber_loss`.

use crate::core::errors::Result;
use crate::core::scalar_ops::ScalarOps;
use crate::optax::losses::errors;
use tch::Tensor;

/// Quadratic for errors up to `delta`, linear beyond (`optax.losses.huber_loss`; Optax's
/// default `delta` is 1): `0.5 * min(|e|, delta)^2 + delta * (|e| - min(|e|, delta))`
/// element-wise, with `e = predictions - targets` (or `predictions` without targets).
///
/// # Errors
/// [`Error::Value`](crate::Error::Value) when the predictions are not floating point or the
/// shapes differ.
pub fn huber_loss(predictions: &Tensor, targets: Option<&Tensor>, delta: f64) -> Result<Tensor> {
    let abs_errors = errors(predictions, targets)?.f_abs()?;
    let quadratic = abs_errors.try_clamp_max(delta)?;
    let linear = abs_errors.f_sub(&quadratic)?;
    Ok(quadratic.f_square()?.try_mul_scalar(0.5)?.f_add(&linear.try_mul_scalar(delta)?)?)
}
