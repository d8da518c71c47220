//! Collectives started now and waited for later (c10d's `Work` handles,
//! `csrc/distributed_async.cpp`), so that communication runs on Gloo's threads while this rank
//! computes: what the sharded mode's [prefetch](super::prefetch) is made of.
//!
//! Started collectives match across ranks by the order they start in, as the blocking ones
//! do. Waiting is where a failure surfaces: a dead peer or Gloo's timeout is
//! [`Error::Torch`](crate::Error::Torch) from [`Work::wait`], never a hang.

use super::flat::Flat;
use super::ProcessGroup;
use crate::core::errors::{Error, Result};
use crate::core::shim::{self, Handle};
use crate::tree::Tree;
use std::ffi::{c_char, c_int, c_void};
use std::ptr::NonNull;
use std::time::Instant;
use tch::{Device, Tensor};

extern "C" {
    fn flax_dist_all_gather_start(
        group: *mut c_void,
        input: Handle,
        work: *mut *mut c_void,
        output: *mut Handle,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
    fn flax_dist_work_wait(work: *mut c_void, error: *mut c_char, error_len: usize) -> c_int;
    fn flax_dist_work_free(work: *mut c_void);
}

/// A collective in flight and the tensor it writes, readable once [`wait`](Self::wait) has
/// returned. Dropped unwaited, it is released safely: the collective completes (or fails)
/// on Gloo's thread, which keeps its buffers alive meanwhile.
pub(super) struct Work {
    raw: NonNull<c_void>,
    output: Tensor,
    bytes: u64,
    /// The input's device, where the output goes once complete (NCCL writes it on the group's).
    device: Device,
}

impl Work {
    /// The tensor the collective writes, on the group's device: its memory is allocated from
    /// the start (what the sharded mode's memory measurement counts); its values are defined
    /// only after `wait`.
    pub(super) fn buffer(&self) -> &Tensor {
        &self.output
    }

    /// Blocks until the collective completes on this rank and returns its output on the
    /// input's device, recording its payload and the time blocked here in `group`'s
    /// [`CommStats`](super::CommStats).
    ///
    /// # Errors
    /// libtorch's when the collective failed: a peer that closed its connection, or the
    /// group's timeout passed.
    pub(super) fn wait(self, group: &ProcessGroup) -> Result<Tensor> {
        let start = Instant::now();
        // SAFETY: `raw` came from `flax_dist_all_gather_start` and is freed only on drop.
        let waited = shim::call(|error, len| unsafe { flax_dist_work_wait(self.raw.as_ptr(), error, len) });
        group.record(self.bytes, start.elapsed());
        waited?;
        Ok(self.output.f_to_device(self.device)?)
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `flax_dist_all_gather_start` and is freed once, here.
        unsafe { flax_dist_work_free(self.raw.as_ptr()) }
    }
}

/// A tree's all-gather in flight: one [`Work`] per dtype buffer.
pub(super) struct StartedGather<T> {
    flat: Flat,
    template: T,
    works: Vec<Work>,
}

impl<T: Tree> StartedGather<T> {
    /// The buffers being written (what a rank holds for the gather meanwhile).
    pub(super) fn buffers(&self) -> impl Iterator<Item = &Tensor> {
        self.works.iter().map(Work::buffer)
    }

    /// Waits for every buffer and returns what [`ProcessGroup::all_gather`] returns: every
    /// rank's tree, each leaf stacked along a new leading axis in rank order.
    ///
    /// # Errors
    /// As [`Work::wait`].
    pub(super) fn wait(self, group: &ProcessGroup) -> Result<T> {
        let gathered = self.works.into_iter().map(|work| work.wait(group)).collect::<Result<Vec<_>>>()?;
        self.flat.unpack(&self.template, &gathered)
    }
}

impl ProcessGroup {
    /// Starts [`all_gather`](ProcessGroup::all_gather) of `tree` and returns without waiting
    /// for it: the check that every rank passed the same tree runs first and blocks (8 bytes
    /// per rank), then one all-gather per dtype starts. Every rank must start it at the same
    /// point of its sequence of collectives.
    ///
    /// # Errors
    /// As [`ProcessGroup::psum`]'s check; libtorch's when a collective cannot start.
    pub(super) fn all_gather_start<T: Tree>(&self, tree: &T) -> Result<StartedGather<T>> {
        self.check_same_tree("all_gather", tree)?;
        let flat = Flat::pack(tree, None)?;
        let works =
            flat.buffers.iter().map(|buffer| self.start_gather(buffer)).collect::<Result<Vec<_>>>()?;
        Ok(StartedGather { flat, template: crate::tree::shallow_clone(tree)?, works })
    }

    /// Starts the all-gather of one buffer.
    fn start_gather(&self, buffer: &Tensor) -> Result<Work> {
        let (mut raw, mut output): (*mut c_void, Handle) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: `buffer` is borrowed for the call (the shim copies it); the shim writes both
        // pointers only on success, each for us to own.
        shim::call(|error, len| unsafe {
            flax_dist_all_gather_start(self.raw(), shim::handle(buffer), &mut raw, &mut output, error, len)
        })?;
        let missing = || Error::Value("all_gather_start: the shim returned no work handle".to_owned());
        // SAFETY: the shim allocated `output` for us (non-null on success) and forgets it.
        let output = unsafe { shim::take(NonNull::new(output).ok_or_else(missing)?.as_ptr()) };
        let raw = NonNull::new(raw).ok_or_else(missing)?;
        let bytes = buffer.numel() as u64 * buffer.kind().elt_size_in_bytes() as u64;
        Ok(Work { raw, output, bytes, device: buffer.device() })
    }
}
