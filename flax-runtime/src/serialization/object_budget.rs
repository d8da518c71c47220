//! A bound on the memory a msgpack document can make the reader allocate, enforced as it is
//! read.
//!
//! Every msgpack object costs at least one byte in the file but tens of bytes once decoded (a
//! [`Value`](crate::Value), a map entry's key, vector growth), so a hostile file of a few
//! hundred megabytes of nils would take gigabytes to read. A state dict is mostly arrays,
//! whose bytes are read once into their tensors; its other objects (maps, keys, shapes, dtype
//! names) are a small fraction of the file. So a document may hold at most
//! [`MAX_OBJECTS_FLOOR`] objects plus one per [`BYTES_PER_OBJECT`] bytes; the reader counts
//! them as it reads and refuses the document with [`Error::Format`](crate::Error::Format) at
//! the first object over. Reading an admitted document costs at most about `8 x` its size
//! (with [`OBJECT_COST`] bytes per object) plus 10 MiB, plus the arrays it holds. A document
//! that declares more objects than its remaining bytes could hold (a truncated or lying
//! length) is refused at once, before any of them is read.

use super::msgpack::malformed;
use crate::core::errors::Result;

/// What one decoded object costs at most, in bytes (a [`Value`](crate::Value), a map entry's
/// key and index, and vector growth).
pub(crate) const OBJECT_COST: usize = 160;
/// A document may hold this many objects whatever its size (10 MiB of decoded objects).
pub(crate) const MAX_OBJECTS_FLOOR: u64 = 1 << 16;
/// And one more object for every this many bytes (`OBJECT_COST / 8`: 8 bytes decoded per
/// byte of file).
pub(crate) const BYTES_PER_OBJECT: u64 = (OBJECT_COST / 8) as u64;

/// The objects one document (a file, or an extension's payload) has read and still declares.
#[derive(Debug)]
pub(crate) struct ObjectBudget {
    len: u64,
    budget: u64,
    objects: u64,
    /// Objects declared (the root, containers' items) and not read yet.
    pending: u64,
}

impl ObjectBudget {
    /// The budget of a document of `len` bytes, before its root object.
    pub(crate) fn new(len: u64) -> Self {
        ObjectBudget { len, budget: MAX_OBJECTS_FLOOR + len / BYTES_PER_OBJECT, objects: 0, pending: 1 }
    }

    /// Counts one object whose header ends at byte `at`, declaring `children` objects, with
    /// `remaining` bytes of the document after it (its header and any payload).
    ///
    /// # Errors
    /// [`Error::Format`](crate::Error::Format) when the document holds more objects than its
    /// budget, or declares more than its remaining bytes can hold (each takes at least one).
    pub(crate) fn admit(&mut self, children: u64, at: u64, remaining: u64) -> Result<()> {
        self.objects += 1;
        if self.objects > self.budget {
            return Err(malformed(format!(
                "more than {} objects in {} bytes: not a state dict (each object costs about \
                 {OBJECT_COST} bytes to decode)",
                self.budget, self.len
            )));
        }
        self.pending = self.pending.saturating_sub(1) + children;
        if self.pending > remaining {
            return Err(malformed(format!(
                "{} more objects declared at byte {at} than the {remaining} bytes left can hold",
                self.pending
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::core::errors::Error;
    use crate::serialization::msgpack_restore;

    fn nils(count: u32) -> Vec<u8> {
        let mut bytes = vec![0xdd];
        bytes.extend_from_slice(&count.to_be_bytes());
        bytes.resize(5 + count as usize, 0xc0);
        bytes
    }

    fn format_error(bytes: &[u8]) -> String {
        match msgpack_restore(bytes) {
            Err(Error::Format { message, .. }) => message,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn small_documents_and_state_dicts_pass() {
        assert!(msgpack_restore(&[0xc0]).is_ok());
        assert!(msgpack_restore(&nils(60_000)).is_ok());
    }

    #[test]
    fn a_document_of_nils_is_refused() {
        let err = format_error(&nils(2_000_000));
        assert!(err.contains("not a state dict"), "{err}");
    }

    #[test]
    fn declared_objects_beyond_the_bytes_are_refused() {
        let mut bytes = nils(100);
        bytes.truncate(50);
        let err = format_error(&bytes);
        assert!(err.contains("100 more objects declared at byte 5"), "{err}");
    }

    #[test]
    fn every_marker_spans_what_msgpack_says() {
        // One of each fixed-size scalar, inside an array, all counted and skipped exactly.
        let items: Vec<Vec<u8>> = vec![
            vec![0x01],
            vec![0xcc, 1],
            vec![0xcd, 0, 1],
            vec![0xce, 0, 0, 0, 1],
            vec![0xcf, 0, 0, 0, 0, 0, 0, 0, 1],
            vec![0xcb, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![0xc4, 2, 0, 0],
            vec![0xa2, b'a', b'b'],
            vec![0x81, 0xa1, b'k', 0xc0],
        ];
        let mut bytes = vec![0x90 | items.len() as u8];
        bytes.extend(items.concat());
        assert!(msgpack_restore(&bytes).is_ok());
        // One byte short, the last map's value is declared but missing.
        let err = format_error(&bytes[..bytes.len() - 1]);
        assert!(err.contains("1 more objects declared"), "{err}");
    }
}
