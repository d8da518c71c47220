//! Flax's Linen programming model for Rust, on libtorch.
//!
//! See the README for an overview; the module docs of [`core`] walk through the module
//! lifecycle.

// Generated code names this crate `::flax`, also when it is expanded inside this crate.
extern crate self as flax;

pub mod core;
pub mod traverse_util;
pub mod tree;

pub use crate::core::errors::{Error, Result};
pub use crate::core::frozen_dict::{FrozenDict, Scalar, Value, Variables};
pub use crate::tree::Tree;
pub use tch;
