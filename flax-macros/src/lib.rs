//! Procedural macros for `flax-runtime`.
