//! Linear layers: `Dense`.

use crate::core::errors::{Error, Result};
use crate::core::scope::Scope;
use crate::module;
use crate::nn::dtypes::{cast, promote_kinds};
use crate::nn::initializers::{self, Init};
use tch::{Kind, Tensor};

/// A linear transformation applied over the last dimension of the input (Flax's `nn.Dense`):
/// `y = x @ kernel + bias`, with `kernel` of shape `(in_features, features)`. The input size
/// is inferred from the first call.
#[module]
pub struct Dense {
    /// The number of output features.
    pub features: i64,
    /// Whether to add a bias.
    #[module(default = true)]
    pub use_bias: bool,
    /// The dtype of the computation (default: inferred from inputs and params).
    #[module(default = None)]
    pub dtype: Option<Kind>,
    /// The dtype the params are stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
    /// Initializer of the kernel (default: `lecun_normal`).
    #[module(default = initializers::lecun_normal().into())]
    pub kernel_init: Init,
    /// Initializer of the bias (default: `zeros`).
    #[module(default = initializers::zeros().into())]
    pub bias_init: Init,
}

#[module]
impl Dense {
    /// Applies the layer to `inputs` of shape `(..., in_features)`.
    #[compact]
    pub fn call(&self, cx: &mut Scope, inputs: &Tensor) -> Result<Tensor> {
        let shape = inputs.size();
        let in_features = *shape.last().ok_or_else(|| Error::Shape {
            scope: cx.path_text(),
            message: "Dense needs an input with at least one dimension, got a scalar".into(),
        })?;
        let kernel = cx.param_with_dtype(
            "kernel",
            &self.kernel_init,
            &[in_features, self.features],
            self.param_dtype,
        )?;
        let bias = if self.use_bias {
            Some(cx.param_with_dtype("bias", &self.bias_init, &[self.features], self.param_dtype)?)
        } else {
            None
        };
        // Each `kind()` is a call into libtorch: ask once per tensor.
        let (input_kind, kernel_kind) = (inputs.kind(), kernel.kind());
        let kind = self.dtype.unwrap_or_else(|| promote_kinds(input_kind, kernel_kind));
        let cast_inputs;
        let x = if input_kind == kind {
            inputs
        } else {
            cast_inputs = inputs.f_to_kind(kind)?;
            &cast_inputs
        };
        let kernel = if kernel_kind == kind { kernel } else { kernel.f_to_kind(kind)? };
        let y = match bias {
            Some(b) if shape.len() == 2 => cast(b, kind)?.f_addmm(x, &kernel)?,
            Some(b) => x.f_matmul(&kernel)?.f_add(&cast(b, kind)?)?,
            None => x.f_matmul(&kernel)?,
        };
        Ok(y)
    }
}
