//! The leaves of a tree split into groups by a per-leaf choice, and put back: how
//! [`masked`](super::masked) and [`multi_transform`](super::multi_transform) hand part of a
//! tree to an inner transformation, as Optax's `MaskedNode`s hide the rest.
//!
//! A group is a `Vec` of the chosen leaves in traversal order, so inner transformations run
//! on `Vec<Tensor>` whatever the parameter type.

use crate::core::errors::{Error, Result};
use crate::tree::{KeyPath, Tree};
use tch::Tensor;

/// Which group, if any, each leaf of a tree belongs to, in traversal order.
pub(crate) struct LeafGroups {
    assignment: Vec<Option<usize>>,
    groups: usize,
}

impl LeafGroups {
    /// Puts each leaf of `tree` in the group `choose(path, leaf)` (one of `groups`), or in
    /// none.
    pub(crate) fn new<P: Tree>(
        tree: &P,
        groups: usize,
        mut choose: impl FnMut(&KeyPath<'_>, &Tensor) -> Result<Option<usize>>,
    ) -> Result<Self> {
        let mut assignment = Vec::new();
        tree.visit_leaves([], &mut KeyPath::new(), &mut |path, leaf, []| {
            assignment.push(choose(path, leaf)?);
            Ok(())
        })?;
        Ok(LeafGroups { assignment, groups })
    }

    /// Moves each group's leaves out of `tree`, leaving placeholders that
    /// [`put_back`](Self::put_back) fills.
    pub(crate) fn take<P: Tree>(&self, tree: &mut P) -> Result<Vec<Vec<Tensor>>> {
        let mut out = self.empty_groups();
        self.visit_mut(tree, |group, leaf| {
            out[group].push(std::mem::replace(leaf, Tensor::new()));
            Ok(())
        })?;
        Ok(out)
    }

    /// Handles to each group's leaves of `tree`, a tree of the same structure as the one the
    /// groups were made from (the parameters, next to the updates).
    pub(crate) fn select<P: Tree>(&self, tree: &P) -> Result<Vec<Vec<Tensor>>> {
        let mut out = self.empty_groups();
        let mut leaves = 0;
        tree.visit_leaves([], &mut KeyPath::new(), &mut |path, leaf, []| {
            if let Some(group) = self.group(leaves, path)? {
                out[group].push(leaf.shallow_clone());
            }
            leaves += 1;
            Ok(())
        })?;
        self.check_count(leaves)?;
        Ok(out)
    }

    /// Puts the groups' leaves back where [`take`](Self::take) found them.
    pub(crate) fn put_back<P: Tree>(&self, tree: &mut P, groups: Vec<Vec<Tensor>>) -> Result<()> {
        let mut groups: Vec<_> = groups.into_iter().map(Vec::into_iter).collect();
        self.visit_mut(tree, |group, leaf| {
            *leaf = groups[group].next().ok_or_else(|| group_size_changed(group))?;
            Ok(())
        })?;
        match groups.iter_mut().position(|g| g.next().is_some()) {
            Some(group) => Err(group_size_changed(group)),
            None => Ok(()),
        }
    }

    fn empty_groups(&self) -> Vec<Vec<Tensor>> {
        (0..self.groups).map(|_| Vec::new()).collect()
    }

    /// Calls `f` with the group and the leaf of every grouped leaf of `tree`.
    fn visit_mut<P: Tree>(
        &self,
        tree: &mut P,
        mut f: impl FnMut(usize, &mut Tensor) -> Result<()>,
    ) -> Result<()> {
        let mut leaves = 0;
        tree.visit_leaves_mut([], &mut KeyPath::new(), &mut |path, leaf, []| {
            let group = self.group(leaves, path)?;
            leaves += 1;
            group.map_or(Ok(()), |group| f(group, leaf))
        })?;
        self.check_count(leaves)
    }

    /// The group of the `index`-th leaf, at `path`.
    fn group(&self, index: usize, path: &KeyPath<'_>) -> Result<Option<usize>> {
        self.assignment.get(index).copied().ok_or_else(|| Error::TreeStructureMismatch {
            path: path.to_string(),
            message: format!("more leaves than the {} the groups were made for", self.assignment.len()),
        })
    }

    fn check_count(&self, leaves: usize) -> Result<()> {
        match leaves == self.assignment.len() {
            true => Ok(()),
            false => Err(Error::TreeStructureMismatch {
                path: KeyPath::new().to_string(),
                message: format!("{leaves} leaves, but the groups were made for {}", self.assignment.len()),
            }),
        }
    }
}

/// The error for an inner transformation that returned more or fewer updates than it got.
fn group_size_changed(group: usize) -> Error {
    Error::TreeStructureMismatch {
        path: KeyPath::new().to_string(),
        message: format!("the transformation of group {group} returned a different number of updates"),
    }
}
