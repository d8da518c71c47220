//! JAX's `jax.value_and_grad` and `jax.grad` over any [`Tree`], on libtorch's autograd.
//!
//! The functions are pure, as in JAX: the loss function receives a copy of the tree whose
//! leaves are detached from any graph (sharing the parameters' storage, not copying it) and
//! require gradients for the duration of the call; the gradients come back from libtorch's
//! `run_backward` on exactly those leaves, as a tree of the same type. Nothing is accumulated
//! in any tensor's `.grad`, so calls never leak gradients into one another, and the caller's
//! parameters are never marked as requiring gradients.
//!
//! ```
//! use flax::tch::{Device, Kind, Tensor};
//! use flax::tree::Tree;
//!
//! #[derive(Tree)]
//! struct Params {
//!     w: Tensor,
//!     unused: Tensor,
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let params = Params {
//!     w: Tensor::from_slice(&[1.0f32, 2.0]),
//!     unused: Tensor::zeros([3], (Kind::Float, Device::Cpu)),
//! };
//! // d/dw sum(w^2) = 2w; a leaf the loss does not read gets zeros, as in JAX.
//! let (loss, grads) = flax::value_and_grad(&params, |p| Ok(p.w.square().sum(Kind::Float)))?;
//! assert_eq!(loss.double_value(&[]), 5.0);
//! assert_eq!(Vec::<f32>::try_from(&grads.w)?, [2.0, 4.0]);
//! assert_eq!(Vec::<f32>::try_from(&grads.unused)?, [0.0; 3]);
//! # Ok(())
//! # }
//! ```
//!
//! With `mutable` collections the loss function returns what `apply_with` mutated as the
//! auxiliary value (`value_and_grad_with_aux`), the way Flax trains BatchNorm:
//! `|p| { let (logits, stats) = model.apply_with(&vars(p), opts, &x)?; Ok((loss(&logits)?, stats)) }`.

use crate::core::errors::{Error, Result};
use crate::tree::{self, KeyPath, Tree};
use tch::Tensor;

/// The loss `f(params)` and its gradient with respect to every leaf of `params`
/// (`jax.value_and_grad(f)(params)`).
///
/// # Errors
/// [`Error::Value`] when a leaf is not floating point or the loss is not a floating-point
/// scalar (0-dimensional, as JAX requires); `f`'s own error; libtorch's.
pub fn value_and_grad<T: Tree>(params: &T, f: impl FnOnce(&T) -> Result<Tensor>) -> Result<(Tensor, T)> {
    let (value, (), grads) = value_and_grad_with_aux(params, |p| Ok((f(p)?, ())))?;
    Ok((value, grads))
}

/// [`value_and_grad`] for a loss function that also returns an auxiliary value
/// (`jax.value_and_grad(f, has_aux=True)`): model outputs, metrics, or the collections a
/// `mutable` apply updated. Returns `(value, aux, grads)`; the tensors of `aux` are detached,
/// so they hold no graph.
///
/// # Errors
/// As [`value_and_grad`].
pub fn value_and_grad_with_aux<T: Tree, A: Tree>(
    params: &T,
    f: impl FnOnce(&T) -> Result<(Tensor, A)>,
) -> Result<(Tensor, A, T)> {
    tch::with_grad(|| {
        let inputs = tree::tree_map_with_path(params, differentiable_leaf)?;
        let (value, aux) = f(&inputs)?;
        check_loss(&value)?;
        let grads = gradients(&value, &inputs)?;
        let aux = tree::tree_map(&aux, |t| Ok(t.detach()))?;
        Ok((value.detach(), aux, grads))
    })
}

/// The gradient of `f` at `params` (`jax.grad(f)(params)`).
///
/// # Errors
/// As [`value_and_grad`].
pub fn grad<T: Tree>(params: &T, f: impl FnOnce(&T) -> Result<Tensor>) -> Result<T> {
    value_and_grad(params, f).map(|(_, grads)| grads)
}

/// The gradient of a loss function that also returns an auxiliary value
/// (`jax.grad(f, has_aux=True)`), as `(grads, aux)`.
///
/// # Errors
/// As [`value_and_grad`].
pub fn grad_with_aux<T: Tree, A: Tree>(
    params: &T,
    f: impl FnOnce(&T) -> Result<(Tensor, A)>,
) -> Result<(T, A)> {
    value_and_grad_with_aux(params, f).map(|(_, aux, grads)| (grads, aux))
}

/// A leaf for the loss function: the parameter's storage, cut from any graph it belongs to,
/// tracked by autograd for this call only.
pub(crate) fn differentiable_leaf(path: &KeyPath<'_>, param: &Tensor) -> Result<Tensor> {
    if !param.f_is_floating_point()? {
        return Err(Error::Value(format!(
            "grad requires real-valued inputs (a floating-point dtype), but the leaf at {path} is {:?}",
            param.f_kind()?
        )));
    }
    Ok(param.f_detach()?.f_set_requires_grad(true)?)
}

/// Checks that the loss is what JAX can differentiate: a floating-point scalar.
pub(crate) fn check_loss(value: &Tensor) -> Result<()> {
    if !value.f_is_floating_point()? {
        return Err(Error::Value(format!(
            "grad requires real-valued outputs (a floating-point dtype), but got {:?}",
            value.f_kind()?
        )));
    }
    if value.dim() != 0 {
        return Err(Error::Value(format!(
            "Gradient only defined for scalar-output functions. Output had shape: {:?}.",
            value.size()
        )));
    }
    Ok(())
}

/// The gradient of `value` with respect to every leaf of `inputs`, as a tree of the same
/// type; leaves the value does not depend on get zeros (JAX's semantics).
fn gradients<T: Tree>(value: &Tensor, inputs: &T) -> Result<T> {
    let leaves = tree::leaves(inputs);
    let grads = if value.requires_grad() && !leaves.is_empty() {
        Tensor::f_run_backward(&[value], &leaves, false, false)?
    } else {
        leaves.iter().map(|_| Tensor::new()).collect()
    };
    let grads = grads.into_iter().zip(&leaves).map(|(g, leaf)| match g.defined() {
        true => Ok(g),
        false => Ok(leaf.f_zeros_like()?),
    });
    tree::tree_unflatten(inputs, grads.collect::<Result<Vec<_>>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frozen_dict::{FrozenDict, Value};
    use tch::{Device, Kind};

    fn t(values: &[f32]) -> Tensor {
        Tensor::from_slice(values)
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::try_from(t).unwrap()
    }

    /// `f(w, b) = sum(w^2) + 3 b` (gradients `2 w` and 3) over a tuple tree.
    fn quadratic(p: &(Tensor, Tensor)) -> Result<Tensor> {
        Ok(p.0.square().sum(Kind::Float) + &p.1 * 3.0)
    }

    #[test]
    fn gradients_are_hand_computed_ones() {
        let params = (t(&[1.0, -2.0, 0.5]), Tensor::from(1.5f32));
        let (value, grads) = value_and_grad(&params, quadratic).unwrap();
        assert_eq!(value.double_value(&[]), 1.0 + 4.0 + 0.25 + 4.5);
        assert_eq!(values(&grads.0), [2.0, -4.0, 1.0]);
        assert_eq!(grads.1.double_value(&[]), 3.0);
        assert_eq!(values(&grad(&params, quadratic).unwrap().0), [2.0, -4.0, 1.0]);
    }

    #[test]
    fn calls_are_pure() {
        let params = (t(&[1.0, 2.0]), Tensor::from(0.0f32));
        let first = grad(&params, quadratic).unwrap();
        let second = grad(&params, quadratic).unwrap();
        assert_eq!(values(&first.0), values(&second.0), "gradients accumulated between calls");
        assert!(
            !params.0.requires_grad() && !params.0.grad().defined(),
            "the caller's parameters were touched"
        );
        assert!(!first.0.requires_grad());
        // Differentiation works under no_grad too, as jax.grad does anywhere.
        let under_no_grad = tch::no_grad(|| grad(&params, quadratic)).unwrap();
        assert_eq!(values(&under_no_grad.0), [2.0, 4.0]);
    }

    #[test]
    fn leaves_the_loss_ignores_get_zeros() {
        let params: FrozenDict = [
            ("used".to_owned(), Value::Tensor(t(&[3.0]))),
            ("unused".to_owned(), Value::Tensor(Tensor::ones([2, 2], (Kind::Double, Device::Cpu)))),
        ]
        .into_iter()
        .collect();
        let grads = grad(&params, |p| Ok(p.tensor(&["used"]).unwrap().sum(Kind::Float) * 2.0)).unwrap();
        assert_eq!(values(grads.tensor(&["used"]).unwrap()), [2.0]);
        let unused = grads.tensor(&["unused"]).unwrap();
        assert_eq!((unused.size(), unused.kind()), (vec![2, 2], Kind::Double));
        assert_eq!(unused.abs().sum(Kind::Double).double_value(&[]), 0.0);
        // A loss that reads no parameter at all: every gradient is zero.
        let (value, grads) = value_and_grad(&params, |_| Ok(Tensor::from(7.0f32))).unwrap();
        assert_eq!(value.double_value(&[]), 7.0);
        assert_eq!(values(grads.tensor(&["used"]).unwrap()), [0.0]);
    }

    #[test]
    fn aux_is_returned_detached() {
        let params = (t(&[1.0, 2.0]), Tensor::from(0.0f32));
        let (value, aux, grads) =
            value_and_grad_with_aux(&params, |p| Ok((quadratic(p)?, (p.0.exp(), 42i64)))).unwrap();
        assert_eq!(value.double_value(&[]), 5.0);
        assert!(!value.requires_grad() && !aux.0.requires_grad());
        assert_eq!(aux.1, 42);
        assert_eq!(values(&grads.0), [2.0, 4.0]);
        let (grads, aux) = grad_with_aux(&params, |p| Ok((quadratic(p)?, p.0.shallow_clone()))).unwrap();
        assert_eq!((values(&grads.0), values(&aux)), (vec![2.0, 4.0], vec![1.0, 2.0]));
    }

    #[test]
    fn bad_inputs_and_outputs_are_errors() {
        let params = (t(&[1.0, 2.0]), Tensor::from(0.0f32));
        let vector_loss = value_and_grad(&params, |p| Ok(p.0.square()));
        assert!(matches!(vector_loss, Err(Error::Value(m)) if m.contains("scalar-output")));
        let int_loss = value_and_grad(&params, |_| Ok(Tensor::from(3i64)));
        assert!(matches!(int_loss, Err(Error::Value(m)) if m.contains("real-valued outputs")));
        let int_params = (Tensor::from_slice(&[1i64, 2]), Tensor::from(0.0f32));
        let int_leaf = grad(&int_params, |p| Ok(p.1.shallow_clone()));
        assert!(matches!(int_leaf, Err(Error::Value(m)) if m.contains("leaf at 0")));
        let failing = grad(&params, |_| Err(Error::Value("from the loss".to_owned())));
        assert!(matches!(failing, Err(Error::Value(m)) if m == "from the loss"));
    }
}
