//! The initializer protocol `Scope::param` takes; the initializers themselves are in
//! [`crate::nn::initializers`] (Flax's `flax.linen.initializers`).

use crate::core::errors::Result;
use crate::core::frozen_dict::Value;
use crate::core::rng::PRNGKey;
use tch::{Device, Kind, Tensor};

/// Flax's `Initializer` protocol: `init(key, shape, dtype) -> Array`.
pub trait Initializer {
    /// A tensor of `shape` and `options` that is a pure function of `key`.
    fn init(&self, key: PRNGKey, shape: &[i64], options: (Kind, Device)) -> Result<Tensor>;

    /// What `cx.param` stores for the initialized `value`: the value itself, or the value in
    /// the axis-metadata box of an initializer wrapped by `nn::with_partitioning` (Flax's
    /// wrapper returns `Partitioned(fn(...), names)`). The module still gets the raw array.
    fn box_value(&self, value: Value) -> Value {
        value
    }
}

impl<F> Initializer for F
where
    F: Fn(PRNGKey, &[i64], (Kind, Device)) -> Result<Tensor>,
{
    fn init(&self, key: PRNGKey, shape: &[i64], options: (Kind, Device)) -> Result<Tensor> {
        self(key, shape, options)
    }
}
