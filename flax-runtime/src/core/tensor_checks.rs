//! Checks made before libtorch calls that would panic instead of failing.
//!
//! tch 0.26 frees a call's temporary `Scalar` argument before it reads the call's error, and
//! that free panics on the pending error: any fallible libtorch call taking a scalar
//! (`f_masked_fill(mask, 0.0)`, …) panics when it fails. And an undefined tensor
//! (`Tensor::new()`) panics in `size()` and `kind()`. So inputs that reach such calls are
//! checked first, here.

use crate::core::errors::{Error, Result};
use tch::Tensor;

/// `Ok` for a defined tensor; an [`Error::Value`] naming `what` for `Tensor::new()`.
pub(crate) fn check_defined(tensor: &Tensor, what: &str) -> Result<()> {
    if tensor.defined() {
        Ok(())
    } else {
        Err(Error::Value(format!("{what} is an undefined tensor (Tensor::new()), which has no shape")))
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
    fn a_bad_mask_is_an_error_not_a_panic() {
        let x = Tensor::zeros([2, 3], (tch::Kind::Float, tch::Device::Cpu));
        let mask = Tensor::ones([4], (tch::Kind::Bool, tch::Device::Cpu));
        assert!(masked_fill(&x, &mask, 1.0).is_err());
        assert!(masked_fill(&x, &Tensor::new(), 1.0).is_err());
    }
}
