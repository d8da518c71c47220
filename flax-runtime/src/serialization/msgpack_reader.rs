//! The msgpack reader behind [`msgpack_restore`](super::msgpack_restore) and checkpoint
//! restores: one pass, front to back, over any byte source (a slice, or a file read through
//! a buffer), building the [`Value`] tree as it goes.
//!
//! Arrays' bytes are read straight into the memory of their tensors (allocated uninitialized:
//! their bytes are written once), so a file is copied once, from the kernel into the tensors,
//! and a checksum over the source sees each byte once, right after it arrives.
//!
//! Every length is checked against the bytes the document has left before anything is
//! allocated for it, and every object is counted against the document's [`ObjectBudget`], so
//! a hostile document is refused long before its decoded form outgrows a small multiple of
//! its size.

use super::msgpack::{malformed, ExtType};
use super::ndarray;
use super::object_budget::ObjectBudget;
use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{Scalar, Value};
use std::io::{self, Read};
use std::path::Path;

/// How deeply dictionaries and lists may nest (Flax trees are a few levels deep): enough for
/// any state dict while keeping the reader, and the drop of what it returns, well inside a
/// 2 MiB thread stack.
const MAX_NESTING: usize = 127;

/// One msgpack object's header: a scalar whole, or the length of what follows it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Header {
    Nil,
    Bool(bool),
    Int(i64),
    /// An unsigned integer beyond `i64::MAX`.
    BigUint(u64),
    F32(f32),
    F64(f64),
    /// A string of this many bytes.
    Str(u32),
    /// A byte string of this many bytes.
    Bin(u32),
    /// An array of this many items.
    Array(u32),
    /// A map of this many entries.
    Map(u32),
    /// An extension: its type code and payload length.
    Ext(i8, u32),
}

impl Header {
    /// How many objects follow as this one's children.
    fn children(self) -> u64 {
        match self {
            Header::Array(n) => u64::from(n),
            Header::Map(n) => 2 * u64::from(n),
            _ => 0,
        }
    }

    /// How many bytes of payload follow this header (strings, byte strings, extensions).
    fn payload_len(self) -> u64 {
        match self {
            Header::Str(n) | Header::Bin(n) | Header::Ext(_, n) => u64::from(n),
            _ => 0,
        }
    }

    /// The header as error messages name it.
    pub(crate) fn describe(self) -> String {
        match self {
            Header::Nil => "nil".to_owned(),
            Header::Bool(b) => format!("boolean {b}"),
            Header::Int(n) => format!("integer {n}"),
            Header::BigUint(n) => format!("integer {n}"),
            Header::F32(x) => format!("float {x}"),
            Header::F64(x) => format!("float {x}"),
            Header::Str(n) => format!("string of {n} bytes"),
            Header::Bin(n) => format!("byte string of {n} bytes"),
            Header::Array(n) => format!("array of {n} items"),
            Header::Map(n) => format!("map of {n} entries"),
            Header::Ext(code, n) => format!("extension {code} of {n} bytes"),
        }
    }
}

/// Reads the single msgpack object that `source`'s `len` bytes hold (Python's
/// `msgpack.unpackb`, which rejects trailing data). `origin` names the source in I/O errors.
pub(crate) fn read_document(source: impl Read, len: u64, origin: &Path) -> Result<Value> {
    let mut reader = Reader { source, remaining: len, len, budget: ObjectBudget::new(len), origin };
    let value = reader.value(0)?;
    reader.check_consumed()?;
    // A source longer than it said (a file that grew since its length was taken).
    match reader.source.read(&mut [0]) {
        Ok(0) => Ok(value),
        Ok(_) => Err(malformed(format!("more bytes than the {len} of the document"))),
        Err(e) => Err(Error::io(origin, e)),
    }
}

/// The reader's position in its source and in the document being read (the whole source,
/// or an extension's payload, which is a document of its own).
pub(crate) struct Reader<'o, R> {
    source: R,
    /// Bytes left in the current document.
    remaining: u64,
    /// The current document's length.
    len: u64,
    budget: ObjectBudget,
    origin: &'o Path,
}

impl<R: Read> Reader<'_, R> {
    /// The next object's header, counted against the document's budget.
    pub(crate) fn header(&mut self) -> Result<Header> {
        let marker = self.byte()?;
        let header = match marker {
            0x00..=0x7f => Header::Int(i64::from(marker)),
            0x80..=0x8f => Header::Map(u32::from(marker & 0x0f)),
            0x90..=0x9f => Header::Array(u32::from(marker & 0x0f)),
            0xa0..=0xbf => Header::Str(u32::from(marker & 0x1f)),
            0xc0 => Header::Nil,
            0xc1 => return Err(malformed(format!("reserved marker 0xc1 at byte {}", self.at() - 1))),
            0xc2 => Header::Bool(false),
            0xc3 => Header::Bool(true),
            0xc4..=0xc6 => Header::Bin(self.length(1 << (marker - 0xc4))?),
            0xc7..=0xc9 => {
                let len = self.length(1 << (marker - 0xc7))?;
                Header::Ext(self.byte()? as i8, len)
            }
            0xca => Header::F32(f32::from_bits(self.big_endian(4)? as u32)),
            0xcb => Header::F64(f64::from_bits(self.big_endian(8)?)),
            0xcc..=0xcf => match self.big_endian(1 << (marker - 0xcc))? {
                n if n <= i64::MAX as u64 => Header::Int(n as i64),
                n => Header::BigUint(n),
            },
            0xd0..=0xd3 => {
                let bytes = 1 << (marker - 0xd0);
                // Sign-extend the `bytes`-byte two's complement value.
                let shift = 64 - 8 * bytes;
                Header::Int(((self.big_endian(bytes)? << shift) as i64) >> shift)
            }
            0xd4..=0xd8 => Header::Ext(self.byte()? as i8, 1 << (marker - 0xd4)),
            0xd9..=0xdb => Header::Str(self.length(1 << (marker - 0xd9))?),
            0xdc => Header::Array(self.length(2)?),
            0xdd => Header::Array(self.length(4)?),
            0xde => Header::Map(self.length(2)?),
            0xdf => Header::Map(self.length(4)?),
            0xe0..=0xff => Header::Int(i64::from(marker as i8)),
        };
        let after = self.remaining.saturating_sub(header.payload_len());
        self.budget.admit(header.children(), self.at(), after)?;
        Ok(header)
    }

    /// The object at nesting level `depth` of the current document.
    fn value(&mut self, depth: usize) -> Result<Value> {
        if depth > MAX_NESTING {
            return Err(malformed(format!("dictionaries and lists nest deeper than {MAX_NESTING} levels")));
        }
        Ok(match self.header()? {
            Header::Array(n) => Value::List((0..n).map(|_| self.value(depth + 1)).collect::<Result<_>>()?),
            Header::Map(n) => {
                // Collecting into a dictionary keeps a duplicated key's first position and last
                // value, as a Python dict built from the same pairs does.
                let entries: Vec<(String, Value)> =
                    (0..n).map(|_| Ok((self.key()?, self.value(depth + 1)?))).collect::<Result<_>>()?;
                Value::Dict(entries.into_iter().collect())
            }
            Header::Ext(code, len) => self.payload(len, |r| r.extension(code))?,
            scalar => Value::Scalar(self.scalar(scalar)?),
        })
    }

    /// A map key: a UTF-8 string.
    fn key(&mut self) -> Result<String> {
        match self.header()? {
            Header::Str(n) => {
                String::from_utf8(self.bytes(n)?).map_err(|_| malformed("map key is not valid UTF-8"))
            }
            other => Err(malformed(format!("map key {} is not a string", other.describe()))),
        }
    }

    fn scalar(&mut self, header: Header) -> Result<Scalar> {
        Ok(match header {
            Header::Nil => Scalar::None,
            Header::Bool(b) => Scalar::Bool(b),
            Header::Int(n) => Scalar::Int(n),
            Header::BigUint(n) => return Err(malformed(format!("integer {n} does not fit in an i64"))),
            Header::F32(x) => Scalar::Float(f64::from(x)),
            Header::F64(x) => Scalar::Float(x),
            Header::Str(n) => Scalar::Str(
                String::from_utf8(self.bytes(n)?).map_err(|_| malformed("string is not valid UTF-8"))?,
            ),
            Header::Bin(n) => Scalar::Bytes(self.bytes(n)?),
            container => return Err(malformed(format!("{} is not a scalar", container.describe()))),
        })
    }

    /// The value an extension's payload (the current document) holds.
    fn extension(&mut self, code: i8) -> Result<Value> {
        match code {
            c if c == ExtType::Ndarray as i8 || c == ExtType::NpScalar as i8 => ndarray::read_ndarray(self),
            c if c == ExtType::NativeComplex as i8 => self.complex(),
            other => Err(malformed(format!("unknown msgpack extension type {other}"))),
        }
    }

    /// A type-2 extension's payload: the msgpack pair `[real, imag]`.
    fn complex(&mut self) -> Result<Value> {
        let number = |v: &Value| match v {
            Value::Scalar(Scalar::Float(x)) => Some(*x),
            Value::Scalar(Scalar::Int(n)) => Some(*n as f64),
            _ => None,
        };
        match self.value(0)? {
            Value::List(parts) => match parts.as_slice() {
                [re, im] => match (number(re), number(im)) {
                    (Some(re), Some(im)) => Ok(Value::Scalar(Scalar::Complex(re, im))),
                    _ => Err(malformed("complex parts are not numbers")),
                },
                _ => Err(malformed(format!("complex has {} parts, not 2", parts.len()))),
            },
            _ => Err(malformed("complex payload is not a [real, imag] array")),
        }
    }

    /// Runs `read` on the next `len` bytes as a document of their own (an extension's
    /// payload, with its own object budget), which it must consume exactly.
    fn payload<T>(&mut self, len: u32, read: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let len = u64::from(len);
        self.check_available(len)?;
        let outer =
            (self.remaining - len, self.len, std::mem::replace(&mut self.budget, ObjectBudget::new(len)));
        (self.remaining, self.len) = (len, len);
        let value = read(self)?;
        self.check_consumed()?;
        (self.remaining, self.len, self.budget) = outer;
        Ok(value)
    }

    fn check_consumed(&self) -> Result<()> {
        match self.remaining {
            0 => Ok(()),
            n => Err(malformed(format!("{n} bytes of trailing data"))),
        }
    }

    /// Refuses a length the current document's remaining bytes cannot hold, before anything
    /// is allocated for it.
    pub(crate) fn check_available(&self, len: u64) -> Result<()> {
        if len > self.remaining {
            return Err(malformed(format!(
                "{len} bytes declared at byte {} of a {}-byte document, which has {} left",
                self.at(),
                self.len,
                self.remaining
            )));
        }
        Ok(())
    }

    /// Fills `buf` with the document's next bytes.
    pub(crate) fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.check_available(buf.len() as u64)?;
        self.source.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                malformed(format!("the data ends early, before byte {}", self.len))
            }
            _ => Error::io(self.origin, e),
        })?;
        self.remaining -= buf.len() as u64;
        Ok(())
    }

    /// The next `n` bytes, in a buffer of their own.
    pub(crate) fn bytes(&mut self, n: u32) -> Result<Vec<u8>> {
        self.check_available(u64::from(n))?;
        let mut buf = vec![0; n as usize];
        self.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn byte(&mut self) -> Result<u8> {
        let mut byte = [0];
        self.read_exact(&mut byte)?;
        Ok(byte[0])
    }

    /// A big-endian unsigned integer of `n` (at most 8) bytes.
    fn big_endian(&mut self, n: usize) -> Result<u64> {
        let mut bytes = [0; 8];
        self.read_exact(&mut bytes[8 - n..])?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// A length field of `n` (1, 2 or 4) bytes.
    fn length(&mut self, n: usize) -> Result<u32> {
        // At most four bytes: the value fits.
        Ok(self.big_endian(n)? as u32)
    }

    /// The position in the current document.
    fn at(&self) -> u64 {
        self.len - self.remaining
    }
}
