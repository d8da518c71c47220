//! Collectives over any [`Tree`], named as in JAX and Flax: `lax.psum`, `lax.pmean`,
//! `lax.all_gather`, `lax.psum_scatter`, `jax_utils.replicate` / `unreplicate`.
//!
//! In JAX these run inside `pmap` over a named axis of devices; here the axis is the
//! [`ProcessGroup`]: each process holds one replica, and every rank calls the same collective
//! in the same order. Each call first checks that all ranks passed the same tree (see
//! `structure.rs`), then packs the leaves into one buffer per dtype, so a gradient tree of 8
//! float leaves costs one all-reduce.

use super::flat::Flat;
use super::ProcessGroup;
use crate::core::errors::{Error, Result};
use crate::core::scalar_ops::ScalarOps;
use crate::tree::{KeyPath, Tree};
use std::ffi::c_int;

impl ProcessGroup {
    /// The leafwise sum of `tree` over all ranks (`jax.lax.psum(tree, axis_name)`).
    ///
    /// # Errors
    /// [`Error::TreeStructureMismatch`] on every rank when the ranks' trees differ; libtorch's
    /// when a peer fails or the timeout passes.
    pub fn psum<T: Tree>(&self, tree: &T) -> Result<T> {
        self.check_same_tree("psum", tree)?;
        let flat = Flat::pack(tree, None)?;
        for buffer in &flat.buffers {
            self.all_reduce_sum_(buffer)?;
        }
        flat.unpack(tree, &flat.buffers)
    }

    /// The leafwise mean of `tree` over all ranks (`jax.lax.pmean`): how data-parallel
    /// training averages gradients, `let grads = group.pmean(&grads)?;`. Integer leaves become
    /// floating point, as JAX's true division makes them.
    ///
    /// # Errors
    /// As [`ProcessGroup::psum`].
    pub fn pmean<T: Tree>(&self, tree: &T) -> Result<T> {
        self.check_same_tree("pmean", tree)?;
        let flat = Flat::pack(tree, None)?;
        let means = flat
            .buffers
            .iter()
            .map(|buffer| {
                self.all_reduce_sum_(buffer)?;
                Ok(buffer.try_div_scalar(self.world_size())?)
            })
            .collect::<Result<Vec<_>>>()?;
        flat.unpack(tree, &means)
    }

    /// Every rank's `tree`, each leaf stacked along a new leading axis of size `world_size` in
    /// rank order (`jax.lax.all_gather(tree, axis_name)`, `axis=0`, not tiled).
    ///
    /// # Errors
    /// As [`ProcessGroup::psum`].
    pub fn all_gather<T: Tree>(&self, tree: &T) -> Result<T> {
        self.check_same_tree("all_gather", tree)?;
        let flat = Flat::pack(tree, None)?;
        let gathered = flat.buffers.iter().map(|b| self.all_gather_tensor(b)).collect::<Result<Vec<_>>>()?;
        flat.unpack(tree, &gathered)
    }

    /// The leafwise sum over ranks, split along the leading axis, whose size must be the world
    /// size: rank `r` gets row `r` of the sum (`jax.lax.psum_scatter(tree, axis_name)`,
    /// `scatter_dimension=0`, not tiled). The reduce-scatter half of an all-reduce, as
    /// sharded optimizers use it.
    ///
    /// # Errors
    /// [`Error::Value`] naming the leaf whose leading dimension is not the world size; as
    /// [`ProcessGroup::psum`].
    pub fn psum_scatter<T: Tree>(&self, tree: &T) -> Result<T> {
        self.check_same_tree("psum_scatter", tree)?;
        let world = self.world_size();
        tree.visit_leaves([], &mut KeyPath::new(), &mut |path, leaf, []| match leaf.size().first() {
            Some(&n) if n == world => Ok(()),
            _ => Err(Error::Value(format!(
                "psum_scatter: the leaf at {path} has shape {:?}, whose leading dimension is not the world size {world}",
                leaf.size()
            ))),
        })?;
        let flat = Flat::pack(tree, Some(world))?;
        let rows = flat.buffers.iter().map(|b| self.reduce_scatter_sum(b)).collect::<Result<Vec<_>>>()?;
        flat.unpack(tree, &rows)
    }

    /// Rank `root`'s `tree` on every rank (each rank passes a tree of the same structure,
    /// shapes and dtypes, whose values only `root`'s matter).
    ///
    /// # Errors
    /// [`Error::Value`] when `root` is not a rank; as [`ProcessGroup::psum`].
    pub fn broadcast<T: Tree>(&self, tree: &T, root: i64) -> Result<T> {
        if !(0..self.world_size()).contains(&root) {
            return Err(Error::Value(format!("broadcast: root {root} is not in 0..{}", self.world_size())));
        }
        let root = c_int::try_from(root).expect("a rank fits in a C int, as the world size does");
        self.check_same_tree("broadcast", tree)?;
        let flat = Flat::pack(tree, None)?;
        let sent = flat.buffers.iter().map(|b| self.broadcast_tensor(b, root)).collect::<Result<Vec<_>>>()?;
        flat.unpack(tree, &sent)
    }

    /// Rank 0's `tree` on every rank (`flax.jax_utils.replicate`): the initial parameters and
    /// optimizer state every replica starts from, so that ranks that initialised with
    /// different seeds, or restored different checkpoints, still train one model.
    ///
    /// # Errors
    /// As [`ProcessGroup::psum`].
    pub fn replicate<T: Tree>(&self, tree: &T) -> Result<T> {
        self.broadcast(tree, 0)
    }

    /// This process's replica (`flax.jax_utils.unreplicate`), what to save or evaluate.
    ///
    /// In Flax a replicated tree carries a leading device axis and `unreplicate` takes device
    /// 0's copy, `x[0]`, without communicating. Here a process holds one replica and no device
    /// axis, so the replica is the tree itself: nothing is copied or sent. The replicas are
    /// equal as long as every rank applies the same (all-reduced) updates to a
    /// [`replicate`](ProcessGroup::replicate)d start, as in Flax.
    pub fn unreplicate<T: Tree>(&self, tree: T) -> T {
        tree
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::ProcessGroupOptions;
    use std::time::Duration;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn a_group_of_one_applies_every_collective_to_its_own_tree() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let options = ProcessGroupOptions::new("127.0.0.1", port, 0, 1).with_timeout(Duration::from_secs(30));
        let group = ProcessGroup::new(&options).unwrap();
        let tree = (Tensor::from_slice(&[1.5f32, -2.0]), Tensor::from_slice(&[3i64]));
        let values = |t: &Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double)).unwrap();
        let sum = group.psum(&tree).unwrap();
        assert_eq!((values(&sum.0), values(&sum.1)), (vec![1.5, -2.0], vec![3.0]));
        let mean = group.pmean(&tree).unwrap();
        assert_eq!(mean.1.kind(), Kind::Float, "an integer mean is a float, as in JAX");
        let gathered = group.all_gather(&tree).unwrap();
        assert_eq!((gathered.0.size(), gathered.1.size()), (vec![1, 2], vec![1, 1]));
        let scattered = group.psum_scatter(&Tensor::ones([1, 3], (Kind::Float, Device::Cpu))).unwrap();
        assert_eq!(scattered.size(), [3]);
        assert!(matches!(group.psum_scatter(&tree), Err(Error::Value(_))));
        assert_eq!(values(&group.replicate(&tree).unwrap().0), [1.5, -2.0]);
        assert!(matches!(group.broadcast(&tree, 1), Err(Error::Value(_))));
    }
}
