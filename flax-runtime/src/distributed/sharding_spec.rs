//! Which axis of each parameter the sharded mode splits across the ranks: a plain table from
//! a leaf's key path to an optional axis, built by a rule over the parameter tree.
//!
//! Flax describes this with `nn.with_partitioning` boxes and `get_partition_spec`, one
//! `PartitionSpec` per leaf naming a mesh axis per array axis; the sharded mode here has one
//! mesh axis (the process group), so a leaf's description reduces to the position of that
//! axis in its spec, or `None`: [`ShardingSpec::from_partition_spec`] reads it from the
//! spec tree `nn::get_partition_spec` gives (after `nn::logical_to_mesh` for logical names).

use crate::core::errors::{Error, Result};
use crate::core::partition_spec::SpecTree;
use crate::tree::{KeyPath, Tree};
use std::collections::HashMap;
use tch::Tensor;

/// How one parameter leaf is split: its key path, its full shape, and the axis cut into
/// `world_size` equal pieces (`None`: every rank holds the whole leaf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSharding {
    /// The leaf's key path in the parameter tree, Flax's string keys (`["Dense_0", "kernel"]`).
    pub path: Vec<String>,
    /// The leaf's full (unsharded) shape.
    pub shape: Vec<i64>,
    /// The axis split across the ranks, or `None` for a replicated leaf.
    pub axis: Option<usize>,
}

impl LeafSharding {
    /// The length of each rank's piece of the split axis: the axis length divided by the
    /// world size, rounded up (the last ranks' pieces are then padded with zeros, as PyTorch's
    /// FSDP pads its flat parameters).
    pub fn chunk(&self, world_size: i64) -> Option<i64> {
        self.axis.map(|a| (self.shape[a] + world_size - 1) / world_size)
    }

    /// The shape of each rank's shard: the full shape with the split axis cut to
    /// [`chunk`](Self::chunk); the full shape for a replicated leaf.
    pub fn shard_shape(&self, world_size: i64) -> Vec<i64> {
        let mut shape = self.shape.clone();
        if let (Some(a), Some(chunk)) = (self.axis, self.chunk(world_size)) {
            shape[a] = chunk;
        }
        shape
    }
}

/// Which axis of each parameter leaf is split across the ranks of a process group, leaf by
/// leaf in the parameter tree's order. Built from the parameters (their paths and shapes) by a
/// rule; every rank must build the same one, which [`Fsdp::new`](super::Fsdp::new) checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardingSpec {
    leaves: Vec<LeafSharding>,
    /// Each leaf's index by its path, to find a leaf from a longer path that ends in it (an
    /// optimizer state's `0/mu/Dense_0/kernel`).
    by_path: HashMap<Vec<String>, usize>,
}

impl ShardingSpec {
    /// The spec that `axis(path, leaf)` gives each leaf of `params`: the axis to split, or
    /// `None` to replicate. An axis the world size does not divide is padded (see
    /// [`LeafSharding::chunk`]).
    ///
    /// # Errors
    /// [`Error::Value`] naming the leaf when an axis is not one of the leaf's axes.
    pub fn from_fn<P: Tree>(
        params: &P,
        mut axis: impl FnMut(&KeyPath<'_>, &Tensor) -> Option<usize>,
    ) -> Result<Self> {
        let mut leaves = Vec::new();
        params.visit_leaves([], &mut KeyPath::new(), &mut |path, leaf, []| {
            let shape = leaf.size();
            let axis = axis(path, leaf);
            if let Some(a) = axis.filter(|&a| a >= shape.len()) {
                return Err(Error::Value(format!(
                    "sharding spec: axis {a} of the leaf at {path} of shape {shape:?} does not exist"
                )));
            }
            leaves.push(LeafSharding { path: path.to_strings(), shape, axis });
            Ok(())
        })?;
        let by_path = leaves.iter().enumerate().map(|(i, leaf)| (leaf.path.clone(), i)).collect();
        Ok(Self { leaves, by_path })
    }

    /// The spec that Flax's partitioning annotations give: each leaf split along the axis
    /// whose name in its `PartitionSpec` is `mesh_axis` (the process group's axis), replicated
    /// when no axis has that name. `specs` is `nn::get_partition_spec(&params)` (mapped by
    /// `nn::logical_to_mesh` first where the boxes hold logical names); a boxed leaf's key path
    /// ends in the box's `value`, which its spec's path does not have.
    ///
    /// ```
    /// use flax::distributed::ShardingSpec;
    /// use flax::nn::{self, initializers::lecun_normal};
    /// use flax::prelude::*;
    /// # fn main() -> flax::Result<()> {
    /// let dense = nn::Dense::new(8).kernel_init(nn::with_partitioning(lecun_normal(), (None, "data")));
    /// let variables = dense.init(PRNGKey::new(0), &Tensor::ones([1, 4], (Kind::Float, Device::Cpu)))?;
    /// let params = variables.get_dict("params").cloned().unwrap_or_default();
    /// let spec = ShardingSpec::from_partition_spec(&params, &nn::get_partition_spec(&params), "data")?;
    /// let axes: Vec<_> = spec.leaves().iter().map(|leaf| (leaf.path.join("/"), leaf.axis)).collect();
    /// // The unannotated bias whole on every rank; the (4, 8) kernel split along its outputs
    /// // (leaves in JAX's order: dict keys sorted).
    /// assert_eq!(axes, [("bias".to_owned(), None), ("kernel/value".to_owned(), Some(1))]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Value`] naming a leaf that `specs` has no spec for, or whose spec names
    /// `mesh_axis` at an axis the leaf lacks or on two axes.
    pub fn from_partition_spec<P: Tree>(params: &P, specs: &SpecTree, mesh_axis: &str) -> Result<Self> {
        let mut error = None;
        let spec = Self::from_fn(params, |path, _| {
            let keys = path.to_strings();
            let spec = specs.get_path(&keys).or_else(|| match keys.split_last() {
                Some((last, box_path)) if last == "value" => specs.get_path(box_path),
                _ => None,
            });
            let names = match spec {
                Some(SpecTree::Spec(spec)) => spec.names(),
                _ => {
                    error.get_or_insert_with(|| {
                        format!("the partition specs have no spec for the leaf at {path}")
                    });
                    return None;
                }
            };
            let mut axes = names.iter().enumerate().filter(|(_, n)| n.as_deref() == Some(mesh_axis));
            let axis = axes.next().map(|(a, _)| a);
            if axes.next().is_some() {
                error.get_or_insert_with(|| {
                    format!("the spec of the leaf at {path} names \"{mesh_axis}\" twice")
                });
            }
            axis
        })?;
        match error {
            Some(message) => Err(Error::Value(format!("sharding spec: {message}"))),
            None => Ok(spec),
        }
    }

    /// The default rule: each leaf split along its largest axis that `world_size` divides
    /// (the first of equal ones), and replicated when no axis is divisible (a 10-class bias
    /// on 4 ranks) or the leaf is a scalar. No padding, and every large leaf shards: what
    /// PyTorch's FSDP does with flat parameters, but leaf by leaf, so that checkpoints and
    /// optimizer states keep Flax's layout.
    ///
    /// # Errors
    /// [`Error::Value`] when `world_size` is not positive.
    pub fn largest_divisible_axis<P: Tree>(params: &P, world_size: i64) -> Result<Self> {
        if world_size < 1 {
            return Err(Error::Value(format!("sharding spec: world size {world_size} is not positive")));
        }
        Self::from_fn(params, |_, leaf| {
            let shape = leaf.size();
            let divisible = (0..shape.len()).filter(|&a| shape[a] % world_size == 0 && shape[a] > 0);
            divisible.fold(None, |best: Option<usize>, a| match best {
                Some(b) if shape[b] >= shape[a] => Some(b),
                _ => Some(a),
            })
        })
    }

    /// The leaves, in the parameter tree's order.
    pub fn leaves(&self) -> &[LeafSharding] {
        &self.leaves
    }

    /// The split leaf that a leaf at `path` of shape `shape` is a copy or a piece of: the
    /// parameter whose path is the longest suffix of `path`, when it is split and `shape` is
    /// its full shape (`full`) or its shard's. That is how an optimizer state's leaves
    /// (`opt_state/0/mu/Dense_0/kernel`, created leaf by leaf from the parameters, as Flax's
    /// `Partitioned` boxes pass through Optax's tree maps) follow their parameter's sharding;
    /// every other leaf (a step count, a metric) is replicated.
    pub(super) fn find(
        &self,
        path: &[String],
        shape: &[i64],
        full: bool,
        world_size: i64,
    ) -> Option<&LeafSharding> {
        let leaf = (0..=path.len()).find_map(|start| self.by_path.get(&path[start..]))?;
        let leaf = &self.leaves[*leaf];
        leaf.axis?;
        let expected = if full { leaf.shape.clone() } else { leaf.shard_shape(world_size) };
        (expected == shape).then_some(leaf)
    }
}
