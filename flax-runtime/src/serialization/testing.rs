//! Builders of raw msgpack, for tests that feed the reader hand-made (often malformed) input.

use rmp::encode;

/// msgpack bytes written by `write` into a fresh buffer.
pub(crate) fn pack(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out);
    out
}

/// Extension `code` around `payload`.
pub(crate) fn ext(code: i8, payload: &[u8]) -> Vec<u8> {
    pack(|out| {
        encode::write_ext_meta(out, payload.len() as u32, code).unwrap();
        out.extend_from_slice(payload);
    })
}

/// Flax's array payload `[shape, dtype, data]`, with any (even negative) dimensions.
pub(crate) fn ndarray_payload(shape: &[i64], dtype: &str, data: &[u8]) -> Vec<u8> {
    pack(|out| {
        encode::write_array_len(out, 3).unwrap();
        encode::write_array_len(out, shape.len() as u32).unwrap();
        for &d in shape {
            encode::write_sint(out, d).unwrap();
        }
        encode::write_str(out, dtype).unwrap();
        encode::write_bin(out, data).unwrap();
    })
}

/// A map of already-encoded values under string keys.
pub(crate) fn map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    pack(|out| {
        encode::write_map_len(out, entries.len() as u32).unwrap();
        for (key, value) in entries {
            encode::write_str(out, key).unwrap();
            out.extend_from_slice(value);
        }
    })
}

/// The msgpack encoding of one integer.
pub(crate) fn int(n: i64) -> Vec<u8> {
    pack(|out| {
        encode::write_sint(out, n).unwrap();
    })
}
