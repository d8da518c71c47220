//! Where and how a process joins its group: torchrun's environment, or explicit values.

use super::Backend;
use crate::core::errors::{Error, Result};
use std::time::Duration;

/// How long collectives and the rendezvous wait for the other ranks by default: PyTorch's
/// default for Gloo process groups (30 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The rendezvous of one rank: the address of the `TCPStore` every rank meets at, this rank and
/// the number of ranks, the timeout, and the backend that runs the collectives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessGroupOptions {
    /// The host of the rendezvous store (torchrun's `MASTER_ADDR`).
    pub master_addr: String,
    /// Its port (torchrun's `MASTER_PORT`).
    pub master_port: u16,
    /// This process's rank, in `0..world_size`.
    pub rank: i64,
    /// The number of processes in the group.
    pub world_size: i64,
    /// This process's rank among those on its machine (torchrun's `LOCAL_RANK`): under
    /// [`Backend::Nccl`], the index of its CUDA device.
    pub local_rank: i64,
    /// How long the rendezvous and each collective wait for the other ranks before failing.
    pub timeout: Duration,
    /// The backend that runs the collectives: Gloo unless set.
    pub backend: Backend,
    /// Whether this process hosts the store: rank 0 unless torchrun's agent already hosts it
    /// (`TORCHELASTIC_USE_AGENT_STORE=True`), as PyTorch's `init_process_group` decides.
    pub host_store: bool,
}

impl ProcessGroupOptions {
    /// Explicit options, with rank 0 hosting the store, the default timeout (30 minutes), Gloo,
    /// and the local rank equal to the rank (all ranks on one machine).
    pub fn new(master_addr: impl Into<String>, master_port: u16, rank: i64, world_size: i64) -> Self {
        Self {
            master_addr: master_addr.into(),
            master_port,
            rank,
            world_size,
            local_rank: rank,
            timeout: DEFAULT_TIMEOUT,
            host_store: rank == 0,
            backend: Backend::Gloo,
        }
    }

    /// The options torchrun's environment describes: `RANK`, `WORLD_SIZE`, `MASTER_ADDR`,
    /// `MASTER_PORT`, `LOCAL_RANK` (the rank when unset), and `TORCHELASTIC_USE_AGENT_STORE`. A
    /// missing or malformed variable is an [`Error::Value`] naming it.
    pub fn from_env() -> Result<Self> {
        let mut options =
            Self::new(var("MASTER_ADDR")?, parse("MASTER_PORT")?, parse("RANK")?, parse("WORLD_SIZE")?);
        if std::env::var_os("LOCAL_RANK").is_some() {
            options.local_rank = parse("LOCAL_RANK")?;
        }
        if std::env::var("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Ok("True") {
            options.host_store = false;
        }
        Ok(options)
    }

    /// The same options with another backend: [`Backend::Nccl`] for CUDA tensors, one GPU per
    /// rank (`cuda:{local_rank}`), as PyTorch's `init_process_group(backend="nccl")`.
    #[must_use]
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The same options with another timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks what c10d would otherwise reject less clearly (or not at all).
    pub(crate) fn validate(&self) -> Result<()> {
        if self.world_size < 1 || !(0..self.world_size).contains(&self.rank) {
            return Err(Error::Value(format!(
                "process group: rank {} is not in 0..{} (world size {})",
                self.rank, self.world_size, self.world_size
            )));
        }
        if self.backend == Backend::Nccl && !(0..=i64::from(i8::MAX)).contains(&self.local_rank) {
            // c10's device indices are 8-bit.
            return Err(Error::Value(format!(
                "process group: local rank {} is not a CUDA device index",
                self.local_rank
            )));
        }
        if self.timeout.is_zero() || i64::try_from(self.timeout.as_millis()).is_err() {
            return Err(Error::Value(format!("process group: invalid timeout {:?}", self.timeout)));
        }
        if self.master_addr.is_empty() || self.master_addr.contains('\0') {
            return Err(Error::Value(format!(
                "process group: invalid master address {:?}",
                self.master_addr
            )));
        }
        Ok(())
    }
}

fn var(name: &str) -> Result<String> {
    std::env::var(name)
        .map_err(|_| Error::Value(format!("process group: environment variable {name} is not set")))
}

fn parse<T: std::str::FromStr>(name: &str) -> Result<T> {
    let value = var(name)?;
    value
        .trim()
        .parse()
        .map_err(|_| Error::Value(format!("process group: {name}={value:?} is not a valid value")))
}
