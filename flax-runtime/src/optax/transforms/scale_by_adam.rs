//! `optax.scale_by_adam`: Adam's preconditioning, without the learning rate.

use crate::core::errors::Result;
use crate::core::scalar_ops::ScalarOps;
use crate::optax::count::Count;
use crate::optax::fused::AdamConfig;
use crate::optax::leafwise::{axpy, full_like, update_moment, zip_float_leaves_mut};
use crate::optax::numerics::bias_correction;
use crate::optax::transformation::GradientTransformation;
use crate::tree::Tree;
use tch::{Kind, Tensor};

/// Adam's moments and step count (`optax.ScaleByAdamState`).
#[derive(Tree, Debug)]
pub struct ScaleByAdamState<P> {
    /// The number of updates so far (int32 in Optax, saturating at `i32::MAX`).
    pub count: Count,
    /// The exponential moving average of the gradients.
    pub mu: P,
    /// The exponential moving average of the squared gradients.
    pub nu: P,
}

/// Rescales updates by Adam's rule (`optax.scale_by_adam`):
/// `mu_hat / (sqrt(nu_hat + eps_root) + eps)` with bias-corrected moments; with Nesterov
/// momentum (NAdam), `mu_hat = b1 * mu / (1 - b1^(t+1)) + (1 - b1) * g / (1 - b1^t)`.
///
/// The bias corrections are computed in float32 from the count, as Optax does; the moments
/// are updated in place (`lerp_`), and the update is computed in the gradient's buffer:
/// eight kernels per leaf and no allocation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleByAdam {
    b1: f64,
    b2: f64,
    eps: f64,
    eps_root: f64,
    mu_dtype: Option<Kind>,
    nesterov: bool,
}

/// Adam's rescaling with Optax's defaults (`b1 = 0.9`, `b2 = 0.999`, `eps = 1e-8`,
/// `eps_root = 0`), changed with the builder methods.
pub fn scale_by_adam() -> ScaleByAdam {
    ScaleByAdam { b1: 0.9, b2: 0.999, eps: 1e-8, eps_root: 0.0, mu_dtype: None, nesterov: false }
}

impl ScaleByAdam {
    /// The decay rate of the first moment (default 0.9).
    pub fn b1(mut self, b1: f64) -> Self {
        self.b1 = b1;
        self
    }

    /// The decay rate of the second moment (default 0.999).
    pub fn b2(mut self, b2: f64) -> Self {
        self.b2 = b2;
        self
    }

    /// Added to the denominator outside the square root (default 1e-8).
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Added to the second moment inside the square root (default 0).
    pub fn eps_root(mut self, eps_root: f64) -> Self {
        self.eps_root = eps_root;
        self
    }

    /// The dtype the first moment is stored in (default: the parameters').
    pub fn mu_dtype(mut self, kind: Kind) -> Self {
        self.mu_dtype = Some(kind);
        self
    }

    /// Nesterov momentum, i.e. NAdam (default false).
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// One leaf, for the step whose (incremented) count is `count`.
    /// The hyper-parameters as libtorch's fused Adam kernels take them, when they implement
    /// this configuration: no `eps_root`, no Nesterov, moments in the parameters' dtype.
    pub(crate) fn fused_config(&self) -> Option<AdamConfig> {
        let plain = self.eps_root == 0.0 && !self.nesterov && self.mu_dtype.is_none();
        plain.then_some(AdamConfig { b1: self.b1, b2: self.b2, eps: self.eps })
    }

    fn update_leaf(&self, g: &mut Tensor, mu: &Tensor, nu: &Tensor, count: i64) -> Result<()> {
        let mu = update_moment(mu, g, self.b1)?;
        if self.nesterov {
            let mut denominator = g.f_square()?;
            let nu = update_moment(nu, &denominator, self.b2)?;
            let _ = g.try_div_scalar_(bias_correction(self.b1, count))?.try_mul_scalar_(1.0 - self.b1)?;
            axpy(g, self.b1 / bias_correction(self.b1, Count(count).increment().0), &mu)?;
            self.denominator(&nu, &mut denominator, count)?;
            let _ = g.f_div_(&denominator)?;
        } else {
            let _ = g.f_square_()?;
            let nu = update_moment(nu, g, self.b2)?;
            self.denominator(&nu, g, count)?;
            let _ = mu.f_div_out(g, g)?;
            let _ = g.try_div_scalar_(bias_correction(self.b1, count))?;
        }
        Ok(())
    }

    /// `sqrt(nu_hat + eps_root) + eps`, written into `out`.
    fn denominator(&self, nu: &Tensor, out: &mut Tensor, count: i64) -> Result<()> {
        let _ = nu.try_div_scalar_out(out, bias_correction(self.b2, count))?;
        if self.eps_root != 0.0 {
            let _ = out.try_add_scalar_(self.eps_root)?;
        }
        let _ = out.f_sqrt_()?.try_add_scalar_(self.eps)?;
        Ok(())
    }
}

impl<P: Tree> GradientTransformation<P> for ScaleByAdam {
    type State = ScaleByAdamState<P>;

    fn init(&self, params: &P) -> Result<ScaleByAdamState<P>> {
        let mu = full_like(params, 0.0, self.mu_dtype)?;
        Ok(ScaleByAdamState { count: Count(0), mu, nu: full_like(params, 0.0, None)? })
    }

    fn update(
        &self,
        mut updates: P,
        state: ScaleByAdamState<P>,
        _params: Option<&P>,
    ) -> Result<(P, ScaleByAdamState<P>)> {
        let count = state.count.increment();
        zip_float_leaves_mut(&mut updates, [&state.mu, &state.nu], |g, [mu, nu]| {
            self.update_leaf(g, mu, nu, count.0)
        })?;
        Ok((updates, ScaleByAdamState { count, ..state }))
    }
}
