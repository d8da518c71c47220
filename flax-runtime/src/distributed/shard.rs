//! Each rank's part of a global batch: Flax's `training.common_utils.shard` and
//! `jax_utils.pad_shard_unpad` for processes instead of local devices.
//!
//! Every rank iterates the same global batches (same data, same shuffling key) and keeps its
//! own slice, so a step over `world_size` ranks sees exactly the examples one process would
//! see with the global batch. A batch whose size the world size does not divide (the last
//! batch of an evaluation) is padded with zeros and masked, as on one process (spec
//! L2293-2480): the masked metrics, summed over ranks, equal one process's.

use super::ProcessGroup;
use crate::core::errors::{Error, Result};
use crate::core::scalar_ops::ScalarOps;
use crate::data::Batch;
use crate::tree::{self, KeyPath, Tree};
use tch::{Device, Kind, Tensor};

impl ProcessGroup {
    /// This rank's slice of a global batch (`flax.training.common_utils.shard`, which splits
    /// the leading axis into `[local_device_count, batch / local_device_count]`; here the
    /// `world_size` slices go one to each process): rows `rank * b / n .. (rank + 1) * b / n`
    /// of every leaf, as views.
    ///
    /// # Errors
    /// [`Error::Value`] naming a leaf whose leading dimension the world size does not divide
    /// (pad it first: [`ProcessGroup::pad_shard`]).
    pub fn shard<T: Tree>(&self, batch: &T) -> Result<T> {
        let n = self.world_size();
        tree::tree_map_with_path(batch, |path, leaf| {
            let b = leading_dim(path, leaf)?;
            if b % n != 0 {
                return Err(Error::Value(format!(
                    "shard: the leaf at {path} has {b} examples, which {n} ranks cannot split evenly \
                     (pad the batch: pad_shard)"
                )));
            }
            Ok(leaf.f_narrow(0, self.rank() * b / n, b / n)?)
        })
    }

    /// This rank's slice of a [`Batch`], its mask (a padded last batch's) sliced alike.
    ///
    /// # Errors
    /// As [`ProcessGroup::shard`].
    pub fn shard_batch<T: Tree>(&self, batch: &Batch<T>) -> Result<Batch<T>> {
        Ok(Batch {
            data: self.shard(&batch.data)?,
            mask: batch.mask.as_ref().map(|m| self.shard(m)).transpose()?,
        })
    }

    /// The pad and shard halves of `flax.jax_utils.pad_shard_unpad`: the global `batch` of
    /// `b` examples padded with zeros to `world_size * db` examples, where `db` is the
    /// smallest per-rank batch that holds them (at least `min_device_batch`, so that every
    /// step has one shape), and this rank's slice of it, with the `bool[db]` mask of its real
    /// examples. Compute masked metrics on it and [`psum`](ProcessGroup::psum) them, as the
    /// spec's `eval_step` does with `static_return=True` (L2404-2433).
    ///
    /// # Errors
    /// [`Error::Value`] when the leaves differ in their leading dimension or have none.
    pub fn pad_shard<T: Tree>(&self, batch: &T, min_device_batch: Option<i64>) -> Result<Batch<T>> {
        let b = batch_size(batch)?;
        let n = self.world_size();
        let db = ((b + n - 1) / n).max(min_device_batch.unwrap_or(0));
        let padded = tree::tree_map(batch, |leaf| {
            let mut pad = vec![0; 2 * leaf.dim()];
            pad[2 * leaf.dim() - 1] = n * db - b; // constant_pad_nd: (before, after) from the last axis
            Ok(leaf.f_constant_pad_nd(pad.as_slice())?)
        })?;
        let mask = Tensor::try_arange(n * db, (Kind::Int64, device_of(batch)))?.try_lt(b)?;
        self.shard_batch(&Batch { data: padded, mask: Some(mask) })
    }

    /// `flax.jax_utils.pad_shard_unpad(f)(batch, min_device_batch=…)`: pads and shards the
    /// global `batch` ([`ProcessGroup::pad_shard`]), runs `f` on this rank's slice, gathers
    /// every rank's output (a tree whose leaves have the slice's leading dimension) in rank
    /// order and drops the padding: every rank gets `f` of the whole batch, `b` rows per leaf.
    ///
    /// # Errors
    /// `f`'s; as [`ProcessGroup::pad_shard`] and [`ProcessGroup::all_gather`].
    pub fn pad_shard_unpad<T: Tree, O: Tree>(
        &self,
        batch: &T,
        min_device_batch: Option<i64>,
        f: impl FnOnce(&T) -> Result<O>,
    ) -> Result<O> {
        let b = batch_size(batch)?;
        let local = self.pad_shard(batch, min_device_batch)?;
        let db = local.mask.as_ref().map_or(0, |mask| mask.size()[0]);
        let gathered = self.all_gather(&f(&local.data)?)?;
        tree::tree_map_with_path(&gathered, |path, leaf| {
            let size = leaf.size();
            if size.get(1) != Some(&db) {
                return Err(Error::Value(format!(
                    "pad_shard_unpad: the output at {path} has shape {:?} on each rank, not {db} rows (the slice's examples)",
                    &size[1..]
                )));
            }
            let rows: Vec<i64> = [size[0] * db].into_iter().chain(size[2..].iter().copied()).collect();
            Ok(leaf.f_reshape(rows)?.f_narrow(0, 0, b)?)
        })
    }
}

/// A leaf's leading (example) dimension.
fn leading_dim(path: &KeyPath<'_>, leaf: &Tensor) -> Result<i64> {
    leaf.size().first().copied().ok_or_else(|| {
        Error::Value(format!("the leaf at {path} is 0-dimensional: it has no examples to shard"))
    })
}

/// The number of examples of a batch: the leading dimension its leaves share.
fn batch_size<T: Tree>(batch: &T) -> Result<i64> {
    let mut size = None;
    batch.visit_leaves([], &mut KeyPath::new(), &mut |path, leaf, []| {
        let b = leading_dim(path, leaf)?;
        match size.replace(b) {
            Some(other) if other != b => Err(Error::Value(format!(
                "the leaves of a batch must share their leading dimension: {other}, then {b} at {path}"
            ))),
            _ => Ok(()),
        }
    })?;
    size.ok_or_else(|| Error::Value("the batch has no tensors".to_owned()))
}

/// The device of a batch's first leaf (where its mask goes).
fn device_of<T: Tree>(batch: &T) -> Device {
    tree::leaves(batch).first().map_or(Device::Cpu, |leaf| leaf.device())
}
