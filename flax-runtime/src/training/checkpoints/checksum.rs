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
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The sidecar of the checkpoint at `path`.
pub(crate) fn sidecar_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.crc32"))
}

/// The sidecar's text for `bytes`.
pub(crate) fn sidecar_text(bytes: &[u8]) -> String {
    sidecar_line(crc32fast::hash(bytes), bytes.len() as u64)
}

/// The sidecar's text for a file of `len` bytes whose CRC-32 is `crc`.
fn sidecar_line(crc: u32, len: u64) -> String {
    format!("crc32 {crc:08x} {len}\n")
}

/// The text of the sidecar of the checkpoint at `path`; `None` when it has none (written by
/// Python Flax, or by a save that crashed between its two renames), which restores unverified.
///
/// # Errors
/// [`Error::Io`] when the sidecar exists but cannot be read.
pub(crate) fn read_sidecar(path: &Path) -> Result<Option<String>> {
    let sidecar = sidecar_path(path);
    match fs::read_to_string(&sidecar) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&sidecar, e)),
    }
}

/// How much a [`ChecksummedFile`] reads at once when it checksums: small enough that what it
/// just read is still in the CPU's cache when it is checksummed, large enough that the calls
/// cost nothing next to the copy.
const CHECKSUM_CHUNK: usize = 256 << 10;

/// A checkpoint file read once, front to back, that computes the CRC-32 of the bytes it reads
/// right after reading them (so the file is touched once, not read and then checksummed).
pub(crate) struct ChecksummedFile {
    file: File,
    /// `None` when there is no sidecar to check against.
    hasher: Option<crc32fast::Hasher>,
    len: u64,
}

impl ChecksummedFile {
    /// `file`, checksummed as it is read when `verified`.
    pub(crate) fn new(file: File, verified: bool) -> Self {
        ChecksummedFile { file, hasher: verified.then(crc32fast::Hasher::new), len: 0 }
    }

    /// Reads the rest of the file (what the reader left: nothing, unless it stopped at an
    /// error) and checks the whole file against `recorded`, the text of the sidecar of the
    /// checkpoint at `path`.
    ///
    /// # Errors
    /// [`Error::ChecksumMismatch`] naming the file when its bytes differ from what was saved,
    /// or the sidecar is not one this library writes; [`Error::Io`].
    pub(crate) fn verify_rest(mut self, path: &Path, recorded: &str) -> Result<()> {
        io::copy(&mut self, &mut io::sink()).map_err(|e| Error::io(path, e))?;
        let crc = self.hasher.take().map_or(0, crc32fast::Hasher::finalize);
        let found = sidecar_line(crc, self.len);
        if recorded == found {
            return Ok(());
        }
        Err(Error::ChecksumMismatch {
            path: path.display().to_string(),
            sidecar: sidecar_path(path).display().to_string(),
            recorded: recorded.trim_end().to_owned(),
            found: found.trim_end().to_owned(),
        })
    }
}

impl Read for ChecksummedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(hasher) = &mut self.hasher else { return self.file.read(buf) };
        let len = buf.len().min(CHECKSUM_CHUNK);
        let n = self.file.read(&mut buf[..len])?;
        hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
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
