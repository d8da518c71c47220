//! A c10d process group over Gloo or NCCL, reached through the C++ shim
//! (`csrc/distributed.cpp`).

use super::options::ProcessGroupOptions;
use super::stats::CommStats;
use super::Backend;
use crate::core::errors::{Error, Result};
use crate::core::shim::{self, Handle};
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr::NonNull;
use std::time::{Duration, Instant};
use tch::Tensor;

extern "C" {
    fn flax_dist_new(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world_size: c_int,
        is_server: c_int,
        timeout_ms: i64,
        prefix: *const c_char,
        cuda_device: c_int,
        out: *mut *mut c_void,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
    fn flax_dist_free(group: *mut c_void);
    fn flax_dist_all_reduce_sum_(
        group: *mut c_void,
        buffer: Handle,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
    fn flax_dist_all_gather(
        group: *mut c_void,
        input: Handle,
        out: *mut Handle,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
    fn flax_dist_reduce_scatter_sum(
        group: *mut c_void,
        input: Handle,
        out: *mut Handle,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
    fn flax_dist_broadcast(
        group: *mut c_void,
        input: Handle,
        root: c_int,
        out: *mut Handle,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
    fn flax_dist_barrier(group: *mut c_void, error: *mut c_char, error_len: usize) -> c_int;
}

/// The prefix of this crate's keys in the rendezvous store, which torchrun's agent may share.
const STORE_PREFIX: &str = "flax/";

/// One process's membership in a group of processes that run collectives together (c10d's
/// `ProcessGroupGloo` or `ProcessGroupNCCL`, see [`Backend`]). Every rank must call the same
/// collectives in the same order, with tensors of the same shapes and dtypes; the group leaves
/// when dropped.
pub struct ProcessGroup {
    raw: NonNull<c_void>,
    rank: i64,
    world_size: i64,
    backend: Backend,
    stats: Cell<CommStats>,
}

// SAFETY: the C++ process group may be used and freed from any thread (c10d's own Python
// bindings do so); `ProcessGroup` is not `Sync`, so calls on it are never concurrent.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins the group torchrun's environment describes ([`ProcessGroupOptions::from_env`]).
    pub fn from_env() -> Result<Self> {
        Self::new(&ProcessGroupOptions::from_env()?)
    }

    /// JAX's `jax.distributed.initialize()`: joins the group torchrun's environment describes
    /// when `WORLD_SIZE` is set, and otherwise makes a group of this process alone (rank 0 of
    /// 1, its store on a free loopback port), so that one program runs launched or not.
    pub fn initialize() -> Result<Self> {
        match std::env::var_os("WORLD_SIZE") {
            Some(_) => Self::from_env(),
            None => Self::new(&ProcessGroupOptions::new("127.0.0.1", 0, 0, 1)),
        }
    }

    /// Joins a group: blocks until all `world_size` ranks have met at the store, or fails
    /// after the timeout.
    ///
    /// # Errors
    /// [`Error::Value`] for invalid options; [`Error::NotBuilt`] for [`Backend::Nccl`] in a
    /// build without it, saying why; libtorch's when the rendezvous fails or the backend
    /// refuses (NCCL's "no GPUs found" on a machine without one).
    pub fn new(options: &ProcessGroupOptions) -> Result<Self> {
        options.validate()?;
        options.backend.check_built()?;
        let int = |value: i64, what: &str| {
            c_int::try_from(value)
                .map_err(|_| Error::Value(format!("process group: {what} {value} is too large")))
        };
        let (rank, world_size) = (int(options.rank, "rank")?, int(options.world_size, "world size")?);
        let host = CString::new(options.master_addr.as_str()).expect("validate refused a NUL byte");
        let prefix = CString::new(STORE_PREFIX).expect("the prefix has no NUL byte");
        let timeout_ms = i64::try_from(options.timeout.as_millis()).expect("validate bounded the timeout");
        let cuda_device = match options.backend {
            Backend::Gloo => -1,
            Backend::Nccl => int(options.local_rank, "local rank")?,
        };
        let mut raw = std::ptr::null_mut();
        shim::call(|error, len| {
            // SAFETY: the strings outlive the call; the shim writes `raw` only on success.
            unsafe {
                flax_dist_new(
                    host.as_ptr(),
                    c_int::from(options.master_port),
                    rank,
                    world_size,
                    c_int::from(options.host_store),
                    timeout_ms,
                    prefix.as_ptr(),
                    cuda_device,
                    &mut raw,
                    error,
                    len,
                )
            }
        })?;
        let raw = NonNull::new(raw)
            .ok_or_else(|| Error::Value("process group: the shim returned none".to_owned()))?;
        Ok(Self {
            raw,
            rank: options.rank,
            world_size: options.world_size,
            backend: options.backend,
            stats: Cell::default(),
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> i64 {
        self.rank
    }

    /// The number of processes in the group.
    pub fn world_size(&self) -> i64 {
        self.world_size
    }

    /// The backend that runs this group's collectives.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Sums a contiguous buffer over all ranks in place.
    pub(super) fn all_reduce_sum_(&self, buffer: &Tensor) -> Result<()> {
        self.timed(buffer, || {
            // SAFETY: `buffer` is borrowed for the call; the shim checks that it is contiguous.
            shim::call(|error, len| unsafe {
                flax_dist_all_reduce_sum_(self.raw.as_ptr(), shim::handle(buffer), error, len)
            })
        })
    }

    /// Every rank's `t` stacked along a new leading axis of size `world_size`, in rank order;
    /// each rank passes a tensor of the same shape and dtype.
    pub(super) fn all_gather_tensor(&self, t: &Tensor) -> Result<Tensor> {
        self.timed(t, || {
            // SAFETY: `t` is borrowed for the call; the shim allocates the result for us.
            shim::call_tensor(|out, error, len| unsafe {
                flax_dist_all_gather(self.raw.as_ptr(), shim::handle(t), out, error, len)
            })
        })
    }

    /// The sum over ranks of a flat buffer of `world_size` equal chunks, of which this rank
    /// gets its own chunk.
    pub(super) fn reduce_scatter_sum(&self, flat: &Tensor) -> Result<Tensor> {
        self.timed(flat, || {
            // SAFETY: `flat` is borrowed for the call; the shim allocates the result for us.
            shim::call_tensor(|out, error, len| unsafe {
                flax_dist_reduce_scatter_sum(self.raw.as_ptr(), shim::handle(flat), out, error, len)
            })
        })
    }

    /// Rank `root`'s `t`, as a new dense tensor on every rank (each rank passes a tensor of
    /// the same shape and dtype, whose values only `root`'s matter).
    pub(super) fn broadcast_tensor(&self, t: &Tensor, root: c_int) -> Result<Tensor> {
        self.timed(t, || {
            // SAFETY: `t` is borrowed for the call; the shim allocates the result for us.
            shim::call_tensor(|out, error, len| unsafe {
                flax_dist_broadcast(self.raw.as_ptr(), shim::handle(t), root, out, error, len)
            })
        })
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        // SAFETY: the group is alive for the call.
        shim::call(|error, len| unsafe { flax_dist_barrier(self.raw.as_ptr(), error, len) })
    }
}

impl ProcessGroup {
    /// The bytes and waiting time of this rank's collectives so far.
    pub fn comm_stats(&self) -> CommStats {
        self.stats.get()
    }

    /// Adds one collective's payload and waiting time to the totals.
    pub(super) fn record(&self, bytes: u64, wait: Duration) {
        let mut stats = self.stats.get();
        stats.collectives += 1;
        stats.bytes += bytes;
        stats.wait += wait;
        self.stats.set(stats);
    }

    /// Runs a blocking collective on `payload`, recording it.
    fn timed<R>(&self, payload: &Tensor, collective: impl FnOnce() -> Result<R>) -> Result<R> {
        let start = Instant::now();
        let result = collective();
        let bytes = payload.numel() as u64 * payload.kind().elt_size_in_bytes() as u64;
        self.record(bytes, start.elapsed());
        result
    }

    /// The shim's pointer to the group, for the other files of this module.
    pub(super) fn raw(&self) -> *mut c_void {
        self.raw.as_ptr()
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `flax_dist_new` and is freed once, here.
        unsafe { flax_dist_free(self.raw.as_ptr()) }
    }
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("backend", &self.backend)
            .finish()
    }
}
