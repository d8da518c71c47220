//! Local workers without torchrun: what a binary's `--nproc N` does.

use crate::core::errors::{Error, Result};
use std::ffi::OsString;
use std::process::{Command, ExitStatus};

/// Runs `nproc` copies of the current executable with `args`, as `torchrun --nproc-per-node
/// nproc --no-python` would on this machine: each gets torchrun's variables (`RANK`,
/// `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR=127.0.0.1`, a free
/// `MASTER_PORT`) and, unless already set, `OMP_NUM_THREADS=1` (torchrun's default with several
/// workers, so that they do not fight over cores). Waits for all of them and returns their exit
/// statuses by rank. The workers then join with
/// [`ProcessGroup::initialize`](super::ProcessGroup::initialize).
///
/// # Errors
/// [`Error::Value`] when `nproc` is not positive; [`Error::Io`] when no loopback port can be
/// bound or a worker cannot be started.
pub fn spawn_local(
    nproc: i64,
    args: impl IntoIterator<Item = impl Into<OsString>>,
) -> Result<Vec<ExitStatus>> {
    if nproc < 1 {
        return Err(Error::Value(format!("nproc must be positive, got {nproc}")));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| Error::io("127.0.0.1:0", e))?
        .port();
    let exe = std::env::current_exe().map_err(|e| Error::io("the current executable", e))?;
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let threads = std::env::var_os("OMP_NUM_THREADS").unwrap_or_else(|| "1".into());
    let mut children = Vec::new();
    for rank in 0..nproc {
        let child = Command::new(&exe)
            .args(&args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("OMP_NUM_THREADS", &threads)
            .env_remove("TORCHELASTIC_USE_AGENT_STORE")
            .spawn()
            .map_err(|e| Error::io(&exe, e))?;
        children.push(child);
    }
    children.into_iter().map(|mut child| child.wait().map_err(|e| Error::io(&exe, e))).collect()
}
