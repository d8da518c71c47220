//! In-place, leaf-by-leaf arithmetic over the trees a transformation owns: the updates it
//! was given by value and the state it consumes.
//!
//! A transformation visits its updates mutably and its state trees alongside. The state was
//! moved into `update`, so writing its storage through a second handle ([`handle`]) is the
//! donation the by-value signature promises, not a hidden side effect.

use crate::core::errors::{Error, Result};
use crate::core::scalar_ops::ScalarOps;
use crate::core::tensor_identity::{shared, unshare};
use crate::tree::{self, KeyPath, Tree};
use tch::{Kind, Tensor};

/// Calls `f` on every leaf of `updates` (mutably) with the matching leaves of `others`,
/// under `no_grad` (optimizer arithmetic is never differentiated, and in-place writes to
/// tensors that require gradients are only allowed there).
///
/// # Errors
/// A structure mismatch between the trees, or `f`'s error.
pub(crate) fn zip_leaves_mut<P: Tree, const N: usize>(
    updates: &mut P,
    others: [&P; N],
    mut f: impl FnMut(&mut Tensor, [&Tensor; N]) -> Result<()>,
) -> Result<()> {
    let _no_grad = tch::no_grad_guard();
    updates.visit_leaves_mut(others, &mut KeyPath::new(), &mut |path, leaf, rest| {
        f(leaf, rest).map_err(|e| e.at_leaf(path))
    })
}

/// Makes every leaf of `tree` the only handle on its data ([`unshare`]): a leaf that a clone of
/// the tree (or anything else) shares is copied, so writing the tree in place changes nothing
/// the caller can still see, as Optax's functional updates change nothing.
///
/// A mutable visit puts each dict's keys in sorted order (JAX's rebuild of an updated dict), so
/// the tree is visited mutably only when some leaf is shared: a tree that nothing shares, the
/// usual case, keeps its order.
///
/// # Errors
/// libtorch's, when a copy cannot be allocated.
pub(crate) fn unshare_leaves<P: Tree>(tree: &mut P) -> Result<()> {
    let mut any_shared = false;
    tree.visit_leaves([], &mut KeyPath::new(), &mut |_, leaf, []| {
        any_shared |= shared(leaf);
        Ok(())
    })?;
    if !any_shared {
        return Ok(());
    }
    tree.visit_leaves_mut([], &mut KeyPath::new(), &mut |_, leaf, []| unshare(leaf))
}

/// [`zip_leaves_mut`] for arithmetic transformations: every leaf of `updates` and `others`
/// must be a defined real floating-point tensor. Their in-place scalar arithmetic (`mul_`,
/// `lerp_`, `clamp_`, comparisons with a scalar) cannot write a float into an integer or
/// boolean tensor nor order complex numbers; checked first, they are an [`Error::Value`]
/// naming the leaf, where libtorch's errors would not say which leaf.
pub(crate) fn zip_float_leaves_mut<P: Tree, const N: usize>(
    updates: &mut P,
    others: [&P; N],
    mut f: impl FnMut(&mut Tensor, [&Tensor; N]) -> Result<()>,
) -> Result<()> {
    let _no_grad = tch::no_grad_guard();
    updates.visit_leaves_mut(others, &mut KeyPath::new(), &mut |path, leaf, rest| {
        for t in std::iter::once(&*leaf).chain(rest.iter().copied()) {
            let kind = t.defined().then(|| t.kind());
            if !matches!(kind, Some(Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double)) {
                return Err(Error::Value(format!(
                    "this gradient transformation needs real floating-point updates and state; the leaf at \
                     '{path}' is {}",
                    kind.map_or_else(|| "an undefined tensor".to_owned(), |k| format!("{k:?}"))
                )));
            }
        }
        f(leaf, rest).map_err(|e| e.at_leaf(path))
    })
}

/// A second handle to a state tensor the transformation owns, to update it in place.
pub(crate) fn handle(state: &Tensor) -> Tensor {
    state.shallow_clone()
}

/// `y += alpha * x` in one kernel: libtorch's `add_(x, alpha=alpha)`, which tch does not
/// expose, as `addcmul_` with `alpha` as a 0-dimensional tensor of `y`'s dtype on `y`'s device
/// (`addcmul_`, unlike binary ops, does not accept a CPU scalar next to CUDA tensors). `alpha`
/// is rounded to `y`'s dtype, as JAX rounds a Python float multiplying a float32 array.
pub(crate) fn axpy(y: &mut Tensor, alpha: f64, x: &Tensor) -> Result<()> {
    let alpha = Tensor::try_scalar_tensor(alpha, (y.f_kind()?, y.device()))?;
    let _ = y.f_addcmul_(x, &alpha)?;
    Ok(())
}

/// Optax's `update_moment`: `moment <- (1 - decay) * x + decay * moment`, in place, in one
/// kernel (`lerp_`). The moment keeps its own dtype (Adam's `mu_dtype`, the trace's
/// `accumulator_dtype`); the average is computed in `x`'s dtype and returned in it, as Optax
/// computes the moment before casting it for the state.
pub(crate) fn update_moment(moment: &Tensor, x: &Tensor, decay: f64) -> Result<Tensor> {
    let kind = x.f_kind()?;
    if moment.f_kind()? == kind {
        let mut moment = handle(moment);
        let _ = moment.try_lerp_(x, 1.0 - decay)?;
        return Ok(moment);
    }
    let mut average = moment.f_to_kind(kind)?;
    let _ = average.try_lerp_(x, 1.0 - decay)?;
    handle(moment).f_copy_(&average)?;
    Ok(average)
}

/// `optax.tree.full_like(tree, value, dtype)`: fresh state tensors shaped like the
/// parameters, in `kind` or each parameter's dtype, on each parameter's device.
pub(crate) fn full_like<P: Tree>(tree: &P, value: f64, kind: Option<Kind>) -> Result<P> {
    tree::tree_map(tree, |p| {
        let kind = kind.map_or_else(|| p.f_kind(), Ok)?;
        Ok(Tensor::try_full(p.size(), value, (kind, p.device()))?)
    })
}
