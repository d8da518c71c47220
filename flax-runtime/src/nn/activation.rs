//! Activation functions (Flax's `flax.linen.activation`, re-exported from `jax.nn`) and the
//! `PReLU` module.
//!
//! Every function takes a tensor and returns `Result`, since libtorch rejects some dtypes.
//! The functions with keyword arguments in Flax come in two forms: `softmax(&x)` with Flax's
//! defaults, and `softmax_with(&x, SoftmaxOptions::new().axis(1))` with an options struct
//! (`Default`, one builder setter per keyword) — the crate's `apply`/`apply_with` idiom.
//! Differences from the spec's JAX: `softmax`/`log_softmax` take no `initial` (later JAX
//! dropped it; masked entries use `-inf`, and a row masked entirely gives zeros).

use crate::core::batching::functorch_depth;
use crate::core::custom_function::{custom_vjp, grad_enabled};
use crate::core::errors::{Error, Result};
use crate::core::forward_ad;
use crate::core::repr::FlaxRepr;
use crate::core::scalar_ops::ScalarOps;
use crate::core::scope::Scope;
use crate::core::tensor_checks::{check_defined, check_real, masked_fill};
use crate::module;
use crate::nn::dims::Dims;
use crate::nn::dtypes::cast;
use crate::nn::initializers;
use tch::{Kind, Tensor};

/// The scale `λ` of `selu`.
const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
/// The `α` of `selu`.
const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;

/// `max(x, 0)`.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_relu()?)
}

/// `min(max(x, 0), 6)`.
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_relu6()?)
}

/// `1 / (1 + e^{-x})`.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_sigmoid()?)
}

/// `jnp.tanh`.
pub fn tanh(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_tanh()?)
}

/// `x · sigmoid(x)` (SiLU, also called swish).
pub fn silu(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_silu()?)
}

/// Alias of [`silu`].
pub fn swish(x: &Tensor) -> Result<Tensor> {
    silu(x)
}

/// `relu6(x + 3) / 6`.
pub fn hard_sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_hardsigmoid()?)
}

/// `x · hard_sigmoid(x)`.
pub fn hard_silu(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_hardswish()?)
}

/// Alias of [`hard_silu`].
pub fn hard_swish(x: &Tensor) -> Result<Tensor> {
    hard_silu(x)
}

/// `x` clipped to `[-1, 1]`.
pub fn hard_tanh(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_hardtanh()?)
}

/// `log(1 + e^x)`, computed as JAX's `logaddexp(x, 0)` = `max(x, 0) + log1p(e^{-|x|})`.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    check_real(x, "softplus's input")?;
    Ok(x.try_clamp_min(0.0)?.f_add(&x.f_abs()?.f_neg()?.f_exp()?.f_log1p()?)?)
}

/// `log(sigmoid(x))` = `-softplus(-x)`.
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(softplus(&x.f_neg()?)?.f_neg()?)
}

/// `x / (|x| + 1)`.
pub fn soft_sign(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_div(&x.f_abs()?.try_add_scalar(1.0)?)?)
}

/// `λ · (x if x > 0 else α·e^x - α)` with JAX's constants.
pub fn selu(x: &Tensor) -> Result<Tensor> {
    Ok(elu_with(x, SELU_ALPHA)?.try_mul_scalar(SELU_SCALE)?)
}

/// `x if x > 0 else e^x - 1` (Flax's `elu` with its default `alpha = 1.0`).
pub fn elu(x: &Tensor) -> Result<Tensor> {
    elu_with(x, 1.0)
}

/// `x if x > 0 else α·(e^x - 1)`: Flax's `elu(x, alpha)`.
pub fn elu_with(x: &Tensor, alpha: f64) -> Result<Tensor> {
    check_real(x, "elu's input")?;
    let negative = x.try_clamp_max(0.0)?.f_expm1()?.try_mul_scalar(alpha)?;
    Ok(x.f_where_self(&x.try_gt(0.0)?, &negative)?)
}

/// `max(x, 0) + expm1(min(x, 0))` (Flax's `celu` with its default `alpha = 1.0`).
pub fn celu(x: &Tensor) -> Result<Tensor> {
    celu_with(x, 1.0)
}

/// `max(x, 0) + α·expm1(min(x, 0) / α)`: Flax's `celu(x, alpha)`.
pub fn celu_with(x: &Tensor, alpha: f64) -> Result<Tensor> {
    check_real(x, "celu's input")?;
    let negative = x.try_clamp_max(0.0)?.try_div_scalar(alpha)?.f_expm1()?.try_mul_scalar(alpha)?;
    Ok(x.try_clamp_min(0.0)?.f_add(&negative)?)
}

/// `x if x >= 0 else 0.01 · x` (Flax's `leaky_relu` with its default `negative_slope`).
pub fn leaky_relu(x: &Tensor) -> Result<Tensor> {
    leaky_relu_with(x, 0.01)
}

/// `x if x >= 0 else negative_slope · x`: Flax's `leaky_relu(x, negative_slope)`.
pub fn leaky_relu_with(x: &Tensor, negative_slope: f64) -> Result<Tensor> {
    check_real(x, "leaky_relu's input")?;
    Ok(x.f_where_self(&x.try_ge(0.0)?, &x.try_mul_scalar(negative_slope)?)?)
}

/// The Gaussian error linear unit in Flax's default form, the tanh approximation
/// `x/2 · (1 + tanh(√(2/π)(x + 0.044715x³)))` (PyTorch's default is the exact one).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    gelu_with(x, true)
}

/// Flax's `gelu(x, approximate)`: the tanh form above, or with `approximate = false` the exact
/// `x/2 · (1 + erf(x/√2))`.
pub fn gelu_with(x: &Tensor, approximate: bool) -> Result<Tensor> {
    if approximate && sigmoid_form_applies(x) {
        return tanh_gelu_by_sigmoid(x);
    }
    if approximate && sigmoid_form_records(x) {
        return tanh_gelu_recorded(x);
    }
    Ok(x.f_gelu(if approximate { "tanh" } else { "none" })?)
}

/// `2√(2/π)`: the tanh form's `√(2/π)`, doubled for the sigmoid form.
const TWICE_SQRT_2_OVER_PI: f64 = 1.595_769_121_605_730_7;

/// Whether [`tanh_gelu_by_sigmoid`] computes `gelu` for `x`: defined (libtorch's kernel reports
/// an undefined tensor), float32 or float64 on the CPU
/// (half precision stays on libtorch's kernel, which computes in float as Flax's dtype does
/// not), with no gradient to record and no functorch transform running (its in-place steps
/// would overwrite what autograd saves; libtorch's `gelu` has its own fused backward).
fn sigmoid_form_applies(x: &Tensor) -> bool {
    sigmoid_form_computes(x) && !(x.requires_grad() && grad_enabled())
}

/// Whether [`tanh_gelu_recorded`] computes `gelu` for `x` with its gradient: as
/// [`sigmoid_form_applies`], but with a gradient to record, outside forward-mode AD (a custom
/// autograd node has no JVP in libtorch).
fn sigmoid_form_records(x: &Tensor) -> bool {
    sigmoid_form_computes(x) && x.requires_grad() && grad_enabled() && !forward_ad::inside_level()
}

/// What both sigmoid-form paths need: a defined float32 or float64 tensor on the CPU, outside
/// any functorch transform.
fn sigmoid_form_computes(x: &Tensor) -> bool {
    x.defined()
        && matches!(x.kind(), Kind::Float | Kind::Double)
        && x.device() == tch::Device::Cpu
        && functorch_depth() == 0
}

/// The tanh form of `gelu` as `x · sigmoid(2√(2/π)(x + 0.044715x³))`, since
/// `(1 + tanh z)/2 = sigmoid(2z)`: five elementwise passes, of which only the sigmoid is not
/// a multiply-add. libtorch's CPU `gelu(approximate="tanh")` vectorizes `tanh`, whose AVX2
/// kernel costs about three `sigmoid`s: on an AMD EPYC Zen 3 (one thread, 64 x 1024 float32,
/// the batch-1 transformer's MLP activation) this form takes about 110 µs against 240 µs.
/// Equal to the tanh form to float rounding (both within 6e-7 of the float64 value there);
/// `±∞` give what the tanh form gives (`∞`, and `NaN` for `-∞`).
fn tanh_gelu_by_sigmoid(x: &Tensor) -> Result<Tensor> {
    let scale = Tensor::try_scalar_tensor(TWICE_SQRT_2_OVER_PI, (x.kind(), x.device()))?;
    // 2√(2/π)(1 + 0.044715x²), then times x, through the sigmoid, times x.
    let mut t = scale.f_addcmul(x, &x.try_mul_scalar(TWICE_SQRT_2_OVER_PI * 0.044715)?)?;
    let _ = t.f_mul_(x)?.f_sigmoid_()?.f_mul_(x)?;
    Ok(t)
}

/// [`tanh_gelu_by_sigmoid`] recorded for autograd as one node whose backward is libtorch's
/// `gelu_backward` kernel on the saved input: the gradient `gelu` records, bit for bit, and
/// differentiable again (`create_graph`), from a forward pass that avoids the AVX2 `tanh`
/// (on an AMD EPYC Zen 3, one thread, 1024 x 1024 float32: 1.7 ms against 3.7 ms). The
/// node keeps what libtorch's `gelu` keeps, the input. (Computing the backward in the sigmoid
/// form too was no faster once `1 − s` is taken as `sigmoid(−u)`, which its float32 accuracy
/// needs: 3.8 ms against the kernel's 3.9.)
fn tanh_gelu_recorded(x: &Tensor) -> Result<Tensor> {
    let outputs = custom_vjp(
        &[x.shallow_clone()],
        |xs| Ok((vec![tanh_gelu_by_sigmoid(&xs[0])?], vec![xs[0].shallow_clone()])),
        |saved, grads| Ok(vec![Some(saved[0].f_gelu_backward(&grads[0], "tanh")?)]),
    )?;
    outputs.into_iter().next().ok_or_else(|| Error::Value("gelu: no output recorded".into()))
}

/// The gated linear unit along the last axis (Flax's default `axis = -1`): see [`glu_with`].
pub fn glu(x: &Tensor) -> Result<Tensor> {
    glu_with(x, -1)
}

/// The gated linear unit: `x1 · sigmoid(x2)` for the two halves of `x` along `axis`, whose size
/// must be even (Flax's `glu(x, axis)`).
pub fn glu_with(x: &Tensor, axis: i64) -> Result<Tensor> {
    let dim = normalize_axis(x, axis)?;
    if x.size()[dim as usize] % 2 != 0 {
        return Err(Error::Value(format!(
            "glu: axis size must be divisible by 2, got shape {} along axis {axis}",
            x.size().flax_repr()
        )));
    }
    Ok(x.f_glu(dim)?)
}

/// `axis` in `0..rank`, negative values counting from the end.
fn normalize_axis(x: &Tensor, axis: i64) -> Result<i64> {
    let rank = x.dim() as i64;
    let dim = if axis < 0 { axis + rank } else { axis };
    if (0..rank).contains(&dim) {
        Ok(dim)
    } else {
        Err(Error::Value(format!(
            "axis {axis} is out of bounds for an array of shape {}",
            x.size().flax_repr()
        )))
    }
}

/// The axes `axis` names, normalized and sorted (`None`: every axis).
fn normalize_axes(x: &Tensor, axis: Option<&Dims>) -> Result<Vec<i64>> {
    let mut dims = match axis {
        None => (0..x.dim() as i64).collect(),
        Some(axis) => {
            axis.to_tuple().into_iter().map(|a| normalize_axis(x, a)).collect::<Result<Vec<_>>>()?
        }
    };
    dims.sort_unstable();
    dims.dedup();
    Ok(dims)
}

/// Floating inputs as they are, others in float32 (JAX's `promote_args_inexact`).
fn inexact(x: &Tensor) -> Result<Tensor> {
    check_defined(x, "the input")?;
    if x.is_floating_point() {
        Ok(x.shallow_clone())
    } else {
        cast(x.shallow_clone(), Kind::Float)
    }
}

/// The keyword arguments of [`softmax_with`] and [`log_softmax_with`], Flax's defaults by
/// [`Default`].
#[derive(Debug)]
pub struct SoftmaxOptions {
    /// The axis, or axes, normalized over (Flax's default `-1`).
    pub axis: Dims,
    /// When given, only the entries where it is true take part (Flax's `where`).
    pub where_: Option<Tensor>,
}

impl Default for SoftmaxOptions {
    fn default() -> Self {
        SoftmaxOptions { axis: Dims::Int(-1), where_: None }
    }
}

impl SoftmaxOptions {
    /// Flax's defaults: the last axis, every entry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Normalizes over `axis`: an int or several.
    pub fn axis(mut self, axis: impl Into<Dims>) -> Self {
        self.axis = axis.into();
        self
    }

    /// Lets only the entries where `where_` is true take part.
    pub fn where_(mut self, where_: &Tensor) -> Self {
        self.where_ = Some(where_.shallow_clone());
        self
    }
}

/// `exp(x_i) / Σ_j exp(x_j)` over the last axis (Flax's `softmax(x)`).
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    softmax_with(x, SoftmaxOptions::new())
}

/// `exp(x_i) / Σ_j exp(x_j)` over `options.axis`. With `where_`, only the entries where it is
/// true take part, and the others are 0.
pub fn softmax_with(x: &Tensor, options: SoftmaxOptions) -> Result<Tensor> {
    let where_ = options.where_.as_ref();
    let x = inexact(x)?;
    let dims = normalize_axes(&x, Some(&options.axis))?;
    match (where_, dims.as_slice()) {
        (None, &[dim]) => Ok(x.f_softmax(dim, x.kind())?),
        _ => {
            let (x_safe, mask) = masked(&x, where_, f64::NEG_INFINITY)?;
            let x_max = x_safe.f_amax(&dims, true)?;
            let unnormalized = x_safe.f_sub(&x_max)?.f_exp()?;
            let kept = match &mask {
                Some(m) => masked_fill(&unnormalized, &m.f_logical_not()?, 0.0)?,
                None => unnormalized.shallow_clone(),
            };
            let result = unnormalized.f_div(&kept.f_sum_dim_intlist(&dims, true, x.kind())?)?;
            match mask {
                Some(m) => masked_fill(&result, &m.f_logical_not()?, 0.0),
                None => Ok(result),
            }
        }
    }
}

/// `x_i - log Σ_j exp(x_j)` over the last axis (Flax's `log_softmax(x)`).
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    log_softmax_with(x, SoftmaxOptions::new())
}

/// `x_i - log Σ_j exp(x_j)` over `options.axis`. With `where_`, only the entries where it is
/// true take part, and the others are `-inf`.
pub fn log_softmax_with(x: &Tensor, options: SoftmaxOptions) -> Result<Tensor> {
    let where_ = options.where_.as_ref();
    let x = inexact(x)?;
    let dims = normalize_axes(&x, Some(&options.axis))?;
    match (where_, dims.as_slice()) {
        (None, &[dim]) => Ok(x.f_log_softmax(dim, x.kind())?),
        _ => {
            let (x_safe, mask) = masked(&x, where_, f64::NEG_INFINITY)?;
            let shifted = x_safe.f_sub(&x_safe.f_amax(&dims, true)?)?;
            let exp = shifted.f_exp()?;
            let exp = match &mask {
                Some(m) => masked_fill(&exp, &m.f_logical_not()?, 0.0)?,
                None => exp,
            };
            let result = shifted.f_sub(&exp.f_sum_dim_intlist(&dims, true, x.kind())?.f_log()?)?;
            match mask {
                Some(m) => masked_fill(&result, &m.f_logical_not()?, f64::NEG_INFINITY),
                None => Ok(result),
            }
        }
    }
}

/// `x` with `fill` where `where_` is false, and the mask broadcast to `x`'s shape.
fn masked(x: &Tensor, where_: Option<&Tensor>, fill: f64) -> Result<(Tensor, Option<Tensor>)> {
    match where_ {
        None => Ok((x.shallow_clone(), None)),
        Some(w) => {
            let mask = w.f_to_kind(Kind::Bool)?.f_expand(x.size(), false)?;
            Ok((masked_fill(x, &mask.f_logical_not()?, fill)?, Some(mask)))
        }
    }
}

/// The keyword arguments of [`logsumexp_with`] and [`logsumexp_with_sign`], Flax's defaults
/// by [`Default`].
#[derive(Debug, Default)]
pub struct LogsumexpOptions {
    /// The axis, or axes, reduced over (Flax's default `None`: all of them).
    pub axis: Option<Dims>,
    /// Scales of the exponentials (Flax's `b`): `log Σ b·exp(a)`.
    pub b: Option<Tensor>,
    /// Whether the reduced axes stay, with size 1.
    pub keepdims: bool,
}

impl LogsumexpOptions {
    /// Flax's defaults: every axis, no scales, reduced axes dropped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reduces over `axis`: an int or several.
    pub fn axis(mut self, axis: impl Into<Dims>) -> Self {
        self.axis = Some(axis.into());
        self
    }

    /// Scales the exponentials by `b`.
    pub fn b(mut self, b: &Tensor) -> Self {
        self.b = Some(b.shallow_clone());
        self
    }

    /// Keeps the reduced axes (size 1) when `keepdims`.
    pub fn keepdims(mut self, keepdims: bool) -> Self {
        self.keepdims = keepdims;
        self
    }
}

/// `log Σ exp(a)` over all axes (Flax's `logsumexp(a)`).
pub fn logsumexp(a: &Tensor) -> Result<Tensor> {
    logsumexp_with(a, LogsumexpOptions::new())
}

/// `log Σ exp(a)` over `options.axis`, scaled by `b` when given (`log Σ b·exp(a)`; a negative
/// sum gives NaN), keeping the reduced axes with `keepdims`.
pub fn logsumexp_with(a: &Tensor, options: LogsumexpOptions) -> Result<Tensor> {
    let scaled = options.b.is_some();
    let (out, sign) = logsumexp_with_sign(a, options)?;
    if !scaled {
        return Ok(out);
    }
    masked_fill(&out, &sign.try_lt(0.0)?, f64::NAN)
}

/// [`logsumexp_with`] with Flax's `return_sign=True`: `(log |Σ b·exp(a)|, sign of the sum)`.
pub fn logsumexp_with_sign(a: &Tensor, options: LogsumexpOptions) -> Result<(Tensor, Tensor)> {
    let LogsumexpOptions { axis, b, keepdims } = options;
    let b = b.as_ref();
    let a = inexact(a)?;
    let dims = normalize_axes(&a, axis.as_ref())?;
    let a = match b {
        Some(b) => {
            check_defined(b, "logsumexp's b")?;
            masked_fill(&a, &b.try_eq(0.0)?, f64::NEG_INFINITY)?
        }
        None => a,
    };
    let amax = a.f_amax(&dims, true)?;
    let amax = amax.f_where_self(&amax.f_isfinite()?, &amax.f_zeros_like()?)?;
    let mut exp_a = a.f_sub(&amax)?.f_exp()?;
    if let Some(b) = b {
        exp_a = exp_a.f_mul(b)?;
    }
    let sumexp = exp_a.f_sum_dim_intlist(&dims, true, a.kind())?;
    let sign = sumexp.f_sign()?;
    let mut out = sumexp.f_abs()?.f_log()?.f_add(&amax)?;
    let mut sign = sign;
    if !keepdims {
        for &d in dims.iter().rev() {
            out = out.f_squeeze_dim(d)?;
            sign = sign.f_squeeze_dim(d)?;
        }
    }
    Ok((out, sign))
}

/// The keyword arguments of [`standardize_with`], Flax's defaults by [`Default`].
#[derive(Debug)]
pub struct StandardizeOptions {
    /// The axis, or axes, standardized over (Flax's default `-1`).
    pub axis: Dims,
    /// The mean to subtract (default: the mean of `x`).
    pub mean: Option<Tensor>,
    /// The variance to divide by (default: the variance of `x`).
    pub variance: Option<Tensor>,
    /// Added to the variance (Flax's default `1e-5`).
    pub epsilon: f64,
    /// When given, the mean and variance are over the entries where it is true.
    pub where_: Option<Tensor>,
}

impl Default for StandardizeOptions {
    fn default() -> Self {
        StandardizeOptions { axis: Dims::Int(-1), mean: None, variance: None, epsilon: 1e-5, where_: None }
    }
}

impl StandardizeOptions {
    /// Flax's defaults: the last axis, the statistics of `x`, `epsilon = 1e-5`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Standardizes over `axis`: an int or several.
    pub fn axis(mut self, axis: impl Into<Dims>) -> Self {
        self.axis = axis.into();
        self
    }

    /// Subtracts `mean` instead of the mean of `x`.
    pub fn mean(mut self, mean: &Tensor) -> Self {
        self.mean = Some(mean.shallow_clone());
        self
    }

    /// Divides by `variance` instead of the variance of `x`.
    pub fn variance(mut self, variance: &Tensor) -> Self {
        self.variance = Some(variance.shallow_clone());
        self
    }

    /// Adds `epsilon` to the variance.
    pub fn epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Computes the statistics over the entries where `where_` is true.
    pub fn where_(mut self, where_: &Tensor) -> Self {
        self.where_ = Some(where_.shallow_clone());
        self
    }
}

/// `(x - mean) · rsqrt(variance + 1e-5)` over the last axis (Flax's `standardize(x)`).
pub fn standardize(x: &Tensor) -> Result<Tensor> {
    standardize_with(x, StandardizeOptions::new())
}

/// `(x - mean) · rsqrt(variance + epsilon)` over `options.axis`, with the mean and the
/// variance `E[x²] - E[x]²` (clipped at 0) of `x` unless given, over the entries where
/// `where_` is true when given.
pub fn standardize_with(x: &Tensor, options: StandardizeOptions) -> Result<Tensor> {
    let StandardizeOptions { axis, mean, variance, epsilon, where_ } = options;
    let (mean, variance, where_) = (mean.as_ref(), variance.as_ref(), where_.as_ref());
    let x = inexact(x)?;
    let dims = normalize_axes(&x, Some(&axis))?;
    let masked_mean = |t: &Tensor| -> Result<Tensor> {
        match where_ {
            None => Ok(t.f_mean_dim(&dims, true, t.kind())?),
            Some(w) => {
                let w = w.f_to_kind(t.kind())?.f_expand(t.size(), false)?;
                let total = t.f_mul(&w)?.f_sum_dim_intlist(&dims, true, t.kind())?;
                Ok(total.f_div(&w.f_sum_dim_intlist(&dims, true, t.kind())?)?)
            }
        }
    };
    let mean = match mean {
        Some(m) => m.shallow_clone(),
        None => masked_mean(&x)?,
    };
    let variance = match variance {
        Some(v) => v.shallow_clone(),
        None => masked_mean(&x.f_square()?)?.f_sub(&mean.f_square()?)?.try_clamp_min(0.0)?,
    };
    Ok(x.f_sub(&mean)?.f_mul(&variance.try_add_scalar(epsilon)?.f_rsqrt()?)?)
}

/// The keyword arguments of [`one_hot_with`], Flax's defaults by [`Default`].
#[derive(Clone, Copy, Debug)]
pub struct OneHotOptions {
    /// The dtype of the output (Flax's default `jnp.float_`: float32).
    pub kind: Kind,
    /// The axis of the output the classes are along (Flax's default `-1`).
    pub axis: i64,
}

impl Default for OneHotOptions {
    fn default() -> Self {
        OneHotOptions { kind: Kind::Float, axis: -1 }
    }
}

impl OneHotOptions {
    /// Flax's defaults: float32, classes along the last axis.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the dtype of the output (Flax's `dtype`).
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    /// Puts the classes along `axis` of the output.
    pub fn axis(mut self, axis: i64) -> Self {
        self.axis = axis;
        self
    }
}

/// Float32 one-hot vectors of `num_classes` entries for the ids `x`, along a new last axis
/// (Flax's `one_hot(x, num_classes)`). Ids outside `[0, num_classes)` give all-zero vectors.
pub fn one_hot(x: &Tensor, num_classes: i64) -> Result<Tensor> {
    one_hot_with(x, num_classes, OneHotOptions::new())
}

/// [`one_hot`] in `options.kind`, the classes along `options.axis` of the output.
pub fn one_hot_with(x: &Tensor, num_classes: i64, options: OneHotOptions) -> Result<Tensor> {
    let OneHotOptions { kind, axis } = options;
    check_defined(x, "the class ids")?;
    if num_classes < 0 {
        return Err(Error::Value(format!("num_classes must be non-negative, got {num_classes}")));
    }
    let out_rank = x.dim() as i64 + 1;
    let pos = if axis < 0 { axis + out_rank } else { axis };
    if !(0..out_rank).contains(&pos) {
        return Err(Error::Value(format!(
            "axis {axis} is out of bounds for a one-hot output of rank {out_rank}"
        )));
    }
    let mut classes_shape = vec![1; out_rank as usize];
    classes_shape[pos as usize] = num_classes;
    // int64 classes, compared with promotion: `arange` exists for no complex or bool dtype.
    let classes = Tensor::try_arange(num_classes, (Kind::Int64, x.device()))?.f_reshape(classes_shape)?;
    Ok(x.f_unsqueeze(pos)?.f_eq_tensor(&classes)?.f_to_kind(kind)?)
}

/// A leaky ReLU whose negative slope is learned (Flax's `nn.PReLU`): param `negative_slope`,
/// a scalar (shape `()`) initialised to `negative_slope_init`.
#[module]
pub struct PReLU {
    /// The dtype the param is stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
    /// The initial negative slope.
    #[module(default = 0.01)]
    pub negative_slope_init: f64,
}

#[module]
impl PReLU {
    /// `inputs if inputs >= 0 else negative_slope · inputs`.
    #[compact]
    pub fn call(&self, cx: &mut Scope, inputs: &Tensor) -> Result<Tensor> {
        let init = initializers::constant(self.negative_slope_init);
        let negative_slope = cx.param_with_dtype("negative_slope", init, &[], self.param_dtype)?;
        let slope = cast(negative_slope, inputs.kind())?;
        Ok(inputs.f_where_self(&inputs.try_ge(0.0)?, &slope.f_mul(inputs)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// The sigmoid form against libtorch's tanh-form kernel, in both dtypes it runs for: over
    /// the range where the result changes shape, at the extremes (where `x³` overflows) and at
    /// `±∞` and NaN.
    #[test]
    fn gelu_s_sigmoid_form_equals_the_tanh_form() -> Result<()> {
        for kind in [Kind::Float, Kind::Double] {
            let specials =
                [-1e20, -1e19, -40.0, 40.0, 1e19, 1e20, f64::INFINITY, f64::NEG_INFINITY, f64::NAN];
            let x = Tensor::cat(
                &[
                    Tensor::linspace(-12.0, 12.0, 4001, (kind, Device::Cpu)),
                    Tensor::from_slice(&specials).to_kind(kind),
                ],
                0,
            );
            assert!(sigmoid_form_applies(&x));
            let ours = tanh_gelu_by_sigmoid(&x)?;
            let theirs = x.f_gelu("tanh")?;
            assert_eq!(ours.kind(), kind);
            let ok = ours.allclose(&theirs, 1e-6, 1e-6, true);
            let diff = (&ours - &theirs).abs().nan_to_num(0.0, None, None).max().double_value(&[]);
            assert!(ok, "{kind:?}: differs by up to {diff}");
        }
        Ok(())
    }

    /// The recorded sigmoid form's gradient is libtorch's `gelu`'s, over the range where the
    /// derivative changes shape and at the extremes, in both dtypes.
    #[test]
    fn gelu_s_recorded_gradient_equals_libtorch_s() -> Result<()> {
        for kind in [Kind::Float, Kind::Double] {
            let specials = [-1e20, -1e19, -40.0, 40.0, 1e19, 1e20];
            let x = Tensor::cat(
                &[
                    Tensor::linspace(-12.0, 12.0, 4001, (kind, Device::Cpu)),
                    Tensor::from_slice(&specials).to_kind(kind),
                ],
                0,
            )
            .set_requires_grad(true);
            assert!(sigmoid_form_records(&x) && !sigmoid_form_applies(&x));
            let g = Tensor::randn([x.size()[0]], (kind, Device::Cpu));
            let ours = Tensor::run_backward(&[(gelu(&x)? * &g).sum(kind)], &[&x], false, false);
            let theirs = Tensor::run_backward(&[(x.gelu("tanh") * &g).sum(kind)], &[&x], false, false);
            // The same kernel: equal bit for bit (NaN at ±1e20 in float32, where x² overflows).
            assert!(ours[0].allclose(&theirs[0], 0.0, 0.0, true), "{kind:?}");
        }
        Ok(())
    }

    /// Second derivatives (`create_graph`) go through libtorch's `gelu_backward`, which is
    /// differentiable; forward-mode AD, which a custom node lacks, takes libtorch's `gelu`.
    #[test]
    fn gelu_s_higher_and_forward_mode_derivatives_are_libtorch_s() -> Result<()> {
        let x = Tensor::linspace(-4.0, 4.0, 17, (Kind::Double, Device::Cpu)).set_requires_grad(true);
        let second = |y: Tensor| -> Vec<Tensor> {
            let g = Tensor::run_backward(&[y.sum(Kind::Double)], &[&x], true, true);
            Tensor::run_backward(&[g[0].sum(Kind::Double)], &[&x], false, false)
        };
        let ours = second(gelu(&x)?);
        let theirs = second(x.gelu("tanh"));
        assert!(ours[0].allclose(&theirs[0], 1e-9, 1e-9, false));

        let level = forward_ad::DualLevel::enter()?;
        let dual = level.make_dual(&x.detach(), &x.ones_like())?.set_requires_grad(true);
        assert!(!sigmoid_form_records(&dual));
        let (_, tangent) = level.unpack_dual(&gelu(&dual)?)?;
        let expected = Tensor::run_backward(&[x.gelu("tanh").sum(Kind::Double)], &[&x], false, false);
        assert!(tangent.allclose(&expected[0], 1e-9, 1e-9, false));
        Ok(())
    }

    #[test]
    fn gelu_takes_libtorch_s_kernel_where_no_sigmoid_form_applies() -> Result<()> {
        let x = Tensor::linspace(-4.0, 4.0, 9, (Kind::Float, Device::Cpu)).set_requires_grad(true);
        assert!(!sigmoid_form_applies(&x), "a gradient to record");
        assert!(tch::no_grad(|| sigmoid_form_applies(&x)));
        assert!(!sigmoid_form_applies(&x.detach().to_kind(Kind::BFloat16)));
        assert!(!sigmoid_form_records(&x.to_kind(Kind::BFloat16)));
        assert!(!sigmoid_form_applies(&Tensor::new()), "libtorch's kernel reports an undefined tensor");
        let y = gelu(&x.to_kind(Kind::BFloat16))?;
        let g = Tensor::run_backward(&[y.sum(Kind::Float)], &[&x], false, false);
        let expected = Tensor::run_backward(
            &[x.to_kind(Kind::BFloat16).gelu("tanh").sum(Kind::Float)],
            &[&x],
            false,
            false,
        );
        assert!(g[0].allclose(&expected[0], 1e-6, 1e-6, false));
        Ok(())
    }
}
