//! Which of c10d's backends runs a group's collectives, and whether this build has NCCL.

use crate::core::errors::{Error, Result};

/// Why this build has no NCCL process groups, as `build.rs` found (a CPU-only libtorch, or
/// headers missing when the crate was compiled); `None` when it has them.
const NCCL_UNAVAILABLE: Option<&str> = option_env!("FLAX_NCCL_UNAVAILABLE");

/// The c10d backend of a [`ProcessGroup`](super::ProcessGroup), as `backend=` of PyTorch's
/// `init_process_group`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// Gloo (`ProcessGroupGloo`), the default: collectives over TCP on the tensors where they
    /// lie, the CPU in practice.
    #[default]
    Gloo,
    /// NCCL (`ProcessGroupNCCL`), what PyTorch uses for CUDA tensors: each rank's collectives
    /// run on its CUDA device, `cuda:{local_rank}`
    /// ([`ProcessGroupOptions::local_rank`](super::ProcessGroupOptions::local_rank)), one GPU
    /// per rank (NCCL refuses two ranks on one GPU). Tensors elsewhere are copied there for the
    /// collective, and the results come back on the device each tensor came from, so the same
    /// training code runs on either backend. Needs a build with NCCL ([`is_nccl_available`]).
    ///
    /// Faults follow PyTorch's NCCL rules, not Gloo's typed errors: by default a collective that
    /// fails or outlives the timeout makes NCCL's watchdog end the process
    /// (`TORCH_NCCL_ASYNC_ERROR_HANDLING`).
    Nccl,
}

/// Whether this build of the library has NCCL process groups (PyTorch's
/// `torch.distributed.is_nccl_available()`): it was compiled against a CUDA build of libtorch
/// with CUDA's and NCCL's headers at hand (`scripts/bootstrap.sh` installs them).
pub fn is_nccl_available() -> bool {
    NCCL_UNAVAILABLE.is_none()
}

impl Backend {
    /// Fails with [`Error::NotBuilt`], saying why, when this build lacks the backend.
    pub(super) fn check_built(self) -> Result<()> {
        match (self, NCCL_UNAVAILABLE) {
            (Backend::Nccl, Some(reason)) => {
                Err(Error::NotBuilt { feature: "NCCL", reason: reason.to_owned() })
            }
            _ => Ok(()),
        }
    }
}
