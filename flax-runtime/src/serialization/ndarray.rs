//! Arrays in Flax's msgpack extension payload (`_ndarray_to_bytes` / `_ndarray_from_bytes`):
//! the msgpack triple `[shape, dtype name, raw little-endian C-order bytes]`.

use super::msgpack::{len_u32, malformed, written, ExtType};
use super::msgpack_reader::{Header, Reader};
use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{dtype_name, Scalar, Value};
use crate::core::uint_array::{byte_len, UintArray, UintDtype};
use rmp::encode;
use std::io::Read;
use tch::{Device, Kind, Tensor};

// The raw bytes are libtorch's in-memory layout, which is numpy's little-endian one only on
// little-endian hosts (every platform libtorch ships for).
const _: () = assert!(cfg!(target_endian = "little"), "Flax's array bytes are little-endian");

/// The kinds that have a numpy dtype name (numpy's own, or ml_dtypes' for bfloat16 and the
/// float8 types), so Python Flax can read them back. tch 0.26 has no `uint16`/`uint32`/
/// `uint64` kinds, so arrays of those dtypes are restored as host-side [`UintArray`]s;
/// `complex32` and the quantized kinds have no numpy dtype.
const SERIALIZABLE_KINDS: [Kind; 16] = [
    Kind::Bool,
    Kind::Uint8,
    Kind::Int8,
    Kind::Int16,
    Kind::Int,
    Kind::Int64,
    Kind::Half,
    Kind::BFloat16,
    Kind::Float,
    Kind::Double,
    Kind::ComplexFloat,
    Kind::ComplexDouble,
    Kind::Float8e4m3fn,
    Kind::Float8e5m2,
    Kind::Float8e4m3fnuz,
    Kind::Float8e5m2fnuz,
];

/// What an array's dtype name restores to: a tensor of a libtorch kind, or a host-side
/// unsigned array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArrayDtype {
    Tensor(Kind),
    Uint(UintDtype),
}

impl ArrayDtype {
    /// The dtype numpy calls `name` (ml_dtypes' names for bfloat16 and the float8 types), if
    /// it is one arrays can restore to.
    pub(crate) fn from_name(name: &[u8]) -> Option<Self> {
        let kind = SERIALIZABLE_KINDS.into_iter().find(|&kind| dtype_name(kind).as_bytes() == name);
        kind.map(ArrayDtype::Tensor).or_else(|| UintDtype::from_name(name).map(ArrayDtype::Uint))
    }

    /// numpy's name for the dtype.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ArrayDtype::Tensor(kind) => dtype_name(kind),
            ArrayDtype::Uint(dtype) => dtype.name(),
        }
    }

    /// The size of one element in bytes.
    pub(crate) fn itemsize(self) -> usize {
        match self {
            ArrayDtype::Tensor(kind) => kind.elt_size_in_bytes(),
            ArrayDtype::Uint(dtype) => dtype.itemsize(),
        }
    }
}

/// numpy's limit on the number of dimensions (`NPY_MAXDIMS`); Flax cannot write more.
const MAX_NDIM: usize = 64;

/// Writes `tensor` as extension `ext` (type 1, or 3 for a numpy scalar) around Flax's payload
/// `[shape, dtype name, bytes]`. The bytes are those of a contiguous CPU copy, so views, strided
/// and CUDA tensors write the same bytes as their contiguous CPU equivalent.
pub(crate) fn write_ndarray(out: &mut Vec<u8>, tensor: &Tensor, ext: ExtType) -> Result<()> {
    let (kind, tensor) = serializable(tensor)?;
    let numel = tensor.numel();
    let nbytes = numel * kind.elt_size_in_bytes();
    write_ext_header(out, &tensor.size(), dtype_name(kind), nbytes, ext)?;
    let start = out.len();
    out.resize(start + nbytes, 0);
    // libtorch copies from any device and any strides into C order.
    Ok(tensor.f_copy_data_u8(&mut out[start..], numel)?)
}

/// The dtype and little-endian, C-order element bytes of `tensor` (of any device and strides),
/// for writers of other formats than msgpack (Orbax's zarr arrays).
///
/// # Errors
/// [`Error::Value`] for a kind numpy has no dtype for; [`Error::Torch`].
pub(crate) fn tensor_to_raw(tensor: &Tensor) -> Result<(ArrayDtype, Vec<u8>)> {
    let (kind, tensor) = serializable(tensor)?;
    let numel = tensor.numel();
    let mut out = vec![0; numel * kind.elt_size_in_bytes()];
    tensor.f_copy_data_u8(&mut out, numel)?;
    Ok((ArrayDtype::Tensor(kind), out))
}

/// `tensor`'s kind, checked to have a numpy dtype, and the tensor with its conjugated or
/// negated views (`conj()`), which keep their data unresolved until asked, resolved.
fn serializable(tensor: &Tensor) -> Result<(Kind, Tensor)> {
    let kind = tensor.f_kind()?;
    if !SERIALIZABLE_KINDS.contains(&kind) {
        return Err(Error::Value(format!(
            "cannot serialize a tensor of kind {kind:?}: numpy has no dtype for it"
        )));
    }
    Ok((kind, tensor.f_resolve_conj()?.f_resolve_neg()?))
}

/// Writes a host-side unsigned array as extension type 1, exactly as Flax writes the numpy
/// array it restored it from.
pub(crate) fn write_uint_array(out: &mut Vec<u8>, array: &UintArray) -> Result<()> {
    write_ext_header(out, array.shape(), array.dtype().name(), array.data().len(), ExtType::Ndarray)?;
    out.extend_from_slice(array.data());
    Ok(())
}

/// Writes the extension header and the payload up to the array data, which must follow
/// (`nbytes` bytes): `ext` around the msgpack triple `[shape, dtype name, bin header]`.
fn write_ext_header(
    out: &mut Vec<u8>,
    shape: &[i64],
    dtype: &str,
    nbytes: usize,
    ext: ExtType,
) -> Result<()> {
    let mut header = Vec::new();
    written(encode::write_array_len(&mut header, 3))?;
    written(encode::write_array_len(&mut header, len_u32(shape.len(), "array rank")?))?;
    for &dim in shape {
        // Array sizes are never negative.
        written(encode::write_uint(&mut header, dim.unsigned_abs()))?;
    }
    written(encode::write_str(&mut header, dtype))?;
    written(encode::write_bin_len(&mut header, len_u32(nbytes, "array data")?))?;
    written(encode::write_ext_meta(out, len_u32(header.len() + nbytes, "array extension")?, ext as i8))?;
    out.extend_from_slice(&header);
    Ok(())
}

/// The array of a type-1 (or type-3) extension, whose payload `reader` is at: a tensor, or a
/// host-side [`UintArray`] for the unsigned dtypes tch has no kind for. A tensor's bytes are
/// read straight into its memory.
///
/// # Errors
/// [`Error::Format`] for a payload that is not `[shape, dtype, bytes]` with bytes exactly
/// the shape's, or a bool array holding bytes other than 0 and 1.
pub(crate) fn read_ndarray<R: Read>(reader: &mut Reader<'_, R>) -> Result<Value> {
    match reader.header()? {
        Header::Array(3) => {}
        Header::Array(n) => {
            return Err(malformed(format!("array payload has {n} fields, not [shape, dtype, bytes]")))
        }
        _ => return Err(malformed("array payload is not a [shape, dtype, bytes] array")),
    }
    let shape = read_shape(reader)?;
    let dtype = read_dtype(reader)?;
    // Flax writes the data as str or bin depending on the Python version that wrote it, and
    // reads both alike (`raw=True`); so does this.
    let len = match reader.header()? {
        Header::Bin(n) | Header::Str(n) => n,
        _ => return Err(malformed("array data is not a byte string")),
    };
    check_layout(&shape, dtype, len as usize)?;
    reader.check_available(u64::from(len))?;
    match dtype {
        ArrayDtype::Tensor(kind) => {
            let mut tensor = Tensor::f_empty(&shape, (kind, Device::Cpu))?;
            let bytes = uninitialized_bytes(&mut tensor, len as usize);
            reader.read_exact(bytes)?;
            check_bools(kind, bytes)?;
            Ok(Value::Tensor(tensor))
        }
        ArrayDtype::Uint(dtype) => {
            Ok(Value::Scalar(Scalar::UintArray(UintArray::new(dtype, shape, reader.bytes(len)?)?)))
        }
    }
}

/// The memory of `tensor`, just made by `empty` on the CPU with `len` bytes, for the reader
/// to write once (instead of zeroing it first, then copying into it).
fn uninitialized_bytes(tensor: &mut Tensor, len: usize) -> &mut [u8] {
    if len == 0 {
        return &mut [];
    }
    // SAFETY: a CPU tensor fresh from `empty` is contiguous, owns its `len` bytes of storage
    // (`check_layout` made `len` its shape's size) and is shared with nothing; the slice
    // borrows `tensor` mutably, so the storage outlives it, and its bytes are only written
    // (by the reader) before they are read.
    unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr().cast::<u8>(), len) }
}

/// The array of `shape` and `dtype` whose little-endian, C-order element bytes are `buffer`:
/// a tensor, or a host-side [`UintArray`] for the unsigned dtypes tch has no kind for.
///
/// # Errors
/// [`Error::Format`] when `buffer` is not exactly the bytes the shape needs, or a bool array
/// holds bytes other than 0 and 1.
pub(crate) fn array_from_raw(shape: Vec<i64>, dtype: ArrayDtype, buffer: &[u8]) -> Result<Value> {
    check_layout(&shape, dtype, buffer.len())?;
    match dtype {
        ArrayDtype::Tensor(kind) => {
            check_bools(kind, buffer)?;
            // The length check above is what makes this copy stay inside `buffer`.
            Ok(Value::Tensor(Tensor::f_from_data_size(buffer, &shape, kind)?))
        }
        ArrayDtype::Uint(dtype) => {
            Ok(Value::Scalar(Scalar::UintArray(UintArray::new(dtype, shape, buffer.to_vec())?)))
        }
    }
}

/// A bool array's bytes must be 0 or 1 (libtorch assumes it).
fn check_bools(kind: Kind, bytes: &[u8]) -> Result<()> {
    if kind == Kind::Bool && bytes.iter().any(|&b| b > 1) {
        return Err(malformed("bool array holds bytes other than 0 and 1"));
    }
    Ok(())
}

fn read_shape<R: Read>(reader: &mut Reader<'_, R>) -> Result<Vec<i64>> {
    let Header::Array(rank) = reader.header()? else {
        return Err(malformed("array shape is not a msgpack array"));
    };
    check_rank(rank as usize)?;
    (0..rank)
        .map(|_| match reader.header()? {
            Header::Int(n) if n >= 0 => Ok(n),
            Header::Int(n) => Err(malformed(format!("array dimension {n} is not a non-negative i64"))),
            Header::BigUint(n) => Err(malformed(format!("array dimension {n} is not a non-negative i64"))),
            other => Err(malformed(format!("array dimension {} is not an integer", other.describe()))),
        })
        .collect()
}

fn read_dtype<R: Read>(reader: &mut Reader<'_, R>) -> Result<ArrayDtype> {
    let name = match reader.header()? {
        Header::Str(n) | Header::Bin(n) => reader.bytes(n)?,
        _ => return Err(malformed("array dtype is not a string")),
    };
    ArrayDtype::from_name(&name).ok_or_else(|| {
        malformed(format!("array dtype '{}' is unknown or unsupported", String::from_utf8_lossy(&name)))
    })
}

/// numpy holds at most [`MAX_NDIM`] dimensions.
fn check_rank(rank: usize) -> Result<()> {
    if rank > MAX_NDIM {
        return Err(malformed(format!("array has {rank} dimensions, more than numpy's {MAX_NDIM}")));
    }
    Ok(())
}

/// Checks that an array of `shape` and `dtype` is one numpy could hold (at most 64 dimensions)
/// and is exactly `len` bytes, without overflowing on huge declared shapes.
pub(crate) fn check_layout(shape: &[i64], dtype: ArrayDtype, len: usize) -> Result<()> {
    check_rank(shape.len())?;
    let Some(expected) = byte_len(shape, dtype.itemsize()) else {
        return Err(malformed(format!("array shape {shape:?} is too large")));
    };
    if expected != len {
        return Err(malformed(format!(
            "array of shape {shape:?} and dtype {} needs {expected} bytes, but has {len}",
            dtype.name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::errors::Error;
    use crate::serialization::msgpack_restore;
    use crate::serialization::testing::{ext, ndarray_payload, pack};

    /// The array of an extension of type 1 around `payload`.
    fn ndarray_from_bytes(payload: &[u8]) -> Result<Value> {
        msgpack_restore(&ext(1, payload))
    }

    fn format_error(payload: &[u8]) -> String {
        match ndarray_from_bytes(payload) {
            Err(Error::Format { message, .. }) => message,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    fn tensor(payload: &[u8]) -> Tensor {
        match ndarray_from_bytes(payload) {
            Ok(Value::Tensor(t)) => t,
            other => panic!("expected a tensor, got {other:?}"),
        }
    }

    #[test]
    fn restores_shape_dtype_and_values() {
        let data: Vec<u8> =
            [1.0f32, -2.5, 3.0, 0.0, 4.5, -1.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let t = tensor(&ndarray_payload(&[2, 3], "float32", &data));
        assert_eq!(t.size(), [2, 3]);
        assert_eq!(t.kind(), Kind::Float);
        assert_eq!(t.double_value(&[0, 1]), -2.5);
        assert_eq!(t.double_value(&[1, 2]), -1.0);
    }

    #[test]
    fn zero_sized_and_scalar_shapes() {
        let empty = tensor(&ndarray_payload(&[0, 1 << 40], "float64", &[]));
        assert_eq!(empty.size(), [0, 1 << 40]);
        let scalar = tensor(&ndarray_payload(&[], "int64", &7i64.to_le_bytes()));
        assert_eq!(scalar.size(), Vec::<i64>::new());
        assert_eq!(scalar.int64_value(&[]), 7);
    }

    #[test]
    fn byte_length_must_match_shape_and_itemsize() {
        let message = format_error(&ndarray_payload(&[2, 3], "float32", &[0; 20]));
        assert!(message.contains("needs 24 bytes, but has 20"), "{message}");
        format_error(&ndarray_payload(&[0], "float32", &[0; 4]));
    }

    #[test]
    fn unsigned_dtypes_tch_lacks_restore_host_side() {
        let bytes: Vec<u8> = [1u64, u64::MAX].iter().flat_map(|v| v.to_le_bytes()).collect();
        let Ok(Value::Scalar(Scalar::UintArray(a))) =
            ndarray_from_bytes(&ndarray_payload(&[2, 1], "uint64", &bytes))
        else {
            panic!("not an unsigned array")
        };
        assert_eq!((a.dtype(), a.shape(), a.values()), (UintDtype::Uint64, &[2, 1][..], vec![1, u64::MAX]));
        let message = format_error(&ndarray_payload(&[3], "uint16", &[0; 4]));
        assert!(message.contains("needs 6 bytes, but has 4"), "{message}");
        assert!(format_error(&ndarray_payload(&[1; 65], "uint32", &[0; 4])).contains("65 dimensions"));
        assert!(format_error(&ndarray_payload(&[1 << 62, 4], "uint32", &[])).contains("too large"));
    }

    #[test]
    fn unknown_and_unsupported_dtypes() {
        assert!(format_error(&ndarray_payload(&[1], "float128", &[0; 16])).contains("'float128'"));
        assert!(format_error(&ndarray_payload(&[1], "complex32", &[0; 4])).contains("'complex32'"));
        assert!(format_error(&ndarray_payload(&[1], "unsupported", &[0; 1])).contains("'unsupported'"));
    }

    #[test]
    fn negative_dimensions() {
        assert!(format_error(&ndarray_payload(&[-1], "uint8", &[0; 4])).contains("non-negative"));
    }

    #[test]
    fn huge_declared_sizes() {
        assert!(format_error(&ndarray_payload(&[1 << 62, 1 << 62], "float32", &[])).contains("too large"));
        assert!(format_error(&ndarray_payload(&[i64::MAX], "int64", &[])).contains("too large"));
        assert!(format_error(&ndarray_payload(&[0, 1 << 62, 1 << 62], "int8", &[])).contains("too large"));
        format_error(&ndarray_payload(&[1 << 40], "int8", &[0; 8]));
    }

    #[test]
    fn too_many_dimensions() {
        assert!(format_error(&ndarray_payload(&[1; 65], "int8", &[0])).contains("65 dimensions"));
    }

    #[test]
    fn wrongly_typed_fields() {
        let not_array = pack(|out| rmp::encode::write_str(out, "float32").unwrap());
        format_error(&not_array);
        let two_fields = pack(|out| {
            rmp::encode::write_array_len(out, 2).unwrap();
            rmp::encode::write_array_len(out, 0).unwrap();
            rmp::encode::write_str(out, "float32").unwrap();
        });
        assert!(format_error(&two_fields).contains("2 fields"));
        let int_dtype = pack(|out| {
            rmp::encode::write_array_len(out, 3).unwrap();
            rmp::encode::write_array_len(out, 0).unwrap();
            rmp::encode::write_sint(out, 4).unwrap();
            rmp::encode::write_bin(out, &[0; 4]).unwrap();
        });
        assert!(format_error(&int_dtype).contains("dtype"));
        let float_dim = pack(|out| {
            rmp::encode::write_array_len(out, 3).unwrap();
            rmp::encode::write_array_len(out, 1).unwrap();
            rmp::encode::write_f64(out, 1.0).unwrap();
            rmp::encode::write_str(out, "int8").unwrap();
            rmp::encode::write_bin(out, &[0]).unwrap();
        });
        assert!(format_error(&float_dim).contains("not an integer"));
        let mut trailing = ndarray_payload(&[1], "int8", &[0]);
        trailing.push(0xc0);
        assert!(format_error(&trailing).contains("trailing"));
    }

    #[test]
    fn bool_bytes_must_be_zero_or_one() {
        assert!(ndarray_from_bytes(&ndarray_payload(&[2], "bool", &[0, 1])).is_ok());
        assert!(format_error(&ndarray_payload(&[2], "bool", &[0, 2])).contains("bool"));
    }
}
