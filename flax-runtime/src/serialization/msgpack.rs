//! `msgpack_serialize` / `msgpack_restore`: a [`Value`] tree to and from Flax's msgpack bytes.

use super::{chunking, ndarray};
use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{FrozenDict, Scalar, Value};
use rmpv::ValueRef;

/// Flax's msgpack extension type codes (`_MsgpackExtType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub(crate) enum ExtType {
    /// A numpy or JAX array.
    Ndarray = 1,
    /// A Python `complex`.
    NativeComplex = 2,
    /// A numpy scalar (`np.float32(1.5)`), stored as a 0-d array.
    NpScalar = 3,
}

/// Restores the tree that Flax's `flax.serialization.msgpack_restore` returns for `bytes`:
/// maps become [`Value::Dict`], arrays [`Value::List`], array extensions tensors (on the CPU),
/// chunked arrays are re-assembled, and msgpack scalars become [`Value::Scalar`].
///
/// Unlike Python, which hands unknown extension types back as `msgpack.ExtType` and accepts
/// non-string map keys, this reports them as [`Error::Format`]: a [`FrozenDict`] has string
/// keys and no opaque leaves. A duplicated map key keeps its first position and its last value,
/// as a Python dict built from the same pairs does.
pub fn msgpack_restore(bytes: &[u8]) -> Result<Value> {
    let value = value_from_msgpack(read_nested(bytes)?)?;
    chunking::unchunk_array_leaves(value)
}

/// rmpv's recursion budget: it spends two units per nesting level, so this admits 127 nested
/// dictionaries and lists (Flax trees are a few levels deep) while keeping the reader, the
/// conversion and the drop of the result well inside a 2 MiB thread stack.
const MAX_DEPTH: usize = 256;

/// Parses exactly one msgpack object spanning all of `bytes` (Python's `msgpack.unpackb`, which
/// rejects trailing data); `rmpv` borrows strings and binaries from `bytes` instead of copying.
pub(crate) fn read_nested(bytes: &[u8]) -> Result<ValueRef<'_>> {
    let mut rest = bytes;
    let value = rmpv::decode::read_value_ref_with_max_depth(&mut rest, MAX_DEPTH)
        .map_err(|e| malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(malformed(format!("{} bytes of trailing data", rest.len())));
    }
    Ok(value)
}

/// A [`Error::Format`] for msgpack data.
pub(crate) fn malformed(message: impl Into<String>) -> Error {
    Error::Format { format: "msgpack", message: message.into() }
}

fn value_from_msgpack(value: ValueRef) -> Result<Value> {
    Ok(match value {
        ValueRef::Map(entries) => Value::Dict(dict_from_msgpack(entries)?),
        ValueRef::Array(items) => {
            Value::List(items.into_iter().map(value_from_msgpack).collect::<Result<_>>()?)
        }
        ValueRef::Ext(code, data) => ext_from_msgpack(code, data)?,
        scalar => Value::Scalar(scalar_from_msgpack(scalar)?),
    })
}

fn dict_from_msgpack(entries: Vec<(ValueRef, ValueRef)>) -> Result<FrozenDict> {
    entries
        .into_iter()
        .map(|(key, value)| match key {
            ValueRef::String(s) => match s.into_str() {
                Some(key) => Ok((key.to_owned(), value_from_msgpack(value)?)),
                None => Err(malformed("map key is not valid UTF-8")),
            },
            other => Err(malformed(format!("map key {other} is not a string"))),
        })
        .collect()
}

fn ext_from_msgpack(code: i8, data: &[u8]) -> Result<Value> {
    match code {
        c if c == ExtType::Ndarray as i8 || c == ExtType::NpScalar as i8 => {
            Ok(Value::Tensor(ndarray::ndarray_from_bytes(data)?))
        }
        c if c == ExtType::NativeComplex as i8 => complex_from_bytes(data),
        other => Err(malformed(format!("unknown msgpack extension type {other}"))),
    }
}

/// A type-2 extension: the msgpack pair `[real, imag]`.
fn complex_from_bytes(data: &[u8]) -> Result<Value> {
    let number = |v: &ValueRef| match v {
        ValueRef::F64(x) => Some(*x),
        ValueRef::F32(x) => Some(f64::from(*x)),
        ValueRef::Integer(n) => n.as_f64(),
        _ => None,
    };
    match read_nested(data)? {
        ValueRef::Array(parts) => match parts.as_slice() {
            [re, im] => match (number(re), number(im)) {
                (Some(re), Some(im)) => Ok(Value::Scalar(Scalar::Complex(re, im))),
                _ => Err(malformed("complex parts are not numbers")),
            },
            _ => Err(malformed(format!("complex has {} parts, not 2", parts.len()))),
        },
        _ => Err(malformed("complex payload is not a [real, imag] array")),
    }
}

fn scalar_from_msgpack(value: ValueRef) -> Result<Scalar> {
    Ok(match value {
        ValueRef::Nil => Scalar::None,
        ValueRef::Boolean(b) => Scalar::Bool(b),
        ValueRef::Integer(n) => {
            Scalar::Int(n.as_i64().ok_or_else(|| malformed(format!("integer {n} does not fit in an i64")))?)
        }
        ValueRef::F32(x) => Scalar::Float(f64::from(x)),
        ValueRef::F64(x) => Scalar::Float(x),
        ValueRef::String(s) => {
            Scalar::Str(s.into_str().ok_or_else(|| malformed("string is not valid UTF-8"))?.to_owned())
        }
        ValueRef::Binary(bytes) => Scalar::Bytes(bytes.to_vec()),
        container => return Err(malformed(format!("{container} is not a scalar"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serialization::testing::{ext, int, map, ndarray_payload, pack};
    use rmp::encode;

    fn format_error(bytes: &[u8]) -> String {
        match msgpack_restore(bytes) {
            Err(Error::Format { message, .. }) => message,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    fn sample() -> Vec<u8> {
        let array = ext(1, &ndarray_payload(&[2], "float64", &[0; 16]));
        let complex = ext(
            2,
            &pack(|out| {
                encode::write_array_len(out, 2).unwrap();
                encode::write_f64(out, 1.5).unwrap();
                encode::write_f64(out, -2.0).unwrap();
            }),
        );
        let list = pack(|out| {
            encode::write_array_len(out, 3).unwrap();
            encode::write_nil(out).unwrap();
            encode::write_bool(out, true).unwrap();
            encode::write_str(out, "x").unwrap();
        });
        map(&[("b", array), ("a", map(&[("n", int(-3)), ("c", complex)])), ("l", list)])
    }

    #[test]
    fn restores_dicts_lists_arrays_and_scalars_in_byte_order() {
        let Value::Dict(root) = msgpack_restore(&sample()).unwrap() else { panic!("not a dict") };
        assert_eq!(root.keys().collect::<Vec<_>>(), ["b", "a", "l"]);
        assert_eq!(root.tensor(&["b"]).unwrap().size(), [2]);
        assert!(matches!(root.get_path(&["a", "n"]), Some(Value::Scalar(Scalar::Int(-3)))));
        assert!(
            matches!(root.get_path(&["a", "c"]), Some(Value::Scalar(Scalar::Complex(re, im))) if *re == 1.5 && *im == -2.0)
        );
        let list = root.get("l").and_then(Value::as_list).unwrap();
        assert!(
            matches!(list, [Value::Scalar(Scalar::None), Value::Scalar(Scalar::Bool(true)), Value::Scalar(Scalar::Str(s))] if s == "x")
        );
    }

    #[test]
    fn numpy_scalar_extension_restores_a_0d_tensor() {
        let t = msgpack_restore(&ext(3, &ndarray_payload(&[], "int32", &9i32.to_le_bytes()))).unwrap();
        let t = t.as_tensor().unwrap();
        assert_eq!((t.size(), t.kind(), t.int64_value(&[])), (vec![], tch::Kind::Int, 9));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample();
        for end in 0..bytes.len() {
            format_error(&bytes[..end]);
        }
    }

    #[test]
    fn trailing_data() {
        let mut bytes = sample();
        bytes.push(0xc0);
        assert!(format_error(&bytes).contains("1 bytes of trailing data"));
    }

    #[test]
    fn non_string_keys() {
        let int_key = pack(|out| {
            encode::write_map_len(out, 1).unwrap();
            encode::write_sint(out, 0).unwrap();
            encode::write_nil(out).unwrap();
        });
        assert!(format_error(&int_key).contains("not a string"));
        let invalid_utf8_key = [0x81, 0xa1, 0xff, 0xc0];
        assert!(format_error(&invalid_utf8_key).contains("UTF-8"));
        assert!(format_error(&[0xa1, 0xff]).contains("UTF-8"));
    }

    #[test]
    fn unknown_extension_type() {
        assert!(format_error(&ext(7, &[0; 4])).contains("extension type 7"));
        assert!(format_error(&ext(-1, &[0; 8])).contains("extension type -1"));
    }

    #[test]
    fn malformed_complex() {
        let three = pack(|out| {
            encode::write_array_len(out, 3).unwrap();
            for _ in 0..3 {
                encode::write_f64(out, 0.0).unwrap();
            }
        });
        assert!(format_error(&ext(2, &three)).contains("3 parts"));
        let strings = pack(|out| {
            encode::write_array_len(out, 2).unwrap();
            encode::write_str(out, "1").unwrap();
            encode::write_str(out, "2").unwrap();
        });
        assert!(format_error(&ext(2, &strings)).contains("not numbers"));
        format_error(&ext(2, &int(1)));
    }

    #[test]
    fn integers_beyond_i64() {
        let big = pack(|out| {
            encode::write_u64(out, u64::MAX).unwrap();
        });
        assert!(format_error(&big).contains("does not fit"));
        let max = pack(|out| {
            encode::write_u64(out, i64::MAX as u64).unwrap();
        });
        assert!(matches!(msgpack_restore(&max), Ok(Value::Scalar(Scalar::Int(i64::MAX)))));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let nested = |levels: usize| [vec![0x91; levels], vec![0xc0]].concat();
        assert!(msgpack_restore(&nested(127)).is_ok());
        format_error(&nested(128));
        format_error(&nested(1_000_000));
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        // array32, map32, bin32, str32 and ext32 headers declaring 4 GiB that is not there.
        for marker in [0xdd, 0xdf, 0xc6, 0xdb] {
            format_error(&[marker, 0xff, 0xff, 0xff, 0xff]);
        }
        format_error(&[0xc9, 0xff, 0xff, 0xff, 0xff, 0x01]);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A fixed-seed xorshift stream, mutating a valid document and also read as-is.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid = sample();
        for _ in 0..2000 {
            let mut bytes = valid.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() % bytes.len() as u64) as usize;
                bytes[i] = next() as u8;
            }
            let _ = msgpack_restore(&bytes);
            let noise: Vec<u8> = (0..next() % 64).map(|_| next() as u8).collect();
            let _ = msgpack_restore(&noise);
        }
    }
}
