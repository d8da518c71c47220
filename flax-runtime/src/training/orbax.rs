//! Orbax checkpoints: the directories `orbax.checkpoint` writes for a pytree, read and written
//! without Python, so checkpoints move both ways between Flax 0.12.8 programs and this library.
//!
//! ```no_run
//! use flax::training::orbax::{self, CheckpointManager, CheckpointManagerOptions, SaveOptions};
//! use flax::tree::RestoreOptions;
//! # fn run(variables: flax::Variables) -> flax::Result<()> {
//! // StandardCheckpointer().save(path, variables) / .restore(path, target)
//! orbax::save("ckpt/params", &variables, &SaveOptions::default())?;
//! let restored = orbax::restore("ckpt/params", &variables, RestoreOptions::default())?;
//! let raw = orbax::restore_raw("ckpt/params")?; // the state dict, as stored
//!
//! // CheckpointManager(dir, options=CheckpointManagerOptions(max_to_keep=2))
//! let manager = CheckpointManager::new("ckpt/run", CheckpointManagerOptions::default().max_to_keep(2));
//! manager.save(100, &variables)?;                   // ckpt/run/100/default/…
//! let step = manager.latest_step()?.expect("a step");
//! let restored = manager.restore(step, &variables, RestoreOptions::default())?;
//! # Ok(()) }
//! ```
//!
//! # The layouts read
//! - **OCDBT** (Orbax's default since 0.5, and what `StandardCheckpointer`,
//!   `PyTreeCheckpointer` and `CheckpointManager` write in 0.12.8): `_METADATA` (the tree),
//!   `manifest.ocdbt` and `d/` (an OCDBT database: tensorstore's format, read and written by
//!   hand in `orbax/ocdbt.rs` from its documentation), `ocdbt.process_<i>/` (the
//!   per-process databases the top-level manifest was merged from, reached through it) and
//!   one zarr v2 array per leaf inside the database, keyed by the leaf's dotted path
//!   (`params.Dense_0.kernel/.zarray`, `params.Dense_0.kernel/0.0`), compressed with zstd.
//! - **Per-array** (`use_ocdbt=False`, and every Orbax before 0.5): the same zarr arrays as
//!   directories of files, `<dir>/params.Dense_0.kernel/.zarray`, with `_METADATA`.
//! - **The spec's era** (Orbax 0.1–0.4, spec L4132–5047): no `_METADATA`, but a msgpack file
//!   `checkpoint` holding the tree in Flax's format, small values inline and
//!   `PLACEHOLDER://<name>` for each array stored as a zarr directory.
//!
//! Python scalars (`value_type: scalar`, 0-d arrays) restore as [`Scalar::Int`] /
//! [`Scalar::Float`] / [`Scalar::Bool`], strings (`_strings.json`) as [`Scalar::Str`],
//! `None` as [`Scalar::None`], and Orbax's empty nodes (an empty dict, list, tuple or optax's
//! `EmptyState`) as empty dicts. A `uint16`/`uint32`/`uint64` array restores as a host-side
//! [`Scalar::UintArray`], like the msgpack reader's.
//!
//! # Restoring
//! [`restore_raw`] gives the tree as Flax's state dict: sequences (lists, tuples, optax's
//! states) become dicts keyed `"0"`, `"1"`, … as `flax.serialization.to_state_dict` makes them.
//! [`restore`] fills a target through [`from_state_dict_with`](crate::tree::from_state_dict_with)
//! and is strict in the same way as [`checkpoints::restore_checkpoint`](super::checkpoints::restore_checkpoint):
//! every missing, unexpected and mis-shaped entry is listed in one
//! [`Error::StateDictMismatch`], and [`RestoreOptions`] opts into partial restores. As Orbax
//! does with a target, an empty node restores into whatever empty node the target holds
//! (`None` for an `Option`, `{}` for an empty optax state).
//!
//! # Writing
//! [`save`] and [`CheckpointManager::save`] write what Orbax 0.12.8 restores (checked by
//! `scripts/golden/orbax_check_restore.py`): `_CHECKPOINT_METADATA`, `_METADATA`, the arrays
//! as one-chunk zstd zarr v2 arrays in an OCDBT database (or per-array directories with
//! [`Layout::PerArray`]), `_strings.json` for strings. Tensors are recorded as `np.ndarray`
//! (so Orbax restores them as numpy arrays, or as `jax.Array`s when given a target; this
//! library has no JAX shardings to record). Dicts keyed `"0"`, `"1"`, … are written as
//! sequences, since that is what a state dict makes of a list or tuple. The checkpoint is
//! written into a temporary directory beside its final path and renamed into place, so a
//! crash never leaves a half-written checkpoint under the final name.
//!
//! # Multi-process checkpoints
//! A checkpoint several processes wrote (each its own `ocdbt.process_<i>/` database, merged
//! by the top-level manifest) restores whole here, its leaves read from the chunks the zarr
//! grid lists. The sharded mode writes them, each rank only its own pieces, and reads back
//! only the chunks of its pieces: [`Fsdp::save_sharded`](crate::distributed::Fsdp::save_sharded)
//! and [`Fsdp::restore_sharded`](crate::distributed::Fsdp::restore_sharded) (the layout is
//! described in `orbax/sharded.rs`).
//!
//! # Damaged checkpoints
//! Nothing read is trusted: a missing directory or file is an [`Error::Io`] naming it; a
//! truncated or altered manifest or node (magic numbers, lengths, CRC-32C checksums), a data
//! file reference outside the checkpoint, a chunk that does not decompress to its size or a
//! malformed JSON document is an [`Error::Format`] naming the file and the fault. Nothing
//! panics, and no partially restored tree is returned.
//!
//! # Not supported
//! - JAX's device placement files (`_sharding`, `array_metadatas/`): ignored when read, not
//!   written.
//! - zarr v3 arrays (`use_zarr3=True`), compressors other than zstd (blosc, gzip), Fortran
//!   order, big-endian dtypes, OCDBT's numbered manifests; each is an [`Error::Format`] saying
//!   so.
//! - Orbax's other handlers and items (`Composite` with several items, `JsonSave`, datasets):
//!   only the pytree of a checkpoint, or of a `CheckpointManager` step's `default` item.
//! - A bare array at the root (`save(path, array)`), zero-sized arrays (Orbax refuses those
//!   too), bytes and complex Python scalars.

mod manager;
mod metadata;
mod ocdbt;
pub(crate) mod sharded;
mod zarr;

pub(crate) use manager::{step_item_handlers, DEFAULT_ITEM};
pub use manager::{CheckpointManager, CheckpointManagerOptions};
pub(crate) use metadata::PYTREE_HANDLER;

use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{FrozenDict, Scalar, Value};
use crate::serialization::{msgpack_restore, ndarray::tensor_to_raw, ndarray::ArrayDtype};
use crate::tree::{RestoreOptions, Tree};
use metadata::{LeafMetadata, LeafToWrite, TreeKey};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};
use zarr::Store;

/// Where the arrays of a written checkpoint go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Layout {
    /// In one OCDBT database (Orbax's default, `use_ocdbt=True`).
    #[default]
    Ocdbt,
    /// One zarr directory per array (`use_ocdbt=False`).
    PerArray,
}

/// The options of [`save`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaveOptions {
    /// Where the arrays go.
    pub layout: Layout,
    /// Replace an existing checkpoint at the path (Orbax's `force=True`); otherwise saving
    /// over one is [`Error::AlreadyExists`].
    pub force: bool,
}

impl SaveOptions {
    /// Sets [`layout`](Self::layout).
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Sets [`force`](Self::force).
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }
}

/// Saves `tree` as an Orbax checkpoint at `path` (`StandardCheckpointer().save(path, tree)`).
///
/// # Errors
/// [`Error::AlreadyExists`] when `path` exists and `options.force` is off; [`Error::Value`]
/// for a leaf Orbax cannot store (see the module docs); [`Error::Io`].
pub fn save<T: Tree>(path: impl AsRef<Path>, tree: &T, options: &SaveOptions) -> Result<()> {
    let path = path.as_ref();
    let handler = serde_json::Value::from(metadata::PYTREE_HANDLER);
    write_atomically(path, options.force, |tmp| {
        write_item(tmp, &tree.state_dict(), options.layout)?;
        write_file(&tmp.join(metadata::CHECKPOINT_METADATA), &metadata::checkpoint_metadata_json(handler))
    })
}

/// Restores `target` from the Orbax checkpoint at `path`, strictly (see the module docs).
///
/// # Errors
/// [`Error::StateDictMismatch`] listing every difference from the target; the errors of
/// [`restore_raw`].
pub fn restore<T: Tree>(path: impl AsRef<Path>, target: &T, options: RestoreOptions) -> Result<T> {
    let raw = restore_raw(path)?;
    let raw = conform_empty_nodes(&target.state_dict(), raw);
    crate::tree::from_state_dict_with(target, &raw, options)
}

/// The tree stored in the Orbax checkpoint at `path`, as Flax's state dict (arrays as CPU
/// tensors): what `PyTreeCheckpointer().restore(path)` returns, through `to_state_dict`.
///
/// # Errors
/// [`Error::Io`] when `path` or a file it needs is missing or unreadable; [`Error::Format`]
/// when anything in it is malformed or unsupported, naming the file and the fault.
pub fn restore_raw(path: impl AsRef<Path>) -> Result<Value> {
    restore_raw_with(path.as_ref(), &|_, _| None)
}

/// Which rows of an array leaf to read, given its keys and stored shape (`None`: all of it).
pub(crate) type RowsOf<'a> = &'a dyn Fn(&[String], &[i64]) -> Option<zarr::Rows>;

/// [`restore_raw`], reading of each array leaf only the rows `rows_of` chooses.
pub(crate) fn restore_raw_with(path: &Path, rows_of: RowsOf) -> Result<Value> {
    if !path.is_dir() {
        let kind =
            if path.exists() { std::io::ErrorKind::NotADirectory } else { std::io::ErrorKind::NotFound };
        return Err(Error::io(path, std::io::Error::new(kind, "no Orbax checkpoint directory here")));
    }
    let metadata_path = path.join(metadata::METADATA);
    if metadata_path.exists() {
        let bytes = fs::read(&metadata_path).map_err(|e| Error::io(&metadata_path, e))?;
        let tree = metadata::parse_tree_metadata(&bytes).map_err(|e| in_file(&metadata_path, e))?;
        let store = open_store(path, tree.use_ocdbt)?;
        return read_leaves(path, store.as_ref(), &tree.leaves, rows_of);
    }
    let aggregate = path.join("checkpoint");
    if aggregate.is_file() {
        let bytes = fs::read(&aggregate).map_err(|e| Error::io(&aggregate, e))?;
        let tree = msgpack_restore(&bytes).map_err(|e| in_file(&aggregate, e))?;
        let store = open_store(path, path.join(ocdbt::MANIFEST).exists())?;
        return resolve_placeholders(tree, store.as_ref(), &mut Vec::new(), rows_of);
    }
    Err(Error::Format {
        format: "Orbax",
        message: format!(
            "{}: not an Orbax checkpoint (it has neither _METADATA nor a checkpoint file)",
            path.display()
        ),
    })
}

/// Whether `path` is a directory holding an Orbax checkpoint (Flax's `_is_orbax_checkpoint`
/// test, on its marker files).
pub fn is_orbax_checkpoint(path: impl AsRef<Path>) -> bool {
    let path = path.as_ref();
    path.is_dir() && ["checkpoint", metadata::METADATA, ocdbt::MANIFEST].iter().any(|m| path.join(m).exists())
}

/// Puts the file's path in front of a format error's message.
fn in_file(path: &Path, error: Error) -> Error {
    match error {
        Error::Format { format, message } => {
            Error::Format { format, message: format!("{}: {message}", path.display()) }
        }
        other => other,
    }
}

fn open_store(path: &Path, use_ocdbt: bool) -> Result<Box<dyn Store>> {
    Ok(if use_ocdbt {
        Box::new(ocdbt::Database::open(path)?)
    } else {
        Box::new(zarr::Directory(path.to_path_buf()))
    })
}

/// Builds the state dict from `_METADATA`'s leaves, reading each from the store.
fn read_leaves(path: &Path, store: &dyn Store, leaves: &[LeafMetadata], rows_of: RowsOf) -> Result<Value> {
    let mut strings = None;
    let mut root = FrozenDict::new();
    for leaf in leaves {
        let name = leaf.param_name();
        let value = match leaf.value_type.as_str() {
            "jax.Array" | "np.ndarray" => {
                let keys: Vec<String> = leaf.keys.iter().map(|(k, _)| k.clone()).collect();
                zarr::read_region(store, &name, |shape| Ok(rows_of(&keys, shape)))?
            }
            "scalar" => python_scalar(zarr::read_array(store, &name)?, &name)?,
            "string" => {
                if strings.is_none() {
                    let strings_path = path.join(metadata::STRINGS);
                    let bytes = fs::read(&strings_path).map_err(|e| Error::io(&strings_path, e))?;
                    strings = Some(metadata::parse_strings(&bytes).map_err(|e| in_file(&strings_path, e))?);
                }
                match strings.as_ref().and_then(|s| s.get(&name)) {
                    Some(serde_json::Value::String(s)) => Value::Scalar(Scalar::Str(s.clone())),
                    _ => return Err(orbax_error(path, format!("{name}: no string for it in _strings.json"))),
                }
            }
            "None" => Value::Scalar(Scalar::None),
            "Dict" | "List" | "Tuple" | "NamedTuple" => Value::Dict(FrozenDict::new()),
            other => return Err(orbax_error(path, format!("{name}: value type {other:?} is not supported"))),
        };
        insert(&mut root, &leaf.keys, value).map_err(|e| orbax_error(path, e))?;
    }
    Ok(Value::Dict(root))
}

fn orbax_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Format { format: "Orbax", message: format!("{}: {message}", path.display()) }
}

/// Inserts `value` at `keys`, creating the dicts on the way; a path that runs through a
/// leaf, or a leaf given twice, is an error.
fn insert(root: &mut FrozenDict, keys: &[TreeKey], value: Value) -> std::result::Result<(), String> {
    let (last, parents) = keys.split_last().ok_or("a leaf with no keys")?;
    let mut dict = root;
    for (key, _) in parents {
        match dict.get(key) {
            None | Some(Value::Dict(_)) => dict = dict.dict_mut(key),
            Some(_) => return Err(format!("{key} is both a leaf and a subtree")),
        }
    }
    if dict.contains_key(&last.0) {
        return Err(format!(
            "{} appears twice",
            keys.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(".")
        ));
    }
    dict.insert(last.0.clone(), value);
    Ok(())
}

/// The Python scalar Orbax stored as a 0-d array (`ScalarHandler`).
fn python_scalar(value: Value, name: &str) -> Result<Value> {
    let malformed =
        || Error::Format { format: "Orbax", message: format!("{name}: a scalar that is not a 0-d number") };
    let Value::Tensor(t) = value else { return Err(malformed()) };
    if !t.size().is_empty() {
        return Err(malformed());
    }
    Ok(Value::Scalar(match t.kind() {
        Kind::Bool => Scalar::Bool(t.f_int64_value(&[])? != 0),
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16 => Scalar::Float(t.f_double_value(&[])?),
        Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64 => {
            Scalar::Int(t.f_int64_value(&[])?)
        }
        _ => return Err(malformed()),
    }))
}

/// The spec-era tree: `PLACEHOLDER://<name>` leaves are read from the store (the rows
/// `rows_of` chooses), lists become dicts keyed by index (the state dict's form). `keys` is
/// the path to `value`.
fn resolve_placeholders(
    value: Value,
    store: &dyn Store,
    keys: &mut Vec<String>,
    rows_of: RowsOf,
) -> Result<Value> {
    let mut children = |items: Vec<(String, Value)>| -> Result<Value> {
        let mut dict = FrozenDict::new();
        for (k, v) in items {
            keys.push(k.clone());
            let v = resolve_placeholders(v, store, keys, rows_of);
            keys.pop();
            dict.insert(k, v?);
        }
        Ok(Value::Dict(dict))
    };
    Ok(match value {
        Value::Scalar(Scalar::Str(s)) if s.starts_with("PLACEHOLDER://") => {
            zarr::read_region(store, &s["PLACEHOLDER://".len()..], |shape| Ok(rows_of(keys, shape)))?
        }
        Value::Dict(dict) => children(dict.into_inner().into_iter().collect())?,
        Value::List(items) => {
            children(items.into_iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect())?
        }
        leaf => leaf,
    })
}

/// `raw` with its empty nodes (`None`, `{}`) turned into the kind of empty node `target`
/// holds at the same place, as Orbax restores empty nodes into a target's.
pub(crate) fn conform_empty_nodes(target: &Value, raw: Value) -> Value {
    let is_empty = |v: &Value| match v {
        Value::Scalar(Scalar::None) => true,
        Value::Dict(d) => d.is_empty(),
        Value::List(l) => l.is_empty(),
        _ => false,
    };
    match (target, raw) {
        (target, raw) if is_empty(target) && is_empty(&raw) => target.clone(),
        (Value::Dict(target), Value::Dict(raw)) => Value::Dict(
            raw.into_inner()
                .into_iter()
                .map(|(k, v)| {
                    let v = match target.get(&k) {
                        Some(t) => conform_empty_nodes(t, v),
                        None => v,
                    };
                    (k, v)
                })
                .collect(),
        ),
        (_, raw) => raw,
    }
}

/// Writes the item directory `dir` for the state dict `state`: arrays, `_METADATA`,
/// `_strings.json`.
fn write_item(dir: &Path, state: &Value, layout: Layout) -> Result<()> {
    let item = encode_item(state, true, &mut |_, name, t| whole_tensor(name, t))?;
    match layout {
        Layout::Ocdbt if !item.arrays.is_empty() => ocdbt::write(dir, &item.arrays)?,
        Layout::Ocdbt => {}
        Layout::PerArray => zarr::write_to_directory(
            dir,
            &item.arrays.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>(),
        )?,
    }
    write_item_metadata(dir, &item, layout == Layout::Ocdbt)
}

/// The zarr entries of the tensor leaf `name`, stored whole in one chunk.
fn whole_tensor(name: &str, t: &Tensor) -> Result<Vec<(String, Vec<u8>)>> {
    let (dtype, data) = tensor_to_raw(t)?;
    Ok(zarr::encode_array(name, &t.size(), dtype, &data)?.into())
}

/// A state dict as Orbax stores it: each leaf's metadata, the zarr entries of its arrays,
/// the strings for `_strings.json`.
struct EncodedItem {
    leaves: Vec<LeafToWrite>,
    arrays: BTreeMap<String, Vec<u8>>,
    strings: serde_json::Map<String, serde_json::Value>,
}

/// Whose entries a tensor leaf gets: `(keys, name, tensor)` to the zarr entries to write.
type TensorEntries<'a> = &'a mut dyn FnMut(&[TreeKey], &str, &Tensor) -> Result<Vec<(String, Vec<u8>)>>;

/// Encodes `state`, the arrays of tensor leaves by `tensor` and those of other leaves only
/// when `primary` (the one process that writes what is not sharded).
fn encode_item(state: &Value, primary: bool, tensor: TensorEntries) -> Result<EncodedItem> {
    let Value::Dict(root) = state else {
        return Err(Error::Value(
            "Orbax checkpoints hold a tree of dicts at the root, not a bare leaf".into(),
        ));
    };
    let mut leaves = Vec::new();
    let mut arrays = BTreeMap::new();
    let mut strings = serde_json::Map::new();
    flatten(root, &mut Vec::new(), &mut |keys, value| {
        let leaf = LeafMetadata { keys: keys.to_vec(), value_type: String::new() };
        let name = leaf.param_name();
        let mut others = |entries: [(String, Vec<u8>); 2]| {
            if primary {
                arrays.extend(entries);
            }
        };
        let value_type = match value {
            Value::Tensor(t) => {
                arrays.extend(tensor(keys, &name, t)?);
                "np.ndarray"
            }
            Value::Scalar(Scalar::UintArray(a)) => {
                others(zarr::encode_array(&name, a.shape(), ArrayDtype::Uint(a.dtype()), a.data())?);
                "np.ndarray"
            }
            Value::Scalar(scalar @ (Scalar::Int(_) | Scalar::Float(_) | Scalar::Bool(_))) => {
                let (dtype, data) = match scalar {
                    Scalar::Int(i) => (Kind::Int64, i.to_le_bytes().to_vec()),
                    Scalar::Float(x) => (Kind::Double, x.to_le_bytes().to_vec()),
                    Scalar::Bool(b) => (Kind::Bool, vec![u8::from(*b)]),
                    _ => unreachable!("matched above"),
                };
                others(zarr::encode_array(&name, &[], ArrayDtype::Tensor(dtype), &data)?);
                "scalar"
            }
            Value::Scalar(Scalar::Str(s)) => {
                strings.insert(name, serde_json::Value::from(s.as_str()));
                "string"
            }
            Value::Scalar(Scalar::None) => "None",
            Value::Dict(_) => "Dict",
            Value::List(_) => "List",
            Value::Boxed(_) => {
                return Err(Error::Value(format!(
                    "{name}: a Partitioned box in a state dict; `to_state_dict` turns it into {{value: …}}"
                )));
            }
            Value::Scalar(other) => {
                return Err(Error::Value(format!("{name}: Orbax cannot store the Python value {other:?}")));
            }
        };
        leaves.push(LeafToWrite {
            leaf: LeafMetadata { value_type: value_type.to_owned(), ..leaf },
            write_shape: None,
        });
        Ok(())
    })?;
    Ok(EncodedItem { leaves, arrays, strings })
}

/// Writes an item's `_strings.json` (when it has strings) and `_METADATA` into `dir`.
fn write_item_metadata(dir: &Path, item: &EncodedItem, use_ocdbt: bool) -> Result<()> {
    if !item.strings.is_empty() {
        write_file(
            &dir.join(metadata::STRINGS),
            serde_json::Value::Object(item.strings.clone()).to_string().as_bytes(),
        )?;
    }
    write_file(&dir.join(metadata::METADATA), &metadata::tree_metadata_json(&item.leaves, use_ocdbt))
}

/// Calls `leaf` with the keys of every leaf and empty node of `dict`, in order. A non-empty
/// dict keyed `"0"`, `"1"`, … is a sequence (a list or tuple in the state dict).
fn flatten(
    dict: &FrozenDict,
    keys: &mut Vec<TreeKey>,
    leaf: &mut dyn FnMut(&[TreeKey], &Value) -> Result<()>,
) -> Result<()> {
    let sequence = dict.keys().enumerate().all(|(i, k)| k == i.to_string());
    for (key, value) in dict.iter() {
        keys.push((key.to_owned(), sequence));
        match value {
            Value::Dict(child) if !child.is_empty() => flatten(child, keys, leaf)?,
            Value::List(items) if !items.is_empty() => {
                let child: FrozenDict =
                    items.iter().enumerate().map(|(i, v)| (i.to_string(), v.clone())).collect();
                flatten(&child, keys, leaf)?;
            }
            other => leaf(keys, other)?,
        }
        keys.pop();
    }
    Ok(())
}

/// Runs `write` on a fresh temporary directory beside `path`, then renames it to `path`
/// (after removing an existing `path` when `force` is set).
pub(crate) fn write_atomically(
    path: &Path,
    force: bool,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    if path.exists() && !force {
        return Err(Error::AlreadyExists { path: path.display().to_string() });
    }
    let parent = parent_dir(path);
    fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{}.orbax-checkpoint-tmp-", file_name(path)))
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, e))?;
    write(tmp.path())?;
    commit(&tmp.keep(), path, force)
}

/// `path`'s parent directory (`.` for a bare name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| "checkpoint".into(), |n| n.to_string_lossy().into_owned())
}

/// The temporary directory beside `path` that the processes of a multi-process save agree
/// on through `nonce` (a number the primary process chose and sent to the others), named as
/// [`write_atomically`] names its own.
pub(crate) fn shared_temporary_path(path: &Path, nonce: u64) -> PathBuf {
    parent_dir(path).join(format!("{}.orbax-checkpoint-tmp-{nonce:016x}", file_name(path)))
}

/// Renames the finished temporary directory `tmp` to `path` (after removing an existing
/// `path` when `force` is set), and syncs the parent directory.
pub(crate) fn commit(tmp: &Path, path: &Path, force: bool) -> Result<()> {
    if force && path.exists() {
        fs::remove_dir_all(path).map_err(|e| Error::io(path, e))?;
    }
    fs::rename(tmp, path).map_err(|e| {
        let _ = fs::remove_dir_all(tmp);
        Error::io(path, e)
    })?;
    let parent = parent_dir(path);
    if cfg!(unix) {
        fs::File::open(&parent).and_then(|d| d.sync_all()).map_err(|e| Error::io(&parent, e))?;
    }
    Ok(())
}

/// Writes `bytes` to a new file at `path` and waits until they are on disk.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = fs::File::create(path).map_err(|e| Error::io(path, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| Error::io(path, e))
}
