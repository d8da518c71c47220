//! How many bytes of gathered parameters a rank holds at once: the sharded mode's memory
//! measured, not estimated.
//!
//! Every tensor a gather creates (the all-gathered buffers and the joined full leaves) is
//! recorded with a weak reference to its storage (`core::tensor_identity::WeakStorage`), which keeps
//! nothing alive. A storage lives while any tensor or view of it does, the ones autograd
//! saves for the backward pass included, so the bytes of the recorded storages still alive
//! are exactly the gathered bytes this rank still holds. Memory held in gathered parameters
//! only grows when a gather runs, so sampling it after each gather gives the true peak.

use crate::core::tensor_identity::WeakStorage;
use tch::Tensor;

/// The gathered tensors a rank may still hold, and the most bytes of them alive at once.
#[derive(Default)]
pub(super) struct GatheredMemory {
    recorded: Vec<(WeakStorage, u64)>,
    peak: u64,
}

impl std::fmt::Debug for GatheredMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatheredMemory")
            .field("recorded", &self.recorded.len())
            .field("peak", &self.peak)
            .finish()
    }
}

impl GatheredMemory {
    /// Records tensors a gather just created (each counted with its own bytes: the views of
    /// one buffer add up to the buffer) and samples the bytes alive.
    pub(super) fn record<'t>(&mut self, tensors: impl IntoIterator<Item = &'t Tensor>) {
        self.recorded.retain(|(weak, _)| weak.alive());
        for t in tensors {
            if let Some(weak) = WeakStorage::new(t) {
                self.recorded.push((weak, t.numel() as u64 * t.kind().elt_size_in_bytes() as u64));
            }
        }
        self.peak = self.peak.max(self.alive());
    }

    /// The bytes of the recorded tensors still alive.
    pub(super) fn alive(&self) -> u64 {
        self.recorded.iter().filter(|(weak, _)| weak.alive()).map(|(_, bytes)| bytes).sum()
    }

    /// The most bytes alive at once since the last [`restart`](Self::restart).
    pub(super) fn peak(&self) -> u64 {
        self.peak
    }

    /// Starts a new measurement from what is alive now.
    pub(super) fn restart(&mut self) {
        self.recorded.retain(|(weak, _)| weak.alive());
        self.peak = self.alive();
    }
}
