//! `msgpack_serialize` / `msgpack_restore`: a [`Value`] tree to and from Flax's msgpack bytes.

use super::{chunking, msgpack_reader, ndarray};
use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{FrozenDict, Scalar, Value};
use rmp::encode;
use std::fmt;
use std::io::Read;
use std::path::Path;

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

/// Writes `value` as Flax's `flax.serialization.msgpack_serialize` does: every dictionary's
/// keys sorted (Flax first copies the tree with `jax.tree_util.tree_map`, which rebuilds
/// dictionaries in sorted order), lists as msgpack arrays, tensors as extension type 1, and
/// arrays over 2^30 bytes reached through dictionaries split into chunks.
///
/// Flax's writer rejects tuples (it packs with `strict_types=True`), so a [`Value::List`] here is
/// a Python list. Non-contiguous or CUDA tensors are written from a contiguous CPU copy.
/// Tensors whose kind numpy cannot name (quantized, `ComplexHalf`) are an [`Error::Value`].
pub fn msgpack_serialize(value: &Value) -> Result<Vec<u8>> {
    Encoder { key_order: KeyOrder::Sorted, max_chunk_size: chunking::MAX_CHUNK_SIZE }.encode(value)
}

/// How an [`Encoder`] orders the keys of dictionaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyOrder {
    /// Sorted, as `msgpack_serialize` writes them.
    Sorted,
    /// As stored, as `to_bytes` writes them.
    Insertion,
}

/// The writer behind [`msgpack_serialize`] and `to_bytes`; the chunk size is a parameter so
/// that tests can exercise chunking with small arrays, as Python tests patch `MAX_CHUNK_SIZE`.
pub(crate) struct Encoder {
    pub(crate) key_order: KeyOrder,
    pub(crate) max_chunk_size: usize,
}

impl Encoder {
    /// The bytes of `value`.
    pub(crate) fn encode(&self, value: &Value) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write_value(&mut out, value, self.key_order, true)?;
        Ok(out)
    }

    /// `chunkable` is whether every container from the root down to `value` is a dictionary,
    /// the only places Flax's `_chunk_array_leaves_in_place` looks.
    fn write_value(&self, out: &mut Vec<u8>, value: &Value, order: KeyOrder, chunkable: bool) -> Result<()> {
        match value {
            Value::Tensor(t) => match chunking::chunk_if_oversized(t, self.max_chunk_size, chunkable)? {
                // Flax chunks after sorting, so the chunk map keeps its construction order.
                Some(chunked) => self.write_dict(out, &chunked, KeyOrder::Insertion, false),
                None => ndarray::write_ndarray(out, t, ExtType::Ndarray),
            },
            Value::Dict(dict) => self.write_dict(out, dict, order, chunkable),
            Value::List(items) => {
                written(encode::write_array_len(out, len_u32(items.len(), "list")?))?;
                items.iter().try_for_each(|item| self.write_value(out, item, order, false))
            }
            Value::Scalar(scalar) => self.write_scalar(out, scalar, chunkable),
            // A box is written as its state dict `{value: …}`, as Flax serializes the dataclass.
            Value::Boxed(_) => self.write_value(out, &crate::tree::Tree::state_dict(value), order, chunkable),
        }
    }

    /// A scalar, or a host-side unsigned array, written (and chunked) like a tensor.
    fn write_scalar(&self, out: &mut Vec<u8>, scalar: &Scalar, chunkable: bool) -> Result<()> {
        match scalar {
            Scalar::None => written(encode::write_nil(out)),
            Scalar::Bool(b) => written(encode::write_bool(out, *b)),
            Scalar::Int(n) => written(encode::write_sint(out, *n)),
            // Python floats are doubles, and msgpack-python always packs them as float64.
            Scalar::Float(x) => written(encode::write_f64(out, *x)),
            Scalar::Str(s) => write_str(out, s),
            Scalar::Bytes(bytes) => {
                written(encode::write_bin_len(out, len_u32(bytes.len(), "bytes")?))?;
                out.extend_from_slice(bytes);
                Ok(())
            }
            Scalar::Complex(re, im) => {
                let mut payload = Vec::new();
                written(encode::write_array_len(&mut payload, 2))?;
                written(encode::write_f64(&mut payload, *re))?;
                written(encode::write_f64(&mut payload, *im))?;
                written(encode::write_ext_meta(
                    out,
                    len_u32(payload.len(), "complex")?,
                    ExtType::NativeComplex as i8,
                ))?;
                out.extend_from_slice(&payload);
                Ok(())
            }
            Scalar::UintArray(array) => {
                match chunking::chunk_uint_array_if_oversized(array, self.max_chunk_size, chunkable)? {
                    Some(chunked) => self.write_dict(out, &chunked, KeyOrder::Insertion, false),
                    None => ndarray::write_uint_array(out, array),
                }
            }
        }
    }

    fn write_dict(
        &self,
        out: &mut Vec<u8>,
        dict: &FrozenDict,
        order: KeyOrder,
        chunkable: bool,
    ) -> Result<()> {
        let mut entries: Vec<(&str, &Value)> = dict.iter().collect();
        if order == KeyOrder::Sorted {
            entries.sort_unstable_by_key(|&(key, _)| key);
        }
        written(encode::write_map_len(out, len_u32(entries.len(), "dict")?))?;
        entries.into_iter().try_for_each(|(key, value)| {
            write_str(out, key)?;
            self.write_value(out, value, order, chunkable)
        })
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) -> Result<()> {
    written(encode::write_str_len(out, len_u32(s.len(), "string")?))?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// rmp's writers are generic over fallible sinks; writing into a `Vec` cannot fail, but the
/// error is still carried rather than unwrapped.
pub(crate) fn written<T, E: fmt::Display>(result: std::result::Result<T, E>) -> Result<()> {
    result.map(drop).map_err(|e| Error::Value(format!("msgpack write failed: {e}")))
}

/// A length as msgpack's 32-bit length fields hold it.
pub(crate) fn len_u32(len: usize, what: &str) -> Result<u32> {
    u32::try_from(len)
        .map_err(|_| Error::Value(format!("{what} of length {len} exceeds msgpack's 2^32 - 1 limit")))
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
    msgpack_restore_from(bytes, bytes.len() as u64, Path::new("<bytes>"))
}

/// [`msgpack_restore`] of the `len` bytes `source` yields (a checkpoint file, read in one
/// pass with its arrays' bytes going straight into their tensors); `origin` names the source
/// in I/O errors.
pub(crate) fn msgpack_restore_from(source: impl Read, len: u64, origin: &Path) -> Result<Value> {
    chunking::unchunk_array_leaves(msgpack_reader::read_document(source, len, origin)?)
}

/// A [`Error::Format`] for msgpack data.
pub(crate) fn malformed(message: impl Into<String>) -> Error {
    Error::Format { format: "msgpack", message: message.into() }
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
    fn a_duplicated_key_keeps_its_first_position_and_last_value() {
        let Value::Dict(d) = msgpack_restore(&map(&[("a", int(1)), ("b", int(2)), ("a", int(3))])).unwrap()
        else {
            panic!("not a dict")
        };
        assert_eq!(d.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert!(matches!(d.get("a"), Some(Value::Scalar(Scalar::Int(3)))));
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

#[cfg(test)]
mod encode_tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    fn round_trip(t: &Tensor) -> Tensor {
        let bytes = msgpack_serialize(&Value::Tensor(t.shallow_clone())).unwrap();
        msgpack_restore(&bytes).unwrap().as_tensor().unwrap().shallow_clone()
    }

    #[test]
    fn every_serializable_kind_round_trips() {
        let base = Tensor::arange(12, (Kind::Double, Device::Cpu)).reshape([3, 4]) * 0.25 - 1.0;
        for kind in [
            Kind::Half,
            Kind::BFloat16,
            Kind::Float,
            Kind::Double,
            Kind::Int8,
            Kind::Int16,
            Kind::Int,
            Kind::Int64,
            Kind::Uint8,
            Kind::Bool,
            Kind::ComplexFloat,
            Kind::ComplexDouble,
            Kind::Float8e4m3fn,
            Kind::Float8e5m2,
            Kind::Float8e4m3fnuz,
            Kind::Float8e5m2fnuz,
        ] {
            let t = base.to_kind(kind);
            let back = round_trip(&t);
            assert_eq!((back.kind(), back.size()), (kind, vec![3, 4]));
            assert!(back.to_kind(Kind::Double).equal(&t.to_kind(Kind::Double)), "{kind:?}");
        }
    }

    #[test]
    fn views_and_tensors_requiring_grad_write_their_values() {
        let t = Tensor::arange(12, (Kind::Float, Device::Cpu)).reshape([3, 4]);
        let view = t.tr().slice(0, 1, 4, 2);
        assert!(round_trip(&view).equal(&view.contiguous()));
        let leaf = t.copy().set_requires_grad(true);
        assert!(round_trip(&leaf).equal(&t));
    }

    #[test]
    fn kinds_without_a_numpy_dtype_are_refused() {
        let t = Tensor::zeros([2], (Kind::ComplexHalf, Device::Cpu));
        let err = msgpack_serialize(&Value::Tensor(t)).unwrap_err();
        assert!(matches!(&err, Error::Value(m) if m.contains("ComplexHalf")), "{err}");
    }

    #[test]
    fn scalars_round_trip() {
        let scalars = [
            Scalar::None,
            Scalar::Bool(false),
            Scalar::Int(i64::MIN),
            Scalar::Int(-33),
            Scalar::Int(1 << 40),
            Scalar::Float(-0.0),
            Scalar::Str("é".repeat(200)),
            Scalar::Bytes(vec![7; 70_000]),
            Scalar::Complex(f64::INFINITY, -1.0),
        ];
        for scalar in scalars {
            let bytes = msgpack_serialize(&Value::Scalar(scalar.clone())).unwrap();
            match msgpack_restore(&bytes).unwrap() {
                Value::Scalar(back) => assert!(format!("{back:?}") == format!("{scalar:?}")),
                other => panic!("{other:?}"),
            }
        }
    }
}
