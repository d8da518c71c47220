//! Flax's chunking of large arrays (`_chunk_array_leaves_in_place` /
//! `_unchunk_array_leaves_in_place`): msgpack cannot hold one object over 2^32 - 1 bytes, so
//! arrays over [`MAX_CHUNK_SIZE`] bytes are stored as a map of 1-D chunks.

use super::msgpack::malformed;
use super::ndarray::{check_layout, ArrayDtype};
use crate::core::errors::Result;
use crate::core::frozen_dict::{FrozenDict, Scalar, Value};
use crate::core::uint_array::UintArray;
use tch::Tensor;

/// Flax's `MAX_CHUNK_SIZE`: msgpack's true limit is 2^31 - 1 bytes per leaf, with a margin.
pub(crate) const MAX_CHUNK_SIZE: usize = 1 << 30;

/// The key whose presence marks a chunked array (Python checks presence, not the value).
const CHUNKED_MARKER: &str = "__msgpack_chunked_array__";

/// `_chunk`, for a tensor that `_chunk_array_leaves_in_place` would chunk: one reached through
/// dictionaries only (`chunkable`) whose data exceeds `max_chunk_size` bytes. The chunks are
/// views into a flattened `tensor`, each at most `max_chunk_size` bytes (at least one element).
pub(crate) fn chunk_if_oversized(
    tensor: &Tensor,
    max_chunk_size: usize,
    chunkable: bool,
) -> Result<Option<FrozenDict>> {
    let itemsize = tensor.f_kind()?.elt_size_in_bytes();
    let numel = tensor.numel();
    if !chunkable || numel * itemsize <= max_chunk_size {
        return Ok(None);
    }
    let flat = tensor.f_reshape([-1])?;
    let chunks = chunk_ranges(numel, itemsize, max_chunk_size)
        .map(|(start, len)| Ok(Value::Tensor(flat.f_narrow(0, start as i64, len as i64)?)))
        .collect::<Result<Vec<Value>>>()?;
    Ok(Some(chunked_dict(&tensor.size(), chunks)))
}

/// [`chunk_if_oversized`] for a host-side unsigned array: the chunks are copies of its bytes.
pub(crate) fn chunk_uint_array_if_oversized(
    array: &UintArray,
    max_chunk_size: usize,
    chunkable: bool,
) -> Result<Option<FrozenDict>> {
    let itemsize = array.dtype().itemsize();
    if !chunkable || array.data().len() <= max_chunk_size {
        return Ok(None);
    }
    let chunks = chunk_ranges(array.numel(), itemsize, max_chunk_size)
        .map(|(start, len)| {
            let bytes = array.data()[start * itemsize..(start + len) * itemsize].to_vec();
            Ok(Value::Scalar(Scalar::UintArray(UintArray::new(array.dtype(), vec![len as i64], bytes)?)))
        })
        .collect::<Result<Vec<Value>>>()?;
    Ok(Some(chunked_dict(array.shape(), chunks)))
}

/// The `(first element, element count)` of each chunk of a flattened array: at most
/// `max_chunk_size` bytes each, and at least one element.
fn chunk_ranges(
    numel: usize,
    itemsize: usize,
    max_chunk_size: usize,
) -> impl Iterator<Item = (usize, usize)> {
    let chunk_len = (max_chunk_size / itemsize).max(1);
    (0..numel).step_by(chunk_len).map(move |start| (start, chunk_len.min(numel - start)))
}

/// The map Flax stores a chunked array as: the marker, the shape and the chunks, keyed by index.
fn chunked_dict(shape: &[i64], chunks: Vec<Value>) -> FrozenDict {
    let indexed =
        |values: Vec<Value>| values.into_iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect();
    let dims = shape.iter().map(|&d| Value::Scalar(Scalar::Int(d))).collect();
    FrozenDict::from_iter([
        (CHUNKED_MARKER.to_owned(), Value::Scalar(Scalar::Bool(true))),
        ("shape".to_owned(), Value::Dict(indexed(dims))),
        ("chunks".to_owned(), Value::Dict(indexed(chunks))),
    ])
}

/// Re-assembles every chunked array reachable from the root through dictionaries, as Flax's
/// `_unchunk_array_leaves_in_place` does (it does not look inside lists).
pub(crate) fn unchunk_array_leaves(value: Value) -> Result<Value> {
    match value {
        Value::Dict(dict) if dict.contains_key(CHUNKED_MARKER) => unchunk(&dict),
        Value::Dict(dict) => Ok(Value::Dict(
            dict.into_inner()
                .into_iter()
                .map(|(key, value)| Ok((key, unchunk_array_leaves(value)?)))
                .collect::<Result<FrozenDict>>()?,
        )),
        other => Ok(other),
    }
}

/// `_unchunk`: concatenates the chunks `"0"`, `"1"`, … (all tensors, or all unsigned arrays
/// of one dtype) and reshapes them to `"shape"`.
fn unchunk(dict: &FrozenDict) -> Result<Value> {
    let shape = indexed_entries(dict, "shape")?
        .into_iter()
        .map(|dim| match dim {
            Value::Scalar(Scalar::Int(d)) if *d >= 0 => Ok(*d),
            other => Err(malformed(format!("chunked array dimension {other:?} is not a non-negative int"))),
        })
        .collect::<Result<Vec<i64>>>()?;
    let chunks = indexed_entries(dict, "chunks")?;
    let not_an_array = |chunk: &Value| malformed(format!("array chunk {chunk:?} is not an array"));
    let differ = || malformed("array chunks differ in dtype");
    match chunks.first() {
        None => Err(malformed("chunked array has no chunks")),
        Some(Value::Scalar(Scalar::UintArray(first))) => {
            let mut data = Vec::new();
            for chunk in chunks {
                match chunk {
                    Value::Scalar(Scalar::UintArray(c)) if c.dtype() == first.dtype() => {
                        data.extend(c.data())
                    }
                    Value::Scalar(Scalar::UintArray(_)) | Value::Tensor(_) => return Err(differ()),
                    other => return Err(not_an_array(other)),
                }
            }
            check_layout(&shape, ArrayDtype::Uint(first.dtype()), data.len())?;
            Ok(Value::Scalar(Scalar::UintArray(UintArray::new(first.dtype(), shape, data)?)))
        }
        Some(_) => {
            let tensors = chunks
                .into_iter()
                .map(|chunk| match chunk {
                    Value::Tensor(t) => Ok(t.f_reshape([-1])?),
                    Value::Scalar(Scalar::UintArray(_)) => Err(differ()),
                    other => Err(not_an_array(other)),
                })
                .collect::<Result<Vec<Tensor>>>()?;
            let kind = tensors[0].kind();
            if tensors.iter().any(|c| c.kind() != kind) {
                return Err(differ());
            }
            let flat = Tensor::f_cat(&tensors, 0)?;
            check_layout(&shape, ArrayDtype::Tensor(kind), flat.numel() * kind.elt_size_in_bytes())?;
            Ok(Value::Tensor(flat.f_reshape(&shape)?))
        }
    }
}

/// The values of the sub-dictionary `dict[key]` under the keys `"0"`, `"1"`, … (Python's
/// `_dict_to_tuple`: as many as the sub-dictionary has entries, all of which must be present).
fn indexed_entries<'a>(dict: &'a FrozenDict, key: &str) -> Result<Vec<&'a Value>> {
    let Some(Value::Dict(entries)) = dict.get(key) else {
        return Err(malformed(format!("chunked array has no \"{key}\" dictionary")));
    };
    (0..entries.len())
        .map(|i| {
            entries
                .get(&i.to_string())
                .ok_or_else(|| malformed(format!("chunked array \"{key}\" lacks \"{i}\"")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::errors::Error;
    use crate::serialization::msgpack_restore;
    use crate::serialization::testing::{ext, int, map, ndarray_payload, pack};

    fn chunk(values: &[f32]) -> Vec<u8> {
        let data: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        ext(1, &ndarray_payload(&[values.len() as i64], "float32", &data))
    }

    fn chunked(shape: &[i64], chunks: Vec<Vec<u8>>) -> Vec<u8> {
        let shape: Vec<_> = shape.iter().enumerate().map(|(i, &d)| (i.to_string(), int(d))).collect();
        let chunks: Vec<_> = chunks.into_iter().enumerate().map(|(i, c)| (i.to_string(), c)).collect();
        let as_refs = |v: &[(String, Vec<u8>)]| {
            map(&v.iter().map(|(k, b)| (k.as_str(), b.clone())).collect::<Vec<_>>())
        };
        let marker = pack(|out| rmp::encode::write_bool(out, true).unwrap());
        map(&[(CHUNKED_MARKER, marker), ("shape", as_refs(&shape)), ("chunks", as_refs(&chunks))])
    }

    fn format_error(bytes: &[u8]) -> String {
        match msgpack_restore(bytes) {
            Err(Error::Format { message, .. }) => message,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn reassembles_chunks_under_dicts_but_not_lists() {
        let array = chunked(&[2, 3], vec![chunk(&[0., 1., 2., 3.]), chunk(&[4., 5.])]);
        let in_list = pack(|out| {
            rmp::encode::write_array_len(out, 1).unwrap();
            out.extend_from_slice(&array);
        });
        let bytes = map(&[("w", array.clone()), ("nested", map(&[("w", array)])), ("l", in_list)]);
        let Value::Dict(root) = msgpack_restore(&bytes).unwrap() else { panic!("not a dict") };
        for path in [&["w"][..], &["nested", "w"]] {
            let t = root.tensor(path).unwrap();
            assert_eq!(t.size(), [2, 3]);
            assert_eq!(t.double_value(&[1, 2]), 5.0);
        }
        assert!(matches!(root.get("l").and_then(Value::as_list), Some([Value::Dict(_)])));
    }

    #[test]
    fn chunked_root() {
        let t = msgpack_restore(&chunked(&[3], vec![chunk(&[1., 2.]), chunk(&[3.])])).unwrap();
        assert_eq!(t.as_tensor().unwrap().size(), [3]);
    }

    #[test]
    fn element_count_must_fill_the_shape() {
        let message = format_error(&chunked(&[2, 3], vec![chunk(&[0., 1., 2., 3.])]));
        assert!(message.contains("needs 24 bytes, but has 16"), "{message}");
    }

    #[test]
    fn huge_declared_shapes() {
        let message = format_error(&chunked(&[0, 1 << 62, 1 << 62], vec![chunk(&[])]));
        assert!(message.contains("too large"), "{message}");
        let message = format_error(&chunked(&[1; 65], vec![chunk(&[1.])]));
        assert!(message.contains("65 dimensions"), "{message}");
    }

    #[test]
    fn missing_or_wrongly_typed_parts() {
        assert!(format_error(&chunked(&[0], vec![])).contains("no chunks"));
        assert!(format_error(&chunked(&[-1], vec![chunk(&[1.])])).contains("non-negative"));
        assert!(format_error(&chunked(&[1], vec![int(3)])).contains("not an array"));
        let no_chunks = map(&[(CHUNKED_MARKER, int(1)), ("shape", map(&[]))]);
        assert!(format_error(&no_chunks).contains("no \"chunks\""));
        let gap = map(&[(CHUNKED_MARKER, int(1)), ("shape", map(&[("1", int(2))])), ("chunks", map(&[]))]);
        assert!(format_error(&gap).contains("lacks \"0\""));
        let int_chunk = ext(1, &ndarray_payload(&[1], "int32", &[0; 4]));
        assert!(format_error(&chunked(&[2], vec![chunk(&[1.]), int_chunk])).contains("dtype"));
        let uint = |dtype: &str, bytes: &[u8]| ext(1, &ndarray_payload(&[1], dtype, bytes));
        let mixed = chunked(&[2], vec![uint("uint32", &[0; 4]), uint("uint16", &[0; 2])]);
        assert!(format_error(&mixed).contains("dtype"));
        assert!(format_error(&chunked(&[2], vec![uint("uint32", &[0; 4]), chunk(&[1.])])).contains("dtype"));
        assert!(format_error(&chunked(&[2], vec![uint("uint32", &[0; 4]), int(1)])).contains("not an array"));
        let short = chunked(&[3], vec![uint("uint64", &[0; 8]), uint("uint64", &[0; 8])]);
        assert!(format_error(&short).contains("needs 24 bytes, but has 16"));
    }
}

#[cfg(test)]
mod encode_tests {
    use super::*;
    use crate::serialization::msgpack::{Encoder, KeyOrder};
    use crate::serialization::msgpack_restore;

    /// `SMALL_CHUNK_SIZE` of `scripts/golden/serialization_vectors.py`.
    const SCRIPT_CHUNK_SIZE: usize = 100;

    #[test]
    fn small_chunk_size_writes_the_bytes_flax_wrote_with_it() {
        for (case, key_order) in [
            ("chunked", KeyOrder::Sorted),
            ("chunked_to_bytes", KeyOrder::Insertion),
            ("unsigned_chunked", KeyOrder::Sorted),
        ] {
            let path = format!("{}/tests/data/serialization/{case}.msgpack", env!("CARGO_MANIFEST_DIR"));
            let flax_bytes = std::fs::read(path).unwrap();
            let value = msgpack_restore(&flax_bytes).unwrap();
            let encoder = Encoder { key_order, max_chunk_size: SCRIPT_CHUNK_SIZE };
            assert!(encoder.encode(&value).unwrap() == flax_bytes, "{case}");
        }
    }

    #[test]
    fn chunks_split_at_the_byte_limit_and_round_trip() {
        let t = Tensor::arange(10, (tch::Kind::Double, tch::Device::Cpu)).reshape([2, 5]);
        let chunked = chunk_if_oversized(&t, 24, true).unwrap().unwrap();
        let Some(Value::Dict(chunks)) = chunked.get("chunks") else { panic!("no chunks") };
        let lens: Vec<i64> = chunks.iter().map(|(_, c)| c.as_tensor().unwrap().size()[0]).collect();
        assert_eq!(lens, [3, 3, 3, 1]);
        assert!(unchunk(&chunked).unwrap().as_tensor().unwrap().equal(&t));
        assert!(chunk_if_oversized(&t, 80, true).unwrap().is_none());
        assert!(chunk_if_oversized(&t, 24, false).unwrap().is_none());
    }

    #[test]
    fn an_element_larger_than_the_limit_is_its_own_chunk() {
        let scalar = Tensor::from(2.5f64);
        let encoder = Encoder { key_order: KeyOrder::Sorted, max_chunk_size: 4 };
        let bytes = encoder
            .encode(&Value::Dict(FrozenDict::from_iter([("x".to_owned(), Value::Tensor(scalar))])))
            .unwrap();
        let restored = msgpack_restore(&bytes).unwrap();
        let x = restored.as_dict().unwrap().tensor(&["x"]).unwrap();
        assert_eq!((x.size(), x.double_value(&[])), (vec![], 2.5));
    }
}
