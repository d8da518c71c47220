//! `flax.training`: what a training loop needs around the model.

pub mod checkpoints;
