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
use crate::tree::{self, KeyPath, Tree};
use tch::Tensor;

/// Which group, if any, each leaf of a tree belongs to, in traversal order.
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
        let mut assignment = self.assignment.iter();
        let view = mask(&tree.state_dict(), &mut assignment, group)?;
        self.check_count(self.assignment.len() - assignment.len())?;
        Ok(view)
    }

    /// Puts the leaves of `view` (a transformation's output for `group`'s view) where
    /// `group`'s leaves are in `tree`.
    ///
    /// # Errors
    /// [`Error::TreeStructureMismatch`] when `view` does not have the group's number of
    /// leaves.
    pub(crate) fn put_back<P: Tree>(&self, tree: &mut P, group: Option<usize>, view: &Value) -> Result<()> {
        let mut leaves = tree::leaves(view).into_iter();
        let mut index = 0;
        tree.visit_leaves_mut([], &mut KeyPath::new(), &mut |path, leaf, []| {
            let assigned = self.assignment.get(index).ok_or_else(|| self.count_error(path, index + 1))?;
            index += 1;
            if *assigned == group {
                *leaf = leaves.next().ok_or_else(|| group_size_changed(group))?.shallow_clone();
            }
            Ok(())
        })?;
        self.check_count(index)?;
        match leaves.next() {
            Some(_) => Err(group_size_changed(group)),
            None => Ok(()),
        }
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

/// `state` with every tensor whose assignment (taken in traversal order) is not `group`
/// replaced by an empty dict. Walks the nodes in the order `Value`'s `Tree` implementation
/// visits them, so that the assignment made on the tree lines up with its state dict.
fn mask(
    state: &Value,
    assignment: &mut std::slice::Iter<'_, Option<usize>>,
    group: Option<usize>,
) -> Result<Value> {
    Ok(match state {
        Value::Tensor(t) => {
            let assigned = assignment.next().ok_or_else(|| Error::TreeStructureMismatch {
                path: KeyPath::new().to_string(),
                message: "the tree's state dict has more arrays than the tree has leaves".to_owned(),
            })?;
            match *assigned == group {
                true => Value::Tensor(t.shallow_clone()),
                false => Value::Dict(FrozenDict::new()),
            }
        }
        Value::Dict(d) => Value::Dict(
            d.iter().map(|(k, v)| Ok((k.to_owned(), mask(v, assignment, group)?))).collect::<Result<_>>()?,
        ),
        Value::List(l) => Value::List(l.iter().map(|v| mask(v, assignment, group)).collect::<Result<_>>()?),
        Value::Scalar(_) => state.clone(),
        Value::Boxed(b) => Value::Boxed(Box::new(b.replace_boxed(mask(b.unbox(), assignment, group)?))),
    })
}

/// The error for an inner transformation that returned more or fewer updates than it got.
fn group_size_changed(group: Option<usize>) -> Error {
    Error::TreeStructureMismatch {
        path: KeyPath::new().to_string(),
        message: format!("the transformation of group {group:?} returned a different number of updates"),
    }
}
