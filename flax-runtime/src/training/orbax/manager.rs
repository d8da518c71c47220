//! Orbax's `CheckpointManager`: numbered step directories under one root, each holding the
//! step's `_CHECKPOINT_METADATA` and its pytree item in `default/` (the item name
//! `CheckpointManager` gives a single unnamed item, `args.StandardSave(tree)`), and a
//! `max_to_keep` rule deleting the oldest steps.
//!
//! Layout from Orbax 0.12.8's `checkpoint_manager.py` and `path/step.py` (the standard
//! `NameFormat`: the step number as the directory name); the spec's era (Orbax 0.2) used the
//! same `<step>/default/` directories.

use super::{metadata, restore, restore_raw, write_atomically, write_item, Layout};
use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::Value;
use crate::tree::{RestoreOptions, Tree};
use std::fs;
use std::path::{Path, PathBuf};

/// The item directory `CheckpointManager` uses for a single item.
pub(crate) const DEFAULT_ITEM: &str = "default";
/// The handler a `CheckpointManager` records for `args.StandardSave`.
const STANDARD_HANDLER: &str =
    "orbax.checkpoint._src.handlers.standard_checkpoint_handler.StandardCheckpointHandler";

/// The options of a [`CheckpointManager`], with Orbax's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointManagerOptions {
    /// How many of the newest steps to keep after a save (`None`: all, Orbax's default).
    pub max_to_keep: Option<usize>,
    /// Where the arrays of each step go.
    pub layout: Layout,
}

impl CheckpointManagerOptions {
    /// Sets [`max_to_keep`](Self::max_to_keep).
    pub fn max_to_keep(mut self, n: usize) -> Self {
        self.max_to_keep = Some(n);
        self
    }

    /// Sets [`layout`](Self::layout).
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }
}

/// Orbax's `CheckpointManager` over a directory of numbered steps.
#[derive(Debug, Clone)]
pub struct CheckpointManager {
    directory: PathBuf,
    options: CheckpointManagerOptions,
}

impl CheckpointManager {
    /// A manager of the steps under `directory` (created on the first save).
    pub fn new(directory: impl Into<PathBuf>, options: CheckpointManagerOptions) -> Self {
        CheckpointManager { directory: directory.into(), options }
    }

    /// The directory of `step`.
    pub fn step_path(&self, step: u64) -> PathBuf {
        self.directory.join(step.to_string())
    }

    /// The steps saved, oldest first: the directories named by a number (temporary
    /// directories of unfinished saves are not steps). None for a missing directory.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be listed.
    pub fn all_steps(&self) -> Result<Vec<u64>> {
        let entries = match fs::read_dir(&self.directory) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.directory, e)),
        };
        let mut steps = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.directory, e))?;
            let step = entry.file_name().to_str().and_then(|name| name.parse::<u64>().ok());
            if let Some(step) = step.filter(|_| entry.path().is_dir()) {
                steps.push(step);
            }
        }
        steps.sort_unstable();
        Ok(steps)
    }

    /// The newest step, if any.
    pub fn latest_step(&self) -> Result<Option<u64>> {
        Ok(self.all_steps()?.pop())
    }

    /// Saves `tree` as `step` (`manager.save(step, args=ocp.args.StandardSave(tree))`), then
    /// deletes the oldest steps beyond `max_to_keep`. Returns the step's directory.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when the step exists; [`Error::InvalidCheckpoint`] when a
    /// newer step exists (Orbax skips such a save); the errors of [`super::save`].
    pub fn save<T: Tree>(&self, step: u64, tree: &T) -> Result<PathBuf> {
        let path = self.new_step_path(step)?;
        let state = tree.state_dict();
        write_atomically(&path, false, |tmp| {
            let item = tmp.join(DEFAULT_ITEM);
            fs::create_dir(&item).map_err(|e| Error::io(&item, e))?;
            write_item(&item, &state, self.options.layout)?;
            super::write_file(
                &tmp.join(metadata::CHECKPOINT_METADATA),
                &metadata::checkpoint_metadata_json(step_item_handlers()),
            )
        })?;
        self.remove_old_steps()?;
        Ok(path)
    }

    /// Restores `target` from `step`, strictly (see [`super::restore`]).
    pub fn restore<T: Tree>(&self, step: u64, target: &T, options: RestoreOptions) -> Result<T> {
        restore(self.item_path(step)?, target, options)
    }

    /// The tree stored at `step` as a state dict (see [`super::restore_raw`]).
    pub fn restore_raw(&self, step: u64) -> Result<Value> {
        restore_raw(self.item_path(step)?)
    }

    /// The directory of a new `step`, which no newer step may precede (Orbax skips such a
    /// save).
    ///
    /// # Errors
    /// [`Error::InvalidCheckpoint`] when a newer step exists; [`Error::Io`].
    pub(crate) fn new_step_path(&self, step: u64) -> Result<PathBuf> {
        let path = self.step_path(step);
        if let Some(latest) = self.latest_step()?.filter(|&latest| latest > step) {
            return Err(Error::InvalidCheckpoint {
                path: path.display().to_string(),
                step: format!("{step} (the latest step is {latest})"),
            });
        }
        Ok(path)
    }

    /// The pytree's directory in `step`: `<step>/default`, or the step directory itself
    /// when the manager saved the item there (Orbax's single-item managers of old).
    ///
    /// # Errors
    /// [`Error::Io`] when the step was not saved.
    pub fn item_path(&self, step: u64) -> Result<PathBuf> {
        let path = self.step_path(step);
        if !path.is_dir() {
            let missing =
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("step {step} was not saved"));
            return Err(Error::io(&path, missing));
        }
        let item = path.join(DEFAULT_ITEM);
        Ok(if item.is_dir() { item } else { path })
    }

    /// Deletes the oldest steps beyond `max_to_keep`.
    pub(crate) fn remove_old_steps(&self) -> Result<()> {
        let Some(keep) = self.options.max_to_keep else { return Ok(()) };
        let steps = self.all_steps()?;
        for &step in &steps[..steps.len().saturating_sub(keep)] {
            remove_dir(&self.step_path(step))?;
        }
        Ok(())
    }
}

/// What a step's `_CHECKPOINT_METADATA` records: its one item's handler.
pub(crate) fn step_item_handlers() -> serde_json::Value {
    serde_json::json!({ DEFAULT_ITEM: STANDARD_HANDLER })
}

fn remove_dir(path: &Path) -> Result<()> {
    fs::remove_dir_all(path).map_err(|e| Error::io(path, e))
}
