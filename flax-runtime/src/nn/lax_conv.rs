//! JAX's `lax.conv_general_dilated` family on libtorch, with Flax's dimension numbers:
//! inputs `(N, spatial…, C)` (channels last), kernels `(spatial…, C / groups, O)` (HWIO),
//! outputs `(N, spatial…, O)`.
//!
//! Inputs reach libtorch as permuted views: NHWC seen as NCHW with channels-last strides, the
//! kernel HWIO seen as OIHW; nothing is copied unless a padding libtorch cannot express (one
//! side larger than the other, or negative) forces an explicit pad. Input dilation
//! (`lhs_dilation`, what transposed convolutions are made of) runs as libtorch's transposed
//! convolution, whose kernel layout needs a flipped copy of the (small) kernel.

use crate::core::errors::{Error, Result};
use crate::core::repr::FlaxRepr;
use crate::nn::empty_windows::{empty_conv, has_no_windows};
use crate::nn::padding::{narrow_spatial, symmetric_padding, torch_pad_list, window_count};
use tch::Tensor;

/// Everything `conv_general_dilated` takes besides its operands, one entry per spatial
/// dimension.
#[derive(Clone, Debug)]
pub(crate) struct ConvGeometry {
    /// `window_strides`.
    pub strides: Vec<i64>,
    /// `(low, high)` padding; negative values crop.
    pub pads: Vec<(i64, i64)>,
    /// `lhs_dilation`: `d - 1` zeros between input elements.
    pub lhs_dilation: Vec<i64>,
    /// `rhs_dilation`: `d - 1` zeros between kernel elements.
    pub rhs_dilation: Vec<i64>,
    /// `feature_group_count`.
    pub groups: i64,
}

impl ConvGeometry {
    /// The output's spatial shape for an input of spatial shape `input` and a kernel of
    /// spatial shape `window` (XLA's shape rule).
    pub fn output_shape(&self, input: &[i64], window: &[i64]) -> Vec<i64> {
        (0..input.len())
            .map(|i| {
                let dilated_in = dilated(input[i], self.lhs_dilation[i]);
                let extent = (window[i] - 1) * self.rhs_dilation[i] + 1;
                window_count(dilated_in, extent, self.strides[i], self.pads[i])
            })
            .collect()
    }

    /// XLA's check (`lax.conv_shape_tuple`) that negative pads crop at most the whole
    /// (dilated) input: a padded size below zero is Flax's `ValueError`, while one below the
    /// window is a zero-size output.
    pub fn check_pads(&self, input: &[i64]) -> Result<()> {
        let too_negative = (0..input.len()).any(|i| {
            let (low, high) = self.pads[i];
            dilated(input[i], self.lhs_dilation[i]) + low + high < 0
        });
        if too_negative {
            return Err(Error::Value(format!(
                "Negative padding is larger than the size of the corresponding dimension: got padding={} \
                 for lhs_shape[2:]={}",
                self.pads.flax_repr(),
                input.flax_repr()
            )));
        }
        Ok(())
    }
}

/// The size of `size` elements with `d - 1` zeros between neighbours (XLA's `_dilate_shape`).
fn dilated(size: i64, d: i64) -> i64 {
    if size == 0 {
        0
    } else {
        (size - 1) * d + 1
    }
}

/// `(0, C, 1, …, n)`: channels-last `(N, spatial…, C)` viewed as `(N, C, spatial…)`.
fn to_channels_first(n: usize) -> Vec<i64> {
    let n = n as i64;
    [0, n + 1].into_iter().chain(1..=n).collect()
}

/// The inverse of [`to_channels_first`].
fn to_channels_last(n: usize) -> Vec<i64> {
    let n = n as i64;
    [0].into_iter().chain(2..n + 2).chain([1]).collect()
}

/// `lax.conv_general_dilated(x, kernel, …)` with NHWC/HWIO/NHWC dimension numbers, plus an
/// optional `(O,)` bias added to every output position.
pub(crate) fn conv_general_dilated(
    x: &Tensor,
    kernel: &Tensor,
    geometry: &ConvGeometry,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let n = geometry.strides.len();
    let input = &x.size()[1..=n];
    geometry.check_pads(input)?;
    let out = geometry.output_shape(input, &kernel.size()[..n]);
    if has_no_windows(&out) {
        return empty_conv(x, kernel, &out, bias);
    }
    let x = x.f_permute(to_channels_first(n))?;
    // HWIO -> OIHW.
    let weight =
        kernel.f_permute([n as i64 + 1, n as i64].into_iter().chain(0..n as i64).collect::<Vec<_>>())?;
    let y = if geometry.lhs_dilation.iter().all(|&d| d == 1) {
        strided_conv(&x, &weight, geometry, bias)?
    } else {
        let y = lhs_dilated_conv(&x, &weight, geometry)?;
        match bias {
            Some(b) => {
                let shape: Vec<i64> = [1, -1].into_iter().chain(std::iter::repeat_n(1, n)).collect();
                y.f_add(&b.f_reshape(shape)?)?
            }
            None => y,
        }
    };
    Ok(y.f_permute(to_channels_last(n))?)
}

/// A convolution without input dilation: libtorch's own, padding explicitly (a copy) only
/// what its symmetric padding cannot express.
fn strided_conv(x: &Tensor, weight: &Tensor, g: &ConvGeometry, bias: Option<&Tensor>) -> Result<Tensor> {
    let window = &weight.size()[2..];
    let input = &x.size()[2..];
    let wanted = g.output_shape(input, window);
    let extents: Vec<i64> = window.iter().zip(&g.rhs_dilation).map(|(k, d)| (k - 1) * d + 1).collect();
    let (x, padding) = match symmetric_padding(input, &extents, &g.strides, &g.pads, None) {
        Some(padding) => (x.shallow_clone(), padding),
        None => (x.f_constant_pad_nd(torch_pad_list(&g.pads))?, vec![0; g.pads.len()]),
    };
    let zeros = vec![0; g.pads.len()];
    let y = x.f_convolution(weight, bias, &g.strides, &padding, &g.rhs_dilation, false, &zeros, g.groups)?;
    narrow_spatial(y, 2, &wanted)
}

/// A convolution with input dilation. libtorch's transposed convolution with stride `s`
/// computes the `s`-dilated input convolved with the flipped kernel (in/out channels swapped),
/// padded by the dilated kernel's reach `r = d·(k-1)` on both sides; `lax` pads by `(lo, hi)`
/// instead, so the full output is cropped by `r - lo` and `r - hi` (or zero-padded where
/// those are negative), then subsampled by the window strides.
fn lhs_dilated_conv(x: &Tensor, weight: &Tensor, g: &ConvGeometry) -> Result<Tensor> {
    let n = g.strides.len();
    let window = weight.size()[2..].to_vec();
    let reach: Vec<i64> = window.iter().zip(&g.rhs_dilation).map(|(k, d)| d * (k - 1)).collect();
    let crops: Vec<(i64, i64)> = g.pads.iter().zip(&reach).map(|(&(lo, hi), r)| (r - lo, r - hi)).collect();
    let padding: Vec<i64> = crops.iter().zip(&reach).map(|(&(a, b), &r)| a.min(b).clamp(0, r)).collect();
    let transposed = transposed_weight(weight, g.groups)?;
    let zeros = vec![0; n];
    let y = x.f_convolution(
        &transposed,
        None::<&Tensor>,
        &g.lhs_dilation,
        &padding,
        &g.rhs_dilation,
        true,
        &zeros,
        g.groups,
    )?;
    let rest: Vec<(i64, i64)> = crops.iter().zip(&padding).map(|(&(a, b), p)| (a - p, b - p)).collect();
    let mut y = crop_or_pad(y, &rest)?;
    for (i, &s) in g.strides.iter().enumerate() {
        if s != 1 {
            y = y.f_slice(i as i64 + 2, 0, None, s)?;
        }
    }
    Ok(y)
}

/// The OIHW kernel as libtorch's transposed convolution wants it: `(I, O / groups, …)`,
/// spatially flipped.
fn transposed_weight(weight: &Tensor, groups: i64) -> Result<Tensor> {
    let size = weight.size();
    let spatial: Vec<i64> = (2..size.len() as i64).collect();
    let swapped = if groups == 1 {
        weight.f_transpose(0, 1)?
    } else {
        let (o, i) = (size[0], size[1]);
        let mut grouped = vec![groups, o / groups, i];
        grouped.extend_from_slice(&size[2..]);
        let mut flat = vec![groups * i, o / groups];
        flat.extend_from_slice(&size[2..]);
        weight.f_reshape(grouped)?.f_transpose(1, 2)?.f_reshape(flat)?
    };
    Ok(swapped.f_flip(spatial)?)
}

/// Crops `(low, high)` positions off each spatial dimension; negative amounts pad zeros.
fn crop_or_pad(y: Tensor, amounts: &[(i64, i64)]) -> Result<Tensor> {
    if amounts.iter().all(|&(a, b)| a >= 0 && b >= 0) {
        let mut y = y;
        for (i, &(low, high)) in amounts.iter().enumerate() {
            if low != 0 || high != 0 {
                let len = y.size()[i + 2] - low - high;
                y = y.f_narrow(i as i64 + 2, low, len)?;
            }
        }
        return Ok(y);
    }
    let negated: Vec<(i64, i64)> = amounts.iter().map(|&(a, b)| (-a, -b)).collect();
    Ok(y.f_constant_pad_nd(torch_pad_list(&negated))?)
}

/// `lax.conv_general_dilated_patches` (channels last): for each output position, the
/// receptive field flattened channel-major, `(N, out…, C · prod(filter))`.
pub(crate) fn conv_general_dilated_patches(
    x: &Tensor,
    filter: &[i64],
    geometry: &ConvGeometry,
) -> Result<Tensor> {
    let channels = *x.size().last().unwrap_or(&1);
    let size: i64 = filter.iter().product();
    let mut spread = filter.to_vec();
    spread.extend([1, 1, size]);
    let mut expanded = filter.to_vec();
    expanded.extend([1, channels, size]);
    let mut kernel_shape = filter.to_vec();
    kernel_shape.extend([1, channels * size]);
    // The kernel moves each position of the window into its own output channel.
    let kernel = Tensor::f_eye(size, (x.kind(), x.device()))?
        .f_reshape(spread)?
        .f_expand(expanded, false)?
        .f_reshape(kernel_shape)?;
    let depthwise = ConvGeometry { groups: channels, ..geometry.clone() };
    conv_general_dilated(x, &kernel, &depthwise, None)
}

/// `lax.conv_general_dilated_local` (channels last): an unshared convolution, with kernel
/// `(out…, C · prod(filter), O)`, one weight matrix per output position.
pub(crate) fn conv_general_dilated_local(
    x: &Tensor,
    kernel: &Tensor,
    filter: &[i64],
    geometry: &ConvGeometry,
) -> Result<Tensor> {
    let patches = conv_general_dilated_patches(x, filter, geometry)?;
    let size = patches.size();
    let (batch, features) = (size[0], size[size.len() - 1]);
    let positions: i64 = size[1..size.len() - 1].iter().product();
    let out_features = *kernel.size().last().unwrap_or(&0);
    let y = Tensor::f_einsum(
        "nqi,qio->nqo",
        &[
            patches.f_reshape([batch, positions, features])?,
            kernel.f_reshape([positions, features, out_features])?,
        ],
        None::<&[i64]>,
    )?;
    let mut out_shape = size[..size.len() - 1].to_vec();
    out_shape.push(out_features);
    Ok(y.f_reshape(out_shape)?)
}

/// `lax._conv_transpose_padding` for `SAME` (`same = true`) or `VALID`: the `(low, high)`
/// padding of the input-dilated convolution that `lax.conv_transpose` runs, for a dilated
/// kernel extent `k` and stride `s`.
pub(crate) fn conv_transpose_padding(k: i64, s: i64, same: bool) -> (i64, i64) {
    let (pad_len, pad_a) = if same {
        let pad_len = k + s - 2;
        (pad_len, if s > k - 1 { k - 1 } else { (pad_len + 1) / 2 })
    } else {
        (k + s - 2 + (k - s).max(0), k - 1)
    };
    (pad_a, pad_len - pad_a)
}
