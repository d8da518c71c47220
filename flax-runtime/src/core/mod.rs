//! The module system: variables, scopes, RNG streams, `init`/`apply` plumbing and errors.

pub mod errors;
pub mod frozen_dict;
pub mod rng;
mod threefry;
