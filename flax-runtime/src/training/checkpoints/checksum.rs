//! The checksum sidecar written next to each checkpoint and verified on restore.
//!
//! `<dir>/.<checkpoint name>.crc32` holds one line, `crc32 <8 hex digits> <length>`: the
//! CRC-32 (IEEE) and length of the checkpoint's bytes. Its name starts with a dot, so Flax's
//! glob `<prefix>*` never lists it, and Python Flax reads and cleans up the directory as if
//! it were not there. CRC-32 detects every error confined to 32 consecutive bits — any one
//! changed byte, any truncation or extension (the length is recorded too) — and misses a
//! random corruption with probability 2^-32; it is a guard against damage, not against
//! someone forging a file.

use crate::core::errors::{Error, Result};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The sidecar of the checkpoint at `path`.
pub(crate) fn sidecar_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.crc32"))
}

/// The sidecar's text for `bytes`.
pub(crate) fn sidecar_text(bytes: &[u8]) -> String {
    format!("crc32 {:08x} {}\n", crc32fast::hash(bytes), bytes.len())
}

/// Checks `bytes`, read from `path`, against its sidecar. A checkpoint without a sidecar
/// (written by Python Flax, or by a save that crashed between its two renames) passes.
///
/// # Errors
/// [`Error::ChecksumMismatch`] naming the file when the bytes differ from what was saved, or
/// the sidecar is not one this library writes; [`Error::Io`] when it cannot be read.
pub(crate) fn verify(path: &Path, bytes: &[u8]) -> Result<()> {
    let sidecar = sidecar_path(path);
    let recorded = match fs::read_to_string(&sidecar) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&sidecar, e)),
    };
    let found = sidecar_text(bytes);
    if recorded == found {
        return Ok(());
    }
    Err(Error::ChecksumMismatch {
        path: path.display().to_string(),
        sidecar: sidecar.display().to_string(),
        recorded: recorded.trim_end().to_owned(),
        found: found.trim_end().to_owned(),
    })
}

/// Deletes the sidecar of `path`, if any.
pub(crate) fn remove(path: &Path) -> Result<()> {
    let sidecar = sidecar_path(path);
    match fs::remove_file(&sidecar) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(&sidecar, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecar_is_hidden_next_to_its_checkpoint() {
        assert_eq!(sidecar_path(Path::new("d/checkpoint_3")), Path::new("d/.checkpoint_3.crc32"));
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(sidecar_text(b"123456789"), "crc32 cbf43926 9\n");
    }
}
