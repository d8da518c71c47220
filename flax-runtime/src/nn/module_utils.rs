//! Helpers layers share: Flax's errors for bad inputs and attributes, with the module path of
//! the layer that raised them, and the batch folding of windowed layers.

use crate::core::errors::{Error, Result};
use crate::core::scope::Scope;
use tch::Tensor;

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
