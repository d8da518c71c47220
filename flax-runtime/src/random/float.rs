//! The two floating-point widths JAX samples natively, behind one trait so that each sampler
//! is written once.

use tch::kind::Element;

use super::xla_math;
use crate::core::rng::PRNGKey;

/// A float type (its libtorch dtype is `Element::KIND`) `jax.random` can sample at full width (`float32`, or `float64` in JAX's
/// 64-bit mode), with the arithmetic the samplers need at that width.
pub(crate) trait JaxFloat:
    Copy
    + PartialOrd
    + Element
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    /// `sqrt(2)` rounded to this width (`np.array(np.sqrt(2), dtype)`).
    const SQRT_2: Self;
    /// `1.0`.
    const ONE: Self;

    /// Rounds a Python-float argument to this width, as `lax.convert_element_type` does.
    fn from_f64(v: f64) -> Self;
    /// `n` floats in `[0, 1)` built from random mantissa bits, the core of
    /// `jax.random.uniform`: the top mantissa bits of each random word under exponent 0,
    /// minus one.
    fn unit_uniforms(key: PRNGKey, n: usize) -> Vec<Self>;
    /// `self * a + b` with a single rounding, as XLA's fused code computes it.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// IEEE square root.
    fn sqrt(self) -> Self;
    /// `lax.erf` as JAX's CPU backend computes it.
    fn erf(self) -> Self;
    /// `lax.erf_inv` as JAX's CPU backend computes it.
    fn erf_inv(self) -> Self;
    /// The neighbouring float of `self` in the direction of `toward` (`np.nextafter`).
    fn next_after(self, toward: Self) -> Self;
}

/// `np.nextafter` on raw IEEE bits, shared by both widths.
macro_rules! next_after_impl {
    ($self:ident, $toward:ident, $t:ty) => {{
        if $self.is_nan() || $toward.is_nan() {
            return <$t>::NAN;
        }
        if $self == $toward {
            return $toward;
        }
        if $self == 0.0 {
            let tiny = <$t>::from_bits(1);
            return if $toward > 0.0 { tiny } else { -tiny };
        }
        let bits = $self.to_bits();
        let away_from_zero = ($toward > $self) == ($self > 0.0);
        <$t>::from_bits(if away_from_zero { bits + 1 } else { bits - 1 })
    }};
}

impl JaxFloat for f32 {
    const SQRT_2: Self = std::f32::consts::SQRT_2;
    const ONE: Self = 1.0;

    fn from_f64(v: f64) -> Self {
        v as f32
    }

    fn unit_uniforms(key: PRNGKey, n: usize) -> Vec<Self> {
        let one = 1.0f32.to_bits();
        key.random_bits_u32(n).into_iter().map(|b| f32::from_bits((b >> 9) | one) - 1.0).collect()
    }

    fn mul_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
    }

    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }

    fn erf(self) -> Self {
        xla_math::erf_f32(self)
    }

    fn erf_inv(self) -> Self {
        xla_math::erf_inv_f32(self)
    }

    fn next_after(self, toward: Self) -> Self {
        next_after_impl!(self, toward, f32)
    }
}

impl JaxFloat for f64 {
    const SQRT_2: Self = std::f64::consts::SQRT_2;
    const ONE: Self = 1.0;

    fn from_f64(v: f64) -> Self {
        v
    }

    fn unit_uniforms(key: PRNGKey, n: usize) -> Vec<Self> {
        let one = 1.0f64.to_bits();
        key.random_bits_u64(n).into_iter().map(|b| f64::from_bits((b >> 12) | one) - 1.0).collect()
    }

    fn mul_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }

    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }

    fn erf(self) -> Self {
        xla_math::erf_f64(self)
    }

    fn erf_inv(self) -> Self {
        xla_math::erf_inv_f64(self)
    }

    fn next_after(self, toward: Self) -> Self {
        next_after_impl!(self, toward, f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_after_matches_numpy() {
        assert_eq!((-1.0f32).next_after(0.0), -0.99999994);
        assert_eq!(2.0f32.next_after(f32::INFINITY), 2.0000002);
        assert_eq!(2.0f32.next_after(f32::NEG_INFINITY), 1.9999999);
        assert_eq!(0.0f64.next_after(-1.0), -f64::from_bits(1));
        assert_eq!((-1.0f64).next_after(0.0), -1.0 + f64::EPSILON / 2.0);
    }
}
