//! Checks made before libtorch calls that would panic instead of failing.
//!
//! tch 0.26 frees a call's temporary `Scalar` argument before it reads the call's error, and
//! that free panics on the pending error: any fallible libtorch call taking a scalar
//! (`f_masked_fill(mask, 0.0)`, …) panics when it fails. And an undefined tensor
//! (`Tensor::new()`) panics in `size()` and `kind()`. So inputs that reach such calls are
//! checked first, here.
//!
//! # The audit of scalar-argument calls
//!
//! Every call in `src/` with a `Scalar` argument, and every Rust `clamp` whose bounds come
//! from input shapes (it panics when `min > max`), is in one of these cases
//! (`tests/bad_inputs.rs`, `scalar_argument_cases`, feeds each its failing inputs):
//! - **Validated first.** Masked fills ([`masked_fill`]); `full` in `initializers::constant`
//!   (shape by `num_elements`, value by [`check_scalar_fits`]); the activations that clamp or
//!   compare with a scalar (`softplus`, `log_sigmoid`, `elu`, `selu`, `celu`, `leaky_relu`:
//!   [`check_real`]); `logsumexp`'s `b`, attention masks and biases, `combine_masks`,
//!   `make_causal_mask`, the query, key and value ([`check_defined`]); `one_hot`
//!   (`num_classes >= 0`, `int64` classes); `pad_wrap` (an empty axis is jnp.pad's error, not a
//!   remainder by zero); the attention cache (`max_length > 0` before `clamp(0, max_length -
//!   1)`); metrics (values and mask defined, mask on the values' device before `where`); the
//!   optax transformations that update in place (`zip_float_leaves_mut`: real floating leaves).
//! - **Cannot fail on user input.** Non-in-place arithmetic with a scalar (`add_scalar`,
//!   `mul_scalar`, `div_scalar`, `rsub_scalar`) on defined tensors of a real dtype promotes
//!   and cannot fail: its operands are module arguments (defined, checked by `#[module]`),
//!   results of float computations (statistics, gates, norms, errors), or casts (`embed` and
//!   `rnn` cast ids and lengths to `int64`, losses cast labels to the logits' dtype); `arange`
//!   over sizes read from shapes (never negative); comparisons of integer ids and indices;
//!   `where` on masks computed from the same tensor; `full`/`scalar_tensor` of counts and
//!   zeros; Rust `clamp`s with fixed bounds (dtype ranges, `i32`, `0..len`), after an emptiness
//!   check (`switch`'s branches) or an early return (`polynomial_schedule`'s
//!   `transition_steps <= 0`), or over validated attributes (`lax_conv`'s `d·(k-1) >= 0`).
//! - **Left as they are.** A metric over more than 2^31 values (clu's `int32` count overflows
//!   in `scalar_tensor`), and an optimizer step whose scalar (a learning rate above 65504 for
//!   `float16` parameters) does not fit the parameters' dtype. Devices: there is no second
//!   device to test on here; masks and metric masks are checked, other mixed-device inputs
//!   reach non-scalar calls, which fail with a typed error.

use crate::core::errors::{Error, Result};
use tch::{Kind, Tensor};

/// `Ok` for a defined tensor; an [`Error::Value`] naming `what` for `Tensor::new()`.
pub(crate) fn check_defined(tensor: &Tensor, what: &str) -> Result<()> {
    if tensor.defined() {
        Ok(())
    } else {
        Err(Error::Value(format!("{what} is an undefined tensor (Tensor::new()), which has no shape")))
    }
}

/// `Ok` for a defined tensor of real dtype: complex tensors have no order, so the scalar
/// comparisons and clamps of the activations refuse them (JAX too).
pub(crate) fn check_real(tensor: &Tensor, what: &str) -> Result<()> {
    check_defined(tensor, what)?;
    if matches!(tensor.kind(), Kind::ComplexHalf | Kind::ComplexFloat | Kind::ComplexDouble) {
        return Err(Error::Value(format!("{what} must be real, got {:?}", tensor.kind())));
    }
    Ok(())
}

/// `Ok` when libtorch converts `value` to `kind` without overflow (`full`, `fill_`,
/// `masked_fill`, `where` with a scalar refuse other values, and tch panics on that refusal):
/// integers take finite values in their range (the fraction is truncated), the narrow floats
/// finite values up to their largest (infinities and NaN pass), booleans, doubles and
/// complex numbers anything.
pub(crate) fn check_scalar_fits(value: f64, kind: Kind) -> Result<()> {
    let range = match kind {
        Kind::Uint8 => Some((0.0, 255.0)),
        Kind::Int8 => Some((-128.0, 127.0)),
        Kind::Int16 => Some((-32768.0, 32767.0)),
        Kind::Int => Some((-2147483648.0, 2147483647.0)),
        // i64's bounds as doubles: 2^63 itself does not fit.
        Kind::Int64 => Some((-9.223_372_036_854_776e18, 9.223_372_036_854_775e18)),
        Kind::Half if value.is_finite() => Some((-65504.0, 65504.0)),
        Kind::BFloat16 if value.is_finite() => {
            Some((-3.389_531_389_251_535_5e38, 3.389_531_389_251_535_5e38))
        }
        Kind::Float if value.is_finite() => Some((f32::MIN as f64, f32::MAX as f64)),
        _ => None,
    };
    match range {
        Some((lo, hi)) if !(lo..=hi).contains(&value) => {
            Err(Error::Value(format!("the value {value} cannot be converted to {kind:?} without overflow")))
        }
        _ => Ok(()),
    }
}

/// Whether `shape` broadcasts to exactly `target` (numpy's rules, `shape` not growing it).
pub(crate) fn broadcasts_to(shape: &[i64], target: &[i64]) -> bool {
    shape.len() <= target.len()
        && shape.iter().rev().zip(target.iter().rev()).all(|(&s, &t)| s == t || s == 1)
}

/// `x` with `value` where `mask` is true: `mask` must be defined, broadcast to `x`'s shape and
/// live on `x`'s device (checked, so the call cannot fail); it is read as booleans.
pub(crate) fn masked_fill(x: &Tensor, mask: &Tensor, value: f64) -> Result<Tensor> {
    check_defined(x, "the tensor to fill")?;
    check_defined(mask, "the mask")?;
    let (shape, mask_shape) = (x.size(), mask.size());
    if !broadcasts_to(&mask_shape, &shape) {
        return Err(Error::Value(format!(
            "a mask of shape {mask_shape:?} does not broadcast to shape {shape:?}"
        )));
    }
    if mask.device() != x.device() {
        return Err(Error::Value(format!(
            "the mask is on {:?} and the tensor on {:?}",
            mask.device(),
            x.device()
        )));
    }
    let mask = mask.f_to_kind(tch::Kind::Bool)?;
    Ok(x.f_masked_fill(&mask, value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_rules() {
        assert!(broadcasts_to(&[1, 4], &[3, 4]));
        assert!(broadcasts_to(&[], &[3, 4]));
        assert!(!broadcasts_to(&[4, 4], &[5, 4]));
        assert!(!broadcasts_to(&[2, 3, 4], &[3, 4]));
    }

    #[test]
    fn scalars_that_do_not_fit_are_errors() {
        for (value, kind) in
            [(f64::NAN, Kind::Int), (1e40, Kind::Int64), (-1.0, Kind::Uint8), (7e4, Kind::Half)]
        {
            assert!(check_scalar_fits(value, kind).is_err(), "{value} {kind:?}");
        }
        for (value, kind) in
            [(f64::NAN, Kind::Float), (-1.5, Kind::Int), (255.0, Kind::Uint8), (1e300, Kind::Double)]
        {
            assert!(check_scalar_fits(value, kind).is_ok(), "{value} {kind:?}");
            // Not too strict: libtorch takes these.
            assert!(Tensor::f_full([1], value, (kind, tch::Device::Cpu)).is_ok());
        }
    }

    #[test]
    fn a_bad_mask_is_an_error_not_a_panic() {
        let x = Tensor::zeros([2, 3], (tch::Kind::Float, tch::Device::Cpu));
        let mask = Tensor::ones([4], (tch::Kind::Bool, tch::Device::Cpu));
        assert!(masked_fill(&x, &mask, 1.0).is_err());
        assert!(masked_fill(&x, &Tensor::new(), 1.0).is_err());
    }
}
