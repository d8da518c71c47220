//! The advisory lock that serializes checkpoint writers on one directory.

#[cfg(unix)]
use crate::core::errors::Error;
use crate::core::errors::Result;
use std::path::Path;

/// An exclusive advisory lock (`flock`) on a checkpoint directory, held while a save checks
/// the directory, renames its file into place and cleans up; released when dropped (or when
/// the process dies, however it dies).
///
/// It is advisory: it orders this library's writers, in any number of processes and threads
/// (each lock is its own open file description), and a second writer waits for the first. It
/// cannot stop a program that does not take it (Python Flax does not). Locks are `flock`
/// locks on the directory itself, so no lock file is left behind; on file systems where
/// `flock` is not shared between machines (some NFS set-ups) writers on different machines
/// are not ordered. On platforms other than Unix there is no lock, and only the
/// no-clobber rename protects a checkpoint.
#[derive(Debug)]
pub(crate) struct DirLock {
    #[cfg(unix)]
    _dir: std::fs::File,
}

impl DirLock {
    /// Blocks until this process holds the lock on `dir`.
    ///
    /// # Errors
    /// [`Error::Io`] when `dir` cannot be opened or locked.
    pub(crate) fn acquire(dir: &Path) -> Result<Self> {
        #[cfg(unix)]
        {
            let handle = std::fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
            rustix::fs::flock(&handle, rustix::fs::FlockOperation::LockExclusive)
                .map_err(|e| Error::io(dir, e.into()))?;
            Ok(DirLock { _dir: handle })
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(DirLock {})
        }
    }

    /// Whether holding the lock means no other writer of this library is inside the
    /// directory (so leftover temporary files are stale).
    pub(crate) fn is_exclusive(&self) -> bool {
        cfg!(unix)
    }
}
