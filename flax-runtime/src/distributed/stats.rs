//! What a process group has communicated, for measuring data-parallel training.

use std::time::Duration;

/// Totals since a [`ProcessGroup`](super::ProcessGroup) was created; subtract two snapshots
/// for one step's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommStats {
    /// Collectives run (a tree collective counts its structure check and one per dtype).
    pub collectives: u64,
    /// The bytes of the tensors this rank handed to collectives (the payload: Gloo's ring
    /// all-reduce moves about twice that over the wire).
    pub bytes: u64,
    /// Time this rank spent blocked on collectives: the whole call for blocking ones, only
    /// the wait after backward for [`value_and_grad_pmean`](super::ProcessGroup::value_and_grad_pmean),
    /// only the wait for a prefetched gather ([`Fsdp::prefetch`](super::Fsdp::prefetch)).
    /// Under NCCL a wait only makes the current CUDA stream wait, as c10d's does, so this is
    /// host time (with the copies of CPU tensors to and from the GPU), not the collective's.
    pub wait: Duration,
}

impl std::ops::Sub for CommStats {
    type Output = CommStats;

    fn sub(self, earlier: CommStats) -> CommStats {
        CommStats {
            collectives: self.collectives - earlier.collectives,
            bytes: self.bytes - earlier.bytes,
            wait: self.wait.saturating_sub(earlier.wait),
        }
    }
}
