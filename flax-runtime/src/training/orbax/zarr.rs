//! Zarr v2 arrays, as Orbax writes each leaf through tensorstore's `zarr` driver: a `.zarray`
//! JSON document and C-order chunks named by their grid indices (`0.0`), in a key-value store
//! (an OCDBT database, or a directory per array).
//!
//! The format is the Zarr storage specification version 2
//! (<https://zarr-specs.readthedocs.io/en/latest/v2/v2.0.html>, "Metadata", "Chunks"). Only
//! the part Orbax and tensorstore use is read: little-endian or single-byte dtypes (numpy's
//! type strings, plus tensorstore's `bfloat16` and `float8_*` names), `order: "C"`, no
//! filters, the compressors `null` and `zstd` (Orbax's default); any other is an
//! [`Error::Format`] naming it. Written arrays are one chunk covering the whole array,
//! zstd level 1, as Orbax writes a single-process array. The subset is a few dozen lines, so
//! it is written here instead of pulling in a general zarr crate (its stores, codecs and
//! thread pools) to read them.

use super::ocdbt::{self, Database};
use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::Value;
use crate::core::uint_array::byte_len;
use crate::serialization::ndarray::{array_from_raw, ArrayDtype};
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};
use tch::Kind;

/// Where arrays are read from: a key-value store.
pub(crate) trait Store {
    /// The value at `key`, `None` if there is none.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
}

impl Store for Database {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Database::get(self, key.as_bytes())
    }
}

/// A directory whose files are the keys (Orbax's per-array layout: `<dir>/<name>/.zarray`).
pub(crate) struct Directory(pub(crate) PathBuf);

impl Store for Directory {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.0.join(key);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

fn malformed(name: &str, message: impl std::fmt::Display) -> Error {
    Error::Format { format: "zarr", message: format!("array {name:?}: {message}") }
}

/// numpy's dtype names and zarr v2's type strings for them (little-endian or one byte).
/// bfloat16 and the float8 types have no type string; tensorstore writes their names.
const TYPESTRS: [(&str, &str); 14] = [
    ("bool", "|b1"),
    ("uint8", "|u1"),
    ("int8", "|i1"),
    ("int16", "<i2"),
    ("int32", "<i4"),
    ("int64", "<i8"),
    ("uint16", "<u2"),
    ("uint32", "<u4"),
    ("uint64", "<u8"),
    ("float16", "<f2"),
    ("float32", "<f4"),
    ("float64", "<f8"),
    ("complex64", "<c8"),
    ("complex128", "<c16"),
];

fn dtype_from_typestr(typestr: &str) -> Option<ArrayDtype> {
    let name = TYPESTRS.iter().find(|(_, t)| *t == typestr).map_or(typestr, |(name, _)| name);
    // `|`-less single-byte spellings (`<b1`, `<u1`, `<i1`) mean the same.
    let name = match typestr {
        "<b1" => "bool",
        "<u1" => "uint8",
        "<i1" => "int8",
        _ => name,
    };
    ArrayDtype::from_name(name.as_bytes())
}

fn typestr(dtype: ArrayDtype) -> &'static str {
    let name = dtype.name();
    TYPESTRS.iter().find(|(n, _)| *n == name).map_or(name, |(_, t)| t)
}

/// Reads the array `name` (the keys `<name>/.zarray` and `<name>/<chunk>`) from `store`.
///
/// # Errors
/// [`Error::Format`] for a missing or malformed `.zarray`, an unsupported dtype, codec or
/// order, or a chunk that does not decompress to its size.
pub(crate) fn read_array(store: &dyn Store, name: &str) -> Result<Value> {
    read_region(store, name, |_| Ok(None))
}

/// A range of rows along one axis of an array: what one process's piece of a sharded array
/// covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rows {
    pub(crate) axis: usize,
    pub(crate) range: std::ops::Range<i64>,
}

/// Reads the part of the array `name` that `rows` chooses, given the array's shape (all of
/// it for `None`), reading only the chunks that overlap it. Rows past the array's end hold
/// the fill value (zeros for Orbax's arrays): the padding of the last pieces of an axis
/// that the number of pieces does not divide.
///
/// # Errors
/// As [`read_array`]; [`Error::Format`] when the axis is not one of the stored array's or
/// the range is reversed; the errors of `rows`.
pub(crate) fn read_region(
    store: &dyn Store,
    name: &str,
    rows: impl FnOnce(&[i64]) -> Result<Option<Rows>>,
) -> Result<Value> {
    let meta =
        store.get(&format!("{name}/.zarray"))?.ok_or_else(|| malformed(name, "no .zarray metadata"))?;
    let meta: Json =
        serde_json::from_slice(&meta).map_err(|e| malformed(name, format!(".zarray is not JSON: {e}")))?;
    let layout = Layout::parse(name, &meta)?;
    let region = Region::of(&layout.shape, rows(&layout.shape)?).map_err(|e| malformed(name, e))?;
    let total =
        byte_len(&region.extent, layout.itemsize).ok_or_else(|| malformed(name, "shape too large"))?;
    let mut data = Vec::new();
    data.try_reserve_exact(total).map_err(|_| malformed(name, format!("cannot allocate {total} bytes")))?;
    for _ in 0..total / layout.itemsize.max(1) {
        data.extend_from_slice(&layout.fill);
    }
    let chunk_bytes =
        byte_len(&layout.chunks, layout.itemsize).ok_or_else(|| malformed(name, "chunks too large"))?;
    for index in layout.chunk_indices(&region) {
        let key = layout.chunk_key(name, &index);
        let Some(stored) = store.get(&key)? else { continue }; // missing chunks hold the fill value
        let chunk = match layout.zstd {
            true => ocdbt::zstd_decompress(&stored, chunk_bytes as u64)
                .map_err(|e| malformed(name, format!("chunk {key}: {e}")))?,
            false => stored,
        };
        if chunk.len() != chunk_bytes {
            return Err(malformed(
                name,
                format!("chunk {key} holds {} bytes, not {chunk_bytes}", chunk.len()),
            ));
        }
        layout.copy_chunk(&chunk, &index, &region, &mut data);
    }
    array_from_raw(region.extent, layout.dtype, &data)
}

/// The box of an array being read: its origin and extent per dimension.
struct Region {
    origin: Vec<i64>,
    extent: Vec<i64>,
}

impl Region {
    /// The whole array, or the `rows` of it (which may run past its end).
    fn of(shape: &[i64], rows: Option<Rows>) -> std::result::Result<Self, String> {
        let mut region = Region { origin: vec![0; shape.len()], extent: shape.to_vec() };
        if let Some(Rows { axis, range }) = rows {
            if axis >= shape.len() || range.start < 0 || range.start > range.end {
                return Err(format!("rows {range:?} of axis {axis} do not fit the stored shape {shape:?}"));
            }
            region.origin[axis] = range.start;
            region.extent[axis] = range.end - range.start;
        }
        Ok(region)
    }
}

/// What `.zarray` says about an array.
struct Layout {
    shape: Vec<i64>,
    chunks: Vec<i64>,
    dtype: ArrayDtype,
    itemsize: usize,
    fill: Vec<u8>,
    zstd: bool,
    separator: String,
}

impl Layout {
    fn parse(name: &str, meta: &Json) -> Result<Self> {
        let field = |key: &str| meta.get(key).unwrap_or(&Json::Null);
        if field("zarr_format") != &json!(2) {
            return Err(malformed(name, format!("zarr_format {} is not 2", field("zarr_format"))));
        }
        let dims = |key: &str| -> Result<Vec<i64>> {
            let dims =
                field(key).as_array().ok_or_else(|| malformed(name, format!("{key} is not a list")))?;
            dims.iter()
                .map(|d| {
                    d.as_i64().filter(|&d| d >= 0).ok_or_else(|| malformed(name, format!("{key} holds {d}")))
                })
                .collect()
        };
        let (shape, chunks) = (dims("shape")?, dims("chunks")?);
        if shape.len() != chunks.len() || chunks.contains(&0) {
            return Err(malformed(name, format!("chunks {chunks:?} do not fit shape {shape:?}")));
        }
        let typestr = field("dtype").as_str().ok_or_else(|| malformed(name, "dtype is not a string"))?;
        let dtype = dtype_from_typestr(typestr).ok_or_else(|| {
            malformed(name, format!("dtype {typestr:?} is not supported (big-endian or unknown)"))
        })?;
        if field("order") != &json!("C") {
            return Err(malformed(name, format!("order {} is not supported, only \"C\"", field("order"))));
        }
        if !matches!(field("filters"), Json::Null) && field("filters") != &json!([]) {
            return Err(malformed(name, format!("filters {} are not supported", field("filters"))));
        }
        let zstd = match field("compressor") {
            Json::Null => false,
            compressor if compressor.get("id") == Some(&json!("zstd")) => true,
            other => {
                return Err(malformed(
                    name,
                    format!("compressor {other} is not supported (only zstd or none)"),
                ))
            }
        };
        let separator = match meta.get("dimension_separator") {
            None => ".".to_owned(),
            Some(Json::String(s)) if s == "." || s == "/" => s.clone(),
            Some(other) => return Err(malformed(name, format!("dimension_separator {other}"))),
        };
        let fill = fill_bytes(dtype, field("fill_value")).ok_or_else(|| {
            malformed(name, format!("fill_value {} does not fit dtype {typestr}", field("fill_value")))
        })?;
        Ok(Layout { shape, chunks, itemsize: dtype.itemsize(), dtype, fill, zstd, separator })
    }

    /// The grid index of every chunk overlapping `region`, in C order (one empty index for a
    /// 0-d array; none when the region is empty), one at a time: a corrupt shape may declare
    /// billions of chunks.
    fn chunk_indices(&self, region: &Region) -> impl Iterator<Item = Vec<i64>> {
        let first: Vec<i64> = region.origin.iter().zip(&self.chunks).map(|(o, c)| o / c).collect();
        let grid: Vec<i64> = (0..first.len())
            .map(|d| {
                let end = (region.origin[d] + region.extent[d]).min(self.shape[d]);
                ((end + self.chunks[d] - 1) / self.chunks[d] - first[d]).max(0)
            })
            .collect();
        let count = grid.iter().try_fold(1u64, |n, &g| n.checked_mul(g as u64)).unwrap_or(u64::MAX);
        (0..count).map(move |mut linear| {
            let mut index = first.clone();
            for (d, &g) in grid.iter().enumerate().rev() {
                index[d] += (linear % g as u64) as i64;
                linear /= g as u64;
            }
            index
        })
    }

    fn chunk_key(&self, name: &str, index: &[i64]) -> String {
        if index.is_empty() {
            return format!("{name}/0");
        }
        let parts: Vec<String> = index.iter().map(i64::to_string).collect();
        format!("{name}/{}", parts.join(&self.separator))
    }

    /// Copies the part of the chunk at grid `index` that lies inside the array and `region`
    /// into `data`, the region's elements in C order (edge chunks are stored whole, padded
    /// past the array's end).
    fn copy_chunk(&self, chunk: &[u8], index: &[i64], region: &Region, data: &mut [u8]) {
        let rank = self.shape.len();
        if rank == 0 {
            data.copy_from_slice(&chunk[..self.itemsize]);
            return;
        }
        let origin: Vec<i64> = index.iter().zip(&self.chunks).map(|(i, c)| i * c).collect();
        // The overlap of the chunk (cut at the array's end) and the region, per dimension.
        let lo: Vec<i64> = (0..rank).map(|d| origin[d].max(region.origin[d])).collect();
        let hi: Vec<i64> = (0..rank)
            .map(|d| (origin[d] + self.chunks[d]).min(self.shape[d]).min(region.origin[d] + region.extent[d]))
            .collect();
        if (0..rank).any(|d| lo[d] >= hi[d]) {
            return;
        }
        let row = (hi[rank - 1] - lo[rank - 1]) as usize * self.itemsize;
        let mut position = lo.clone();
        loop {
            let (mut src, mut dst) = (0i64, 0i64);
            for d in 0..rank {
                src = src * self.chunks[d] + position[d] - origin[d];
                dst = dst * region.extent[d] + position[d] - region.origin[d];
            }
            let (src, dst) = (src as usize * self.itemsize, dst as usize * self.itemsize);
            data[dst..dst + row].copy_from_slice(&chunk[src..src + row]);
            // The next row: an odometer over the leading dimensions.
            let mut d = rank - 1;
            loop {
                if d == 0 {
                    return;
                }
                d -= 1;
                position[d] += 1;
                if position[d] < hi[d] {
                    break;
                }
                position[d] = lo[d];
            }
        }
    }
}

/// One element's bytes for `.zarray`'s `fill_value` (`null` means zeros).
fn fill_bytes(dtype: ArrayDtype, fill: &Json) -> Option<Vec<u8>> {
    let itemsize = dtype.itemsize();
    let number = match fill {
        Json::Null => return Some(vec![0; itemsize]),
        Json::Bool(b) => f64::from(u8::from(*b)),
        Json::Number(n) => n.as_f64()?,
        Json::String(s) => match s.as_str() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            _ => return None,
        },
        _ => return None,
    };
    let bytes = match dtype {
        ArrayDtype::Tensor(Kind::Float) => (number as f32).to_le_bytes().to_vec(),
        ArrayDtype::Tensor(Kind::Double) => number.to_le_bytes().to_vec(),
        ArrayDtype::Tensor(Kind::Half) => half::f16::from_f64(number).to_le_bytes().to_vec(),
        ArrayDtype::Tensor(Kind::BFloat16) => half::bf16::from_f64(number).to_le_bytes().to_vec(),
        _ if number == 0.0 => vec![0; itemsize],
        // Integer fill values other than 0 are written as the integer's bytes.
        _ if number.fract() == 0.0 && itemsize <= 8 => (number as i64).to_le_bytes()[..itemsize].to_vec(),
        _ => return None,
    };
    Some(bytes)
}

/// The store entries of the array `name`: its `.zarray` and one zstd chunk covering it, as
/// Orbax writes a single-process array.
///
/// # Errors
/// [`Error::Value`] for an array with a zero-sized dimension, which Orbax refuses to save
/// too ("Cannot save arrays with zero size").
pub(crate) fn encode_array(
    name: &str,
    shape: &[i64],
    dtype: ArrayDtype,
    data: &[u8],
) -> Result<[(String, Vec<u8>); 2]> {
    let index = vec![0; shape.len()];
    Ok([zarray(name, shape, shape, dtype)?, encode_chunk(name, &index, data)?])
}

/// The `.zarray` entry of the array `name` of `shape`, stored in chunks of `chunks`.
///
/// # Errors
/// [`Error::Value`] for an array with a zero-sized dimension (see [`encode_array`]).
pub(crate) fn zarray(
    name: &str,
    shape: &[i64],
    chunks: &[i64],
    dtype: ArrayDtype,
) -> Result<(String, Vec<u8>)> {
    if shape.contains(&0) {
        return Err(Error::Value(format!(
            "{name}: Orbax cannot save arrays with zero size (shape {shape:?})"
        )));
    }
    // Keys in sorted order, as tensorstore writes them.
    let meta = json!({
        "chunks": chunks,
        "compressor": {"id": "zstd", "level": 1},
        "dimension_separator": ".",
        "dtype": typestr(dtype),
        "fill_value": null,
        "filters": null,
        "order": "C",
        "shape": shape,
        "zarr_format": 2,
    });
    Ok((format!("{name}/.zarray"), meta.to_string().into_bytes()))
}

/// The entry of the chunk at grid `index` of the array `name`, holding `data` (the whole
/// chunk, C order, an edge chunk padded past the array's end), zstd level 1.
pub(crate) fn encode_chunk(name: &str, index: &[i64], data: &[u8]) -> Result<(String, Vec<u8>)> {
    let chunk = zstd::bulk::compress(data, 1).map_err(|e| Error::Value(format!("zstd: {e}")))?;
    let chunk_name = if index.is_empty() {
        "0".to_owned()
    } else {
        index.iter().map(i64::to_string).collect::<Vec<_>>().join(".")
    };
    Ok((format!("{name}/{chunk_name}"), chunk))
}

/// Writes `entries` as files under `dir` (the per-array layout).
pub(crate) fn write_to_directory(dir: &Path, entries: &[(String, Vec<u8>)]) -> Result<()> {
    for (key, value) in entries {
        let path = dir.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        super::write_file(&path, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tch::Tensor;

    struct Memory(HashMap<String, Vec<u8>>);

    impl Store for Memory {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
            Ok(self.0.get(key).cloned())
        }
    }

    /// A store that records the keys read from it.
    struct Recording(Memory, std::cell::RefCell<Vec<String>>);

    impl Store for Recording {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
            self.1.borrow_mut().push(key.to_owned());
            self.0.get(key)
        }
    }

    #[test]
    fn edge_chunks_and_missing_chunks_fill_the_array() {
        // A 3x5 int32 array in 2x2 chunks; chunk (1, 2) is missing and holds the fill value 7.
        let meta = r#"{"chunks":[2,2],"compressor":null,"dtype":"<i4","fill_value":7,"filters":null,"order":"C","shape":[3,5],"zarr_format":2}"#;
        let mut store = HashMap::from([("a/.zarray".to_owned(), meta.as_bytes().to_vec())]);
        for (i, j) in [(0i32, 0i32), (0, 1), (0, 2), (1, 0), (1, 1)] {
            let values: Vec<u8> = (0..4).flat_map(|k| (100 * i + 10 * j + k).to_le_bytes()).collect();
            store.insert(format!("a/{i}.{j}"), values);
        }
        let Value::Tensor(t) = read_array(&Memory(store), "a").unwrap() else { panic!("not a tensor") };
        let got: Vec<i32> = Vec::try_from(t.flatten(0, -1)).unwrap();
        assert_eq!(got, [0, 1, 10, 11, 20, 2, 3, 12, 13, 22, 100, 101, 110, 111, 7]);
    }

    #[test]
    fn regions_read_only_their_rows() {
        // A 3x5 int32 array in 2x2 chunks; only the chunks overlapping the rows are read.
        let meta = r#"{"chunks":[2,2],"compressor":null,"dtype":"<i4","fill_value":null,"filters":null,"order":"C","shape":[3,5],"zarr_format":2}"#;
        let mut store = HashMap::from([("a/.zarray".to_owned(), meta.as_bytes().to_vec())]);
        let full: Vec<i32> = (0..15).collect();
        for (i, j) in [(0i64, 0i64), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)] {
            let values: Vec<u8> = (0..4)
                .flat_map(|k| {
                    let (r, c) = (2 * i + k / 2, 2 * j + k % 2);
                    let v = if r < 3 && c < 5 { full[(r * 5 + c) as usize] } else { -1 };
                    v.to_le_bytes()
                })
                .collect();
            store.insert(format!("a/{i}.{j}"), values);
        }
        let store = Memory(store);
        let read = |axis, range: std::ops::Range<i64>| {
            let Value::Tensor(t) = read_region(&store, "a", |_| Ok(Some(Rows { axis, range }))).unwrap()
            else {
                panic!("not a tensor")
            };
            (t.size(), Vec::<i32>::try_from(t.flatten(0, -1)).unwrap())
        };
        assert_eq!(read(1, 1..4), (vec![3, 3], vec![1, 2, 3, 6, 7, 8, 11, 12, 13]));
        assert_eq!(read(0, 2..3), (vec![1, 5], vec![10, 11, 12, 13, 14]));
        assert_eq!(read(0, 1..1).0, vec![0, 5]);
        // Past the end: the fill value (null: zeros).
        assert_eq!(read(1, 3..7), (vec![3, 4], vec![3, 4, 0, 0, 8, 9, 0, 0, 13, 14, 0, 0]));
        assert_eq!(read(0, 4..6), (vec![2, 5], vec![0; 10]));
        let reversed = read_region(&store, "a", |_| Ok(Some(Rows { axis: 2, range: 0..1 })));
        assert!(reversed.unwrap_err().to_string().contains("do not fit"));
        // Only the chunks overlapping the rows are read: the first row of chunks.
        let recording = Recording(store, Default::default());
        read_region(&recording, "a", |_| Ok(Some(Rows { axis: 0, range: 0..2 }))).unwrap();
        assert_eq!(recording.1.into_inner(), ["a/.zarray", "a/0.0", "a/0.1", "a/0.2"]);
    }

    #[test]
    fn written_arrays_read_back() {
        let data: Vec<u8> =
            [1.5f32, -2.0, 3.25, 4.0, 5.0, 6.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let entries = encode_array("w", &[2, 3], ArrayDtype::Tensor(Kind::Float), &data).unwrap();
        let Value::Tensor(t) = read_array(&Memory(entries.into_iter().collect()), "w").unwrap() else {
            panic!("not a tensor")
        };
        assert!(t.equal(&Tensor::from_slice(&[1.5f32, -2.0, 3.25, 4.0, 5.0, 6.0]).view([2, 3])));
    }

    #[test]
    fn unsupported_layouts_are_named() {
        for (meta, expected) in [
            (r#"{"zarr_format":3}"#, "zarr_format"),
            (r#"{"zarr_format":2,"shape":[2],"chunks":[2],"dtype":">f4","order":"C"}"#, "big-endian"),
            (r#"{"zarr_format":2,"shape":[2],"chunks":[2],"dtype":"<f4","order":"F"}"#, "order"),
            (
                r#"{"zarr_format":2,"shape":[2],"chunks":[2],"dtype":"<f4","order":"C","compressor":{"id":"blosc"}}"#,
                "blosc",
            ),
            (r#"{"zarr_format":2,"shape":[2],"chunks":[3, 1],"dtype":"<f4","order":"C"}"#, "do not fit"),
        ] {
            let store = Memory(HashMap::from([("x/.zarray".to_owned(), meta.as_bytes().to_vec())]));
            let message = read_array(&store, "x").unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
        }
    }
}
