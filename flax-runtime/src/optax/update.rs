//! `optax.apply_updates`.

use crate::core::errors::Result;
use crate::optax::leafwise::zip_leaves_mut;
use crate::tree::Tree;

/// The parameters plus the updates, in the parameters' dtypes (`optax.apply_updates`).
///
/// `params` is taken by value and updated in place under `no_grad` (one kernel per leaf):
/// Rust ownership is the donation `jax.jit` asks for, so no new parameter tensors are
/// allocated. Anything else sharing the parameters' storage (a shallow clone handed to
/// another thread) sees the new values.
///
/// # Errors
/// [`Error::TreeStructureMismatch`](crate::Error::TreeStructureMismatch) when the trees
/// differ in structure; libtorch's on mismatched shapes or devices.
pub fn apply_updates<P: Tree>(mut params: P, updates: &P) -> Result<P> {
    zip_leaves_mut(&mut params, [updates], |p, [u]| {
        let _ = p.f_add_(u)?;
        Ok(())
    })?;
    Ok(params)
}
