//! Training across processes on PyTorch's own distributed engine, c10d.
//!
//! A [`ProcessGroup`] joins `world_size` processes through c10d's `TCPStore` rendezvous and
//! runs collectives over Gloo (`ProcessGroupGloo`, CPU tensors) or, chosen by
//! [`ProcessGroupOptions::with_backend`], NCCL (`ProcessGroupNCCL`, one GPU per rank, in a
//! build with it: [`is_nccl_available`]), all inside the libtorch the crate links: there is no
//! network code of this crate's own. It is created from the environment torchrun sets (`RANK`,
//! `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`) or explicitly, with a timeout
//! after which a missing or dead peer is an error, not a hang.
//!
//! The collectives take any [`Tree`](crate::Tree) and carry JAX's and Flax's names, with the
//! process group as the named axis of `pmap`: [`psum`](ProcessGroup::psum),
//! [`pmean`](ProcessGroup::pmean), [`all_gather`](ProcessGroup::all_gather),
//! [`psum_scatter`](ProcessGroup::psum_scatter), [`broadcast`](ProcessGroup::broadcast),
//! [`replicate`](ProcessGroup::replicate), [`unreplicate`](ProcessGroup::unreplicate),
//! [`barrier`](ProcessGroup::barrier); the data helpers [`shard`](ProcessGroup::shard),
//! [`pad_shard`](ProcessGroup::pad_shard) and
//! [`pad_shard_unpad`](ProcessGroup::pad_shard_unpad) give each rank its slice of a global
//! batch. Data-parallel training is the one-process loop plus one line:
//!
//! ```no_run
//! use flax::distributed::ProcessGroup;
//! use flax::tch::{Device, Kind, Tensor};
//!
//! # fn main() -> flax::Result<()> {
//! let group = ProcessGroup::from_env()?; // under `torchrun --nproc-per-node 2 --no-python …`
//! let params = group.replicate(&vec![Tensor::randn([4, 2], (Kind::Float, Device::Cpu))])?;
//! let batch = Tensor::randn([64, 4], (Kind::Float, Device::Cpu)); // the same global batch on every rank
//! let local = group.shard(&batch)?; // this rank's 64 / world_size examples
//! let grads = flax::grad(&params, |p| Ok(local.matmul(&p[0]).square().mean(Kind::Float)))?;
//! let grads = group.pmean(&grads)?; // the one added line: the global batch's gradient
//! # Ok(())
//! # }
//! ```
//!
//! The sharded mode ([`Fsdp`], FSDP/ZeRO-3's scheme) splits each parameter and its optimizer
//! state along an axis chosen per leaf by a [`ShardingSpec`], gathers the parameters for each
//! step and reduce-scatters the gradients: the whole model at once, or unit by unit
//! ([`Gathering::PerUnit`], each [`fully_shard`] module gathered just before it runs and again
//! for its backward pass, the next unit's gather already in flight while one computes:
//! [`Fsdp::prefetch`]).
//!
//! The spec comes from Flax's `with_partitioning` annotations
//! ([`ShardingSpec::from_partition_spec`]) or from a rule, over the full parameters or over
//! their shapes alone ([`eval_shape`]); [`Fsdp::init`] then gives each rank its pieces of
//! them without the whole model existing in any process (`jax.jit(init, out_shardings=…)`).
//! Its checkpoints are Orbax's multi-process ones, each rank writing and reading only its
//! pieces ([`Fsdp::save_sharded`], [`Fsdp::restore_sharded`]).

mod backend;
mod collectives;
mod flat;
mod fsdp;
mod fully_shard;
mod gathered;
mod launch;
mod options;
mod overlap;
mod prefetch;
mod process_group;
mod shard;
mod sharded_checkpoint;
mod sharded_init;
mod sharding_spec;
mod stats;
mod structure;
mod work;

pub use backend::{is_nccl_available, Backend};
pub use fsdp::{Fsdp, Gathering};
pub use fully_shard::{fully_shard, FullyShard};
pub use launch::spawn_local;
pub use options::ProcessGroupOptions;
pub use overlap::DEFAULT_BUCKET_CAP_BYTES;
pub use process_group::ProcessGroup;
pub use sharded_init::eval_shape;
pub use sharding_spec::{LeafSharding, ShardingSpec};
pub use stats::CommStats;
