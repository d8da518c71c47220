//! Flax's Linen programming model for Rust, on libtorch.
//!
//! See the README for an overview; the module docs of [`core`] walk through the module
//! lifecycle.

pub mod core;
pub mod traverse_util;

pub use crate::core::errors::{Error, Result};
pub use crate::core::frozen_dict::{FrozenDict, Scalar, Value, Variables};
pub use tch;
