//! Convolutions over channels-last inputs: `Conv` (shared weights) and `ConvLocal`
//! (unshared weights), Flax's `_Conv` family.
//!
//! Differences from the spec's Flax 0.6.10: none in behaviour. `kernel_size` is a `Vec` (the
//! spec's `Conv` rejects a bare int with a `TypeError`, 0.12.8 reads it as `(k,)`: write
//! `vec![k]`); `precision` is libtorch's float32 precision of CUDA convolutions
//! ([`Precision`]).
//!
//! A kernel that fits nowhere in some dimension (`VALID` and larger than the input) gives a
//! zero-size output, as in Flax; `ConvLocal`'s kernel then has a zero-size output grid, over
//! which the default `lecun_normal` fails as Flax's does (a zero fan), so such a layer needs
//! another `kernel_init`.

use crate::core::errors::Result;
use crate::core::repr::FlaxRepr;
use crate::core::scope::Scope;
use crate::module;
use crate::nn::conv_mask::Mask;
use crate::nn::dims::Dims;
use crate::nn::dtypes::{cast, result_dtype};
use crate::nn::initializers::{self, Init};
use crate::nn::lax_conv::{conv_general_dilated, conv_general_dilated_local, ConvGeometry};
use crate::nn::module_utils::{attribute_error, shape_error, FoldedBatch};
use crate::nn::padding::{pad_wrap, same_pads, Padding};
use crate::nn::precision::{with_precision, Precision};
use tch::{Kind, Tensor};

/// Folds the batch dimensions of `inputs` for a convolution with `spatial` dims, or
/// reports inputs of too small a rank.
pub(crate) fn fold_batch(
    cx: &Scope<'_>,
    layer: &str,
    inputs: &Tensor,
    spatial: usize,
) -> Result<FoldedBatch> {
    FoldedBatch::new(inputs, spatial)?.ok_or_else(|| {
        shape_error(
            cx,
            format!(
                "{layer} with a kernel of rank {spatial} needs inputs of shape (*batch, {spatial} spatial dims, \
                 features), got shape {}",
                inputs.size().flax_repr()
            ),
        )
    })
}

/// `int | Sequence[int]` attribute `name` for `n` spatial dimensions, or Flax's error.
pub(crate) fn per_dim(cx: &Scope<'_>, name: &str, dims: &Dims, n: usize) -> Result<Vec<i64>> {
    let values = dims.broadcast(n).map_err(|e| attribute_error(cx, format!("{name}: {e}")))?;
    match values.iter().find(|&&v| v < 1) {
        Some(v) => Err(attribute_error(cx, format!("{name} must be positive, got {v}"))),
        None => Ok(values),
    }
}

/// Checks a kernel size: at least one spatial dimension, each at least 1.
pub(crate) fn check_kernel_size(cx: &Scope<'_>, kernel_size: &[i64]) -> Result<()> {
    if kernel_size.is_empty() || kernel_size.iter().any(|&k| k < 1) {
        return Err(attribute_error(
            cx,
            format!(
                "kernel_size must be a non-empty sequence of positive ints, got {}",
                kernel_size.flax_repr()
            ),
        ));
    }
    Ok(())
}

/// The attributes `Conv` and `ConvLocal` share (Flax's `_Conv`), borrowed from either.
struct ConvAttrs<'a> {
    layer: &'static str,
    shared_weights: bool,
    features: i64,
    kernel_size: &'a [i64],
    strides: &'a Dims,
    padding: &'a Padding,
    input_dilation: &'a Dims,
    kernel_dilation: &'a Dims,
    feature_group_count: i64,
    use_bias: bool,
    mask: Option<&'a Mask>,
    dtype: Option<Kind>,
    param_dtype: Kind,
    precision: Option<Precision>,
    kernel_init: &'a Init,
    bias_init: &'a Init,
}

impl ConvAttrs<'_> {
    /// Flax's `_Conv.__call__`.
    fn call(&self, cx: &mut Scope<'_>, inputs: &Tensor) -> Result<Tensor> {
        check_kernel_size(cx, self.kernel_size)?;
        let n = self.kernel_size.len();
        let folded = fold_batch(cx, self.layer, inputs, n)?;
        let (x, geometry) = self.geometry(cx, &folded.x)?;
        let in_features = x.size()[n + 1];
        let spatial_in = x.size()[1..=n].to_vec();
        let out_spatial = geometry.output_shape(&spatial_in, self.kernel_size);
        let (kernel_shape, bias_shape) = self.param_shapes(cx, in_features, &out_spatial)?;
        Mask::check(self.mask, cx, &kernel_shape)?;
        let kernel = cx.param_with_dtype("kernel", self.kernel_init, &kernel_shape, self.param_dtype)?;
        let kernel = Mask::apply(self.mask, kernel)?;
        let bias = if self.use_bias {
            Some(cx.param_with_dtype("bias", self.bias_init, &bias_shape, self.param_dtype)?)
        } else {
            None
        };
        let kind = match &bias {
            Some(b) => result_dtype(&[&x, &kernel, b], self.dtype)?,
            None => result_dtype(&[&x, &kernel], self.dtype)?,
        };
        let (x, kernel) = (cast(x, kind)?, cast(kernel, kind)?);
        let bias = bias.map(|b| cast(b, kind)).transpose()?;
        let y = with_precision(self.precision, || {
            if self.shared_weights {
                return conv_general_dilated(&x, &kernel, &geometry, bias.as_ref());
            }
            let y = conv_general_dilated_local(&x, &kernel, self.kernel_size, &geometry)?;
            match &bias {
                Some(b) => Ok(y.f_add(b)?),
                None => Ok(y),
            }
        })?;
        folded.unfold(y)
    }

    /// The strides, dilations and explicit pads of the convolution, and its input (wrapped
    /// around for `CIRCULAR`).
    fn geometry(&self, cx: &Scope<'_>, x: &Tensor) -> Result<(Tensor, ConvGeometry)> {
        let n = self.kernel_size.len();
        let strides = per_dim(cx, "strides", self.strides, n)?;
        let lhs_dilation = per_dim(cx, "input_dilation", self.input_dilation, n)?;
        let rhs_dilation = per_dim(cx, "kernel_dilation", self.kernel_dilation, n)?;
        if self.feature_group_count < 1 {
            return Err(attribute_error(
                cx,
                format!("feature_group_count must be positive, got {}", self.feature_group_count),
            ));
        }
        let dilated = lhs_dilation.iter().any(|&d| d != 1);
        if dilated && !self.padding.is_explicit() {
            return Err(attribute_error(
                cx,
                "String padding is not implemented for transposed convolution using this op. Please either \
                 exactly specify the required padding or use conv_transpose.",
            ));
        }
        let extents: Vec<i64> =
            self.kernel_size.iter().zip(&rhs_dilation).map(|(k, d)| (k - 1) * d + 1).collect();
        let mut x = x.shallow_clone();
        let pads = match self.padding {
            Padding::Same => same_pads(&x.size()[1..=n], &extents, &strides),
            Padding::Valid => vec![(0, 0); n],
            Padding::Circular => {
                for (i, &e) in extents.iter().enumerate() {
                    x = pad_wrap(&x, i as i64 + 1, (e - 1) / 2, e / 2)?;
                }
                vec![(0, 0); n]
            }
            Padding::Causal if n != 1 => {
                return Err(attribute_error(cx, "Causal padding is only implemented for 1D convolutions."));
            }
            Padding::Causal => vec![(extents[0] - 1, 0)],
            Padding::Int(_) | Padding::Explicit(_) => {
                self.padding.pairs(n).map_err(|e| attribute_error(cx, e))?
            }
        };
        let geometry =
            ConvGeometry { strides, pads, lhs_dilation, rhs_dilation, groups: self.feature_group_count };
        Ok((x, geometry))
    }

    /// The kernel and bias shapes for `in_features` inputs and `out_spatial` output positions.
    fn param_shapes(
        &self,
        cx: &Scope<'_>,
        in_features: i64,
        out_spatial: &[i64],
    ) -> Result<(Vec<i64>, Vec<i64>)> {
        let groups = self.feature_group_count;
        if self.shared_weights {
            if in_features % groups != 0 || self.features % groups != 0 {
                return Err(shape_error(
                    cx,
                    format!(
                        "feature_group_count {groups} must divide the input features ({in_features}) and the \
                         output features ({})",
                        self.features
                    ),
                ));
            }
            let mut kernel = self.kernel_size.to_vec();
            kernel.extend([in_features / groups, self.features]);
            return Ok((kernel, vec![self.features]));
        }
        if groups != 1 {
            return Err(attribute_error(
                cx,
                format!(
                    "`lax.conv_general_dilated_local` does not support `feature_group_count != 1`, got `{groups}`."
                ),
            ));
        }
        let mut kernel = out_spatial.to_vec();
        kernel.extend([self.kernel_size.iter().product::<i64>() * in_features, self.features]);
        let mut bias = out_spatial.to_vec();
        bias.push(self.features);
        Ok((kernel, bias))
    }
}

/// A convolution over the spatial dimensions of channels-last inputs `(*batch, spatial…,
/// features)` (NWC, NHWC, NDHWC) (Flax's `nn.Conv`), with kernel `kernel_size + (in_features
/// / feature_group_count, features)` (HWIO) and bias `(features,)`. Several batch
/// dimensions are flattened and restored; an input without one gets it for the call.
#[module]
pub struct Conv {
    /// The number of convolution filters (output features).
    pub features: i64,
    /// The shape of the kernel's window, one entry per spatial dimension.
    pub kernel_size: Vec<i64>,
    /// The inter-window strides.
    #[module(default = Dims::Int(1))]
    pub strides: Dims,
    /// `SAME` (default), `VALID`, `CIRCULAR`, `CAUSAL` (1-D), an int or `(low, high)` pairs.
    #[module(default = Padding::Same)]
    pub padding: Padding,
    /// Dilation of the input (`d - 1` zeros between elements; a transposed convolution with
    /// stride `d`). Needs explicit padding when not 1, as in `lax`.
    #[module(default = Dims::Int(1))]
    pub input_dilation: Dims,
    /// Dilation of the kernel (atrous convolution).
    #[module(default = Dims::Int(1))]
    pub kernel_dilation: Dims,
    /// The number of groups the input features are split into (depthwise when equal to them).
    #[module(default = 1)]
    pub feature_group_count: i64,
    /// Whether to add a bias.
    #[module(default = true)]
    pub use_bias: bool,
    /// A mask of the kernel's shape, multiplied into it (masked convolutions).
    #[module(default = None)]
    pub mask: Option<Mask>,
    /// The dtype of the computation (default: promoted from the inputs and params).
    #[module(default = None)]
    pub dtype: Option<Kind>,
    /// The dtype the params are stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
    /// The float32 precision of the layer's products on CUDA (Flax's `precision`; default
    /// `None`: libtorch's setting). Changes nothing on CPU, as in JAX; see [`Precision`].
    #[module(default = None)]
    pub precision: Option<Precision>,
    /// Initializer of the kernel (default: `lecun_normal`).
    #[module(default = initializers::lecun_normal().into())]
    pub kernel_init: Init,
    /// Initializer of the bias (default: `zeros`).
    #[module(default = initializers::zeros().into())]
    pub bias_init: Init,
}

#[module]
impl Conv {
    /// Convolves `inputs` of shape `(*batch, spatial…, features)`.
    #[compact]
    pub fn call(&self, cx: &mut Scope, inputs: &Tensor) -> Result<Tensor> {
        ConvAttrs {
            layer: "Conv",
            shared_weights: true,
            features: self.features,
            kernel_size: &self.kernel_size,
            strides: &self.strides,
            padding: &self.padding,
            input_dilation: &self.input_dilation,
            kernel_dilation: &self.kernel_dilation,
            feature_group_count: self.feature_group_count,
            use_bias: self.use_bias,
            mask: self.mask.as_ref(),
            dtype: self.dtype,
            param_dtype: self.param_dtype,
            precision: self.precision,
            kernel_init: &self.kernel_init,
            bias_init: &self.bias_init,
        }
        .call(cx, inputs)
    }
}

/// A locally connected layer (unshared convolution, Flax's `nn.ConvLocal`): `Conv`'s window
/// geometry with a separate weight matrix per output position. Kernel `out_spatial +
/// (prod(kernel_size) · in_features, features)`, bias `out_spatial + (features,)`;
/// `feature_group_count` must be 1.
#[module]
pub struct ConvLocal {
    /// The number of output features.
    pub features: i64,
    /// The shape of the window, one entry per spatial dimension.
    pub kernel_size: Vec<i64>,
    /// The inter-window strides.
    #[module(default = Dims::Int(1))]
    pub strides: Dims,
    /// `SAME` (default), `VALID`, `CIRCULAR`, `CAUSAL` (1-D), an int or `(low, high)` pairs.
    #[module(default = Padding::Same)]
    pub padding: Padding,
    /// Dilation of the input; needs explicit padding when not 1.
    #[module(default = Dims::Int(1))]
    pub input_dilation: Dims,
    /// Dilation of the window.
    #[module(default = Dims::Int(1))]
    pub kernel_dilation: Dims,
    /// Must be 1 (Flax raises `NotImplementedError` otherwise).
    #[module(default = 1)]
    pub feature_group_count: i64,
    /// Whether to add a bias.
    #[module(default = true)]
    pub use_bias: bool,
    /// A mask of the kernel's shape, multiplied into it.
    #[module(default = None)]
    pub mask: Option<Mask>,
    /// The dtype of the computation (default: promoted from the inputs and params).
    #[module(default = None)]
    pub dtype: Option<Kind>,
    /// The dtype the params are stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
    /// The float32 precision of the layer's products on CUDA (Flax's `precision`; default
    /// `None`: libtorch's setting). Changes nothing on CPU, as in JAX; see [`Precision`].
    #[module(default = None)]
    pub precision: Option<Precision>,
    /// Initializer of the kernel (default: `lecun_normal`).
    #[module(default = initializers::lecun_normal().into())]
    pub kernel_init: Init,
    /// Initializer of the bias (default: `zeros`).
    #[module(default = initializers::zeros().into())]
    pub bias_init: Init,
}

#[module]
impl ConvLocal {
    /// Applies the unshared convolution to `inputs` of shape `(*batch, spatial…, features)`.
    #[compact]
    pub fn call(&self, cx: &mut Scope, inputs: &Tensor) -> Result<Tensor> {
        ConvAttrs {
            layer: "ConvLocal",
            shared_weights: false,
            features: self.features,
            kernel_size: &self.kernel_size,
            strides: &self.strides,
            padding: &self.padding,
            input_dilation: &self.input_dilation,
            kernel_dilation: &self.kernel_dilation,
            feature_group_count: self.feature_group_count,
            use_bias: self.use_bias,
            mask: self.mask.as_ref(),
            dtype: self.dtype,
            param_dtype: self.param_dtype,
            precision: self.precision,
            kernel_init: &self.kernel_init,
            bias_init: &self.bias_init,
        }
        .call(cx, inputs)
    }
}
