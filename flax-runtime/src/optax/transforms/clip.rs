//! `optax.clip`: element-wise clipping.

use crate::core::errors::Result;
use crate::core::scalar_ops::ScalarOps;
use crate::optax::leafwise::zip_float_leaves_mut;
use crate::optax::transformation::{EmptyState, GradientTransformation};
use crate::tree::Tree;
use tch::{Device, Kind, Tensor};

/// Clips every update element to `[-max_delta, max_delta]` (`optax.clip`). One kernel per
/// leaf.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clip {
    max_delta: f64,
}

/// Element-wise clipping to `[-max_delta, max_delta]`.
pub fn clip(max_delta: f64) -> Clip {
    Clip { max_delta }
}

impl<P: Tree> GradientTransformation<P> for Clip {
    type State = EmptyState;

    fn init(&self, _params: &P) -> Result<EmptyState> {
        Ok(())
    }

    fn update(&self, mut updates: P, state: EmptyState, _params: Option<&P>) -> Result<(P, EmptyState)> {
        zip_float_leaves_mut(&mut updates, [], |g, []| {
            let max_delta = bound_in(g.kind(), self.max_delta)?;
            let _ = g.try_clamp_(-max_delta, max_delta)?;
            Ok(())
        })?;
        Ok((updates, state))
    }
}

/// The largest finite float16.
const FLOAT16_MAX: f64 = 65504.0;

/// `max_delta` as a leaf of `kind` holds it. `jnp.clip` converts the Python bound to the
/// leaves' dtype, where a bound beyond the dtype's range becomes infinite (no clipping: 1e6 on
/// float16 leaves), while libtorch's `clamp` refuses a bound its dtype cannot hold; so the
/// bound is converted first, by libtorch's own cast (same rounding as JAX's).
fn bound_in(kind: Kind, max_delta: f64) -> Result<f64> {
    // Within float16's range (the narrowest float dtype's) every float dtype holds the bound,
    // and `clamp` rounds it as JAX does: no conversion, no tensor, on the usual path.
    if kind == Kind::Double || max_delta.abs() <= FLOAT16_MAX {
        return Ok(max_delta);
    }
    let bound = Tensor::try_scalar_tensor(max_delta, (Kind::Double, Device::Cpu))?.f_to_kind(kind)?;
    Ok(bound.f_double_value(&[])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clipped(max_delta: f64, values: &[f32], kind: Kind) -> Result<Vec<f64>> {
        let updates = Tensor::from_slice(values).f_to_kind(kind)?;
        let (out, ()) = clip(max_delta).update(updates, (), None)?;
        Ok(Vec::<f64>::try_from(out.f_to_kind(Kind::Double)?)?)
    }

    #[test]
    fn a_bound_beyond_the_dtype_s_range_clips_nothing_as_in_jax() -> Result<()> {
        // jnp.clip(x.astype(float16), -1e6, 1e6): the bound is float16's inf.
        assert_eq!(clipped(1e6, &[1.0, -2.0, 60000.0], Kind::Half)?, [1.0, -2.0, 60000.0]);
        assert_eq!(clipped(1e39, &[3.0e38, -1.0], Kind::Float)?, [3.0e38_f32 as f64, -1.0]);
        Ok(())
    }

    #[test]
    fn a_bound_in_range_clips_in_every_float_dtype() -> Result<()> {
        for kind in [Kind::Half, Kind::BFloat16, Kind::Float, Kind::Double] {
            assert_eq!(clipped(1.5, &[1.0, -2.0, 3.0], kind)?, [1.0, -1.5, 1.5], "{kind:?}");
        }
        Ok(())
    }
}
