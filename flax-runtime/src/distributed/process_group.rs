//! A c10d process group over Gloo, reached through the C++ shim (`csrc/distributed.cpp`).

use super::options::ProcessGroupOptions;
use crate::core::errors::{Error, Result};
use crate::core::shim::{self, Handle};
use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr::NonNull;
use tch::Tensor;

extern "C" {
    fn flax_dist_gloo_new(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world_size: c_int,
        is_server: c_int,
        timeout_ms: i64,
        prefix: *const c_char,
        out: *mut *mut c_void,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
    fn flax_dist_free(group: *mut c_void);
    fn flax_dist_all_reduce_sum(
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
/// `ProcessGroupGloo`). Every rank must call the same collectives in the same order, with
/// tensors of the same shapes and dtypes; the group leaves when dropped.
pub struct ProcessGroup {
    raw: NonNull<c_void>,
    rank: i64,
    world_size: i64,
}

// SAFETY: the C++ process group may be used and freed from any thread (c10d's own Python
// bindings do so); `ProcessGroup` is not `Sync`, so calls on it are never concurrent.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins the group torchrun's environment describes ([`ProcessGroupOptions::from_env`]).
    pub fn from_env() -> Result<Self> {
        Self::new(&ProcessGroupOptions::from_env()?)
    }

    /// Joins a group: blocks until all `world_size` ranks have met at the store, or fails
    /// after the timeout.
    pub fn new(options: &ProcessGroupOptions) -> Result<Self> {
        options.validate()?;
        let int = |value: i64, what: &str| {
            c_int::try_from(value)
                .map_err(|_| Error::Value(format!("process group: {what} {value} is too large")))
        };
        let (rank, world_size) = (int(options.rank, "rank")?, int(options.world_size, "world size")?);
        let host = CString::new(options.master_addr.as_str()).expect("validate refused a NUL byte");
        let prefix = CString::new(STORE_PREFIX).expect("the prefix has no NUL byte");
        let timeout_ms = i64::try_from(options.timeout.as_millis()).expect("validate bounded the timeout");
        let mut raw = std::ptr::null_mut();
        shim::call(|error, len| {
            // SAFETY: the strings outlive the call; the shim writes `raw` only on success.
            unsafe {
                flax_dist_gloo_new(
                    host.as_ptr(),
                    c_int::from(options.master_port),
                    rank,
                    world_size,
                    c_int::from(options.host_store),
                    timeout_ms,
                    prefix.as_ptr(),
                    &mut raw,
                    error,
                    len,
                )
            }
        })?;
        let raw = NonNull::new(raw)
            .ok_or_else(|| Error::Value("process group: the shim returned none".to_owned()))?;
        Ok(Self { raw, rank: options.rank, world_size: options.world_size })
    }

    /// This process's rank.
    pub fn rank(&self) -> i64 {
        self.rank
    }

    /// The number of processes in the group.
    pub fn world_size(&self) -> i64 {
        self.world_size
    }

    /// The elementwise sum of `t` over all ranks (Flax's `lax.psum` over the process axis), as
    /// a new tensor; `t` is left as it is.
    pub fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        // SAFETY: `t` is borrowed for the call; the shim allocates the result for us.
        shim::call_tensor(|out, error, len| unsafe {
            flax_dist_all_reduce_sum(self.raw.as_ptr(), shim::handle(t), out, error, len)
        })
    }

    /// Rank `root`'s `t`, as a new tensor on every rank (each rank passes a tensor of the same
    /// shape and dtype, whose values only `root`'s matter).
    pub fn broadcast(&self, t: &Tensor, root: i64) -> Result<Tensor> {
        if !(0..self.world_size).contains(&root) {
            return Err(Error::Value(format!("broadcast: root {root} is not in 0..{}", self.world_size)));
        }
        let root = c_int::try_from(root).expect("root is below the world size, an int");
        // SAFETY: `t` is borrowed for the call; the shim allocates the result for us.
        shim::call_tensor(|out, error, len| unsafe {
            flax_dist_broadcast(self.raw.as_ptr(), shim::handle(t), root, out, error, len)
        })
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        // SAFETY: the group is alive for the call.
        shim::call(|error, len| unsafe { flax_dist_barrier(self.raw.as_ptr(), error, len) })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `flax_dist_gloo_new` and is freed once, here.
        unsafe { flax_dist_free(self.raw.as_ptr()) }
    }
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .finish()
    }
}
