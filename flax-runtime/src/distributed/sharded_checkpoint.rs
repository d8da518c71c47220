//! Sharded Orbax checkpoints of the sharded mode: every rank writes only its own pieces, into
//! its own `ocdbt.process_<rank>/` database, as a multi-host JAX program with sharded
//! `jax.Array`s does, and reads back only the chunks overlapping its pieces, under whatever
//! world size and spec it runs with now. The layout is Orbax's
//! ([`training::orbax`](crate::training::orbax), "Multi-process checkpoints"); the protocol
//! over the process group is here:
//! 1. rank 0 checks the final path and creates a temporary directory beside it, and
//!    broadcasts its name (a random number) or why it could not;
//! 2. every rank writes its part into it;
//! 3. the ranks exchange which of them wrote a database or failed (one all-reduce);
//! 4. rank 0 merges the databases, writes the top-level metadata and renames the directory
//!    to its final name, then broadcasts the outcome, so that no rank returns before the
//!    checkpoint is in place (or known to have failed).
//!
//! A rank that dies mid-save makes the others' next collective fail: nothing is renamed, and
//! the final path never holds a partial checkpoint.

use super::{Fsdp, LeafSharding};
use crate::core::errors::{Error, Result};
use crate::training::orbax::sharded::{self, Piece};
use crate::training::orbax::{self, CheckpointManager, Layout, SaveOptions};
use crate::tree::{RestoreOptions, Tree};
use std::fs;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Rank 0's answer in step 1: the temporary directory is ready, or why not.
const READY: i64 = 0;
const EXISTS: i64 = 1;
const FAILED: i64 = 2;

impl Fsdp<'_> {
    /// Saves `tree` (this rank's pieces: a sharded `TrainState`, or the parameters) as one
    /// Orbax checkpoint at `path`, each rank writing only its pieces
    /// (`StandardCheckpointer().save(path, tree)` on a multi-host JAX program). The
    /// checkpoint holds the full arrays: Orbax restores it as one process's, and
    /// [`restore_sharded`](Self::restore_sharded) on any world size. A collective: every rank
    /// calls it with the same `path` (on a file system all ranks share) and options.
    ///
    /// # Errors
    /// On every rank: [`Error::AlreadyExists`] when `path` exists and `options.force` is off;
    /// [`Error::Value`] for [`Layout::PerArray`] (multi-process checkpoints are OCDBT only),
    /// and naming the ranks that failed when one did (that rank returns its own error); the
    /// process group's when a rank dies or the timeout passes. Nothing is saved at `path`
    /// then.
    pub fn save_sharded<T: Tree>(
        &self,
        path: impl AsRef<Path>,
        tree: &T,
        options: &SaveOptions,
    ) -> Result<()> {
        if options.layout != Layout::Ocdbt {
            return Err(Error::Value(
                "sharded saves write one OCDBT database per rank, not per-array directories".into(),
            ));
        }
        let handler = serde_json::Value::from(orbax::PYTREE_HANDLER);
        self.write_sharded(path.as_ref(), options.force, None, handler, tree)
    }

    /// Saves `tree` as `step` of `manager`, sharded as [`save_sharded`](Self::save_sharded)
    /// writes it (`manager.save(step, args=ocp.args.StandardSave(tree))` on a multi-host JAX
    /// program), then rank 0 deletes the oldest steps beyond `max_to_keep`. Returns the
    /// step's directory. A collective.
    ///
    /// # Errors
    /// As [`CheckpointManager::save`], on every rank, and as
    /// [`save_sharded`](Self::save_sharded).
    pub fn save_sharded_step<T: Tree>(
        &self,
        manager: &CheckpointManager,
        step: u64,
        tree: &T,
    ) -> Result<PathBuf> {
        let path = manager.new_step_path(step)?;
        self.write_sharded(&path, false, Some(orbax::DEFAULT_ITEM), orbax::step_item_handlers(), tree)?;
        if self.group().rank() == 0 {
            manager.remove_old_steps()?;
        }
        self.group().barrier()?;
        Ok(path)
    }

    /// This rank's pieces of the Orbax checkpoint at `path`, into `target` (this rank's
    /// pieces of a tree of the checkpoint's structure, as [`shard`](Self::shard) or
    /// [`train_state`](Self::train_state) make them), strictly as
    /// [`orbax::restore`](crate::training::orbax::restore) is: the same as
    /// `fsdp.shard(&orbax::restore(path, &full_target, options)?)`, but reading only the
    /// chunks that overlap this rank's pieces. The checkpoint may have been saved by any
    /// number of ranks (or by one process, or by Orbax); the pieces are those of this
    /// group's world size and spec. No communication.
    ///
    /// # Errors
    /// As [`orbax::restore`](crate::training::orbax::restore): [`Error::Io`] naming a missing
    /// process database, [`Error::Format`] a damaged one, [`Error::StateDictMismatch`] a tree
    /// of another structure.
    pub fn restore_sharded<T: Tree>(
        &self,
        path: impl AsRef<Path>,
        target: &T,
        options: RestoreOptions,
    ) -> Result<T> {
        let (rank, world) = (self.group().rank(), self.group().world_size());
        let raw = sharded::restore_pieces(path.as_ref(), &|keys, shape| {
            let layout = self.spec().find(keys, shape, true, world)?;
            let (axis, chunk) = (layout.axis?, layout.chunk(world)?);
            Some(Piece { global_shape: layout.shape.clone(), axis, chunk, index: rank })
        })?;
        let raw = orbax::conform_empty_nodes(&target.state_dict(), raw);
        crate::tree::from_state_dict_with(target, &raw, options)
    }

    /// [`restore_sharded`](Self::restore_sharded) from `step` of `manager`.
    ///
    /// # Errors
    /// As [`restore_sharded`](Self::restore_sharded); [`Error::Io`] for a step not saved.
    pub fn restore_sharded_step<T: Tree>(
        &self,
        manager: &CheckpointManager,
        step: u64,
        target: &T,
        options: RestoreOptions,
    ) -> Result<T> {
        self.restore_sharded(manager.item_path(step)?, target, options)
    }

    /// The protocol of the module docs: the checkpoint (with its item in `item` under it,
    /// for a manager's step) at `path`, its `_CHECKPOINT_METADATA` recording `handlers`.
    fn write_sharded<T: Tree>(
        &self,
        path: &Path,
        force: bool,
        item: Option<&str>,
        handlers: serde_json::Value,
        tree: &T,
    ) -> Result<()> {
        let group = self.group();
        let nonce = fastrand::i64(0..);
        let tmp = orbax::shared_temporary_path(path, nonce as u64);
        let prepared = if group.rank() == 0 { Some(prepare(path, &tmp, force, item)) } else { None };
        let status = match &prepared {
            None | Some(Ok(())) => READY,
            Some(Err(Error::AlreadyExists { .. })) => EXISTS,
            Some(Err(_)) => FAILED,
        };
        let result = group.broadcast(&Tensor::from_slice(&[nonce, status]), 0).and_then(|sent| {
            let (nonce, status) = (sent.f_int64_value(&[0])?, sent.f_int64_value(&[1])?);
            match (prepared, status) {
                (Some(Err(e)), _) => Err(e),
                (_, EXISTS) => Err(Error::AlreadyExists { path: path.display().to_string() }),
                (_, FAILED) => Err(peers_failed(path, &[0])),
                _ => {
                    let tmp = orbax::shared_temporary_path(path, nonce as u64);
                    self.write_into(&tmp, path, force, item, handlers, tree)
                }
            }
        });
        if result.is_err() && group.rank() == 0 && status == READY {
            let _ = fs::remove_dir_all(&tmp); // best effort: the final path is untouched either way
        }
        result
    }

    /// Steps 2 to 4 of the protocol, into the temporary directory `tmp`.
    fn write_into<T: Tree>(
        &self,
        tmp: &Path,
        path: &Path,
        force: bool,
        item: Option<&str>,
        handlers: serde_json::Value,
        tree: &T,
    ) -> Result<()> {
        let group = self.group();
        let (rank, world) = (group.rank(), group.world_size());
        let dir = item.map_or_else(|| tmp.to_path_buf(), |item| tmp.join(item));
        let written = sharded::write_part(&dir, rank, &tree.state_dict(), &|keys, tensor| {
            let shape = tensor.size();
            let piece = |layout: &LeafSharding| {
                let (axis, chunk) = (layout.axis?, layout.chunk(world)?);
                Some(Piece { global_shape: layout.shape.clone(), axis, chunk, index: rank })
            };
            if let Some(layout) = self.spec().find(keys, &shape, false, world) {
                return Ok(piece(layout));
            }
            match self.spec().find(keys, &shape, true, world) {
                Some(layout) => Err(Error::Value(format!(
                    "{}: the whole {shape:?} leaf, where this rank's {:?} piece was expected",
                    keys.join("/"),
                    layout.shard_shape(world)
                ))),
                None => Ok(None),
            }
        });
        // Each rank's entry: 1 wrote a database, 0 had nothing to write, -1 failed.
        let mut outcome = vec![0i64; world as usize];
        outcome[rank as usize] = match &written {
            Ok(true) => 1,
            Ok(false) => 0,
            Err(_) => -1,
        };
        let outcome: Vec<i64> = Vec::try_from(group.psum(&Tensor::from_slice(&outcome))?)?;
        written?;
        let failed: Vec<i64> = (0..world).filter(|&r| outcome[r as usize] < 0).collect();
        if !failed.is_empty() {
            return Err(peers_failed(path, &failed));
        }
        let committed = if rank == 0 {
            let processes: Vec<i64> = (0..world).filter(|&r| outcome[r as usize] > 0).collect();
            Some(
                sharded::finish(&dir, &processes, tmp, handlers)
                    .and_then(|()| orbax::commit(tmp, path, force)),
            )
        } else {
            None
        };
        let ok = i64::from(!matches!(committed, Some(Err(_))));
        let ok = group.broadcast(&Tensor::from_slice(&[ok]), 0)?.f_int64_value(&[0])?;
        match committed {
            Some(Err(e)) => Err(e),
            _ if ok == 0 => Err(peers_failed(path, &[0])),
            _ => Ok(()),
        }
    }
}

/// Rank 0's step 1: `path` free (or `force`), the temporary directory `tmp` created, with
/// the item directory in it.
fn prepare(path: &Path, tmp: &Path, force: bool, item: Option<&str>) -> Result<()> {
    if path.exists() && !force {
        return Err(Error::AlreadyExists { path: path.display().to_string() });
    }
    if let Some(parent) = tmp.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    for dir in std::iter::once(tmp.to_path_buf()).chain(item.map(|item| tmp.join(item))) {
        fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}

/// The error of the ranks whose peers failed.
fn peers_failed(path: &Path, ranks: &[i64]) -> Error {
    Error::Value(format!(
        "sharded save of {}: rank(s) {ranks:?} failed (see their errors); nothing was saved",
        path.display()
    ))
}
