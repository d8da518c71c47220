//! `optax.apply_updates`.

use crate::core::errors::Result;
use crate::optax::leafwise::{unshare_leaves, zip_leaves_mut};
use crate::tree::Tree;

/// The parameters plus the updates, in the parameters' dtypes (`optax.apply_updates`).
///
/// `params` is taken by value and updated in place under `no_grad` (one kernel per leaf):
/// Rust ownership is the donation `jax.jit` asks for, so no new parameter tensors are
/// allocated. A leaf that something else still shares (a clone of the tree, as
/// `let p1 = params.clone()` makes, or a view) is copied first, so whatever shared it keeps
/// its values, as JAX's immutable arrays do.
///
/// # Errors
/// [`Error::TreeStructureMismatch`](crate::Error::TreeStructureMismatch) when the trees
/// differ in structure; libtorch's on mismatched shapes or devices.
pub fn apply_updates<P: Tree>(mut params: P, updates: &P) -> Result<P> {
    unshare_leaves(&mut params)?;
    add_updates(params, updates)
}

/// [`apply_updates`] writing every leaf in place, shared or not: for the library's own callers,
/// whose trees are either unshared already ([`TrainState::apply_gradients`]) or views of a
/// caller's tree that are meant to write it (a [`masked`](crate::optax::masked) group).
///
/// [`TrainState::apply_gradients`]: crate::training::TrainState::apply_gradients
pub(crate) fn add_updates<P: Tree>(mut params: P, updates: &P) -> Result<P> {
    zip_leaves_mut(&mut params, [updates], |p, [u]| {
        let _ = p.f_add_(u)?;
        Ok(())
    })?;
    Ok(params)
}
