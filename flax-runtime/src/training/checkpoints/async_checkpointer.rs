//! Saving checkpoints on a background thread (Flax's `AsyncManager`).

use super::{CheckpointTarget, PendingSave, SaveCheckpointOptions, Step};
use crate::core::errors::{Error, Result};
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};

/// Saves checkpoints without blocking the training loop, one at a time.
///
/// [`save_checkpoint`](Self::save_checkpoint) first waits for the previous save to finish (so
/// the overwrite check and the clean-up see a settled directory, as with Flax's
/// `AsyncManager`), then checks the step and serializes the target on the calling thread —
/// tensors never cross threads (a tch `Tensor` is `Send` but not `Sync`), only their bytes —
/// and writes, renames and cleans up on a background thread.
///
/// A failed background save is reported by the next `save_checkpoint` or by
/// [`wait`](Self::wait). Call `wait` before restoring what was just saved, and before exiting:
/// dropping the checkpointer also waits, but can only discard an error.
#[derive(Debug, Default)]
pub struct AsyncCheckpointer {
    pending: Option<JoinHandle<Result<PathBuf>>>,
}

impl AsyncCheckpointer {
    /// A checkpointer with no save in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`save_checkpoint`](super::save_checkpoint) on a background thread: returns the path the
    /// checkpoint will have once written.
    ///
    /// # Errors
    /// The previous save's error, if it failed; then the errors `save_checkpoint` reports
    /// before writing (an outdated step, a prefix or tree that cannot be saved). Errors while
    /// writing come from the next call or [`wait`](Self::wait).
    pub fn save_checkpoint<T: CheckpointTarget>(
        &mut self,
        ckpt_dir: impl AsRef<Path>,
        target: &T,
        step: impl Into<Step>,
        options: &SaveCheckpointOptions,
    ) -> Result<PathBuf> {
        self.wait()?;
        let save = PendingSave::prepare(ckpt_dir.as_ref(), target, step.into(), options)?;
        let path = save.path();
        let writer = thread::Builder::new()
            .name("flax-checkpoint".to_owned())
            .spawn(move || save.commit())
            .map_err(|e| Error::io(&path, e))?;
        self.pending = Some(writer);
        Ok(path)
    }

    /// Blocks until the save in flight, if any, is on disk (Flax's `wait_previous_save`).
    ///
    /// # Errors
    /// That save's error.
    pub fn wait(&mut self) -> Result<()> {
        match self.pending.take() {
            Some(writer) => writer
                .join()
                .map_err(|_| Error::Value("the checkpoint writer thread panicked".to_owned()))?
                .map(drop),
            None => Ok(()),
        }
    }

    /// Whether a save is still being written.
    pub fn is_saving(&self) -> bool {
        self.pending.as_ref().is_some_and(|writer| !writer.is_finished())
    }
}

impl Drop for AsyncCheckpointer {
    fn drop(&mut self) {
        // The file must not be cut short by the process exiting; its error has nowhere to go.
        let _ = self.wait();
    }
}
