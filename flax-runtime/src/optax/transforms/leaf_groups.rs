//! The leaves of a tree split into groups by a per-leaf choice, each group handed to its
//! inner transformation in Optax's layout, and put back: how [`masked`](super::masked) and
//! [`multi_transform`](super::multi_transform) hand part of a tree to a transformation.
//!
//! Optax gives the inner transformation the whole tree with `optax.MaskedNode()` in place of
//! the leaves it does not own; Flax's `to_state_dict` writes a `MaskedNode` as an empty dict.
//! A group here is the same: the tree's state dict (a [`Value`], with Flax's keys), each leaf
//! outside the group replaced by an empty dict. An empty dict has no leaves, so leaf-wise
//! transformations skip it, and their states (Adam's `mu`, …) mirror the parameters with `{}`
//! where Optax's hold a `MaskedNode`: they save to, and restore from, Optax's bytes.

use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{FrozenDict, Value};
use crate::tree::{self, Key, KeyPath, Tree};
use tch::Tensor;

/// Which group, if any, each leaf of a tree belongs to, in the tree's traversal order.
///
/// A view is matched to the tree by key path, not by leaf order: the tree's own traversal
/// (a typed tree's field order) and its state dict's (a dict, visited in sorted key order as
/// JAX flattens one) can differ.
pub(crate) struct LeafGroups {
    assignment: Vec<Option<usize>>,
}

impl LeafGroups {
    /// Puts each leaf of `tree` in the group `choose(path, leaf)`, or in none.
    pub(crate) fn new<P: Tree>(
        tree: &P,
        mut choose: impl FnMut(&KeyPath<'_>, &Tensor) -> Result<Option<usize>>,
    ) -> Result<Self> {
        let mut assignment = Vec::new();
        tree.visit_leaves([], &mut KeyPath::new(), &mut |path, leaf, []| {
            assignment.push(choose(path, leaf)?);
            Ok(())
        })?;
        Ok(LeafGroups { assignment })
    }

    /// `group`'s view of `tree` (a tree of the same structure as the one the groups were made
    /// from): its state dict with the leaves of other groups replaced by `{}`
    /// (`optax.MaskedNode`); `None` stands for the leaves of no group. The tensors are shared
    /// with `tree`, so in-place updates of a view update `tree`.
    ///
    /// # Errors
    /// [`Error::TreeStructureMismatch`] when `tree` has another number of leaves.
    pub(crate) fn view<P: Tree>(&self, tree: &P, group: Option<usize>) -> Result<Value> {
        let mut view = tree.state_dict();
        self.for_each_leaf(tree, |path, assigned| {
            if assigned != group {
                *slot_mut(&mut view, path.keys()).ok_or_else(|| not_in_state_dict(path))? =
                    Value::Dict(FrozenDict::new());
            }
            Ok(())
        })?;
        Ok(view)
    }

    /// Puts the leaves of `view` (a transformation's output for `group`'s view) where
    /// `group`'s leaves are in `tree`, each from the same key path.
    ///
    /// # Errors
    /// [`Error::TreeStructureMismatch`] when `view` does not have the group's leaves.
    pub(crate) fn put_back<P: Tree>(&self, tree: &mut P, group: Option<usize>, view: &Value) -> Result<()> {
        let mut placed = 0;
        let mut index = 0;
        tree.visit_leaves_mut([], &mut KeyPath::new(), &mut |path, leaf, []| {
            let assigned = self.assignment.get(index).ok_or_else(|| self.count_error(path, index + 1))?;
            index += 1;
            if *assigned == group {
                let update = slot(view, path.keys()).and_then(Value::as_tensor);
                *leaf = update.ok_or_else(|| group_size_changed(group))?.shallow_clone();
                placed += 1;
            }
            Ok(())
        })?;
        self.check_count(index)?;
        match tree::num_leaves(view) == placed {
            true => Ok(()),
            false => Err(group_size_changed(group)),
        }
    }

    /// Calls `f` with each leaf's path in `tree` and its group, checking the leaf count.
    fn for_each_leaf<P: Tree>(
        &self,
        tree: &P,
        mut f: impl FnMut(&KeyPath<'_>, Option<usize>) -> Result<()>,
    ) -> Result<()> {
        let mut index = 0;
        tree.visit_leaves([], &mut KeyPath::new(), &mut |path, _, []| {
            let assigned = self.assignment.get(index).ok_or_else(|| self.count_error(path, index + 1))?;
            index += 1;
            f(path, *assigned)
        })?;
        self.check_count(index)
    }

    fn check_count(&self, leaves: usize) -> Result<()> {
        match leaves == self.assignment.len() {
            true => Ok(()),
            false => Err(self.count_error(&KeyPath::new(), leaves)),
        }
    }

    fn count_error(&self, path: &KeyPath<'_>, leaves: usize) -> Error {
        Error::TreeStructureMismatch {
            path: path.to_string(),
            message: format!("{leaves} leaves, but the groups were made for {}", self.assignment.len()),
        }
    }
}

/// The node of a state dict at a tree's key path: a name is a dict key, an index a list
/// position or a dict's `"0"`, `"1"`, … key (how Flax's state dicts store sequences).
fn slot<'v>(value: &'v Value, keys: &[Key<'_>]) -> Option<&'v Value> {
    let Some((key, rest)) = keys.split_first() else { return Some(value) };
    let child = match (value, key) {
        (Value::Dict(d), Key::Name(name)) => d.get(name)?,
        (Value::Dict(d), Key::Index(i)) => d.get(&i.to_string())?,
        (Value::List(l), Key::Index(i)) => l.get(*i)?,
        _ => return None,
    };
    slot(child, rest)
}

/// [`slot`], mutably.
fn slot_mut<'v>(value: &'v mut Value, keys: &[Key<'_>]) -> Option<&'v mut Value> {
    let Some((key, rest)) = keys.split_first() else { return Some(value) };
    let child = match (value, key) {
        (Value::Dict(d), Key::Name(name)) => d.get_mut(name)?,
        (Value::Dict(d), Key::Index(i)) => d.get_mut(&i.to_string())?,
        (Value::List(l), Key::Index(i)) => l.get_mut(*i)?,
        _ => return None,
    };
    slot_mut(child, rest)
}

/// The error for a leaf whose path the tree's state dict does not have.
fn not_in_state_dict(path: &KeyPath<'_>) -> Error {
    Error::TreeStructureMismatch {
        path: path.to_string(),
        message: "the tree's state dict has no array at this leaf's path".to_owned(),
    }
}

/// The error for an inner transformation that returned other updates than it got.
fn group_size_changed(group: Option<usize>) -> Error {
    Error::TreeStructureMismatch {
        path: KeyPath::new().to_string(),
        message: format!("the transformation of group {group:?} returned a different number of updates"),
    }
}
