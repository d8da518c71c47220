//! `flax.training`: what a training loop needs besides the model and the optimizer.
//!
//! - [`TrainState`]: step, parameters, optimizer and optimizer state in one [`Tree`](crate::tree::Tree),
//!   updated by `apply_gradients`, extended with extra fields (`batch_stats`, metrics, …);
//! - [`metrics`]: clu's `Average`, `Accuracy` and `Collection`, the quickstart's metrics;
//! - [`EarlyStopping`] and the [`lr_schedule`] functions, with Flax's exact rules;
//! - [`checkpoints`]: Flax's checkpoint files, for any tree;
//! - [`orbax`]: Orbax checkpoint directories (what Flax 0.12.8 saves), read and written.
//!
//! `examples/examples/quickstart.rs` trains the spec's CNN with all of them.

pub mod checkpoints;
mod early_stopping;
pub mod lr_schedule;
pub mod metrics;
pub mod orbax;
mod train_state;

pub use early_stopping::EarlyStopping;
pub use train_state::TrainState;
