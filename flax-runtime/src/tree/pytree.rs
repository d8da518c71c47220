//! The [`Tree`] trait: JAX's pytrees, with `tch::Tensor` leaves.

use crate::core::errors::Result;
use crate::core::frozen_dict::Value;
use crate::tree::key_path::KeyPath;
use crate::tree::state_dict::StateDictMismatches;
use tch::Tensor;

/// What [`Tree::visit_leaves`] calls on each leaf of the first tree, with the same leaf of
/// the `N` other trees.
pub type VisitFn<'f, 't, const N: usize> =
    dyn FnMut(&KeyPath<'t>, &'t Tensor, [&'t Tensor; N]) -> Result<()> + 'f;

/// What [`Tree::visit_leaves_mut`] calls: the first tree's leaf mutably (in-place updates).
pub type VisitMutFn<'f, 't, const N: usize> =
    dyn FnMut(&KeyPath<'t>, &'t mut Tensor, [&'t Tensor; N]) -> Result<()> + 'f;

/// What [`Tree::map_leaves`] calls to produce each leaf of the new tree.
pub type MapFn<'f, 't, const N: usize> =
    dyn FnMut(&KeyPath<'t>, &'t Tensor, [&'t Tensor; N]) -> Result<Tensor> + 'f;

/// A pytree: a value made of containers whose leaves are tensors.
///
/// Parameters, gradients, optimizer states and train states are all trees, so optimizers,
/// `value_and_grad`, device moves and checkpoints work on any of them through the generic
/// functions of [`crate::tree`] (`tree_map`, `leaves`, `to_state_dict`, …). Implement it with
/// `#[derive(Tree)]`; the implementations here cover tensors, `Option`, `Vec`, `Box`,
/// string-keyed maps, tuples, [`FrozenDict`](crate::FrozenDict), [`Value`], scalars and
/// [`PRNGKey`](crate::PRNGKey).
///
/// Every method takes the first tree as `self` and `N` more trees of the same type as
/// `others`, walked in lock step (`N = 0` for a plain traversal, `1` for a zip): one
/// primitive serves maps over one, two or more trees, and trees whose dynamic structure
/// (lengths, keys, `Some`/`None`) differs are a [`TreeStructureMismatch`] error. The
/// [`KeyPath`] is pushed and popped as the walk descends and costs no allocation per leaf.
///
/// Leaves are visited in a fixed order, JAX's: struct fields in declaration order (a
/// dataclass's), sequences by index, maps in sorted key order (`jax.tree_util` flattens a dict
/// so). Maps return map-typed nodes key-sorted, as JAX rebuilds them, and an in-place visit
/// leaves them so; state dicts keep each map's own order (Flax's `to_state_dict`, what
/// `to_bytes` writes).
///
/// Non-tensor parts come in two kinds, following `flax.struct`:
/// - scalar leaves (`i64`, `f64`, `bool`, `String`, [`Value::Scalar`], and
///   [`PRNGKey`](crate::PRNGKey), saved as its `uint32[2]` key data) are part of the state
///   dict (a `TrainState`'s `step`, like a plain `int` field of a Flax dataclass, or its
///   dropout key, like a `jax.Array` key field) but not tensor leaves: maps copy them from the
///   first tree unchanged;
/// - `#[tree(static)]` fields (Flax's `pytree_node=False`, e.g. an optimizer or an
///   `apply_fn`) are neither leaves nor in the state dict; maps and restores clone them
///   from the first tree without comparing them with the other trees' (JAX keeps them in the
///   treedef and compares them).
///
/// [`TreeStructureMismatch`]: crate::Error::TreeStructureMismatch
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a flax `Tree` (a pytree of tensors)",
    label = "not a `Tree`",
    note = "derive it with `#[derive(flax::Tree)]`, or mark a field that holds no tensors `#[tree(static)]`"
)]
pub trait Tree: Sized {
    /// Calls `f` on every tensor leaf, with the matching leaves of `others`.
    ///
    /// Only `f` and a structure mismatch between the trees may make it fail: with `N = 0` and
    /// an `f` that always succeeds it must succeed (`leaves` and `num_leaves` rely on it).
    fn visit_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitFn<'_, 't, N>,
    ) -> Result<()>;

    /// Calls `f` on every tensor leaf mutably, with the matching leaves of `others`, so that
    /// an optimizer that owns its state can update it in place.
    fn visit_leaves_mut<'t, const N: usize>(
        &'t mut self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitMutFn<'_, 't, N>,
    ) -> Result<()>;

    /// A tree of the same structure whose leaves are `f` of the matching leaves; everything
    /// that is not a tensor leaf is copied from `self`.
    fn map_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut MapFn<'_, 't, N>,
    ) -> Result<Self>;

    /// Flax's `serialization.to_state_dict`: nested dicts of tensors and scalars, lists and
    /// tuples keyed `"0"`, `"1"`, …, static fields left out. Tensors are shared, not copied.
    fn state_dict(&self) -> Value;

    /// Flax's `serialization.from_state_dict` with `self` as the target: the structure (and
    /// tensor shapes) of `self`, the leaves of `state`. Every missing, unexpected or
    /// mismatched entry is recorded in `report` (which applies the restore's options);
    /// `None` when this node could not be built.
    fn restore_state_dict<'t>(
        &'t self,
        state: &Value,
        path: &mut KeyPath<'t>,
        report: &mut StateDictMismatches,
    ) -> Option<Self>;

    /// This value's entry when it is a struct field: `None` leaves the key out of the state
    /// dict. `Option` overrides it so that an absent optional parameter (`bias` of a Dense
    /// without bias) has no key, as in Flax's parameter dicts.
    fn state_dict_entry(&self) -> Option<Value> {
        Some(self.state_dict())
    }

    /// Restores a struct field, dict entry or sequence element from its entry, `None` when
    /// the key is absent (a missing entry, except for an `Option` field that is `None`).
    fn restore_state_dict_entry<'t>(
        &'t self,
        state: Option<&Value>,
        path: &mut KeyPath<'t>,
        report: &mut StateDictMismatches,
    ) -> Option<Self> {
        match state {
            Some(state) => self.restore_state_dict(state, path, report),
            None => report.missing(self, path),
        }
    }
}
