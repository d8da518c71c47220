//! `Tree` implementations for the standard containers, tensors, scalars, PRNG keys and Flax's
//! dictionaries, with the lock-step lookup they share.

mod dict;
mod prng_key;
mod scalar;
mod sequence;
mod tensor;
mod tuple;
mod value;
mod wrapper;

pub(crate) use scalar::{impl_tree_for_host_value, int_from_state};

use crate::core::errors::{Error, Result};
use crate::tree::key_path::KeyPath;

/// The child of each of `others` that matches the node being visited in the first tree, or a
/// structure mismatch at `path` (described by `message`) when one of them has none.
pub(crate) fn zip_children<'t, P: ?Sized, C: ?Sized, const N: usize>(
    others: [&'t P; N],
    path: &KeyPath<'_>,
    child: impl Fn(&'t P) -> Option<&'t C>,
    message: impl FnOnce() -> String,
) -> Result<[&'t C; N]> {
    let children = others.map(child);
    if children.iter().any(Option::is_none) {
        return Err(structure_mismatch(path, message()));
    }
    Ok(children.map(|c| c.expect("every child was checked to be present just above")))
}

/// The restored children of a container, `None` if any could not be restored. Every child is
/// restored, even after a failure, so that all mismatches are reported.
pub(crate) fn restore_each<C, R: FromIterator<C>>(children: impl Iterator<Item = Option<C>>) -> Option<R> {
    let restored: Vec<Option<C>> = children.collect();
    restored.into_iter().collect()
}

/// The error for trees that differ in structure at `path`.
pub(crate) fn structure_mismatch(path: &KeyPath<'_>, message: String) -> Error {
    Error::TreeStructureMismatch { path: path.to_string(), message }
}
