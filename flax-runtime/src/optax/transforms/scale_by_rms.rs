//! `optax.scale_by_rms` and `optax.scale_by_stddev`: RMSProp's preconditioning, plain and
//! centered.

use crate::core::errors::{Error, Result};
use crate::core::scalar_ops::ScalarOps;
use crate::optax::count::Count;
use crate::optax::leafwise::{full_like, update_moment, zip_float_leaves_mut};
use crate::optax::numerics::bias_correction;
use crate::optax::transformation::GradientTransformation;
use crate::tree::Tree;
use tch::Tensor;

/// RMSProp's moving averages (Optax's `ScaleByRmsState`, `ScaleByRmsWithCountState`,
/// `ScaleByRStdDevState` and `ScaleByRStdDevWithCountState` in one type): `count` is present
/// with bias correction and `mu` for the centered variant, so the state dict has exactly the
/// fields of the Optax state of the same configuration.
#[derive(Tree, Debug)]
pub struct ScaleByRmsState<P> {
    /// The number of updates so far, when bias correction is on.
    pub count: Option<Count>,
    /// The moving average of the gradients, for the centered variant.
    pub mu: Option<P>,
    /// The moving average of the squared gradients.
    pub nu: P,
}

/// Rescales updates by the root of a moving average of their squares
/// (`optax.scale_by_rms`), or of their variance when centered (`optax.scale_by_stddev`):
/// `g / sqrt(nu_hat - mu_hat^2 + eps)` (`eps` outside the root when `eps_in_sqrt` is off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleByRms {
    decay: f64,
    eps: f64,
    initial_scale: f64,
    eps_in_sqrt: bool,
    bias_correction: bool,
    centered: bool,
}

/// RMS rescaling with Optax's defaults (`decay = 0.9`, `eps = 1e-8`, `initial_scale = 0`,
/// `eps_in_sqrt = true`, `bias_correction = false`).
pub fn scale_by_rms() -> ScaleByRms {
    ScaleByRms {
        decay: 0.9,
        eps: 1e-8,
        initial_scale: 0.0,
        eps_in_sqrt: true,
        bias_correction: false,
        centered: false,
    }
}

/// The centered variant of [`scale_by_rms`] (`optax.scale_by_stddev`), same defaults.
pub fn scale_by_stddev() -> ScaleByRms {
    scale_by_rms().centered(true)
}

impl ScaleByRms {
    /// The decay rate of the moving averages (default 0.9).
    pub fn decay(mut self, decay: f64) -> Self {
        self.decay = decay;
        self
    }

    /// Added to the denominator (default 1e-8).
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// The initial value of the second moment (default 0).
    pub fn initial_scale(mut self, initial_scale: f64) -> Self {
        self.initial_scale = initial_scale;
        self
    }

    /// Whether `eps` is added inside the square root (default) or outside it.
    pub fn eps_in_sqrt(mut self, eps_in_sqrt: bool) -> Self {
        self.eps_in_sqrt = eps_in_sqrt;
        self
    }

    /// Whether the moving averages are bias-corrected (default false).
    pub fn bias_correction(mut self, bias_correction: bool) -> Self {
        self.bias_correction = bias_correction;
        self
    }

    /// Whether to subtract the squared mean gradient (`scale_by_stddev`; default false).
    pub fn centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }

    /// Checks that `state` has the fields this configuration keeps (a state made by
    /// another configuration would silently skip the bias correction or the centering).
    fn check_state<P>(&self, state: &ScaleByRmsState<P>) -> Result<()> {
        if state.count.is_some() != self.bias_correction || state.mu.is_some() != self.centered {
            return Err(Error::Value(format!(
                "the RMS state (count: {}, mu: {}) was not made by this transformation (bias_correction: {}, \
                 centered: {})",
                state.count.is_some(),
                state.mu.is_some(),
                self.bias_correction,
                self.centered
            )));
        }
        Ok(())
    }

    /// One leaf; `correction` divides the averages (1 without bias correction).
    fn update_leaf(&self, g: &mut Tensor, mu: Option<&Tensor>, nu: &Tensor, correction: f64) -> Result<()> {
        let mut scaling = g.f_square()?;
        let nu = update_moment(nu, &scaling, self.decay)?;
        let _ = nu.try_div_scalar_out(&scaling, correction)?;
        if let Some(mu) = mu {
            let mu = update_moment(mu, g, self.decay)?;
            let _ = scaling.f_sub_(&mu.try_div_scalar(correction)?.f_square_()?)?;
        }
        if self.eps_in_sqrt {
            let _ = scaling.try_add_scalar_(self.eps)?.f_rsqrt_()?;
        } else {
            let _ = scaling.f_sqrt_()?.try_add_scalar_(self.eps)?.f_reciprocal_()?;
        }
        let _ = g.f_mul_(&scaling)?;
        Ok(())
    }
}

impl<P: Tree> GradientTransformation<P> for ScaleByRms {
    type State = ScaleByRmsState<P>;

    fn init(&self, params: &P) -> Result<ScaleByRmsState<P>> {
        Ok(ScaleByRmsState {
            count: self.bias_correction.then_some(Count(0)),
            mu: if self.centered { Some(full_like(params, 0.0, None)?) } else { None },
            nu: full_like(params, self.initial_scale, None)?,
        })
    }

    fn update(
        &self,
        mut updates: P,
        state: ScaleByRmsState<P>,
        _params: Option<&P>,
    ) -> Result<(P, ScaleByRmsState<P>)> {
        self.check_state(&state)?;
        let count = state.count.map(Count::increment);
        let correction = count.map_or(1.0, |count| bias_correction(self.decay, count.0));
        match &state.mu {
            Some(mu) => zip_float_leaves_mut(&mut updates, [mu, &state.nu], |g, [mu, nu]| {
                self.update_leaf(g, Some(mu), nu, correction)
            })?,
            None => zip_float_leaves_mut(&mut updates, [&state.nu], |g, [nu]| {
                self.update_leaf(g, None, nu, correction)
            })?,
        }
        Ok((updates, ScaleByRmsState { count, ..state }))
    }
}
