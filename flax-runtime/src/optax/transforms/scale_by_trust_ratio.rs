//! `optax.scale_by_trust_ratio`: LAMB's and LARS's layer-wise step size.

use crate::core::errors::Result;
use crate::core::scalar_ops::ScalarOps;
use crate::optax::leafwise::zip_float_leaves_mut;
use crate::optax::transformation::{required_params, EmptyState, GradientTransformation};
use crate::tree::Tree;
use tch::Tensor;

/// Scales each leaf's update by the ratio of the parameter's norm to the update's
/// (`optax.scale_by_trust_ratio`): `trust_coefficient * |p| / (|u| + eps)`, or 1 where either
/// norm is 0; norms below `min_norm` count as `min_norm`. Needs the parameters.
///
/// The ratio stays on the device (a handful of scalar kernels per leaf), so a step never
/// waits for the device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleByTrustRatio {
    min_norm: f64,
    trust_coefficient: f64,
    eps: f64,
}

/// The trust ratio with Optax's defaults (`min_norm = 0`, `trust_coefficient = 1`,
/// `eps = 0`).
pub fn scale_by_trust_ratio() -> ScaleByTrustRatio {
    ScaleByTrustRatio { min_norm: 0.0, trust_coefficient: 1.0, eps: 0.0 }
}

impl ScaleByTrustRatio {
    /// The smallest norm used for parameters and updates (default 0).
    pub fn min_norm(mut self, min_norm: f64) -> Self {
        self.min_norm = min_norm;
        self
    }

    /// A multiplier for the ratio (default 1).
    pub fn trust_coefficient(mut self, trust_coefficient: f64) -> Self {
        self.trust_coefficient = trust_coefficient;
        self
    }

    /// Added to the update's norm (default 0).
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    fn update_leaf(&self, g: &mut Tensor, param: &Tensor) -> Result<()> {
        let param_norm = param.f_norm()?.try_clamp_min(self.min_norm)?;
        let update_norm = g.f_norm()?.try_clamp_min(self.min_norm)?;
        let zero_norm = param_norm.try_eq(0.0)?.f_logical_or(&update_norm.try_eq(0.0)?)?;
        let ratio = param_norm
            .try_mul_scalar(self.trust_coefficient)?
            .f_div(&update_norm.try_add_scalar(self.eps)?)?;
        let _ = g.f_mul_(&Tensor::try_where_scalarself(&zero_norm, 1.0, &ratio)?)?;
        Ok(())
    }
}

impl<P: Tree> GradientTransformation<P> for ScaleByTrustRatio {
    type State = EmptyState;

    fn init(&self, _params: &P) -> Result<EmptyState> {
        Ok(())
    }

    fn update(&self, mut updates: P, state: EmptyState, params: Option<&P>) -> Result<(P, EmptyState)> {
        let params = required_params(params)?;
        zip_float_leaves_mut(&mut updates, [params], |g, [p]| self.update_leaf(g, p))?;
        Ok((updates, state))
    }
}
