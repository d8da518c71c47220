//! `optax.losses.softmax_cross_entropy` and
//! `optax.losses.softmax_cross_entropy_with_integer_labels`, over the last axis.

use crate::core::errors::{Error, Result};
use crate::optax::losses::{check_class_labels, check_floating};
use tch::{Kind, Reduction, Tensor};

/// The cross-entropy of `labels` (a probability distribution per example, same shape as
/// `logits`) against `softmax(logits)`, over the last axis
/// (`optax.losses.softmax_cross_entropy`): `-sum(labels * log_softmax(logits), -1)`.
///
/// Optax's `axis` and `where` arguments are not offered: the class axis is the last.
///
/// # Errors
/// [`Error::Value`] when the logits are not floating point; libtorch's when the shapes do not
/// broadcast.
pub fn softmax_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    check_floating(logits, "logits")?;
    let log_probs = logits.f_log_softmax(-1, None)?;
    Ok(labels.f_mul(&log_probs)?.f_sum_dim_intlist([-1i64].as_slice(), false, None)?.f_neg()?)
}

/// The cross-entropy of integer class labels (shape: `logits`' without the last axis)
/// against `softmax(logits)` (`optax.losses.softmax_cross_entropy_with_integer_labels`):
/// `logsumexp(logits, -1) - logits[label]`. The usual classification loss
/// (`.mean(Kind::Float)` of it, in the spec's quickstart).
///
/// # Errors
/// [`Error::Value`] when the logits are not floating point, the labels not integers, or the
/// labels' shape is not exactly the logits' without the class axis (Optax broadcasts labels of
/// another shape, which hides a mislabelled batch); libtorch's when a label is out of range.
pub fn softmax_cross_entropy_with_integer_labels(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    check_floating(logits, "logits")?;
    let label_kind = labels.f_kind()?;
    if !matches!(label_kind, Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64) {
        return Err(Error::Value(format!("labels must be integers, got {label_kind:?}")));
    }
    check_class_labels(logits, labels)?;
    let labels = labels.f_to_kind(Kind::Int64)?;
    if logits.numel() > 0 {
        // libtorch's `cross_entropy_loss` (`log_softmax` and `nll_loss`, two kernels) on the
        // examples as rows; it skips labels equal to `ignore_index`, which no label of these
        // shapes can be but `i64::MIN`.
        let size = logits.size();
        let classes = size[size.len() - 1];
        let rows = logits.f_reshape([-1, classes])?;
        let losses = rows.f_cross_entropy_loss(
            &labels.f_reshape([-1])?,
            None::<&Tensor>,
            Reduction::None,
            i64::MIN,
            0.0,
        )?;
        return Ok(losses.f_reshape(labels.size())?);
    }
    let index = labels.f_unsqueeze(-1)?;
    let label_logits = logits.f_gather(-1, &index, false)?.f_squeeze_dim(-1)?;
    Ok(logits.f_logsumexp([-1i64].as_slice(), false)?.f_sub(&label_logits)?)
}
