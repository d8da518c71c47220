//! Normalization layers (Flax's `flax.linen.normalization`): `BatchNorm`, `LayerNorm`,
//! `RMSNorm`, `GroupNorm`.
//!
//! Statistics are computed in at least float32 (`promote_types(dtype or x.dtype, float32)`);
//! `y = (x - mean) · rsqrt(var + ε) · scale + bias`, cast to the promoted dtype of the input
//! and params (or `dtype`).
//!
//! Each layer runs as the fused libtorch kernel PyTorch's own layer calls where that kernel
//! computes this (`native_batch_norm`, `layer_norm`, `rms_norm`, `group_norm`, forward and
//! backward in one kernel each): for real floating inputs with the usual axes (see each
//! layer). The kernels compute the variance as `E[(x - E[x])²]` (Flax's
//! `use_fast_variance=False` formula), which equals Flax's default `E[x²] - E[x]²` up to
//! float rounding, and is the more accurate of the two where `E[x]² ≫ Var[x]`. The cases no
//! kernel expresses (other axes, complex inputs, `axis_name`, empty inputs) run Flax's
//! formula, op by op, as `_compute_stats` and `_normalize` write it.
//!
//! `BatchNorm`'s `axis_name` averages the statistics over the members of an enclosing
//! `vmap(axis_name=…)` (Flax's `lax.pmean`; see [`Scope::pmean`]). Left out on purpose:
//! `axis_index_groups`, `axis_name` of the other layers, and Flax 0.12's additions beyond the spec
//! (`use_fast_variance`, `force_float32_reductions`, `mask`, GroupNorm's `reduction_axes`):
//! the spec's behaviour is their default.
//!
//! Empty inputs: `LayerNorm`, `RMSNorm` and `GroupNorm` keep no state, so a batch (or a
//! feature axis) of zero elements gives Flax's empty output of the input's shape (statistics
//! over nothing are NaN, but no element reads them). `BatchNorm` in evaluation does the same;
//! in training it refuses an empty batch, because its NaN statistics would be written into
//! `batch_stats` and saved (`tests/empty_batches.rs`, `tests/bad_inputs.rs`).

use crate::core::errors::Result;
use crate::core::scalar_ops::ScalarOps;
use crate::core::scope::Scope;
use crate::core::shim::{self, Handle};
use crate::core::variable::Variable;
use crate::module;
use crate::nn::dims::Dims;
use crate::nn::dtypes::{cast, promote_types, result_dtype};
use crate::nn::initializers::{self, Init};
use crate::nn::module_utils::{attribute_error, merge_param, shape_error};
use std::ffi::{c_char, c_int};
use tch::{Device, Kind, Tensor};

/// Normalised, sorted, de-duplicated axes of a rank-`rank` input (`_canonicalize_axes`).
fn canonical_axes(cx: &Scope<'_>, rank: usize, axes: &[i64]) -> Result<Vec<i64>> {
    let rank = rank as i64;
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let d = if a < 0 { a + rank } else { a };
        if !(0..rank).contains(&d) {
            return Err(shape_error(cx, format!("axis {a} is out of range for an input of rank {rank}")));
        }
        out.push(d);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Flax's `_compute_stats` over `axes`: the mean (zero without `use_mean`) and the variance
/// `max(0, E[x²] - E[x]²)`, in `promote_types(dtype or x.dtype, float32)`.
fn compute_stats(x: &Tensor, axes: &[i64], dtype: Option<Kind>, use_mean: bool) -> Result<(Tensor, Tensor)> {
    compute_stats_over(x, axes, dtype, use_mean, None)
}

/// [`compute_stats`] with `E[x]` and `E[x²]` averaged over the mapped axis `axis_name` of
/// `cx` when given (Flax's `lax.pmean` of both before the variance).
fn compute_stats_over(
    x: &Tensor,
    axes: &[i64],
    dtype: Option<Kind>,
    use_mean: bool,
    axis: Option<(&Scope<'_>, &str)>,
) -> Result<(Tensor, Tensor)> {
    let kind = promote_types(dtype.unwrap_or(x.kind()), Kind::Float);
    let x = cast(x.shallow_clone(), kind)?;
    let across = |t: Tensor| match axis {
        Some((cx, name)) => cx.pmean(&t, name),
        None => Ok(t),
    };
    let mean2 = across(x.f_square()?.f_mean_dim(axes, false, kind)?)?;
    if !use_mean {
        return Ok((mean2.f_zeros_like()?, mean2));
    }
    let mean = across(x.f_mean_dim(axes, false, kind)?)?;
    let var = mean2.f_sub(&mean.f_square()?)?.try_clamp_min(0.0)?;
    Ok((mean, var))
}

/// The learned part of a normalization and its settings (Flax's `_normalize` arguments).
struct Normalize<'a> {
    dtype: Option<Kind>,
    param_dtype: Kind,
    epsilon: f64,
    use_bias: bool,
    use_scale: bool,
    bias_init: &'a Init,
    scale_init: &'a Init,
}

impl Normalize<'_> {
    /// The `scale` and `bias` params (those in use, created in that order) of shape
    /// `param_shape`.
    fn params(&self, cx: &mut Scope<'_>, param_shape: &[i64]) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let scale = match self.use_scale {
            true => Some(cx.param_with_dtype("scale", self.scale_init, param_shape, self.param_dtype)?),
            false => None,
        };
        let bias = match self.use_bias {
            true => Some(cx.param_with_dtype("bias", self.bias_init, param_shape, self.param_dtype)?),
            false => None,
        };
        Ok((scale, bias))
    }

    /// The dtype of the result: `dtype`, or the promotion of the input and the params in use
    /// (Flax's `canonicalize_dtype`, which keeps floating results floating).
    fn output_kind(&self, x: &Tensor, scale: Option<&Tensor>, bias: Option<&Tensor>) -> Result<Kind> {
        let args: Vec<&Tensor> = [Some(x), scale, bias].into_iter().flatten().collect();
        let kind = result_dtype(&args, self.dtype)?;
        Ok(if is_real_float(kind) { kind } else { Kind::Float })
    }

    /// The dtype a fused kernel computes in: the one Flax's formula computes `y` in, that is
    /// the statistics' dtype promoted with the input's and the params'; `None` where no
    /// kernel computes it (complex numbers).
    fn fused_kind(&self, x: &Tensor, scale: Option<&Tensor>, bias: Option<&Tensor>) -> Option<Kind> {
        let stats = promote_types(self.dtype.unwrap_or(x.kind()), Kind::Float);
        let kind =
            [Some(x), scale, bias].into_iter().flatten().fold(stats, |k, t| promote_types(k, t.kind()));
        is_real_float(kind).then_some(kind)
    }

    /// Flax's `_normalize` given the [`params`](Self::params): `(x - mean) · rsqrt(var + ε) ·
    /// scale + bias`, with `scale` and `bias` over `feature_axes`, `mean`/`var` having the
    /// shape of `x` without `reduction_axes`.
    fn apply(
        &self,
        x: &Tensor,
        (mean, var): (Tensor, Tensor),
        (scale, bias): (Option<Tensor>, Option<Tensor>),
        reduction_axes: &[i64],
        feature_axes: &[i64],
    ) -> Result<Tensor> {
        let shape = x.size();
        let mut feature_shape = vec![1; shape.len()];
        for &ax in feature_axes {
            feature_shape[ax as usize] = shape[ax as usize];
        }
        let kind = self.output_kind(x, scale.as_ref(), bias.as_ref())?;
        let (mut mean, mut var) = (mean, var);
        for &ax in reduction_axes {
            mean = mean.f_unsqueeze(ax)?;
            var = var.f_unsqueeze(ax)?;
        }
        let mut y = x.f_sub(&mean)?;
        let mut mul = var.try_add_scalar(self.epsilon)?.f_rsqrt()?;
        if let Some(scale) = &scale {
            mul = mul.f_mul(&scale.f_reshape(&feature_shape)?)?;
        }
        y = y.f_mul(&mul)?;
        if let Some(bias) = &bias {
            y = y.f_add(&bias.f_reshape(&feature_shape)?)?;
        }
        cast(y, kind)
    }

    /// Runs `kernel` on `x`, `scale` and `bias` cast to the dtype Flax's formula computes in
    /// and casts its result to Flax's output dtype; `Ok(None)` (nothing computed) where no
    /// kernel computes that dtype.
    fn fused(
        &self,
        x: &Tensor,
        (scale, bias): &(Option<Tensor>, Option<Tensor>),
        kernel: impl FnOnce(&Tensor, Option<&Tensor>, Option<&Tensor>) -> Result<Tensor>,
    ) -> Result<Option<Tensor>> {
        let Some(kind) = self.fused_kind(x, scale.as_ref(), bias.as_ref()) else { return Ok(None) };
        let out_kind = self.output_kind(x, scale.as_ref(), bias.as_ref())?;
        let [scale, bias] =
            [scale, bias].map(|t| t.as_ref().map(|t| cast(t.shallow_clone(), kind)).transpose());
        let y = kernel(&cast(x.shallow_clone(), kind)?, scale?.as_ref(), bias?.as_ref())?;
        Ok(Some(cast(y, out_kind)?))
    }
}

/// The sizes of `shape` on `axes`.
fn sizes(shape: &[i64], axes: &[i64]) -> Vec<i64> {
    axes.iter().map(|&a| shape[a as usize]).collect()
}

/// Whether `kind` is a real floating dtype (the dtypes libtorch's normalization kernels take).
fn is_real_float(kind: Kind) -> bool {
    matches!(kind, Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double)
}

/// Whether `axes` (canonical: sorted, distinct) are the last `axes.len()` axes of a rank-`rank`
/// input, the axes libtorch's `layer_norm`/`rms_norm` normalize over.
fn trailing(axes: &[i64], rank: usize) -> bool {
    !axes.is_empty() && axes.iter().enumerate().all(|(i, &a)| a == (rank - axes.len() + i) as i64)
}

/// The [`Normalize`] settings of a layer with Flax's usual normalization attributes.
macro_rules! normalize_of {
    ($layer:expr) => {
        Normalize {
            dtype: $layer.dtype,
            param_dtype: $layer.param_dtype,
            epsilon: $layer.epsilon,
            use_bias: $layer.use_bias,
            use_scale: $layer.use_scale,
            bias_init: &$layer.bias_init,
            scale_init: &$layer.scale_init,
        }
    };
}

/// Batch normalization (Flax's `nn.BatchNorm`): normalizes each feature over the batch (all
/// axes but `axis`) with the batch's statistics while training, and with their running
/// averages in the `batch_stats` collection (`mean`, zeros; `var`, ones; both float32) when
/// `use_running_average`. Params `scale` and `bias` have the feature shape.
///
/// `use_running_average` is given exactly once, here or at the call (Flax's
/// `merge_param`). While training, the running averages become `momentum · average + (1 -
/// momentum) · batch statistic` (the biased batch variance; PyTorch's momentum is `1 -` this
/// one), which needs `batch_stats` mutable; `init` creates them without updating them.
#[module]
pub struct BatchNorm {
    /// Whether to normalize with the running averages instead of the batch's statistics.
    #[module(default = None)]
    pub use_running_average: Option<bool>,
    /// The feature axis (or axes).
    #[module(default = Dims::Int(-1))]
    pub axis: Dims,
    /// The decay of the running averages.
    #[module(default = 0.99)]
    pub momentum: f64,
    /// Added to the variance before its square root.
    #[module(default = 1e-5)]
    pub epsilon: f64,
    /// The dtype of the result (default: promoted from the input and params).
    #[module(default = None)]
    pub dtype: Option<Kind>,
    /// The dtype the params are stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
    /// Whether to add the `bias` param.
    #[module(default = true)]
    pub use_bias: bool,
    /// Whether to multiply by the `scale` param.
    #[module(default = true)]
    pub use_scale: bool,
    /// Initializer of `bias` (default: `zeros`).
    #[module(default = initializers::zeros().into())]
    pub bias_init: Init,
    /// Initializer of `scale` (default: `ones`).
    #[module(default = initializers::ones().into())]
    pub scale_init: Init,
    /// The name of a mapped axis (an enclosing `vmap`'s `axis_name`) whose members' batch
    /// statistics are averaged: the statistics of the whole mapped batch.
    #[module(default = None)]
    pub axis_name: Option<String>,
}

#[module]
impl BatchNorm {
    /// Normalizes `x`; `use_running_average` here or as the attribute, not both.
    ///
    /// Runs as libtorch's `native_batch_norm` (training and evaluation) unless `axis_name` is
    /// set (the statistics are then averaged across the mapped axis first, by Flax's formula),
    /// or, in evaluation, the running averages require gradients (libtorch's kernel does not
    /// differentiate them). On the fused path the updated running averages are computed from
    /// the kernel's batch statistics cut from the graph: no gradient flows from the new
    /// `batch_stats` back to `x` (Flax's would carry one, which training never reads).
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, use_running_average: Option<bool>) -> Result<Tensor> {
        let use_running_average =
            merge_param(cx, "use_running_average", self.use_running_average, use_running_average)?;
        let shape = x.size();
        let feature_axes = canonical_axes(cx, shape.len(), &self.axis.to_tuple())?;
        let reduction_axes: Vec<i64> =
            (0..shape.len() as i64).filter(|a| !feature_axes.contains(a)).collect();
        let feature_shape: Vec<i64> = feature_axes.iter().map(|&a| shape[a as usize]).collect();
        let ra_mean = cx.variable("batch_stats", "mean", |cx| {
            Ok(Tensor::f_zeros(&feature_shape, (Kind::Float, cx.device()))?)
        })?;
        let ra_var = cx.variable("batch_stats", "var", |cx| {
            Ok(Tensor::f_ones(&feature_shape, (Kind::Float, cx.device()))?)
        })?;
        if !use_running_average && reduction_axes.iter().any(|&a| shape[a as usize] == 0) {
            // Flax averages over no examples and writes NaN into `batch_stats`, which is
            // then saved; here that is an error instead.
            return Err(shape_error(
                cx,
                format!("BatchNorm in training needs examples to average over; the input {shape:?} has none"),
            ));
        }
        let normalize = normalize_of!(self);
        let params = normalize.params(cx, &feature_shape)?;
        let running = match use_running_average {
            true => Some((ra_mean.value(cx)?, ra_var.value(cx)?)),
            false => None,
        };
        let fusable = self.axis_name.is_none()
            && x.numel() > 0
            && running.as_ref().is_none_or(|(m, v)| !m.requires_grad() && !v.requires_grad());
        let mut batch = None;
        if fusable {
            let layout = ChannelsSecond::of(&shape, &feature_axes);
            let fused = normalize.fused(x, &params, |x, scale, bias| {
                let x = layout.arrange(x)?;
                let y = match &running {
                    Some((mean, var)) => {
                        let kind = x.kind();
                        let (mean, var) =
                            (cast(mean.shallow_clone(), kind)?, cast(var.shallow_clone(), kind)?);
                        x.f_native_batch_norm(scale, bias, Some(&mean), Some(&var), false, 0.0, self.epsilon)?
                            .0
                    }
                    None => {
                        let (y, mean, invstd) =
                            x.f_native_batch_norm(scale, bias, None, None, true, 0.0, self.epsilon)?;
                        batch = Some((mean, invstd));
                        y
                    }
                };
                layout.restore(y)
            })?;
            if let Some(y) = fused {
                if let Some((mean, invstd)) = batch {
                    // The kernel returns `1 / sqrt(var + ε)` of the biased batch variance. Both
                    // statistics are detached (no gradient, nor forward-mode tangent, reaches
                    // the new averages from them).
                    let var = invstd
                        .f_detach()?
                        .try_pow_tensor_scalar(-2)?
                        .try_sub_scalar(self.epsilon)?
                        .try_clamp_min(0.0)?;
                    let mean = mean.f_detach()?;
                    self.update_running_averages(cx, (&ra_mean, &ra_var), (&mean, &var))?;
                }
                return Ok(y);
            }
        }
        let stats = match running {
            Some(stats) => stats,
            None => {
                let axis = self.axis_name.as_deref().map(|name| (&*cx, name));
                let (mean, var) = compute_stats_over(x, &reduction_axes, self.dtype, true, axis)?;
                self.update_running_averages(cx, (&ra_mean, &ra_var), (&mean, &var))?;
                (mean, var)
            }
        };
        normalize.apply(x, stats, params, &reduction_axes, &feature_axes)
    }
}

impl BatchNorm {
    /// `average = momentum · average + (1 - momentum) · batch statistic` for the mean and the
    /// (biased) variance, except during `init` (Flax's rule).
    fn update_running_averages(
        &self,
        cx: &mut Scope<'_>,
        (ra_mean, ra_var): (&Variable, &Variable),
        (mean, var): (&Tensor, &Tensor),
    ) -> Result<()> {
        if cx.is_initializing() {
            return Ok(());
        }
        let keep = |average: Tensor, batch: &Tensor| -> Result<Tensor> {
            if average.requires_grad() || batch.requires_grad() {
                // Flax's formula, op by op: gradients flow through it as through Flax's.
                return Ok(average
                    .try_mul_scalar(self.momentum)?
                    .f_add(&batch.try_mul_scalar(1.0 - self.momentum)?)?);
            }
            // The same average up to rounding in one operator instead of three: on a layer
            // this cheap, each small operator's fixed cost adds up (`benches/layer_times.rs`).
            let kind = promote_types(average.kind(), batch.kind());
            Ok(cast(average, kind)?.try_lerp(&cast(batch.shallow_clone(), kind)?, 1.0 - self.momentum)?)
        };
        let new_mean = keep(ra_mean.value(cx)?, mean)?;
        let new_var = keep(ra_var.value(cx)?, var)?;
        ra_mean.set_value(cx, new_mean)?;
        ra_var.set_value(cx, new_var)
    }
}

/// How an input with features on `feature_axes` is laid out for libtorch's batch norm, which
/// normalizes over every axis of `(N, C, …)` but `C`.
enum ChannelsSecond {
    /// Features on axis 1: already libtorch's layout.
    AsIs,
    /// Features on the last axes: viewed as `(examples, features)` (no copy when contiguous).
    Trailing { shape: Vec<i64>, features: i64 },
    /// Any other axes: permuted (features last) and copied into `(examples, features)`.
    Permuted { order: Vec<i64>, permuted: Vec<i64>, features: i64 },
}

impl ChannelsSecond {
    /// The layout for an input of `shape` with features on `feature_axes`.
    fn of(shape: &[i64], feature_axes: &[i64]) -> Self {
        let rank = shape.len();
        let features = feature_axes.iter().map(|&a| shape[a as usize]).product();
        if rank > 2 && feature_axes == [1] {
            ChannelsSecond::AsIs
        } else if trailing(feature_axes, rank) {
            ChannelsSecond::Trailing { shape: shape.to_vec(), features }
        } else {
            let order: Vec<i64> = (0..rank as i64)
                .filter(|a| !feature_axes.contains(a))
                .chain(feature_axes.iter().copied())
                .collect();
            let permuted = order.iter().map(|&a| shape[a as usize]).collect();
            ChannelsSecond::Permuted { order, permuted, features }
        }
    }

    /// `x` in libtorch's `(N, C, …)` layout.
    fn arrange(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            ChannelsSecond::AsIs => x.shallow_clone(),
            ChannelsSecond::Trailing { features, .. } => x.f_reshape([-1, *features])?,
            ChannelsSecond::Permuted { order, features, .. } => {
                x.f_permute(order)?.f_reshape([-1, *features])?
            }
        })
    }

    /// A result in libtorch's layout back in the input's.
    fn restore(&self, y: Tensor) -> Result<Tensor> {
        Ok(match self {
            ChannelsSecond::AsIs => y,
            ChannelsSecond::Trailing { shape, .. } => y.f_reshape(shape)?,
            ChannelsSecond::Permuted { order, permuted, .. } => {
                let mut inverse = vec![0; order.len()];
                for (i, &a) in order.iter().enumerate() {
                    inverse[a as usize] = i as i64;
                }
                y.f_reshape(permuted)?.f_permute(inverse)?
            }
        })
    }
}

/// Layer normalization (Flax's `nn.LayerNorm`): normalizes each example over
/// `reduction_axes` (default: the last), with `scale` and `bias` params over `feature_axes`
/// (default: the last). No state.
#[module]
pub struct LayerNorm {
    /// Added to the variance before its square root (PyTorch's default is 1e-5).
    #[module(default = 1e-6)]
    pub epsilon: f64,
    /// The dtype of the result (default: promoted from the input and params).
    #[module(default = None)]
    pub dtype: Option<Kind>,
    /// The dtype the params are stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
    /// Whether to add the `bias` param.
    #[module(default = true)]
    pub use_bias: bool,
    /// Whether to multiply by the `scale` param.
    #[module(default = true)]
    pub use_scale: bool,
    /// Initializer of `bias` (default: `zeros`).
    #[module(default = initializers::zeros().into())]
    pub bias_init: Init,
    /// Initializer of `scale` (default: `ones`).
    #[module(default = initializers::ones().into())]
    pub scale_init: Init,
    /// The axes the statistics are computed over.
    #[module(default = Dims::Int(-1))]
    pub reduction_axes: Dims,
    /// The axes the params span.
    #[module(default = Dims::Int(-1))]
    pub feature_axes: Dims,
}

#[module]
impl LayerNorm {
    /// Normalizes `x`: as libtorch's `layer_norm` when the reduction axes are the last axes
    /// and the params (if any) span the same axes, by Flax's formula otherwise.
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let (shape, rank) = (x.size(), x.dim());
        let reduction_axes = canonical_axes(cx, rank, &self.reduction_axes.to_tuple())?;
        let feature_axes = canonical_axes(cx, rank, &self.feature_axes.to_tuple())?;
        let normalize = normalize_of!(self);
        let params = normalize.params(cx, &sizes(&shape, &feature_axes))?;
        let unscaled = params.0.is_none() && params.1.is_none();
        if x.numel() > 0 && trailing(&reduction_axes, rank) && (reduction_axes == feature_axes || unscaled) {
            let normalized = sizes(&shape, &reduction_axes);
            let fused = normalize.fused(x, &params, |x, scale, bias| {
                Ok(x.f_layer_norm(&normalized, scale, bias, self.epsilon, true)?)
            })?;
            if let Some(y) = fused {
                return Ok(y);
            }
        }
        let stats = compute_stats(x, &reduction_axes, self.dtype, true)?;
        normalize.apply(x, stats, params, &reduction_axes, &feature_axes)
    }
}

/// Root-mean-square normalization (Flax's `nn.RMSNorm`): `x · rsqrt(E[x²] + ε) · scale` over
/// `reduction_axes`, without centring and without bias.
#[module]
pub struct RMSNorm {
    /// Added to the mean square before its square root.
    #[module(default = 1e-6)]
    pub epsilon: f64,
    /// The dtype of the result (default: promoted from the input and params).
    #[module(default = None)]
    pub dtype: Option<Kind>,
    /// The dtype the params are stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
    /// Whether to multiply by the `scale` param.
    #[module(default = true)]
    pub use_scale: bool,
    /// Initializer of `scale` (default: `ones`).
    #[module(default = initializers::ones().into())]
    pub scale_init: Init,
    /// The axes the statistics are computed over.
    #[module(default = Dims::Int(-1))]
    pub reduction_axes: Dims,
    /// The axes the params span.
    #[module(default = Dims::Int(-1))]
    pub feature_axes: Dims,
}

#[module]
impl RMSNorm {
    /// Normalizes `x`: as libtorch's `rms_norm` when the reduction axes are the last axes and
    /// the scale (if any) spans the same axes, by Flax's formula otherwise.
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let (shape, rank) = (x.size(), x.dim());
        let reduction_axes = canonical_axes(cx, rank, &self.reduction_axes.to_tuple())?;
        let feature_axes = canonical_axes(cx, rank, &self.feature_axes.to_tuple())?;
        let zeros = initializers::zeros().into();
        let normalize = Normalize {
            dtype: self.dtype,
            param_dtype: self.param_dtype,
            epsilon: self.epsilon,
            use_bias: false,
            use_scale: self.use_scale,
            bias_init: &zeros,
            scale_init: &self.scale_init,
        };
        let params = normalize.params(cx, &sizes(&shape, &feature_axes))?;
        if x.numel() > 0
            && trailing(&reduction_axes, rank)
            && (reduction_axes == feature_axes || !self.use_scale)
        {
            let normalized = sizes(&shape, &reduction_axes);
            let fused = normalize
                .fused(x, &params, |x, scale, _| Ok(x.f_rms_norm(&normalized, scale, self.epsilon)?))?;
            if let Some(y) = fused {
                return Ok(y);
            }
        }
        let stats = compute_stats(x, &reduction_axes, self.dtype, false)?;
        normalize.apply(x, stats, params, &reduction_axes, &feature_axes)
    }
}

/// Group normalization (Flax's `nn.GroupNorm`): the last axis holds the features, split into
/// `num_groups` groups (or groups of `group_size`: give one, setting `num_groups` to `None`
/// for the other); each example is normalized per group over all its other non-batch axes.
/// Params `scale` and `bias` of shape `(features,)`.
#[module]
pub struct GroupNorm {
    /// The number of groups (Flax's default 32).
    #[module(default = Some(32))]
    pub num_groups: Option<i64>,
    /// The number of features per group, instead of `num_groups`.
    #[module(default = None)]
    pub group_size: Option<i64>,
    /// Added to the variance before its square root.
    #[module(default = 1e-6)]
    pub epsilon: f64,
    /// The dtype of the result (default: promoted from the input and params).
    #[module(default = None)]
    pub dtype: Option<Kind>,
    /// The dtype the params are stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
    /// Whether to add the `bias` param.
    #[module(default = true)]
    pub use_bias: bool,
    /// Whether to multiply by the `scale` param.
    #[module(default = true)]
    pub use_scale: bool,
    /// Initializer of `bias` (default: `zeros`).
    #[module(default = initializers::zeros().into())]
    pub bias_init: Init,
    /// Initializer of `scale` (default: `ones`).
    #[module(default = initializers::ones().into())]
    pub scale_init: Init,
}

#[module]
impl GroupNorm {
    /// Normalizes `x` of shape `(batch, …, features)`: float and double inputs on the CPU by
    /// the shim's channels-last kernel (Flax's statistics, two passes each way, see
    /// `csrc/group_norm.cpp`), other real floating inputs as libtorch's `group_norm` (on a copy
    /// of the input in libtorch's `(batch, features, positions)` layout), by Flax's formula for
    /// an empty input or one of rank 1.
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let shape = x.size();
        let Some(&channels) = shape.last() else {
            return Err(shape_error(cx, "GroupNorm needs an input with a feature axis, got a scalar"));
        };
        let num_groups = self.groups_for(cx, channels)?;
        let group_size = channels / num_groups;
        let rank = shape.len() as i64;
        let normalize = normalize_of!(self);
        let params = normalize.params(cx, &[channels])?;
        if x.numel() > 0 && rank >= 2 {
            let fused = normalize.fused(x, &params, |x, scale, bias| {
                if let Some(y) = group_norm_channels_last(x, scale, bias, num_groups, self.epsilon)? {
                    return Ok(y);
                }
                // libtorch's layout `(batch, features, positions)`, copied: its channels-last
                // kernels are slower than the copies on the CPU (6x, forward), and their
                // backward crashes when the params need gradients and the input does not.
                Ok(match rank {
                    2 => x.f_group_norm(num_groups, scale, bias, self.epsilon, true)?,
                    _ => x
                        .f_reshape([shape[0], -1, channels])?
                        .f_permute([0, 2, 1])?
                        .f_contiguous()?
                        .f_group_norm(num_groups, scale, bias, self.epsilon, true)?
                        .f_permute([0, 2, 1])?
                        .f_reshape(&shape)?,
                })
            })?;
            if let Some(y) = fused {
                return Ok(y);
            }
        }
        let mut group_shape = shape[..shape.len() - 1].to_vec();
        group_shape.extend([num_groups, group_size]);
        // Per example and group: every axis but the batch axis and the group axis.
        let mut stat_axes: Vec<i64> = (1..rank - 1).collect();
        stat_axes.push(rank);
        let (mean, var) = compute_stats(&x.f_reshape(&group_shape)?, &stat_axes, self.dtype, true)?;
        let mean = mean.f_repeat_interleave_self_int(group_size, -1, None)?;
        let var = var.f_repeat_interleave_self_int(group_size, -1, None)?;
        let reduction_axes: Vec<i64> = (1..rank - 1).collect();
        normalize.apply(x, (mean, var), params, &reduction_axes, &[rank - 1])
    }
}

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn flax_group_norm_channels_last(
        x: Handle,
        scale: Handle,
        bias: Handle,
        groups: i64,
        eps: f64,
        out: *mut Handle,
        error: *mut c_char,
        len: usize,
    ) -> c_int;
}

/// Group normalization of `x` `(batch, …, channels)` by the shim's channels-last kernel, for
/// float and double inputs of rank ≥ 2 on the CPU (missing params as ones and zeros); `None`
/// where it does not apply (other dtypes or devices, inside a functorch transform, dual
/// tensors).
fn group_norm_channels_last(
    x: &Tensor,
    scale: Option<&Tensor>,
    bias: Option<&Tensor>,
    groups: i64,
    eps: f64,
) -> Result<Option<Tensor>> {
    let kind = x.kind();
    let on_cpu = [Some(x), scale, bias].into_iter().flatten().all(|t| t.device() == Device::Cpu);
    if !matches!(kind, Kind::Float | Kind::Double) || !on_cpu || x.dim() < 2 {
        return Ok(None);
    }
    let channels = x.size()[x.dim() - 1];
    let param = |p: Option<&Tensor>, fill: f64| -> Result<Tensor> {
        Ok(match p {
            Some(p) => p.f_contiguous()?,
            None => Tensor::try_full([channels], fill, (kind, Device::Cpu))?,
        })
    };
    let (x, scale, bias) = (x.f_contiguous()?, param(scale, 1.0)?, param(bias, 0.0)?);
    let mut out: Handle = std::ptr::null_mut();
    shim::call(|error, len| {
        // SAFETY: the handles are alive for the call; the shim writes a new handle or null.
        unsafe {
            flax_group_norm_channels_last(
                shim::handle(&x),
                shim::handle(&scale),
                shim::handle(&bias),
                groups,
                eps,
                &mut out,
                error,
                len,
            )
        }
    })?;
    // SAFETY: a non-null `out` is a handle the shim allocated for us.
    Ok((!out.is_null()).then(|| unsafe { shim::take(out) }))
}

impl GroupNorm {
    /// The number of groups for `channels` features, or Flax's errors.
    fn groups_for(&self, cx: &Scope<'_>, channels: i64) -> Result<i64> {
        let num_groups = match (self.num_groups, self.group_size) {
            (Some(n), None) => n,
            (None, Some(size)) if size > 0 && channels % size == 0 => channels / size,
            (None, Some(size)) => {
                return Err(attribute_error(
                    cx,
                    format!("Number of channels ({channels}) is not multiple of the group size ({size})."),
                ))
            }
            _ => {
                return Err(attribute_error(
                    cx,
                    "Either `num_groups` or `group_size` should be specified. If `group_size` is to be \
                     specified, pass `num_groups=None` as argument to override the default `num_groups` value \
                     of 32.",
                ))
            }
        };
        if num_groups <= 0 || channels % num_groups != 0 {
            return Err(attribute_error(
                cx,
                format!(
                    "Number of groups ({num_groups}) does not divide the number of channels ({channels})."
                ),
            ));
        }
        Ok(num_groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::batching::vmap;
    use crate::core::forward_ad::DualLevel;

    /// Flax's GroupNorm formula over `(batch, …, channels)`, op by op.
    fn formula(x: &Tensor, scale: &Tensor, bias: &Tensor, groups: i64) -> Tensor {
        let shape = x.size();
        let (n, c) = (shape[0], shape[shape.len() - 1]);
        let xv = x.reshape([n, -1, groups, c / groups]);
        let mean = xv.mean_dim(&[1i64, 3][..], true, None);
        let var = (xv.square().mean_dim(&[1i64, 3][..], true, None) - mean.square()).clamp_min(0.0);
        let y = (xv - &mean) * (var + 1e-6).rsqrt() * scale.reshape([groups, c / groups])
            + bias.reshape([groups, c / groups]);
        y.reshape(&shape)
    }

    fn grads(y: &Tensor, g: &Tensor, wrt: &[&Tensor], create_graph: bool) -> Vec<Tensor> {
        Tensor::run_backward(&[(y * g).sum(Kind::Double)], wrt, true, create_graph)
    }

    #[test]
    fn the_channels_last_group_norm_kernel_has_flax_s_values_and_derivatives() -> Result<()> {
        for kind in [Kind::Float, Kind::Double] {
            let opts = (kind, Device::Cpu);
            let x = (Tensor::randn([3, 5, 4, 12], opts) * 2.0 + 1.0).set_requires_grad(true);
            let s = Tensor::randn([12], opts).set_requires_grad(true);
            let b = Tensor::randn([12], opts).set_requires_grad(true);
            let g = Tensor::randn([3, 5, 4, 12], opts);
            let tol = if kind == Kind::Float { 1e-4 } else { 1e-10 };
            let y = group_norm_channels_last(&x, Some(&s), Some(&b), 4, 1e-6)?.expect("applies on the CPU");
            let want = formula(&x, &s, &b, 4);
            assert!(y.allclose(&want, tol, tol, false), "{kind:?}: values");
            for (got, want) in
                grads(&y, &g, &[&x, &s, &b], false).iter().zip(grads(&want, &g, &[&x, &s, &b], false))
            {
                assert!(got.allclose(&want, tol, tol, false), "{kind:?}: first derivatives");
            }
            // Second order: the backward pass under create_graph is differentiable.
            let first = grads(&y, &g, &[&x, &s], true);
            let first_want = grads(&want, &g, &[&x, &s], true);
            let second = |gs: &[Tensor]| {
                Tensor::run_backward(
                    &[gs[0].square().sum(Kind::Double) + gs[1].sum(Kind::Double)],
                    &[&x],
                    false,
                    false,
                )
            };
            assert!(
                second(&first)[0].allclose(&second(&first_want)[0], tol, tol, false),
                "{kind:?}: second order"
            );
        }
        Ok(())
    }

    #[test]
    fn the_kernel_steps_aside_inside_vmap_and_forward_mode_ad() -> Result<()> {
        let x = Tensor::randn([2, 3, 4, 8], (Kind::Float, Device::Cpu));
        let (s, b) =
            (Tensor::ones([8], (Kind::Float, Device::Cpu)), Tensor::zeros([8], (Kind::Float, Device::Cpu)));
        let mut inside_vmap = None;
        vmap(2, &[Some(0)], &[x.shallow_clone()], &[0], |xs| {
            inside_vmap = Some(group_norm_channels_last(&xs[0], Some(&s), Some(&b), 2, 1e-6)?.is_some());
            Ok(vec![xs[0].shallow_clone()])
        })?;
        assert_eq!(inside_vmap, Some(false), "functorch refuses custom autograd functions");
        let level = DualLevel::enter()?;
        let dual = level.make_dual(&x, &x.ones_like())?;
        assert!(group_norm_channels_last(&dual, Some(&s), Some(&b), 2, 1e-6)?.is_none(), "dual tensors");
        Ok(())
    }
}
