//! Orbax's multi-process checkpoints, the layout a multi-host JAX program writes for sharded
//! `jax.Array`s (read from what orbax-checkpoint 0.12.8 writes on 4 JAX processes on CPU):
//! - each process `i` writes its own OCDBT database `ocdbt.process_<i>/` holding only the
//!   chunks of each global zarr array that it owns; a sharded array's zarr chunk is one
//!   process's piece (`chunks` = the global shape with the split axis cut to the piece's
//!   length), so process `i` writes the chunk `…/0.i` of an array split along its second axis;
//! - the primary process (0) also writes every array's `.zarray`, the replicated arrays and
//!   scalars whole, `_METADATA`, `_strings.json`;
//! - after every process finished, the primary merges the databases into the top-level
//!   `manifest.ocdbt` and `d/` (a leaf node whose small values are copied and whose large ones
//!   refer to `ocdbt.process_<i>/d/…`) and writes `_CHECKPOINT_METADATA`.
//!
//! The low-level part, without a process group: the distributed layer (`distributed::Fsdp`)
//! agrees on the temporary directory, runs [`write_part`] on every rank, then
//! [`finish`] and [`commit`](super::commit) on rank 0.
//!
//! JAX also writes `_sharding` (each array's device mesh) and `array_metadatas/process_<i>`
//! (the write and chunk shapes of its `jax.Array`s); this library has no JAX devices to
//! name, so, as its one-process checkpoints do, it records the arrays as `np.ndarray`, which
//! Orbax restores whole (or into a target's sharding) without those files.

use super::metadata::{self, TreeKey};
use super::{encode_item, ocdbt, restore_raw_with, whole_tensor, write_file, write_item_metadata, zarr};
use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::Value;
use crate::serialization::ndarray::tensor_to_raw;
use std::fs;
use std::path::Path;
use tch::Tensor;

/// Where one process's piece of a sharded array leaf lies in the global array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    /// The global array's shape.
    pub(crate) global_shape: Vec<i64>,
    /// The axis split into pieces.
    pub(crate) axis: usize,
    /// Each piece's length along `axis` (the last pieces padded past the array's end).
    pub(crate) chunk: i64,
    /// Which piece: its rows are `index * chunk .. (index + 1) * chunk`.
    pub(crate) index: i64,
}

impl Piece {
    /// The zarr chunk shape: the global shape with the split axis cut to [`chunk`](Self::chunk).
    fn chunk_shape(&self) -> Vec<i64> {
        let mut shape = self.global_shape.clone();
        shape[self.axis] = self.chunk;
        shape
    }

    /// The rows of the global array the piece covers.
    pub(crate) fn rows(&self) -> zarr::Rows {
        zarr::Rows { axis: self.axis, range: self.index * self.chunk..(self.index + 1) * self.chunk }
    }
}

/// The directory of process `process`'s database in a checkpoint.
pub(crate) fn process_database(process: i64) -> String {
    format!("ocdbt.process_{process}")
}

/// Which piece a tensor leaf is, given its keys and the tensor (`None`: it is replicated),
/// or why it cannot be saved.
pub(crate) type PieceOf<'a> = &'a dyn Fn(&[String], &Tensor) -> Result<Option<Piece>>;

/// Writes process `process`'s part of the checkpoint of `state` (a state dict whose split
/// leaves are this process's pieces, as `piece_of` says) into the item directory `dir`: its
/// database `ocdbt.process_<process>/`, and for process 0 also the metadata files. Returns
/// whether it wrote a database (a process owning no chunk writes none).
///
/// # Errors
/// [`Error::Value`] for a piece whose shape is not its chunk's, and for what Orbax cannot
/// store (see [`super::save`]); [`Error::Io`].
pub(crate) fn write_part(dir: &Path, process: i64, state: &Value, piece_of: PieceOf) -> Result<bool> {
    let primary = process == 0;
    let item =
        encode_item(state, primary, &mut |keys, name, tensor| match piece_of(&key_strings(keys), tensor)? {
            Some(piece) => piece_entries(name, tensor, &piece, primary),
            None if primary => whole_tensor(name, tensor),
            None => Ok(Vec::new()),
        })?;
    if primary {
        write_item_metadata(dir, &item, true)?;
    }
    if item.arrays.is_empty() {
        return Ok(false);
    }
    let database = dir.join(process_database(process));
    fs::create_dir(&database).map_err(|e| Error::io(&database, e))?;
    ocdbt::write(&database, &item.arrays)?;
    Ok(true)
}

fn key_strings(keys: &[TreeKey]) -> Vec<String> {
    keys.iter().map(|(k, _)| k.clone()).collect()
}

/// The entries of one piece of the array `name`: its chunk (none for a piece wholly past the
/// array's end) and, from the primary process, the array's `.zarray`.
fn piece_entries(
    name: &str,
    tensor: &Tensor,
    piece: &Piece,
    primary: bool,
) -> Result<Vec<(String, Vec<u8>)>> {
    let chunk_shape = piece.chunk_shape();
    if tensor.size() != chunk_shape {
        return Err(Error::Value(format!(
            "{name}: a piece of shape {:?}, but the pieces of the {:?} array are {chunk_shape:?}",
            tensor.size(),
            piece.global_shape
        )));
    }
    let (dtype, data) = tensor_to_raw(tensor)?;
    let zarray = zarr::zarray(name, &piece.global_shape, &chunk_shape, dtype)?;
    let mut entries = if primary { vec![zarray] } else { Vec::new() };
    if piece.index * piece.chunk < piece.global_shape[piece.axis] {
        let mut grid = vec![0; chunk_shape.len()];
        grid[piece.axis] = piece.index;
        entries.push(zarr::encode_chunk(name, &grid, &data)?);
    }
    Ok(entries)
}

/// The primary's last step, once every process wrote its part into `dir`: merges the
/// databases of `processes` into the top-level one and writes `_CHECKPOINT_METADATA` for
/// `item_handlers` into `checkpoint_dir` (`dir` itself, or the step directory above a
/// `CheckpointManager`'s item).
///
/// # Errors
/// [`Error::Io`] for a missing database; [`Error::Format`] for a damaged one;
/// [`Error::Value`] when two hold the same key.
pub(crate) fn finish(
    dir: &Path,
    processes: &[i64],
    checkpoint_dir: &Path,
    item_handlers: serde_json::Value,
) -> Result<()> {
    let parts: Vec<String> = processes.iter().map(|&p| process_database(p)).collect();
    if !parts.is_empty() {
        ocdbt::write_merged(dir, &parts)?;
    }
    write_file(
        &checkpoint_dir.join(metadata::CHECKPOINT_METADATA),
        &metadata::checkpoint_metadata_json(item_handlers),
    )
}

/// Which piece to read of an array leaf, given its keys and its stored shape (`None`: all).
pub(crate) type PieceAt<'a> = &'a dyn Fn(&[String], &[i64]) -> Option<Piece>;

/// The checkpoint at `path` as a state dict (as [`restore_raw`](super::restore_raw)), each
/// array leaf that `piece_at` names read as that piece: only the chunks overlapping it are
/// read, and its rows past the array's end are zeros.
///
/// # Errors
/// As [`restore_raw`](super::restore_raw).
pub(crate) fn restore_pieces(path: &Path, piece_at: PieceAt) -> Result<Value> {
    restore_raw_with(path, &|keys, shape| piece_at(keys, shape).map(|piece| piece.rows()))
}
