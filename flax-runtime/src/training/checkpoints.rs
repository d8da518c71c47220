//! `flax.training.checkpoints`: Flax's legacy (msgpack) checkpoint files, saved and restored
//! with Flax's names, ordering and clean-up rules, so a checkpoint directory written by Python
//! Flax is read here and the other way round.
//!
//! ```no_run
//! use flax::training::checkpoints::{self, RestoreCheckpointOptions, SaveCheckpointOptions};
//! # fn run(variables: flax::Variables) -> flax::Result<()> {
//! let options = SaveCheckpointOptions::default().keep(2);
//! let path = checkpoints::save_checkpoint("ckpts", &variables, 100, &options)?; // ckpts/checkpoint_100
//! let restored = checkpoints::restore_checkpoint("ckpts", variables, &RestoreCheckpointOptions::default())?;
//! let raw = checkpoints::restore_checkpoint_raw(&path, &RestoreCheckpointOptions::default())?;
//! # Ok(()) }
//! ```
//!
//! # What is the same as in Flax
//! - A checkpoint is one file, `<ckpt_dir>/<prefix><step>`, holding `to_bytes(target)`: the
//!   msgpack state dict of [`crate::serialization`], byte for byte what Flax writes for the
//!   same tree. The step is written as Python writes it (see [`Step`]): `checkpoint_3`,
//!   `checkpoint_0.1`, `checkpoint_100000.0` for the float `1e5`.
//! - Saving writes a temporary file first and renames it to the final name, so a crash while
//!   writing leaves at most a stale temporary file, which every listing ignores and the next
//!   save deletes; the latest complete checkpoint is never touched before the new one is.
//! - "Latest" is the last name in Flax's [`natural_sort`] (numbers compared by value:
//!   `ckpt_0.001 < ckpt_0.01 < ckpt_0.1`, `ckpt_-1.0 < ckpt_1.0 < ckpt_1e5`).
//!
//! # Integrity (beyond Flax)
//! - **Concurrent writers.** Each save writes its own temporary file,
//!   `.<prefix>tmp.<random>` (a hidden name, which Flax's glob never lists), and takes an
//!   advisory lock on the directory ([`flock`](https://man7.org/linux/man-pages/man2/flock.2.html))
//!   to check the steps, rename its file into place and clean up; a second writer, in this
//!   process or another, waits for the lock. Without `overwrite` the rename never replaces an
//!   existing file (even one a writer that takes no lock put there). So `Ok(path)` means the
//!   file at `path` held exactly this save's bytes when the lock was released; a writer that
//!   lost a race for the same step gets [`Error::InvalidCheckpoint`] (or
//!   [`Error::AlreadyExists`]) and changes nothing.
//! - **Checksums.** Next to each checkpoint it writes, the library writes
//!   `.<name>.crc32`, the CRC-32 and length of its bytes; restoring verifies it, and a
//!   mismatch is [`Error::ChecksumMismatch`] naming both files. A checkpoint without one
//!   (saved by Python Flax) restores as before. Deleting a checkpoint deletes its sidecar; a
//!   checkpoint replaced by a program that does not know about sidecars is reported as a
//!   mismatch (delete the stale sidecar to accept the new file).
//! - **Strict names.** Only `<prefix><number>` names are checkpoints (the number as Flax's
//!   pattern reads it: `checkpoint_3`, `checkpoint_0.5`, `checkpoint_1e+16`), so a stray
//!   `checkpoint_1.bak` is never the latest, never blocks a save and is never deleted by the
//!   keep rules. Flax lists every `<prefix>*` name except `<prefix>tmp`.
//! - Without `overwrite`, saving at a step that exists or sorts before an existing checkpoint is
//!   [`Error::InvalidCheckpoint`]. With it, the file is replaced and every newer checkpoint is
//!   deleted.
//! - After a save, all but the newest `keep` checkpoints are deleted, except that with
//!   `keep_every_n_steps = n` an old checkpoint is kept whenever its step is at least `n`
//!   above the last one kept so far (oldest first). As in Flax, a checkpoint whose step is 0
//!   is never kept by that rule, `keep = 0` deletes nothing, and `keep_every_n_steps = 0`
//!   means no such rule.
//! - Restoring from a directory with no checkpoint, or from a path that does not exist, gives
//!   back the target unchanged ([`restore_checkpoint_raw`]: `None`); restoring a given step
//!   that does not exist is an error.
//! - [`AsyncCheckpointer`] is Flax's `AsyncManager`: the file is written on a background
//!   thread, and the next save waits for the previous one (and reports its error).
//!
//! # Deliberate differences
//! - The file is `fsync`ed before the rename and the directory after it (Flax does neither),
//!   so that a power loss, not only a crash, cannot leave an empty file under a final name.
//! - Restoring into a target is strict: every missing, unexpected and mismatched entry is
//!   reported in one [`Error::StateDictMismatch`] (Flax raises at the first missing key and
//!   ignores extra ones); [`RestoreCheckpointOptions::state_dict`] opts into partial restores.
//! - A corrupt or truncated file is an [`Error::Format`] naming the file, never a panic or a
//!   partially restored tree.
//! - The prefix is plain text: a path separator in it is an error (Flax would save into a
//!   sub-directory that its own `latest_checkpoint` never lists), and glob characters in it
//!   match themselves.
//! - Only legacy checkpoints are written. Flax 0.12.8 saves with Orbax unless
//!   `flax_use_orbax_checkpointing` is turned off (the 0.6.10 the spec documents saves legacy
//!   files by default); [`super::orbax`] writes Orbax checkpoints. Restoring reads both: as
//!   in Flax, a checkpoint directory holding Orbax's marker files (`_METADATA`,
//!   `manifest.ocdbt`, `checkpoint`) is restored through [`super::orbax`].
//!   There are no multi-process (`save_checkpoint_multiprocess`, `_gda`) checkpoints, though
//!   their `*_gda` folders are skipped when listing, as in Flax.

mod async_checkpointer;
mod checksum;
mod dir_lock;
mod natural_sort;
mod step;

pub use async_checkpointer::AsyncCheckpointer;
pub use natural_sort::natural_sort;
pub use step::Step;

use super::orbax::{self, is_orbax_checkpoint};

use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::Value;
use crate::serialization::{self, RestoreOptions};
use crate::tree::Tree;
use checksum::ChecksummedFile;
use dir_lock::DirLock;
use natural_sort::{is_number, last_number};
use std::fs::{self, File};
use std::io::{self, BufReader, Write as _};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

/// Anything a checkpoint can hold: a tree with a Flax state dict.
///
/// Implemented for [`FrozenDict`](crate::FrozenDict) (and so [`crate::Variables`]) and for any [`Value`] tree.
pub trait CheckpointTarget: Sized {
    /// The checkpoint file's bytes: Flax's `to_bytes(target)`.
    fn to_bytes(&self) -> Result<Vec<u8>>;

    /// Flax's `from_state_dict(target, state)`: a tree of `self`'s structure filled from
    /// `state`, as strict as `options` asks.
    fn restore_state_dict(&self, state: Value, options: RestoreOptions) -> Result<Self>;

    /// The state dict of `self` (Flax's `to_state_dict`).
    fn state_dict_value(&self) -> Value;
}

/// Every pytree checkpoints: variables, typed train states, optimizer states, user structs.
impl<T: Tree> CheckpointTarget for T {
    fn to_bytes(&self) -> Result<Vec<u8>> {
        serialization::to_bytes(self)
    }

    fn restore_state_dict(&self, state: Value, options: RestoreOptions) -> Result<Self> {
        crate::tree::from_state_dict_with(self, &state, options)
    }

    fn state_dict_value(&self) -> Value {
        self.state_dict()
    }
}

/// The options of [`save_checkpoint`], with Flax's defaults.
///
/// `SaveCheckpointOptions::default().keep(3).keep_every_n_steps(1000)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveCheckpointOptions {
    /// The file name prefix (`"checkpoint_"`).
    pub prefix: String,
    /// How many of the newest checkpoints to keep (1; 0 keeps all, as in Flax).
    pub keep: usize,
    /// Whether saving at a step that exists, or below an existing one, replaces it and
    /// deletes the newer ones (`false`: it is [`Error::InvalidCheckpoint`]).
    pub overwrite: bool,
    /// Also keep one old checkpoint every this many steps (`None`).
    pub keep_every_n_steps: Option<u64>,
}

impl Default for SaveCheckpointOptions {
    fn default() -> Self {
        Self { prefix: "checkpoint_".to_owned(), keep: 1, overwrite: false, keep_every_n_steps: None }
    }
}

impl SaveCheckpointOptions {
    /// Sets [`prefix`](Self::prefix).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`keep`](Self::keep).
    pub fn keep(mut self, keep: usize) -> Self {
        self.keep = keep;
        self
    }

    /// Sets [`overwrite`](Self::overwrite).
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// Sets [`keep_every_n_steps`](Self::keep_every_n_steps).
    pub fn keep_every_n_steps(mut self, n: u64) -> Self {
        self.keep_every_n_steps = Some(n);
        self
    }
}

/// The options of [`restore_checkpoint`] and [`restore_checkpoint_raw`], with Flax's defaults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RestoreCheckpointOptions {
    /// The step to restore (`None`: the latest). When given, the path must be a directory.
    pub step: Option<Step>,
    /// The file name prefix (`None`: `"checkpoint_"`).
    pub prefix: Option<String>,
    /// How strictly the stored state dict must match the target (strict by default).
    pub state_dict: RestoreOptions,
}

impl RestoreCheckpointOptions {
    /// Sets [`step`](Self::step).
    pub fn step(mut self, step: impl Into<Step>) -> Self {
        self.step = Some(step.into());
        self
    }

    /// Sets [`prefix`](Self::prefix).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Sets [`state_dict`](Self::state_dict), e.g. to restore a new head's variables from
    /// their initial values: `RestoreOptions { allow_partial: true, ..Default::default() }`.
    pub fn state_dict(mut self, options: RestoreOptions) -> Self {
        self.state_dict = options;
        self
    }

    fn prefix_str(&self) -> &str {
        self.prefix.as_deref().unwrap_or("checkpoint_")
    }
}

/// Saves `target` as `<ckpt_dir>/<prefix><step>` (Flax's `save_checkpoint`) and returns that
/// path, then deletes the checkpoints that `options` does not keep (see the module docs).
///
/// # Errors
/// [`Error::InvalidCheckpoint`] when, without `overwrite`, a checkpoint at this step or a later
/// one exists; [`Error::Io`] when the directory cannot be listed or the file written (nothing
/// under a final name changes then); [`Error::Value`] for a prefix holding a path separator or
/// a tree msgpack cannot hold.
pub fn save_checkpoint<T: CheckpointTarget>(
    ckpt_dir: impl AsRef<Path>,
    target: &T,
    step: impl Into<Step>,
    options: &SaveCheckpointOptions,
) -> Result<PathBuf> {
    PendingSave::prepare(ckpt_dir.as_ref(), target, step.into(), options)?.commit()
}

/// The path of the latest checkpoint in `ckpt_dir` (Flax's `latest_checkpoint`): the last of
/// the names `<prefix><number>` in natural order (stray names such as `<prefix>1.bak` or
/// `<prefix>tmp` are not checkpoints); `None` if there is none or the directory does not exist.
pub fn latest_checkpoint(ckpt_dir: impl AsRef<Path>, prefix: &str) -> Result<Option<PathBuf>> {
    let dir = normalize(ckpt_dir.as_ref());
    Ok(all_checkpoints(&dir, prefix)?.pop().map(|name| dir.join(name)))
}

/// The steps of the checkpoints in `ckpt_dir`, oldest first (Flax's `available_steps`), parsed
/// as `S` as Flax parses them with `step_type`: `available_steps::<i64>(dir, "checkpoint_")`,
/// or `::<f64>` where steps are floats.
///
/// # Errors
/// [`Error::Value`] for a checkpoint name whose step does not parse as `S` (as Flax's
/// `int("0.5")` raises).
pub fn available_steps<S: FromStr>(ckpt_dir: impl AsRef<Path>, prefix: &str) -> Result<Vec<S>> {
    all_checkpoints(&normalize(ckpt_dir.as_ref()), prefix)?
        .into_iter()
        .map(|name| {
            // Flax takes the text after the last occurrence of the prefix.
            let step = name.rfind(prefix).map_or("", |at| &name[at + prefix.len()..]);
            step.parse()
                .map_err(|_| Error::Value(format!("checkpoint {name:?} has a step {step:?} of another type")))
        })
        .collect()
}

/// Restores `target` from a checkpoint (Flax's `restore_checkpoint` with a target):
/// `ckpt_dir` is a directory (its latest checkpoint, or `options.step`'s) or a checkpoint file.
/// Returns `target` itself when there is nothing to restore (no such directory or file, or no
/// checkpoint in the directory), as Flax does.
///
/// # Errors
/// [`Error::StateDictMismatch`] listing every difference between the checkpoint and the
/// target; [`Error::Format`] for a corrupt file or Orbax checkpoint; [`Error::Value`] for a
/// missing `step`; [`Error::Io`].
pub fn restore_checkpoint<T: CheckpointTarget>(
    ckpt_dir: impl AsRef<Path>,
    target: T,
    options: &RestoreCheckpointOptions,
) -> Result<T> {
    let Some(path) = find_checkpoint(ckpt_dir.as_ref(), options)? else { return Ok(target) };
    let state = if is_orbax_checkpoint(&path) {
        // Orbax restores its empty nodes into the target's (`None` into `{}`).
        orbax::conform_empty_nodes(&target.state_dict_value(), orbax::restore_raw(&path)?)
    } else {
        read_file(&path)?
    };
    target.restore_state_dict(state, options.state_dict)
}

/// The state dict stored in a checkpoint, as is (Flax's `restore_checkpoint(ckpt_dir,
/// target=None)`): lists and tuples come back as dicts keyed `"0"`, `"1"`, …, arrays as CPU
/// tensors. `None` when there is nothing to restore (see [`restore_checkpoint`]).
pub fn restore_checkpoint_raw(
    ckpt_dir: impl AsRef<Path>,
    options: &RestoreCheckpointOptions,
) -> Result<Option<Value>> {
    read_checkpoint(ckpt_dir.as_ref(), options)
}

/// A save whose checks are done and whose bytes are serialized, ready to be written (on this
/// thread or another: it holds no tensors).
pub(crate) struct PendingSave {
    dir: PathBuf,
    prefix: String,
    name: String,
    step: Step,
    bytes: Vec<u8>,
    keep: usize,
    overwrite: bool,
    keep_every_n_steps: Option<u64>,
}

impl PendingSave {
    /// Checks the step against the directory (as Flax does before serializing) and
    /// serializes `target`.
    pub(crate) fn prepare<T: CheckpointTarget>(
        ckpt_dir: &Path,
        target: &T,
        step: Step,
        options: &SaveCheckpointOptions,
    ) -> Result<Self> {
        check_prefix(&options.prefix)?;
        let save = PendingSave {
            dir: normalize(ckpt_dir),
            prefix: options.prefix.clone(),
            name: format!("{}{step}", options.prefix),
            step,
            bytes: Vec::new(),
            keep: options.keep,
            overwrite: options.overwrite,
            keep_every_n_steps: options.keep_every_n_steps.filter(|&n| n > 0),
        };
        if !save.overwrite {
            save.check_not_outdated()?;
        }
        Ok(PendingSave { bytes: target.to_bytes()?, ..save })
    }

    /// The path the checkpoint is saved at.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// Writes a temporary file of its own, then, holding the directory's lock, checks the
    /// step again, renames the file to the final name, writes the checksum sidecar and deletes
    /// the checkpoints not kept (Flax's `_save_main_ckpt_file` and `_save_commit`).
    ///
    /// The sidecar of a replaced file goes before the rename and the new one comes after, so
    /// a crash in between leaves a checkpoint without a sidecar (restored unverified), never
    /// one with another file's checksum.
    pub(crate) fn commit(self) -> Result<PathBuf> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let lock = DirLock::acquire(&self.dir)?;
        if lock.is_exclusive() {
            remove_stale_temporaries(&self.dir, &self.prefix);
        }
        if !self.overwrite {
            self.check_not_outdated()?;
        }
        let tmp = write_temporary(&self.dir, &self.prefix, &self.bytes)?;
        let path = self.path();
        checksum::remove(&path)?;
        let renamed = if self.overwrite { tmp.persist(&path) } else { tmp.persist_noclobber(&path) };
        renamed.map_err(|e| match e.error.kind() {
            io::ErrorKind::AlreadyExists => Error::AlreadyExists { path: path.display().to_string() },
            _ => Error::io(&path, e.error),
        })?;
        let sidecar =
            write_temporary(&self.dir, &self.prefix, checksum::sidecar_text(&self.bytes).as_bytes())?;
        let sidecar_path = checksum::sidecar_path(&path);
        sidecar.persist(&sidecar_path).map_err(|e| Error::io(&sidecar_path, e.error))?;
        sync_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        self.remove_invalid_checkpoints()?;
        Ok(path)
    }

    /// Flax's `_check_overwrite_error`: the new name must sort after every existing
    /// checkpoint.
    fn check_not_outdated(&self) -> Result<()> {
        let mut names = matching_names(&self.dir, &self.prefix)?;
        let outdated = || Error::InvalidCheckpoint {
            path: self.path().display().to_string(),
            step: self.step.to_string(),
        };
        if names.contains(&self.name) {
            return Err(outdated());
        }
        names.push(self.name.clone());
        if natural_sort(names).last() != Some(&self.name) {
            return Err(outdated());
        }
        Ok(())
    }

    /// Flax's `_remove_invalid_ckpts`: with `overwrite`, the checkpoints after this one go;
    /// then all but the newest `keep`, except those `keep_every_n_steps` keeps.
    fn remove_invalid_checkpoints(&self) -> Result<()> {
        let mut names = natural_sort(matching_names(&self.dir, &self.prefix)?);
        if self.overwrite {
            if let Some(at) = names.iter().position(|name| *name == self.name) {
                for newer in names.split_off(at + 1) {
                    remove_checkpoint(&self.dir.join(newer))?;
                }
            }
        }
        // Python's `names[:-keep]` is empty for keep = 0.
        if self.keep == 0 || names.len() <= self.keep {
            return Ok(());
        }
        let mut last_kept = f64::NEG_INFINITY;
        for old in &names[..names.len() - self.keep] {
            if let Some(n) = self.keep_every_n_steps {
                // Flax tests the step's truthiness: step 0 is never kept by this rule.
                let step = last_number(old).filter(|&step| step != 0.0);
                if let Some(step) = step.filter(|&step| step - last_kept >= n as f64) {
                    last_kept = step;
                    continue;
                }
            }
            remove_checkpoint(&self.dir.join(old))?;
        }
        Ok(())
    }
}

/// The buffer checkpoint files are read through: the headers between arrays come from it,
/// while arrays larger than it are read straight into their tensors.
const READ_BUFFER: usize = 64 << 10;

/// Finds and reads the checkpoint `options` selects; `None` when there is none.
fn read_checkpoint(ckpt_dir: &Path, options: &RestoreCheckpointOptions) -> Result<Option<Value>> {
    let Some(path) = find_checkpoint(ckpt_dir, options)? else { return Ok(None) };
    if is_orbax_checkpoint(&path) {
        return orbax::restore_raw(&path).map(Some);
    }
    read_file(&path).map(Some)
}

/// The state dict in the checkpoint file at `path`, checked against its checksum sidecar.
///
/// The file is read once, through a buffer, with each array's bytes going straight into its
/// tensor and the checksum computed as the bytes arrive. A file that does not match its
/// sidecar is reported as [`Error::ChecksumMismatch`] whatever the reader made of it, so the
/// reader's view is only returned once the whole file is verified.
fn read_file(path: &Path) -> Result<Value> {
    let recorded = checksum::read_sidecar(path)?;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut source = BufReader::with_capacity(READ_BUFFER, ChecksummedFile::new(file, recorded.is_some()));
    let restored = serialization::msgpack_restore_from(&mut source, len, path);
    if let Some(recorded) = recorded {
        source.into_inner().verify_rest(path, &recorded)?;
    }
    restored.map_err(|e| match e {
        Error::Format { format, message } => {
            Error::Format { format, message: format!("{}: {message}", path.display()) }
        }
        other => other,
    })
}

/// The checkpoint `options` selects (Flax's lookup in `restore_checkpoint`); `None` when
/// there is none.
fn find_checkpoint(ckpt_dir: &Path, options: &RestoreCheckpointOptions) -> Result<Option<PathBuf>> {
    let prefix = options.prefix_str();
    check_prefix(prefix)?;
    let ckpt_dir = normalize(ckpt_dir);
    Ok(Some(match options.step {
        Some(step) => {
            let path = ckpt_dir.join(format!("{prefix}{step}"));
            if !exists(&path)? {
                return Err(Error::Value(format!("Matching checkpoint not found: {}", path.display())));
            }
            path
        }
        None if !exists(&ckpt_dir)? => return Ok(None),
        None if ckpt_dir.is_dir() && !is_orbax_checkpoint(&ckpt_dir) => {
            match latest_checkpoint(&ckpt_dir, prefix)? {
                Some(path) => path,
                None => return Ok(None),
            }
        }
        None => ckpt_dir,
    }))
}

/// The checkpoints in `dir`, in natural order: Flax's `_all_checkpoints`.
fn all_checkpoints(dir: &Path, prefix: &str) -> Result<Vec<String>> {
    check_prefix(prefix)?;
    Ok(natural_sort(matching_names(dir, prefix)?))
}

/// The checkpoint names in `dir`: `prefix` followed by a number. Flax globs `<prefix>*` and
/// then drops `<prefix>tmp`, Orbax's temporary folders and the folders of multi-process
/// arrays (`*_gda`); none of those is a number, and neither is a stray `<prefix>1.bak`. None
/// for a missing directory; names that are not UTF-8 cannot be checkpoint names.
fn matching_names(dir: &Path, prefix: &str) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry.map_err(|e| Error::io(dir, e))?.file_name();
        if let Ok(name) = name.into_string() {
            if name.strip_prefix(prefix).is_some_and(is_number) {
                names.push(name);
            }
        }
    }
    Ok(names)
}

fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.contains(['/', std::path::MAIN_SEPARATOR]) {
        return Err(Error::Value(format!(
            "checkpoint prefix {prefix:?} holds a path separator; put the directory in ckpt_dir"
        )));
    }
    Ok(())
}

/// The directory as Flax's `os.path.normpath` writes it, for the returned paths: no `.`
/// components, repeated or trailing separators (`..` is kept, not resolved).
fn normalize(dir: &Path) -> PathBuf {
    let normal: PathBuf = dir.components().filter(|c| *c != Component::CurDir).collect();
    if normal.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        normal
    }
}

/// Whether `path` exists (following links); errors other than "not found" are reported.
fn exists(path: &Path) -> Result<bool> {
    path.try_exists().map_err(|e| Error::io(path, e))
}

/// Deletes a checkpoint and then its sidecar (so that a crash in between leaves a sidecar
/// without a file, which nothing reads, not a file without its sidecar).
fn remove_checkpoint(path: &Path) -> Result<()> {
    let removed = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    removed.map_err(|e| Error::io(path, e))?;
    checksum::remove(path)
}

/// The start of this library's temporary file names: hidden, so that Flax's glob
/// `<prefix>*` never takes one for a checkpoint.
fn temporary_prefix(prefix: &str) -> String {
    format!(".{prefix}tmp.")
}

/// Writes `bytes` to a new temporary file in `dir` whose name no other writer has, and
/// waits until they are on disk. The file is deleted if anything fails before it is renamed.
fn write_temporary(dir: &Path, prefix: &str, bytes: &[u8]) -> Result<tempfile::NamedTempFile> {
    let mut tmp = tempfile::Builder::new()
        .prefix(&temporary_prefix(prefix))
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    let written = tmp.write_all(bytes).and_then(|()| tmp.as_file().sync_all());
    written.map_err(|e| Error::io(tmp.path(), e))?;
    Ok(tmp)
}

/// Deletes the temporary files that writers killed mid-save left behind, and Flax's own
/// `<prefix>tmp` (which Flax's next save would replace). Called with the directory's lock
/// held, when no other writer of this library can be writing one; best effort, as a stale
/// file is never read.
fn remove_stale_temporaries(dir: &Path, prefix: &str) {
    let (start, flax_tmp) = (temporary_prefix(prefix), format!("{prefix}tmp"));
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let stale =
            entry.file_name().to_str().is_some_and(|name| name.starts_with(&start) || name == flax_tmp);
        if stale && entry.file_type().is_ok_and(|kind| kind.is_file()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Makes a rename in `dir` durable (directories can be opened and synced on Unix only).
fn sync_dir(dir: &Path) -> io::Result<()> {
    if cfg!(unix) {
        fs::File::open(dir)?.sync_all()
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_normalized_as_os_path_normpath_does() {
        for (dir, normal) in [("./a//b/", "a/b"), ("a/./b", "a/b"), (".", "."), ("", "."), ("/x/", "/x")] {
            assert_eq!(normalize(Path::new(dir)), Path::new(normal), "{dir:?}");
        }
    }
}
