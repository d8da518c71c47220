//! `Dropout` (Flax's `flax.linen.stochastic`).

use crate::core::errors::Result;
use crate::core::repr::FlaxRepr;
use crate::core::scalar_ops::ScalarOps;
use crate::core::scope::Scope;
use crate::module;
use crate::nn::module_utils::{attribute_error, merge_param, shape_error};
use crate::random::bernoulli;
use tch::Tensor;

/// Randomly zeroes inputs while training (Flax's `nn.Dropout`): each element is kept with
/// probability `1 - rate` and scaled by `1 / (1 - rate)`, so the mean is preserved. The mask
/// is `jax.random.bernoulli` on a key of the `rng_collection` stream (`dropout`: give it to
/// `apply` with `rngs`), so it is Flax's mask for the same key. `deterministic` (given
/// exactly once, here or at the call) returns the inputs unchanged; so does `rate == 0`,
/// and `rate == 1` returns zeros: none of the three draws a key. No variables.
#[module]
pub struct Dropout {
    /// The probability of dropping an element (not the keep rate).
    pub rate: f64,
    /// Dimensions that share one mask (their mask size is 1, broadcast).
    #[module(default = Vec::new())]
    pub broadcast_dims: Vec<i64>,
    /// Whether to return the inputs unchanged.
    #[module(default = None)]
    pub deterministic: Option<bool>,
    /// The RNG stream the mask is drawn from.
    #[module(default = String::from("dropout"))]
    pub rng_collection: String,
}

#[module]
impl Dropout {
    /// Masks and rescales `inputs` unless deterministic (here or as the attribute, not both).
    #[compact]
    pub fn call(&self, cx: &mut Scope, inputs: &Tensor, deterministic: Option<bool>) -> Result<Tensor> {
        let deterministic = merge_param(cx, "deterministic", self.deterministic, deterministic)?;
        if !(0.0..=1.0).contains(&self.rate) {
            return Err(attribute_error(cx, format!("Dropout rate must be in [0, 1], got {}", self.rate)));
        }
        if self.rate == 0.0 || deterministic {
            return Ok(inputs.shallow_clone());
        }
        if self.rate == 1.0 {
            return Ok(inputs.f_zeros_like()?);
        }
        let keep_prob = 1.0 - self.rate;
        let mut mask_shape = inputs.size();
        let rank = mask_shape.len() as i64;
        for &dim in &self.broadcast_dims {
            let d = if dim < 0 { dim + rank } else { dim };
            if !(0..rank).contains(&d) {
                return Err(shape_error(
                    cx,
                    format!(
                        "broadcast_dims {} do not fit inputs of shape {}",
                        self.broadcast_dims.flax_repr(),
                        inputs.size().flax_repr()
                    ),
                ));
            }
            mask_shape[d as usize] = 1;
        }
        let key = cx.make_rng(&self.rng_collection)?;
        let mask = bernoulli(key, keep_prob, &mask_shape, inputs.device())?;
        let kept = inputs.try_div_scalar(keep_prob)?;
        Ok(kept.f_where_self(&mask, &kept.f_zeros_like()?)?)
    }
}
