//! Layers, initializers and the dtype policy (Flax's `flax.linen` layer library).

pub mod dtypes;
pub mod initializers;
pub mod linear;

pub use linear::Dense;
