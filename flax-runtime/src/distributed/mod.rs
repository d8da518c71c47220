//! Training across processes on PyTorch's own distributed engine, c10d: the foundation only.
//!
//! A [`ProcessGroup`] joins `world_size` processes through c10d's `TCPStore` rendezvous and
//! runs collectives over Gloo (`ProcessGroupGloo`, CPU tensors), all inside the libtorch the
//! crate links: there is no network code of this crate's own. It is created from the
//! environment torchrun sets (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`) or
//! explicitly, with a timeout after which a missing or dead peer is an error, not a hang.
//!
//! ```no_run
//! use flax::distributed::ProcessGroup;
//! use flax::tch::Tensor;
//!
//! # fn main() -> flax::Result<()> {
//! let group = ProcessGroup::from_env()?; // under `torchrun --nproc-per-node 2 --no-python …`
//! let total = group.all_reduce_sum(&Tensor::from_slice(&[1.0f32, 2.0]))?; // Flax's psum
//! let initial = group.broadcast(&Tensor::zeros([3], flax::tch::kind::FLOAT_CPU), 0)?;
//! group.barrier()?;
//! # Ok(())
//! # }
//! ```
//!
//! Not yet here (issue 13): NCCL, collectives over whole trees (`pmean`, `replicate`,
//! all-gather, reduce-scatter), data-parallel training, sharding.

mod options;
mod process_group;

pub use options::ProcessGroupOptions;
pub use process_group::ProcessGroup;
