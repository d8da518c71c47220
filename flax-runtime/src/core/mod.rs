//! The module system: variables, scopes, RNG streams, `init`/`apply` plumbing and errors.

pub mod apply;
pub mod autodiff;
pub mod errors;
pub mod filter;
pub mod frozen_dict;
pub mod module;
pub mod naming;
#[doc(hidden)]
pub mod private;
pub mod repr;
pub mod rng;
pub mod scope;
mod threefry;
pub mod variable;
