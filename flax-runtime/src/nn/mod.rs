//! `flax.linen`'s layers and their building blocks.

pub mod initializers;
