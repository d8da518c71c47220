//! `optax.scale_by_rss`: Adagrad's preconditioning.

use crate::core::errors::Result;
use crate::core::scalar_ops::ScalarOps;
use crate::optax::leafwise::{full_like, handle, zip_float_leaves_mut};
use crate::optax::transformation::GradientTransformation;
use crate::tree::Tree;
use tch::Tensor;

/// The running sum of squared gradients (`optax.ScaleByRssState`).
#[derive(Tree, Debug)]
pub struct ScaleByRssState<P> {
    /// The initial value plus every squared gradient so far.
    pub sum_of_squares: P,
}

/// Rescales updates by the inverse root of the sum of all squared gradients so far
/// (`optax.scale_by_rss`): `g / sqrt(sum + eps)`, and 0 where the sum is 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleByRss {
    initial_accumulator_value: f64,
    eps: f64,
}

/// Adagrad's rescaling with Optax's defaults (`initial_accumulator_value = 0.1`,
/// `eps = 1e-7`).
pub fn scale_by_rss() -> ScaleByRss {
    ScaleByRss { initial_accumulator_value: 0.1, eps: 1e-7 }
}

impl ScaleByRss {
    /// The sum's starting value (default 0.1; must be non-negative).
    pub fn initial_accumulator_value(mut self, value: f64) -> Self {
        self.initial_accumulator_value = value;
        self
    }

    /// Added to the sum inside the square root (default 1e-7).
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    fn update_leaf(&self, g: &mut Tensor, sum_of_squares: &Tensor) -> Result<()> {
        let mut sum = handle(sum_of_squares);
        let _ = sum.f_addcmul_(g, g)?;
        let inv_sqrt =
            sum.try_add_scalar(self.eps)?.f_rsqrt_()?.try_where_scalarother(&sum.try_gt(0.0)?, 0.0)?;
        let _ = g.f_mul_(&inv_sqrt)?;
        Ok(())
    }
}

impl<P: Tree> GradientTransformation<P> for ScaleByRss {
    type State = ScaleByRssState<P>;

    fn init(&self, params: &P) -> Result<ScaleByRssState<P>> {
        Ok(ScaleByRssState { sum_of_squares: full_like(params, self.initial_accumulator_value, None)? })
    }

    fn update(
        &self,
        mut updates: P,
        state: ScaleByRssState<P>,
        _params: Option<&P>,
    ) -> Result<(P, ScaleByRssState<P>)> {
        zip_float_leaves_mut(&mut updates, [&state.sum_of_squares], |g, [sum]| self.update_leaf(g, sum))?;
        Ok((updates, state))
    }
}
