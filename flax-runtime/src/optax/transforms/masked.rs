//! `optax.masked`: a transformation applied to part of the tree.

use crate::core::errors::Result;
use crate::optax::transformation::GradientTransformation;
use crate::optax::transforms::leaf_groups::LeafGroups;
use crate::tree::{KeyPath, Tree};
use std::fmt;
use std::sync::Arc;
use tch::Tensor;

/// Which leaves a masked transformation applies to: a predicate of the leaf's key path and
/// value (Optax's mask, as a function; `|path, leaf| leaf.dim() > 1` or a test on the path).
#[derive(Clone)]
pub struct Mask(Arc<Predicate>);

/// A predicate of a leaf's key path and value.
type Predicate = dyn Fn(&KeyPath<'_>, &Tensor) -> bool + Send + Sync;

impl Mask {
    /// A mask from a predicate.
    pub fn new(f: impl Fn(&KeyPath<'_>, &Tensor) -> bool + Send + Sync + 'static) -> Self {
        Mask(Arc::new(f))
    }

    /// Whether the leaf at `path` is selected.
    pub fn selects(&self, path: &KeyPath<'_>, leaf: &Tensor) -> bool {
        (self.0)(path, leaf)
    }
}

impl fmt::Debug for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Mask(<fn>)")
    }
}

/// The state of a masked transformation (`optax.MaskedState`).
#[derive(Tree, Debug)]
pub struct MaskedState<S> {
    /// The inner transformation's state, for the selected leaves only.
    pub inner_state: S,
}

/// A transformation applied to the selected leaves only; the others' updates pass through
/// unchanged (`optax.masked`).
///
/// The inner transformation sees the selected leaves as a `Vec<Tensor>` in traversal order,
/// where Optax gives it the whole tree with `MaskedNode()` in place of the others; the inner
/// state is therefore keyed `"0"`, `"1"`, … in the state dict where Optax's mirrors the
/// parameters with `{}` for masked leaves. The mask is evaluated on the updates at every step,
/// as Optax evaluates a mask function.
#[derive(Debug, Clone)]
pub struct Masked<T> {
    inner: T,
    mask: Mask,
}

/// `inner`, applied where `mask(path, leaf)` is true.
pub fn masked<T>(
    inner: T,
    mask: impl Fn(&KeyPath<'_>, &Tensor) -> bool + Send + Sync + 'static,
) -> Masked<T> {
    Masked { inner, mask: Mask::new(mask) }
}

impl<T> Masked<T> {
    fn groups<P: Tree>(&self, tree: &P) -> Result<LeafGroups> {
        LeafGroups::new(tree, 1, |path, leaf| Ok(self.mask.selects(path, leaf).then_some(0)))
    }
}

impl<P: Tree, T: GradientTransformation<Vec<Tensor>>> GradientTransformation<P> for Masked<T> {
    type State = MaskedState<T::State>;

    fn init(&self, params: &P) -> Result<Self::State> {
        let selected = self.groups(params)?.select(params)?.pop().unwrap_or_default();
        Ok(MaskedState { inner_state: self.inner.init(&selected)? })
    }

    fn update(&self, mut updates: P, state: Self::State, params: Option<&P>) -> Result<(P, Self::State)> {
        let groups = self.groups(&updates)?;
        let selected = groups.take(&mut updates)?.pop().unwrap_or_default();
        let params = params.map(|p| groups.select(p)).transpose()?.and_then(|mut p| p.pop());
        let (selected, inner_state) = self.inner.update(selected, state.inner_state, params.as_ref())?;
        groups.put_back(&mut updates, vec![selected])?;
        Ok((updates, MaskedState { inner_state }))
    }
}
