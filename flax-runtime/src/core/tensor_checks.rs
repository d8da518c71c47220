//! Checks made before libtorch calls, where libtorch's own refusal would panic or would not
//! say what was wrong.
//!
//! An undefined tensor (`Tensor::new()`) panics in tch's `size()` and `kind()`, so arguments
//! that may be undefined are checked first ([`check_defined`]). libtorch's failures in ops
//! with a scalar argument are errors like any other (the crate calls them through
//! [`scalar_ops`](crate::core::scalar_ops), as tch's own `f_*` scalar ops panic on them); the
//! checks here that come before such ops give Flax's `ValueError` and name the argument:
//! [`check_real`] for the activations that clamp or compare with a scalar (JAX refuses complex
//! inputs too), [`check_scalar_fits`] for constant initializers' values, [`masked_fill`]'s mask
//! shape. `tests/bad_inputs.rs` (`scalar_argument_cases`) feeds each its failing inputs, and
//! inputs on which libtorch fails inside a scalar op (allocations too large, values a dtype
//! cannot hold).
//!
//! Rust's `clamp` panics when `min > max`: every `clamp` in `src/` whose bounds come from input
//! shapes has fixed bounds (dtype ranges, `i32`, `0..len`), follows an emptiness check
//! (`switch`'s branches) or an early return (`polynomial_schedule`'s `transition_steps <= 0`),
//! or bounds validated attributes (`lax_conv`'s `d·(k-1) >= 0`, the attention cache's
//! `max_length > 0`).

use crate::core::errors::{Error, Result};
use crate::core::scalar_ops::ScalarOps;
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
/// `masked_fill`, `where` with a scalar refuse other values, with a message that names neither):
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

/// `x` with `value` where `mask` is true: `mask` must be defined and broadcast to `x`'s shape
/// (libtorch would broadcast `x` to a larger mask's); it is read as booleans.
pub(crate) fn masked_fill(x: &Tensor, mask: &Tensor, value: f64) -> Result<Tensor> {
    check_defined(x, "the tensor to fill")?;
    check_defined(mask, "the mask")?;
    let (shape, mask_shape) = (x.size(), mask.size());
    if !broadcasts_to(&mask_shape, &shape) {
        return Err(Error::Value(format!(
            "a mask of shape {mask_shape:?} does not broadcast to shape {shape:?}"
        )));
    }
    let mask = mask.f_to_kind(tch::Kind::Bool)?;
    Ok(x.try_masked_fill(&mask, value)?)
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
            assert!(Tensor::try_full([1], value, (kind, tch::Device::Cpu)).is_ok());
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
