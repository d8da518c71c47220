//! Optax's losses (`optax.losses`), unreduced as in Optax: one value per example (per
//! element for the regression and binary losses); take the `mean` for a training loss.
//! All are differentiable with [`value_and_grad`](crate::value_and_grad).
//!
//! An empty batch gives an empty loss, as in Optax: the losses compute nothing over the batch,
//! so they have nothing to refuse. Its `mean` is NaN, as `jnp.mean` of nothing is; that is the
//! caller's reduction, and the metrics it would go into count a 0-d loss as one value
//! (`training::metrics::Average`), so a training loop should skip empty batches.

mod huber_loss;
mod l2_loss;
mod sigmoid_binary_cross_entropy;
mod softmax_cross_entropy;

pub use huber_loss::huber_loss;
pub use l2_loss::{l2_loss, squared_error};
pub use sigmoid_binary_cross_entropy::sigmoid_binary_cross_entropy;
pub use softmax_cross_entropy::{softmax_cross_entropy, softmax_cross_entropy_with_integer_labels};

use crate::core::errors::{Error, Result};
use tch::Tensor;

/// Checks that `x` is floating point (Optax's `check_subdtype(x, jnp.floating)`).
fn check_floating(x: &Tensor, name: &str) -> Result<()> {
    match x.f_is_floating_point()? {
        true => Ok(()),
        false => Err(Error::Value(format!("{name} must be floating point, got {:?}", x.f_kind()?))),
    }
}

/// Checks that integer class `labels` have exactly the shape of `logits` without its last
/// (class) axis. Optax and clu broadcast labels of another shape, which silently scores a
/// mislabelled batch; here it is an error.
pub(crate) fn check_class_labels(logits: &Tensor, labels: &Tensor) -> Result<()> {
    let (logits_shape, labels_shape) = (logits.size(), labels.size());
    match logits_shape.split_last() {
        Some((_, batch)) if batch == labels_shape.as_slice() => Ok(()),
        _ => Err(Error::Value(format!(
            "labels of shape {labels_shape:?} do not match logits of shape {logits_shape:?} \
             (labels have the logits' shape without the class axis)"
        ))),
    }
}

/// `predictions - targets`, after checking both shapes are equal
/// (Optax's `check_shapes_equal`), or `predictions` alone.
fn errors(predictions: &Tensor, targets: Option<&Tensor>) -> Result<Tensor> {
    check_floating(predictions, "predictions")?;
    match targets {
        None => Ok(predictions.shallow_clone()),
        Some(targets) if targets.size() == predictions.size() => Ok(predictions.f_sub(targets)?),
        Some(targets) => Err(Error::Value(format!(
            "predictions and targets must have the same shape, got {:?} and {:?}",
            predictions.size(),
            targets.size()
        ))),
    }
}
