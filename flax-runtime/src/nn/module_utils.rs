//! Helpers layers share: Flax's `merge_param`, Flax's errors for bad inputs and attributes
//! with the module path of the layer that raised them, and the batch folding of windowed
//! layers.

use crate::core::errors::{Error, Result};
use crate::core::scope::Scope;
use tch::Tensor;

/// Flax's `merge_param`: a flag (`use_running_average`, `deterministic`, `train`, …) that a
/// module takes either as an attribute or as a call argument must be given exactly once;
/// returns it, or [`Error::MergeParam`] naming the module path.
///
/// ```
/// # use flax::prelude::*;
/// #[module]
/// pub struct Block {
///     #[module(default = None)]
///     pub deterministic: Option<bool>,
/// }
///
/// #[module]
/// impl Block {
///     #[compact]
///     pub fn call(&self, cx: &mut Scope, x: &Tensor, deterministic: Option<bool>) -> Result<Tensor> {
///         let deterministic = nn::merge_param(cx, "deterministic", self.deterministic, deterministic)?;
///         Ok(if deterministic { x.shallow_clone() } else { x * 2 })
///     }
/// }
///
/// let x = Tensor::ones([2], (Kind::Float, Device::Cpu));
/// let variables = Block::new().init(PRNGKey::new(0), &x, Some(true))?;
/// assert!(Block::new().apply(&variables, &x, None).is_err());
/// assert!(Block::new().deterministic(Some(true)).apply(&variables, &x, Some(false)).is_err());
/// # Ok::<(), flax::Error>(())
/// ```
pub fn merge_param<T>(cx: &Scope<'_>, name: &str, attribute: Option<T>, argument: Option<T>) -> Result<T> {
    match (attribute, argument) {
        (Some(value), None) | (None, Some(value)) => Ok(value),
        (given, _) => Err(Error::MergeParam {
            scope: cx.path_text(),
            name: name.to_owned(),
            given_twice: given.is_some(),
        }),
    }
}

/// A bad input (rank, size, dtype) to the module running in `cx`.
pub(crate) fn shape_error(cx: &Scope<'_>, message: impl Into<String>) -> Error {
    Error::Shape { scope: cx.path_text(), message: message.into() }
}

/// A bad attribute of the module running in `cx` (Flax's `ValueError` at call time).
pub(crate) fn attribute_error(cx: &Scope<'_>, message: impl Into<String>) -> Error {
    Error::InvalidAttribute { scope: cx.path_text(), message: message.into() }
}

/// An input `(*batch, spatial…, features)` with its batch dimensions folded into one, as Flax
/// folds them for convolutions and pooling: several are flattened, a missing one is added;
/// [`FoldedBatch::unfold`] restores them.
pub(crate) struct FoldedBatch {
    /// `(N, spatial…, features)`.
    pub x: Tensor,
    batch_shape: Vec<i64>,
}

impl FoldedBatch {
    /// Folds `inputs` with `spatial` spatial dims; `None` when its rank is below `spatial + 1`.
    pub(crate) fn new(inputs: &Tensor, spatial: usize) -> Result<Option<Self>> {
        let shape = inputs.size();
        if shape.len() < spatial + 1 {
            return Ok(None);
        }
        let batch = shape.len() - spatial - 1;
        let batch_shape = shape[..batch].to_vec();
        let x = if batch == 1 {
            inputs.shallow_clone()
        } else {
            let mut flat = vec![batch_shape.iter().product::<i64>()];
            flat.extend_from_slice(&shape[batch..]);
            inputs.f_reshape(flat)?
        };
        Ok(Some(FoldedBatch { x, batch_shape }))
    }

    /// The number of batch dimensions of the input.
    pub(crate) fn batch_dims(&self) -> usize {
        self.batch_shape.len()
    }

    /// Gives an output `(N, spatial…, features)` the input's batch dimensions back.
    pub(crate) fn unfold(&self, y: Tensor) -> Result<Tensor> {
        if self.batch_shape.len() == 1 {
            return Ok(y);
        }
        let mut shape = self.batch_shape.clone();
        shape.extend_from_slice(&y.size()[1..]);
        Ok(y.f_reshape(shape)?)
    }
}
