//! The IDX file format of MNIST and Fashion-MNIST, plain or gzipped.
//!
//! An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of
//! dimensions), one big-endian `u32` per dimension, then the elements in row-major order,
//! big-endian. Gzipped files (`.gz`, as distributed) are recognised by their content.

use crate::core::errors::{Error, Result};
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::Path;
use tch::{Kind, Tensor};

const FORMAT: &str = "IDX";
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads the IDX file at `path` (gzipped or not) into a tensor of its shape and dtype
/// (`uint8`, `int8`, `int16`, `int32`, `float32` or `float64`).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Format`] when it is not valid gzip
/// or not a well-formed IDX file (bad magic number, unknown dtype, truncated data or bytes
/// past the end).
pub fn read_idx(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_idx(&bytes).map_err(|e| match e {
        Error::Format { format, message } => {
            Error::Format { format, message: format!("{}: {message}", path.display()) }
        }
        other => other,
    })
}

/// Parses the bytes of an IDX file, gunzipping them first when they are gzip data.
///
/// # Errors
/// As [`read_idx`], without the I/O.
pub fn parse_idx(bytes: &[u8]) -> Result<Tensor> {
    if bytes.starts_with(&GZIP_MAGIC) {
        let mut raw = Vec::new();
        MultiGzDecoder::new(bytes)
            .read_to_end(&mut raw)
            .map_err(|e| Error::Format { format: "gzip", message: e.to_string() })?;
        return parse_raw(&raw);
    }
    parse_raw(bytes)
}

/// Parses uncompressed IDX bytes.
fn parse_raw(bytes: &[u8]) -> Result<Tensor> {
    let magic = take(bytes, 0, 4, "the magic number")?;
    let (code, ndim) = (magic[2], magic[3]);
    if magic[..2] != [0, 0] {
        return Err(malformed(format!(
            "bad magic number {:#010x}: an IDX file starts with two zero bytes",
            u32::from_be_bytes([magic[0], magic[1], code, ndim])
        )));
    }
    let kind = kind_of(code)?;
    let header_len = 4 + 4 * usize::from(ndim);
    let dims: Vec<i64> = take(bytes, 4, header_len - 4, "the dimensions")?
        .chunks_exact(4)
        .map(|d| i64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]])))
        .collect();
    let elt = kind.elt_size_in_bytes();
    let expected = dims
        .iter()
        .try_fold(elt, |n, &d| n.checked_mul(d as usize))
        .ok_or_else(|| malformed(format!("dimensions {dims:?} are too large")))?;
    let data = &bytes[header_len..];
    if data.len() != expected {
        let what = if data.len() < expected { "truncated" } else { "longer than its header says" };
        return Err(malformed(format!(
            "the data is {what}: dimensions {dims:?} of {kind:?} need {expected} bytes, found {}",
            data.len()
        )));
    }
    let mut native = data.to_vec();
    // IDX is big-endian; libtorch's layout is the host's (little-endian on every platform
    // libtorch ships for).
    if cfg!(target_endian = "little") && elt > 1 {
        native.chunks_exact_mut(elt).for_each(<[u8]>::reverse);
    }
    Ok(Tensor::f_from_data_size(&native, &dims, kind)?)
}

/// The `len` bytes at `start`, or a "truncated" error naming `what` was being read.
fn take<'b>(bytes: &'b [u8], start: usize, len: usize, what: &str) -> Result<&'b [u8]> {
    bytes
        .get(start..start + len)
        .ok_or_else(|| malformed(format!("truncated in {what}: {} bytes in all", bytes.len())))
}

/// The tensor kind of an IDX dtype code.
fn kind_of(code: u8) -> Result<Kind> {
    Ok(match code {
        0x08 => Kind::Uint8,
        0x09 => Kind::Int8,
        0x0B => Kind::Int16,
        0x0C => Kind::Int,
        0x0D => Kind::Float,
        0x0E => Kind::Double,
        _ => return Err(malformed(format!("unknown dtype code {code:#04x}"))),
    })
}

fn malformed(message: String) -> Error {
    Error::Format { format: FORMAT, message }
}
