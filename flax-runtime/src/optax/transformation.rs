//! Optax's `GradientTransformation`: an optimizer as a pair of pure functions, `init` and
//! `update`, over trees of parameters, gradients and state.

use crate::core::errors::{Error, Result};
use crate::optax::boxed::BoxedTransformation;
use crate::tree::Tree;

/// Optax's `EmptyState`: the state of a transformation that keeps none (`scale`, `clip`, …).
/// Its state dict is `{}`, as Flax writes Optax's `EmptyState()`.
pub type EmptyState = ();

/// An optimizer, or one step of one (`optax.GradientTransformation`).
///
/// `init` builds the state for a parameter tree; `update` turns a tree of gradients into a
/// tree of updates (to be added to the parameters with [`apply_updates`]) and the next state.
/// The state is a [`Tree`], so it is checkpointed, restored and moved between devices with
/// the same functions as the parameters; its fields carry Optax's names (`count`, `mu`, `nu`,
/// `trace`, …) and its state dict Optax's structure (chains are tuples).
///
/// `update` takes the gradients and the state **by value**: Rust ownership is the buffer
/// donation that `jax.jit(..., donate_argnums=...)` asks for. Transformations compute the new
/// state in place in the old state's tensors and the updates in place in the gradients'
/// tensors, under `no_grad`, without allocating per step where libtorch has an in-place
/// kernel, while the API stays functional (the new state is returned). A gradient tree that
/// shares storage with something the caller still needs (for instance a shallow clone of the
/// parameters) must therefore be copied first.
///
/// Every built-in transformation is generic over the parameter type `P`, so one optimizer
/// value serves a typed parameter struct, a [`FrozenDict`](crate::FrozenDict) or a `Vec`.
///
/// [`apply_updates`]: crate::optax::apply_updates
pub trait GradientTransformation<P: Tree> {
    /// The optimizer state.
    type State: Tree;

    /// The initial state for `params` (`tx.init(params)`).
    ///
    /// # Errors
    /// libtorch's, when the state's tensors cannot be allocated.
    fn init(&self, params: &P) -> Result<Self::State>;

    /// The updates for `updates` (the gradients, or the previous transformation's output)
    /// and the next state (`tx.update(updates, state, params)`). `params` is needed by the
    /// transformations that read the parameters (weight decay, trust ratios).
    ///
    /// # Errors
    /// [`Error::TreeStructureMismatch`] when the state or the parameters do not match the
    /// updates' structure, [`Error::Value`] when parameters are needed and not given,
    /// libtorch's on mismatched shapes, dtypes or devices.
    fn update(&self, updates: P, state: Self::State, params: Option<&P>) -> Result<(P, Self::State)>;

    /// `update` then [`apply_updates`]: the parameters after one step, and the next state.
    /// [`TrainState::apply_gradients`](crate::training::TrainState::apply_gradients) steps
    /// through this, so that an optimizer with a fused libtorch kernel (`sgd`: one
    /// `_fused_sgd_` call for all parameters) updates parameters and state in place without
    /// materialising the updates; the result equals `update` then `apply_updates` up to the
    /// rounding of fused multiply-adds, and its dicts are key-sorted as `apply_updates`'
    /// `tree_map` returns them in Optax (what a checkpoint after the step writes).
    ///
    /// # Errors
    /// Those of [`update`](Self::update) and [`apply_updates`].
    ///
    /// [`apply_updates`]: crate::optax::apply_updates
    fn update_and_apply(&self, grads: P, state: Self::State, params: P) -> Result<(P, Self::State)> {
        update_then_apply(self, grads, state, params)
    }

    /// This transformation behind a pointer, with its state type erased: for
    /// [`multi_transform`](crate::optax::multi_transform)'s table of transformations of
    /// different types, or an optimizer chosen at run time.
    fn boxed(self) -> BoxedTransformation<P>
    where
        Self: Sized + Send + Sync + 'static,
        Self::State: Send + 'static,
    {
        BoxedTransformation::new(self)
    }
}

impl<P: Tree, T: GradientTransformation<P> + ?Sized> GradientTransformation<P> for &T {
    type State = T::State;

    fn init(&self, params: &P) -> Result<Self::State> {
        (**self).init(params)
    }

    fn update(&self, updates: P, state: Self::State, params: Option<&P>) -> Result<(P, Self::State)> {
        (**self).update(updates, state, params)
    }

    fn update_and_apply(&self, grads: P, state: Self::State, params: P) -> Result<(P, Self::State)> {
        (**self).update_and_apply(grads, state, params)
    }
}

/// [`GradientTransformation::update_and_apply`] by its definition, for transformations
/// without a fused kernel or inputs the kernel does not take.
pub(crate) fn update_then_apply<P: Tree, T: GradientTransformation<P> + ?Sized>(
    tx: &T,
    grads: P,
    state: T::State,
    params: P,
) -> Result<(P, T::State)> {
    let (updates, state) = tx.update(grads, state, Some(&params))?;
    Ok((crate::optax::update::add_updates(params, &updates)?, state))
}

/// The parameters, for a transformation that cannot work without them (Optax's
/// `NO_PARAMS_MSG`).
pub(crate) fn required_params<P>(params: Option<&P>) -> Result<&P> {
    params.ok_or_else(|| {
        Error::Value(
            "You are using a transformation that requires the current value of parameters, but you are not \
             passing `params` when calling `update`."
                .to_owned(),
        )
    })
}
