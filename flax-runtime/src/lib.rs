//! Flax's Linen programming model for Rust, on libtorch.
//!
//! See the README for an overview; the module docs of [`core`] walk through the module
//! lifecycle; [`how_to`] shows the patterns Flax users look for (extending `TrainState`,
//! threading `batch_stats`, freezing parameters, surgery, restoring Python checkpoints).

// Generated code names this crate `::flax`, also when it is expanded inside this crate.
extern crate self as flax;

pub mod core;
pub mod data;
pub mod distributed;
pub mod how_to;
pub mod nn;
pub mod optax;
pub mod random;
pub mod serialization;
pub mod summary;
pub mod training;
pub mod transforms;
pub mod traverse_util;
pub mod tree;

pub use crate::core::apply::{ApplyOptions, CallInfo, CaptureIntermediates, Rngs};
pub use crate::core::errors::{Error, NameKind, Result};
pub use crate::core::filter::CollectionFilter;
pub use crate::core::frozen_dict::{FrozenDict, Scalar, Value, Variables};
pub use crate::core::lazy_init::ShapeDtypeStruct;
pub use crate::core::module::{Bound, Module};
pub use crate::core::module_paths::ModuleInfo;
pub use crate::core::params::ParamsView;
pub use crate::core::rng::PRNGKey;
pub use crate::core::scope::Scope;
pub use crate::core::variable::Variable;
pub use crate::transforms::autodiff::{grad, grad_with_aux, value_and_grad, value_and_grad_with_aux};
pub use crate::tree::Tree;
pub use flax_macros::{compact, module, shape};
pub use tch;

#[doc(hidden)]
pub use crate::core::private as __private;

/// What most user code needs: `use flax::prelude::*;`.
pub mod prelude {
    pub use crate::core::scalar_ops::ScalarOps;
    pub use crate::nn;
    pub use crate::{
        compact, frozen_dict, module, shape, ApplyOptions, CollectionFilter, FrozenDict, Module, PRNGKey,
        Result, Rngs, Scope, Variables,
    };
    pub use tch::{Device, Kind, Tensor};
}
