//! A bound on the memory a msgpack document can make the reader allocate, checked before
//! anything is decoded.
//!
//! Every msgpack object costs at least one byte in the file but about a hundred bytes once
//! decoded (the borrowed `rmpv` tree, then the [`Value`](crate::Value) tree, side by side), so a
//! hostile file of a few hundred megabytes of nils would take tens of gigabytes to read. A
//! state dict is mostly arrays, whose bytes are copied once into their tensors; its other
//! objects (maps, keys, shapes, dtype names) are a small fraction of the file. So a document
//! may hold at most [`MAX_OBJECTS_FLOOR`] objects plus one per [`BYTES_PER_OBJECT`] bytes;
//! beyond that it is refused with [`Error::Format`](crate::Error::Format) after one pass over
//! its headers, which allocates nothing. Decoding an admitted document costs at most about
//! `8 x` its size (with [`OBJECT_COST`] bytes per object) plus 10 MiB, plus the arrays it
//! holds. A document that declares more objects than its remaining bytes could hold
//! (a truncated or lying length) is refused at once, too.

use super::msgpack::malformed;
use crate::core::errors::Result;

/// What one decoded object costs at most, in bytes (measured: `rmpv::ValueRef` plus
/// [`Value`](crate::Value), a map entry's key and index, and vector growth).
pub(crate) const OBJECT_COST: usize = 160;
/// A document may hold this many objects whatever its size (10 MiB of decoded objects).
pub(crate) const MAX_OBJECTS_FLOOR: u64 = 1 << 16;
/// And one more object for every this many bytes (`OBJECT_COST / 8`: 8 bytes decoded per
/// byte of file).
pub(crate) const BYTES_PER_OBJECT: u64 = (OBJECT_COST / 8) as u64;

/// Refuses `bytes` if decoding it would allocate more than the budget allows. Documents the
/// reader would reject anyway (a reserved marker, a payload running past the end) pass, for
/// the reader to report precisely.
pub(crate) fn check_object_budget(bytes: &[u8]) -> Result<()> {
    let budget = MAX_OBJECTS_FLOOR + bytes.len() as u64 / BYTES_PER_OBJECT;
    let (mut at, mut pending, mut objects) = (0usize, 1u64, 0u64);
    while pending > 0 {
        let remaining = (bytes.len() - at) as u64;
        if pending > remaining {
            return Err(malformed(format!(
                "{pending} more objects declared at byte {at} than the {remaining} bytes left can hold"
            )));
        }
        let Some(header) = Header::read(&bytes[at..]) else { return Ok(()) };
        objects += 1;
        if objects > budget {
            return Err(malformed(format!(
                "more than {budget} objects in {} bytes: not a state dict (each object costs about \
                 {OBJECT_COST} bytes to decode)",
                bytes.len()
            )));
        }
        pending = pending - 1 + header.children;
        at = match at.checked_add(header.size) {
            Some(end) if end <= bytes.len() => end,
            _ => return Ok(()),
        };
    }
    Ok(())
}

/// One msgpack object's header: how many bytes it spans without its children, and how many
/// child objects follow it (arrays: their items; maps: keys and values). Extension payloads
/// are skipped whole: the reader checks the documents nested in them with their own budget.
struct Header {
    size: usize,
    children: u64,
}

impl Header {
    /// The header at the start of `bytes`; `None` for a reserved marker or a header cut short.
    fn read(bytes: &[u8]) -> Option<Header> {
        let marker = *bytes.first()?;
        // A length of `n` big-endian bytes right after the marker.
        let len = |n: usize| -> Option<u64> {
            let field = bytes.get(1..1 + n)?;
            Some(field.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
        };
        let leaf = |size: u64| usize::try_from(size).ok().map(|size| Header { size, children: 0 });
        match marker {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => leaf(1),
            0x80..=0x8f => Some(Header { size: 1, children: 2 * u64::from(marker & 0x0f) }),
            0x90..=0x9f => Some(Header { size: 1, children: u64::from(marker & 0x0f) }),
            0xa0..=0xbf => leaf(1 + u64::from(marker & 0x1f)),
            0xcc | 0xd0 => leaf(2),
            0xcd | 0xd1 | 0xd4 => leaf(3),
            0xd5 => leaf(4),
            0xca | 0xce | 0xd2 => leaf(5),
            0xd6 => leaf(6),
            0xcb | 0xcf | 0xd3 => leaf(9),
            0xd7 => leaf(10),
            0xd8 => leaf(18),
            // bin, str: the length, then the payload.
            0xc4 | 0xd9 => leaf(2 + len(1)?),
            0xc5 | 0xda => leaf(3 + len(2)?),
            0xc6 | 0xdb => leaf(5 + len(4)?),
            // ext: the length, the type byte, then the payload.
            0xc7 => leaf(3 + len(1)?),
            0xc8 => leaf(4 + len(2)?),
            0xc9 => leaf(6 + len(4)?),
            0xdc => Some(Header { size: 3, children: len(2)? }),
            0xdd => Some(Header { size: 5, children: len(4)? }),
            0xde => Some(Header { size: 3, children: 2 * len(2)? }),
            0xdf => Some(Header { size: 5, children: 2 * len(4)? }),
            0xc1 => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nils(count: u32) -> Vec<u8> {
        let mut bytes = vec![0xdd];
        bytes.extend_from_slice(&count.to_be_bytes());
        bytes.resize(5 + count as usize, 0xc0);
        bytes
    }

    #[test]
    fn small_documents_and_state_dicts_pass() {
        assert!(check_object_budget(&[0xc0]).is_ok());
        assert!(check_object_budget(&nils(60_000)).is_ok());
    }

    #[test]
    fn a_document_of_nils_is_refused() {
        let err = check_object_budget(&nils(2_000_000)).unwrap_err().to_string();
        assert!(err.contains("not a state dict"), "{err}");
    }

    #[test]
    fn declared_objects_beyond_the_bytes_are_refused() {
        let mut bytes = nils(100);
        bytes.truncate(50);
        let err = check_object_budget(&bytes).unwrap_err().to_string();
        assert!(err.contains("more objects declared"), "{err}");
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
            vec![0xd4, 1, 0],
            vec![0xc7, 1, 1, 0],
            vec![0xc4, 2, 0, 0],
            vec![0xa2, b'a', b'b'],
            vec![0x81, 0xa1, b'k', 0xc0],
        ];
        let mut bytes = vec![0x90 | items.len() as u8];
        bytes.extend(items.concat());
        assert!(check_object_budget(&bytes).is_ok());
        // One byte short, the last map's value is declared but missing.
        let err = check_object_budget(&bytes[..bytes.len() - 1]).unwrap_err().to_string();
        assert!(err.contains("1 more objects declared"), "{err}");
    }
}
