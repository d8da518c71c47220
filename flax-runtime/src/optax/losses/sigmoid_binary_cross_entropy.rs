//! `optax.losses.sigmoid_binary_cross_entropy`.

use crate::core::errors::Result;
use crate::core::scalar_ops::ScalarOps;
use crate::optax::losses::check_floating;
use tch::Tensor;

/// The element-wise cross-entropy of independent binary labels (probabilities in `[0, 1]`)
/// against `sigmoid(logits)` (`optax.losses.sigmoid_binary_cross_entropy`):
/// `-labels * log_sigmoid(logits) - (1 - labels) * log_sigmoid(-logits)`. The labels are
/// cast to the logits' dtype.
///
/// # Errors
/// [`Error::Value`](crate::Error::Value) when the logits are not floating point; libtorch's
/// when the shapes do not broadcast.
pub fn sigmoid_binary_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    check_floating(logits, "logits")?;
    let labels = labels.f_to_kind(logits.f_kind()?)?;
    let log_p = logits.f_log_sigmoid()?;
    let log_not_p = logits.f_neg()?.f_log_sigmoid()?;
    let positive = labels.f_neg()?.f_mul(&log_p)?;
    let negative = labels.try_rsub_scalar(1.0)?.f_mul(&log_not_p)?;
    Ok(positive.f_sub(&negative)?)
}
