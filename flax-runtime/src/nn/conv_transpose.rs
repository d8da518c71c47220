//! `ConvTranspose`: Flax's transposed convolution (`lax.conv_transpose`), the input-dilated
//! convolution that upsamples by its strides.
//!
//! Differences from the spec's Flax 0.6.10: `strides` and `kernel_dilation` default to
//! `Dims::Int(1)`, which is what Flax's `None` means; `precision` is libtorch's float32
//! precision of CUDA convolutions ([`Precision`]).

use crate::core::errors::Result;
use crate::core::repr::FlaxRepr;
use crate::core::scope::Scope;
use crate::module;
use crate::nn::conv::{check_kernel_size, fold_batch, per_dim};
use crate::nn::conv_mask::Mask;
use crate::nn::dims::Dims;
use crate::nn::dtypes::{cast, result_dtype};
use crate::nn::initializers::{self, Init};
use crate::nn::lax_conv::{conv_general_dilated, conv_transpose_padding, ConvGeometry};
use crate::nn::module_utils::attribute_error;
use crate::nn::padding::Padding;
use crate::nn::precision::{with_precision, Precision};
use tch::{Kind, Tensor};

/// A transposed convolution over channels-last inputs `(*batch, spatial…, features)` (Flax's
/// `nn.ConvTranspose`, mirroring `lax.conv_transpose`): the input is dilated by `strides`
/// and convolved, so `SAME` gives `in · stride` positions and `VALID` `in · stride +
/// max(k' - stride, 0)`; `CIRCULAR` wraps the output around to `in · stride`. Kernel
/// `kernel_size + (in_features, features)`, or `kernel_size + (features, in_features)` with
/// `transpose_kernel` (which flips the kernel spatially and swaps its channel axes, as the
/// gradient of `Conv` with the same kernel would); bias `(features,)`.
#[module]
pub struct ConvTranspose {
    /// The number of output features.
    pub features: i64,
    /// The shape of the kernel's window, one entry per spatial dimension.
    pub kernel_size: Vec<i64>,
    /// The upsampling factors (Flax's default `None` means 1).
    #[module(default = Dims::Int(1))]
    pub strides: Dims,
    /// `SAME` (default), `VALID`, `CIRCULAR`, an int or `(low, high)` pairs; numbers are the
    /// padding of the dilated input, as in `lax.conv_transpose`.
    #[module(default = Padding::Same)]
    pub padding: Padding,
    /// Dilation of the kernel (Flax's default `None` means 1).
    #[module(default = Dims::Int(1))]
    pub kernel_dilation: Dims,
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
    /// Whether the kernel is stored `(…, features, in_features)` and applied flipped.
    #[module(default = false)]
    pub transpose_kernel: bool,
}

#[module]
impl ConvTranspose {
    /// Applies the transposed convolution to `inputs` of shape `(*batch, spatial…, features)`.
    #[compact]
    pub fn call(&self, cx: &mut Scope, inputs: &Tensor) -> Result<Tensor> {
        check_kernel_size(cx, &self.kernel_size)?;
        let n = self.kernel_size.len();
        let folded = fold_batch(cx, "ConvTranspose", inputs, n)?;
        let strides = per_dim(cx, "strides", &self.strides, n)?;
        let rhs_dilation = per_dim(cx, "kernel_dilation", &self.kernel_dilation, n)?;
        let in_features = folded.x.size()[n + 1];
        let mut kernel_shape = self.kernel_size.clone();
        if self.transpose_kernel {
            kernel_shape.extend([self.features, in_features]);
        } else {
            kernel_shape.extend([in_features, self.features]);
        }
        Mask::check(self.mask.as_ref(), cx, &kernel_shape)?;
        let kernel = cx.param_with_dtype("kernel", &self.kernel_init, &kernel_shape, self.param_dtype)?;
        let kernel = Mask::apply(self.mask.as_ref(), kernel)?;
        let pads = self.pads(cx, &strides, &rhs_dilation)?;
        let bias = if self.use_bias {
            Some(cx.param_with_dtype("bias", &self.bias_init, &[self.features], self.param_dtype)?)
        } else {
            None
        };
        let kind = match &bias {
            Some(b) => result_dtype(&[&folded.x, &kernel, b], self.dtype)?,
            None => result_dtype(&[&folded.x, &kernel], self.dtype)?,
        };
        let x = cast(folded.x.shallow_clone(), kind)?;
        let bias = bias.map(|b| cast(b, kind)).transpose()?;
        let rhs = self.lax_kernel(cast(kernel, kind)?)?;
        let geometry = ConvGeometry {
            strides: vec![1; n],
            pads,
            lhs_dilation: strides.clone(),
            rhs_dilation,
            groups: 1,
        };
        let circular = self.padding == Padding::Circular;
        let fused_bias = bias.as_ref().filter(|_| !circular);
        let y = with_precision(self.precision, || conv_general_dilated(&x, &rhs, &geometry, fused_bias))?;
        let y = if circular {
            let y = self.wrap_around(y, &x.size()[1..=n], &strides)?;
            match &bias {
                Some(b) => y.f_add(b)?,
                None => y,
            }
        } else {
            y
        };
        folded.unfold(y)
    }
}

impl ConvTranspose {
    /// The padding of the dilated input: `lax.conv_transpose`'s for `SAME`/`VALID` (`VALID`
    /// also for `CIRCULAR`), the given pairs otherwise.
    fn pads(&self, cx: &Scope<'_>, strides: &[i64], rhs_dilation: &[i64]) -> Result<Vec<(i64, i64)>> {
        let n = strides.len();
        let same = match &self.padding {
            Padding::Same => true,
            Padding::Valid | Padding::Circular => false,
            Padding::Causal => {
                return Err(attribute_error(
                    cx,
                    format!("ConvTranspose does not support the padding {}", self.padding.flax_repr()),
                ));
            }
            Padding::Int(_) | Padding::Explicit(_) => {
                return self.padding.pairs(n).map_err(|e| attribute_error(cx, e));
            }
        };
        Ok((0..n)
            .map(|i| {
                conv_transpose_padding((self.kernel_size[i] - 1) * rhs_dilation[i] + 1, strides[i], same)
            })
            .collect())
    }

    /// The kernel in `lax` layout `(spatial…, in, out)`: with `transpose_kernel`, flipped
    /// spatially with its channel axes swapped.
    fn lax_kernel(&self, kernel: Tensor) -> Result<Tensor> {
        if !self.transpose_kernel {
            return Ok(kernel);
        }
        let n = self.kernel_size.len() as i64;
        Ok(kernel.f_flip((0..n).collect::<Vec<_>>())?.f_transpose(n, n + 1)?)
    }

    /// `CIRCULAR`: pads the `VALID` output to a whole number of periods `in · stride` (the
    /// extra element on the right with `transpose_kernel`, else on the left) and sums the
    /// periods, dimension by dimension.
    fn wrap_around(&self, y: Tensor, input: &[i64], strides: &[i64]) -> Result<Tensor> {
        let periods: Vec<i64> = input.iter().zip(strides).map(|(x, s)| x * s).collect();
        let size = y.size();
        let pads: Vec<(i64, i64)> = periods
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let diff = (p - size[i + 1]).rem_euclid(2 * p);
                if self.transpose_kernel {
                    (diff / 2, (diff + 1) / 2)
                } else {
                    ((diff + 1) / 2, diff / 2)
                }
            })
            .collect();
        // constant_pad_nd lists pads from the last dimension; the features are not padded.
        let flat: Vec<i64> =
            [0, 0].into_iter().chain(pads.iter().rev().flat_map(|&(lo, hi)| [lo, hi])).collect();
        let mut y = y.f_constant_pad_nd(flat)?;
        for (i, &period) in periods.iter().enumerate() {
            let dim = i + 1;
            let size = y.size();
            let mut shape = size[..dim].to_vec();
            shape.extend([-1, period]);
            shape.extend_from_slice(&size[dim + 1..]);
            y = y.f_reshape(shape)?.f_sum_dim_intlist(dim as i64, false, None)?;
        }
        Ok(y)
    }
}
