//! OCDBT, the key-value database Orbax stores its arrays in by default: read and written by
//! hand, since no Rust crate reads it.
//!
//! The format is tensorstore's, documented in `tensorstore/kvstore/ocdbt/index.rst`
//! ("Storage format"; <https://google.github.io/tensorstore/kvstore/ocdbt/index.html>), with the
//! codecs in `tensorstore/kvstore/ocdbt/format/` (`btree_codec.h`, `data_file_id_codec.cc`,
//! `indirect_data_reference_codec.h`). A database is a directory holding
//! - `manifest.ocdbt`: the configuration and the version tree, whose newest version names the
//!   root B+tree node of the current keys;
//! - data files (`d/<32 hex digits>`, or any relative path the tables name): B+tree nodes,
//!   version tree nodes and values too large to be stored inline in a leaf.
//!
//! Every manifest and node is framed the same way ("Manifest header", "B+tree node outer
//! header", "… footer"): a big-endian `u32` magic number, the little-endian `u64` length of
//! the whole encoding, a varint format version (0), a varint compression (0 none, 1 zstd),
//! the body, and the CRC-32C of everything before it (little-endian `u32`). Integers in the
//! body are unsigned LEB128 varints unless stated otherwise.
//!
//! Reading follows the newest version's root through interior nodes down to the leaves and
//! keeps, for each key, where its value is; values are read when asked for. Only the
//! *single-file* manifest kind (manifest kind 0, what Orbax writes) is read; the *numbered*
//! kind is reported as unsupported. Writing produces one data file holding the out-of-line
//! values and one leaf node, and a single-file manifest with one version.

use crate::core::errors::{Error, Result};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The manifest's file name in the database directory.
pub(crate) const MANIFEST: &str = "manifest.ocdbt";
/// "Manifest header": `magic_value`.
const MANIFEST_MAGIC: u32 = 0x0cdb_3a2a;
/// "B+tree node outer header": `magic_value`.
const BTREE_NODE_MAGIC: u32 = 0x0cdb_20de;
/// The largest value Orbax stores inline in a leaf (its `ocdbt_max_inline_value_bytes`
/// default, 1024); larger values go to the data file.
const MAX_INLINE_VALUE_BYTES: u64 = 1024;
/// Orbax's `max_decoded_node_bytes` (100 MB): nothing written decodes to more, and nothing
/// read may (the bound keeps a corrupt or hostile node from decompressing without limit).
const MAX_DECODED_NODE_BYTES: u64 = 100_000_000;
/// tensorstore's `kMaxNodeArity`.
const MAX_NODE_ARITY: u64 = 1 << 20;
/// The version tree's arity (log 2) tensorstore configures by default.
const VERSION_TREE_ARITY_LOG2: u8 = 4;

/// An error about the database at `path`.
fn corrupt(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Format { format: "OCDBT", message: format!("{}: {message}", path.display()) }
}

/// A byte cursor over an encoded body; errors are plain messages, given a path by the caller.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

type Parse<T> = std::result::Result<T, String>;

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    fn bytes(&mut self, n: u64) -> Parse<&'a [u8]> {
        let end =
            usize::try_from(n).ok().and_then(|n| self.pos.checked_add(n)).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| format!("truncated: {n} bytes needed at offset {}", self.pos))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Parse<u8> {
        Ok(self.bytes(1)?[0])
    }

    fn u64_le(&mut self) -> Parse<u64> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().expect("8 bytes")))
    }

    /// An unsigned LEB128 varint of at most 64 bits (tensorstore's `ReadVarint64`).
    fn varint(&mut self) -> Parse<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err("varint overflows 64 bits".into());
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    /// Checks that the whole body was read.
    fn finish(&self) -> Parse<()> {
        match self.data.len() - self.pos {
            0 => Ok(()),
            trailing => Err(format!("{trailing} trailing bytes")),
        }
    }

    /// `n` varints (a column of the encoding).
    fn varints(&mut self, n: usize) -> Parse<Vec<u64>> {
        (0..n).map(|_| self.varint()).collect()
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The body of a framed encoding (see the module docs), checked and decompressed.
fn unframe(encoded: &[u8], magic: u32) -> Parse<Vec<u8>> {
    if encoded.len() < 18 {
        return Err(format!("{} bytes is too short for a header and a checksum", encoded.len()));
    }
    let (framed, crc) = encoded.split_at(encoded.len() - 4);
    let found_magic = u32::from_be_bytes(framed[..4].try_into().expect("4 bytes"));
    if found_magic != magic {
        return Err(format!("magic number {found_magic:#010x}, expected {magic:#010x}"));
    }
    let mut cursor = Cursor::new(framed);
    cursor.pos = 4;
    let length = cursor.u64_le()?;
    if length != encoded.len() as u64 {
        return Err(format!("header says {length} bytes, found {}", encoded.len()));
    }
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(framed);
    if stored != computed {
        return Err(format!("CRC-32C {computed:#010x} does not match the stored {stored:#010x}"));
    }
    let version = cursor.varint()?;
    if version != 0 {
        return Err(format!("format version {version}, only 0 exists"));
    }
    let compression = cursor.varint()?;
    let body = &framed[cursor.pos..];
    match compression {
        0 => Ok(body.to_vec()),
        1 => zstd_decompress(body, MAX_DECODED_NODE_BYTES),
        other => Err(format!("unknown compression format {other}")),
    }
}

/// Decompresses one zstd stream of at most `limit` bytes.
pub(crate) fn zstd_decompress(data: &[u8], limit: u64) -> Parse<Vec<u8>> {
    let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| format!("zstd: {e}"))?;
    let mut out = Vec::new();
    decoder.take(limit + 1).read_to_end(&mut out).map_err(|e| format!("zstd: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("decompresses to more than {limit} bytes"));
    }
    Ok(out)
}

/// The framed encoding of `body`, zstd-compressed.
fn frame(body: &[u8], magic: u32) -> Result<Vec<u8>> {
    let compressed = zstd::bulk::compress(body, 0).map_err(|e| Error::Value(format!("zstd: {e}")))?;
    let mut out = Vec::with_capacity(compressed.len() + 18);
    out.extend_from_slice(&magic.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    put_varint(&mut out, 0);
    put_varint(&mut out, 1);
    out.extend_from_slice(&compressed);
    let length = out.len() as u64 + 4;
    out[4..12].copy_from_slice(&length.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// A data file named in a table: its path from the database root, and the transitive path
/// that the nodes read from it resolve their own tables against ("Data file table format").
#[derive(Debug, Clone)]
struct DataFile {
    path: String,
    transitive: String,
}

/// "Data file table format": prefix-compressed `(base_path, relative_path)` pairs.
fn read_data_file_table(cursor: &mut Cursor, transitive: &str) -> Parse<Vec<DataFile>> {
    let num_files = cursor.varint()?;
    let n =
        usize::try_from(num_files).ok().filter(|&n| n <= cursor.data.len()).ok_or("too many data files")?;
    let prefix_lengths = cursor.varints(n.saturating_sub(1))?;
    let suffix_lengths = cursor.varints(n)?;
    let base_lengths = cursor.varints(n)?;
    let mut files: Vec<DataFile> = Vec::with_capacity(n);
    let mut previous: Vec<u8> = Vec::new();
    for i in 0..n {
        let prefix = if i == 0 { 0 } else { prefix_lengths[i - 1] };
        let prefix = usize::try_from(prefix).ok().filter(|&p| p <= previous.len()).ok_or_else(|| {
            format!("data file {i}: common prefix {prefix} is longer than the previous path")
        })?;
        let mut path = previous[..prefix].to_vec();
        path.extend_from_slice(cursor.bytes(suffix_lengths[i])?);
        let base = usize::try_from(base_lengths[i])
            .ok()
            .filter(|&b| b <= path.len())
            .ok_or_else(|| format!("data file {i}: base path length {} exceeds the path", base_lengths[i]))?;
        let text =
            String::from_utf8(path.clone()).map_err(|_| format!("data file {i}: path is not UTF-8"))?;
        files.push(DataFile {
            path: format!("{transitive}{text}"),
            transitive: format!("{transitive}{}", &text[..base]),
        });
        previous = path;
    }
    Ok(files)
}

/// Writes a data file table of `(path, base_path_length)` pairs.
fn write_data_file_table(out: &mut Vec<u8>, files: &[(&str, usize)]) {
    put_varint(out, files.len() as u64);
    // Paths given here share no prefix worth encoding: each is stored whole.
    for _ in 1..files.len() {
        put_varint(out, 0);
    }
    for (path, _) in files {
        put_varint(out, path.len() as u64);
    }
    for (_, base) in files {
        put_varint(out, *base as u64);
    }
    for (path, _) in files {
        out.extend_from_slice(path.as_bytes());
    }
}

/// Where a B+tree node or a value lies: a byte range of a data file.
#[derive(Debug, Clone)]
struct Location {
    file: DataFile,
    offset: u64,
    length: u64,
}

/// Where a key's value is.
#[derive(Debug, Clone)]
enum ValueRef {
    Inline(Vec<u8>),
    OutOfLine(Location),
}

/// An opened database: every key of its newest version and where its value is.
pub(crate) struct Database {
    root: PathBuf,
    entries: BTreeMap<Vec<u8>, ValueRef>,
    /// Nodes read so far, bounded by [`MAX_NODES`].
    nodes_read: usize,
}

/// The most B+tree nodes one database may take to read: a corrupt or hostile interior node
/// could otherwise point at the same child over and over, level after level.
const MAX_NODES: usize = 1 << 20;

impl Database {
    /// Opens the database in `root` (the directory holding `manifest.ocdbt`), reading its
    /// manifest and every B+tree node of its newest version.
    ///
    /// # Errors
    /// [`Error::Io`] for a missing or unreadable file; [`Error::Format`] naming the file and
    /// what is wrong for anything malformed (bad magic number, checksum, truncation,
    /// unsupported manifest kind, keys out of order, references outside the database, …).
    pub(crate) fn open(root: &Path) -> Result<Self> {
        let manifest_path = root.join(MANIFEST);
        let bytes = fs::read(&manifest_path).map_err(|e| Error::io(&manifest_path, e))?;
        let root_node = read_manifest(&bytes).map_err(|e| corrupt(&manifest_path, e))?;
        let mut database = Database { root: root.to_path_buf(), entries: BTreeMap::new(), nodes_read: 0 };
        if let Some((location, height)) = root_node {
            database.visit(&location, height, Vec::new())?;
        }
        Ok(database)
    }

    /// The keys, in order.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.keys().map(Vec::as_slice)
    }

    /// The value stored under `key`, if any.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.entries.get(key) {
            None => Ok(None),
            Some(ValueRef::Inline(value)) => Ok(Some(value.clone())),
            Some(ValueRef::OutOfLine(location)) => self.read(location).map(Some),
        }
    }

    /// The bytes at `location`, checked to lie inside the database and its file.
    fn read(&self, location: &Location) -> Result<Vec<u8>> {
        let path = self.data_file_path(&location.file.path)?;
        let mut file = fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let size = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let end = location.offset.checked_add(location.length);
        if end.is_none_or(|end| end > size) {
            return Err(corrupt(
                &path,
                format!(
                    "{} bytes at offset {} lie beyond the file's {size} bytes",
                    location.length, location.offset
                ),
            ));
        }
        let mut out = vec![0; location.length as usize];
        file.seek(SeekFrom::Start(location.offset)).map_err(|e| Error::io(&path, e))?;
        file.read_exact(&mut out).map_err(|e| Error::io(&path, e))?;
        Ok(out)
    }

    /// A data file's path, which must stay inside the database's directory.
    fn data_file_path(&self, relative: &str) -> Result<PathBuf> {
        let relative = Path::new(relative);
        if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(corrupt(&self.root, format!("data file path {relative:?} leaves the database")));
        }
        Ok(self.root.join(relative))
    }

    /// Reads the node at `location`, of `height`, whose keys all start with `prefix`, and
    /// records the entries of the leaves below it.
    fn visit(&mut self, location: &Location, height: u8, prefix: Vec<u8>) -> Result<()> {
        let path = self.data_file_path(&location.file.path)?;
        self.nodes_read += 1;
        if self.nodes_read > MAX_NODES {
            return Err(corrupt(&path, format!("more than {MAX_NODES} B+tree nodes to read")));
        }
        let encoded = self.read(location)?;
        let node_error =
            |e: String| corrupt(&path, format!("B+tree node at offset {}: {e}", location.offset));
        let body = unframe(&encoded, BTREE_NODE_MAGIC).map_err(node_error)?;
        let node = read_btree_node(&body, &location.file.transitive, height).map_err(node_error)?;
        match node {
            Node::Leaf(entries) => {
                for (key, value) in entries {
                    self.entries.insert([prefix.as_slice(), &key].concat(), value);
                }
            }
            Node::Interior(children) => {
                for (key_prefix, child) in children {
                    self.visit(&child, height - 1, [prefix.as_slice(), &key_prefix].concat())?;
                }
            }
        }
        Ok(())
    }
}

/// The newest version's root node and its height, from a manifest ("Manifest format");
/// `None` for an empty database.
fn read_manifest(bytes: &[u8]) -> Parse<Option<(Location, u8)>> {
    let body = unframe(bytes, MANIFEST_MAGIC)?;
    let mut cursor = Cursor::new(&body);
    cursor.bytes(16)?; // uuid
    let manifest_kind = cursor.varint()?;
    if manifest_kind != 0 {
        return Err(format!(
            "manifest kind {manifest_kind} (numbered manifest files) is not supported, only kind 0 (single file)"
        ));
    }
    cursor.varint()?; // max_inline_value_bytes
    cursor.varint()?; // max_decoded_node_bytes
    cursor.byte()?; // version_tree_arity_log2
    match cursor.varint()? {
        0 => {}
        1 => {
            cursor.bytes(4)?; // zstd level
        }
        other => return Err(format!("unknown compression method {other}")),
    }
    let files = read_data_file_table(&mut cursor, "")?;
    // "Version tree leaf node entries format": column by column.
    let n = usize::try_from(cursor.varint()?).ok().filter(|&n| n <= body.len()).ok_or("too many versions")?;
    if n == 0 {
        return Err("the manifest references no version".into());
    }
    cursor.varints(n)?; // generation_number
    let heights = cursor.bytes(n as u64)?.to_vec();
    let file_ids = cursor.varints(n)?;
    let offsets = cursor.varints(n)?;
    let lengths = cursor.varints(n)?;
    let num_keys = cursor.varints(n)?;
    let newest = n - 1;
    if num_keys[newest] == 0 {
        return Ok(None);
    }
    let file = data_file(&files, file_ids[newest])?;
    Ok(Some((Location { file, offset: offsets[newest], length: lengths[newest] }, heights[newest])))
}

fn data_file(files: &[DataFile], id: u64) -> Parse<DataFile> {
    usize::try_from(id)
        .ok()
        .and_then(|id| files.get(id))
        .cloned()
        .ok_or_else(|| format!("data file {id} is not in the table of {} files", files.len()))
}

enum Node {
    /// Keys relative to the node's prefix, and their values.
    Leaf(Vec<(Vec<u8>, ValueRef)>),
    /// Each child's key prefix relative to the node's, and where the child is.
    Interior(Vec<(Vec<u8>, Location)>),
}

/// A decoded B+tree node body ("B+tree node inner header" and the entry arrays).
fn read_btree_node(body: &[u8], transitive: &str, expected_height: u8) -> Parse<Node> {
    let mut cursor = Cursor::new(body);
    let height = cursor.byte()?;
    if height != expected_height {
        return Err(format!("height {height}, but its parent expects {expected_height}"));
    }
    let files = read_data_file_table(&mut cursor, transitive)?;
    let n = cursor.varint()?;
    if n == 0 || n > MAX_NODE_ARITY || n > body.len() as u64 {
        return Err(format!("{n} entries"));
    }
    let n = n as usize;
    let prefix_lengths = cursor.varints(n - 1)?;
    let suffix_lengths = cursor.varints(n)?;
    let subtree_prefix_lengths = if height > 0 { cursor.varints(n)? } else { Vec::new() };
    let keys = read_keys(&mut cursor, &prefix_lengths, &suffix_lengths)?;
    if height == 0 {
        let entries = read_leaf_values(&mut cursor, &files, keys)?;
        return cursor.finish().map(|()| Node::Leaf(entries));
    }
    let file_ids = cursor.varints(n)?;
    let offsets = cursor.varints(n)?;
    let lengths = cursor.varints(n)?;
    let mut children = Vec::with_capacity(n);
    for (i, key) in keys.into_iter().enumerate() {
        let common = usize::try_from(subtree_prefix_lengths[i]).ok().filter(|&c| c <= key.len());
        let common = common.ok_or_else(|| format!("child {i}: subtree prefix longer than its key"))?;
        let file = data_file(&files, file_ids[i])?;
        children.push((key[..common].to_vec(), Location { file, offset: offsets[i], length: lengths[i] }));
    }
    // The statistics columns (num_keys, num_tree_bytes, num_indirect_value_bytes) follow.
    for _ in 0..3 {
        cursor.varints(n)?;
    }
    cursor.finish().map(|()| Node::Interior(children))
}

/// The prefix-compressed keys of a node, checked to be strictly increasing.
fn read_keys(cursor: &mut Cursor, prefix_lengths: &[u64], suffix_lengths: &[u64]) -> Parse<Vec<Vec<u8>>> {
    let mut keys: Vec<Vec<u8>> = Vec::with_capacity(suffix_lengths.len());
    for (i, &suffix) in suffix_lengths.iter().enumerate() {
        let mut key = match keys.last() {
            None => Vec::new(),
            Some(previous) => {
                let prefix = usize::try_from(prefix_lengths[i - 1]).ok().filter(|&p| p <= previous.len());
                let prefix = prefix.ok_or_else(|| format!("key {i}: prefix exceeds the previous key"))?;
                previous[..prefix].to_vec()
            }
        };
        key.extend_from_slice(cursor.bytes(suffix)?);
        if keys.last().is_some_and(|previous| *previous >= key) {
            return Err(format!("key {i} is out of order"));
        }
        keys.push(key);
    }
    Ok(keys)
}

/// "Leaf B+tree node format": the value columns after the keys.
fn read_leaf_values(
    cursor: &mut Cursor,
    files: &[DataFile],
    keys: Vec<Vec<u8>>,
) -> Parse<Vec<(Vec<u8>, ValueRef)>> {
    let n = keys.len();
    let lengths = cursor.varints(n)?;
    let out_of_line: Vec<bool> = (0..n)
        .map(|i| match cursor.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            kind => Err(format!("value {i}: kind {kind} with length {}", lengths[i])),
        })
        .collect::<Parse<_>>()?;
    let indirect = out_of_line.iter().filter(|&&o| o).count();
    let file_ids = cursor.varints(indirect)?;
    let offsets = cursor.varints(indirect)?;
    let mut indirect_index = 0;
    let mut entries = Vec::with_capacity(n);
    for (i, key) in keys.into_iter().enumerate() {
        let value = if out_of_line[i] {
            let file = data_file(files, file_ids[indirect_index])?;
            let location = Location { file, offset: offsets[indirect_index], length: lengths[i] };
            indirect_index += 1;
            ValueRef::OutOfLine(location)
        } else {
            ValueRef::Inline(cursor.bytes(lengths[i])?.to_vec())
        };
        entries.push((key, value));
    }
    Ok(entries)
}

/// Writes a database holding `entries` into `root` (which must exist): one data file
/// `d/<random>` with the values over 1024 bytes and one leaf node, then `manifest.ocdbt`.
///
/// # Errors
/// [`Error::Io`]; [`Error::Value`] when the leaf would decode to more than Orbax's
/// `max_decoded_node_bytes` (100 MB of keys and inline values).
pub(crate) fn write(root: &Path, entries: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    let data_path = format!("d/{:032x}", fastrand::u128(..));
    let mut data = Vec::new();
    let mut stored = BTreeMap::new();
    for (key, value) in entries {
        let value = if value.len() as u64 > MAX_INLINE_VALUE_BYTES {
            let offset = data.len() as u64;
            data.extend_from_slice(value);
            Stored::Indirect { file: 0, offset, length: value.len() as u64 }
        } else {
            Stored::Inline(value)
        };
        stored.insert(key.as_bytes(), value);
    }
    let table = [(data_path.as_str(), 0)];
    let leaf = leaf_node(&stored, if data.is_empty() { &[] } else { &table });
    write_with_root(root, &data_path, data, &leaf, &stored)
}

/// Writes the database in `root` that tensorstore merges from the databases in its
/// subdirectories `parts` (Orbax's top-level database of a multi-process checkpoint, over
/// `ocdbt.process_<i>/`): one leaf node in `d/<random>` holding every key of the parts,
/// small values copied inline and large ones referring to the parts' own data files
/// (`ocdbt.process_1/d/…`, base path `ocdbt.process_1/`), then `manifest.ocdbt`.
///
/// # Errors
/// The errors of [`Database::open`] for a missing or damaged part; [`Error::Value`] for a
/// key that two parts hold, or a leaf over `max_decoded_node_bytes`; [`Error::Io`].
pub(crate) fn write_merged(root: &Path, parts: &[String]) -> Result<()> {
    let databases = parts.iter().map(|part| Database::open(&root.join(part))).collect::<Result<Vec<_>>>()?;
    let in_part = |part: &str, location: &Location| format!("{part}/{}", location.file.path);
    let mut paths = std::collections::BTreeSet::new();
    for (part, database) in parts.iter().zip(&databases) {
        for value in database.entries.values() {
            if let ValueRef::OutOfLine(location) = value {
                paths.insert((in_part(part, location), part.len() + 1));
            }
        }
    }
    let files: Vec<(String, usize)> = paths.into_iter().collect();
    let file_id = |path: &str| files.iter().position(|(p, _)| p == path).expect("collected above") as u64;
    let mut stored = BTreeMap::new();
    for (part, database) in parts.iter().zip(&databases) {
        for (key, value) in &database.entries {
            let value = match value {
                ValueRef::Inline(bytes) => Stored::Inline(bytes),
                ValueRef::OutOfLine(location) => Stored::Indirect {
                    file: file_id(&in_part(part, location)),
                    offset: location.offset,
                    length: location.length,
                },
            };
            if stored.insert(key.as_slice(), value).is_some() {
                return Err(Error::Value(format!(
                    "{}: the key {:?} is in two of the databases merged",
                    root.display(),
                    String::from_utf8_lossy(key)
                )));
            }
        }
    }
    let table: Vec<(&str, usize)> = files.iter().map(|(p, b)| (p.as_str(), *b)).collect();
    let leaf = leaf_node(&stored, &table);
    write_with_root(root, &format!("d/{:032x}", fastrand::u128(..)), Vec::new(), &leaf, &stored)
}

/// Writes `data` followed by the framed `leaf` (the root node, holding `entries`) to
/// `data_path`, and the manifest naming it.
fn write_with_root(
    root: &Path,
    data_path: &str,
    mut data: Vec<u8>,
    leaf: &[u8],
    entries: &BTreeMap<&[u8], Stored>,
) -> Result<()> {
    if leaf.len() as u64 > MAX_DECODED_NODE_BYTES {
        return Err(Error::Value(format!(
            "{} keys and inline values need {} bytes, more than one OCDBT node holds",
            entries.len(),
            leaf.len()
        )));
    }
    let indirect_bytes: u64 = entries
        .values()
        .map(|v| match v {
            Stored::Indirect { length, .. } => *length,
            Stored::Inline(_) => 0,
        })
        .sum();
    let node_offset = data.len() as u64;
    let node = frame(leaf, BTREE_NODE_MAGIC)?;
    data.extend_from_slice(&node);
    let data_dir = root.join("d");
    fs::create_dir_all(&data_dir).map_err(|e| Error::io(&data_dir, e))?;
    super::write_file(&root.join(data_path), &data)?;
    let root_node = RootStats {
        offset: node_offset,
        length: node.len() as u64,
        height: 0,
        num_keys: entries.len() as u64,
    };
    let body = manifest_body(data_path, &root_node, node.len() as u64, indirect_bytes);
    super::write_file(&root.join(MANIFEST), &frame(&body, MANIFEST_MAGIC)?)
}

/// How a value is stored in a leaf being written.
enum Stored<'a> {
    Inline(&'a [u8]),
    /// In the data file `file` of the leaf's table.
    Indirect {
        file: u64,
        offset: u64,
        length: u64,
    },
}

/// Where the root node of the one version written is, in the data file.
struct RootStats {
    offset: u64,
    length: u64,
    height: u8,
    num_keys: u64,
}

/// A single-file manifest with one version, generation 1, whose root is `root` in
/// `data_path` ("Manifest format", "Version tree leaf node entries format").
fn manifest_body(data_path: &str, root: &RootStats, tree_bytes: u64, indirect_bytes: u64) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&fastrand::u128(..).to_le_bytes()); // uuid
    put_varint(&mut body, 0); // manifest_kind: single
    put_varint(&mut body, MAX_INLINE_VALUE_BYTES);
    put_varint(&mut body, MAX_DECODED_NODE_BYTES);
    body.push(VERSION_TREE_ARITY_LOG2);
    put_varint(&mut body, 1); // compression_method: zstd
    body.extend_from_slice(&0i32.to_le_bytes()); // zstd level
    write_data_file_table(&mut body, &[(data_path, 0)]);
    let commit_time = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    put_varint(&mut body, 1); // num_versions
    put_varint(&mut body, 1); // generation_number
    body.push(root.height);
    for field in [0, root.offset, root.length, root.num_keys, tree_bytes, indirect_bytes] {
        put_varint(&mut body, field);
    }
    body.extend_from_slice(&commit_time.to_le_bytes());
    put_varint(&mut body, 0); // no version tree nodes
    body
}

/// The body of a leaf holding `entries` (sorted), whose indirect values lie in `files`
/// (`(path, base_path_length)`).
fn leaf_node(entries: &BTreeMap<&[u8], Stored>, files: &[(&str, usize)]) -> Vec<u8> {
    let mut out = vec![0]; // height
    write_data_file_table(&mut out, files);
    put_varint(&mut out, entries.len() as u64);
    let keys: Vec<&[u8]> = entries.keys().copied().collect();
    let common = |a: &[u8], b: &[u8]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
    for pair in keys.windows(2) {
        put_varint(&mut out, common(pair[0], pair[1]) as u64);
    }
    let prefixes: Vec<usize> =
        (0..keys.len()).map(|i| if i == 0 { 0 } else { common(keys[i - 1], keys[i]) }).collect();
    for (key, prefix) in keys.iter().zip(&prefixes) {
        put_varint(&mut out, (key.len() - prefix) as u64);
    }
    for (key, prefix) in keys.iter().zip(&prefixes) {
        out.extend_from_slice(&key[*prefix..]);
    }
    for value in entries.values() {
        let length = match value {
            Stored::Inline(bytes) => bytes.len() as u64,
            Stored::Indirect { length, .. } => *length,
        };
        put_varint(&mut out, length);
    }
    for value in entries.values() {
        out.push(u8::from(matches!(value, Stored::Indirect { .. })));
    }
    let indirect: Vec<(u64, u64)> = entries
        .values()
        .filter_map(|v| match v {
            Stored::Indirect { file, offset, .. } => Some((*file, *offset)),
            Stored::Inline(_) => None,
        })
        .collect();
    for (file, _) in &indirect {
        put_varint(&mut out, *file);
    }
    for (_, offset) in &indirect {
        put_varint(&mut out, *offset);
    }
    for value in entries.values() {
        if let Stored::Inline(bytes) = value {
            out.extend_from_slice(bytes);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_overflow_is_an_error() {
        for value in [0, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(Cursor::new(&out).varint(), Ok(value));
        }
        assert!(Cursor::new(&[0xff; 10]).varint().is_err());
        assert!(Cursor::new(&[0x80]).varint().is_err());
    }

    #[test]
    fn frames_round_trip_and_damage_is_detected() {
        let framed = frame(b"hello", BTREE_NODE_MAGIC).unwrap();
        assert_eq!(unframe(&framed, BTREE_NODE_MAGIC).unwrap(), b"hello");
        assert!(unframe(&framed, MANIFEST_MAGIC).unwrap_err().contains("magic"));
        let mut flipped = framed.clone();
        flipped[15] ^= 1;
        assert!(unframe(&flipped, BTREE_NODE_MAGIC).unwrap_err().contains("CRC-32C"));
        assert!(unframe(&framed[..framed.len() - 1], BTREE_NODE_MAGIC).unwrap_err().contains("header says"));
    }

    #[test]
    fn written_databases_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let entries: BTreeMap<String, Vec<u8>> = [
            ("a/.zarray".to_owned(), b"{}".to_vec()),
            ("a/0".to_owned(), vec![7; 5000]),
            ("ab/0".to_owned(), vec![1, 2, 3]),
            ("b/0.0".to_owned(), vec![9; 2048]),
        ]
        .into();
        write(dir.path(), &entries).unwrap();
        let database = Database::open(dir.path()).unwrap();
        assert_eq!(
            database.keys().collect::<Vec<_>>(),
            entries.keys().map(|k| k.as_bytes()).collect::<Vec<_>>()
        );
        for (key, value) in &entries {
            assert_eq!(database.get(key.as_bytes()).unwrap().as_ref(), Some(value));
        }
        assert_eq!(database.get(b"missing").unwrap(), None);
    }

    #[test]
    fn merged_databases_refer_to_their_parts() {
        let dir = tempfile::tempdir().unwrap();
        let parts = ["ocdbt.process_0".to_owned(), "ocdbt.process_1".to_owned()];
        let part0: BTreeMap<String, Vec<u8>> =
            [("a/.zarray".to_owned(), b"{}".to_vec()), ("a/0".to_owned(), vec![7; 5000])].into();
        let part1: BTreeMap<String, Vec<u8>> =
            [("a/1".to_owned(), vec![8; 3000]), ("b/0".to_owned(), vec![1, 2])].into();
        for (part, entries) in parts.iter().zip([&part0, &part1]) {
            fs::create_dir(dir.path().join(part)).unwrap();
            write(&dir.path().join(part), entries).unwrap();
        }
        write_merged(dir.path(), &parts).unwrap();
        let database = Database::open(dir.path()).unwrap();
        assert_eq!(database.keys().collect::<Vec<_>>(), [&b"a/.zarray"[..], b"a/0", b"a/1", b"b/0"]);
        for (key, value) in part0.iter().chain(&part1) {
            assert_eq!(database.get(key.as_bytes()).unwrap().as_ref(), Some(value));
        }
        // A key in two parts is refused.
        write(&dir.path().join(&parts[1]), &part0).unwrap();
        assert!(write_merged(dir.path(), &parts).unwrap_err().to_string().contains("two of"));
    }

    #[test]
    fn interior_nodes_prefix_their_childrens_keys() {
        // Two leaves under one interior node; the second child's subtree prefix is "b/", so
        // its leaf stores only "0" and "1" (what tensorstore writes for large databases).
        let left: BTreeMap<&[u8], Stored> =
            [(&b"a/0"[..], Stored::Inline(&[1])), (b"a/1", Stored::Inline(&[2]))].into();
        let right: BTreeMap<&[u8], Stored> =
            [(&b"0"[..], Stored::Inline(&[3])), (b"1", Stored::Inline(&[4]))].into();
        let (l, r) = (
            frame(&leaf_node(&left, &[]), BTREE_NODE_MAGIC).unwrap(),
            frame(&leaf_node(&right, &[]), BTREE_NODE_MAGIC).unwrap(),
        );
        let mut body = vec![1];
        write_data_file_table(&mut body, &[("d/x", 0)]);
        put_varint(&mut body, 2);
        for field in [0, 3, 3, 0, 2] {
            put_varint(&mut body, field); // key prefix, suffix lengths, subtree prefix lengths
        }
        body.extend_from_slice(b"a/0b/0");
        for field in [0, 0, 0, l.len() as u64, l.len() as u64, r.len() as u64, 2, 2, 1, 1, 0, 0] {
            put_varint(&mut body, field); // file ids, offsets, lengths, statistics
        }
        let root = frame(&body, BTREE_NODE_MAGIC).unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        super::super::write_file(&dir.path().join("d/x"), &[l.clone(), r.clone(), root.clone()].concat())
            .unwrap();
        let stats = RootStats {
            offset: (l.len() + r.len()) as u64,
            length: root.len() as u64,
            height: 1,
            num_keys: 4,
        };
        let manifest = frame(&manifest_body("d/x", &stats, 0, 0), MANIFEST_MAGIC).unwrap();
        super::super::write_file(&dir.path().join(MANIFEST), &manifest).unwrap();
        let database = Database::open(dir.path()).unwrap();
        let keys: Vec<&[u8]> = database.keys().collect();
        assert_eq!(keys, [&b"a/0"[..], b"a/1", b"b/0", b"b/1"]);
        assert_eq!(database.get(b"b/1").unwrap(), Some(vec![4]));
    }
}
