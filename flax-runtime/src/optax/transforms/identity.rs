//! `optax.identity`, and an optional transformation: absent, it is the identity (Optax's
//! `trace(...) if momentum is not None else identity()`).

use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{FrozenDict, Value};
use crate::optax::transformation::{EmptyState, GradientTransformation};
use crate::tree::{KeyPath, MapFn, StateDictMismatches, Tree, VisitFn, VisitMutFn};

/// Leaves the updates as they are (`optax.identity`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Identity;

/// The transformation that changes nothing.
pub fn identity() -> Identity {
    Identity
}

impl<P: Tree> GradientTransformation<P> for Identity {
    type State = EmptyState;

    fn init(&self, _params: &P) -> Result<EmptyState> {
        Ok(())
    }

    fn update(&self, updates: P, state: EmptyState, _params: Option<&P>) -> Result<(P, EmptyState)> {
        Ok((updates, state))
    }
}

/// `Some(tx)` is `tx`; `None` is [`identity`]. This is how an optimizer's optional part
/// (SGD's momentum, RMSProp's) is written, and how a chain gets an optional link.
impl<P: Tree, T: GradientTransformation<P>> GradientTransformation<P> for Option<T> {
    type State = MaybeState<T::State>;

    fn init(&self, params: &P) -> Result<Self::State> {
        self.as_ref().map(|tx| tx.init(params)).transpose().map(MaybeState)
    }

    fn update(&self, updates: P, state: Self::State, params: Option<&P>) -> Result<(P, Self::State)> {
        match (self, state.0) {
            (Some(tx), Some(inner)) => {
                let (updates, inner) = tx.update(updates, inner, params)?;
                Ok((updates, MaybeState(Some(inner))))
            }
            (None, None) => Ok((updates, MaybeState(None))),
            (tx, _) => Err(Error::Value(format!(
                "an optional transformation that is {} was given a state that is {}",
                if tx.is_some() { "present" } else { "absent" },
                if tx.is_some() { "absent" } else { "present" },
            ))),
        }
    }
}

/// The state of an optional transformation: the inner state, or, when the transformation is
/// absent, Optax's `EmptyState` (state dict `{}`, as Flax writes the identity's state).
#[derive(Debug)]
pub struct MaybeState<S>(pub Option<S>);

impl<S: Tree> Tree for MaybeState<S> {
    fn visit_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitFn<'_, 't, N>,
    ) -> Result<()> {
        self.0.visit_leaves(others.map(|o| &o.0), path, f)
    }

    fn visit_leaves_mut<'t, const N: usize>(
        &'t mut self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitMutFn<'_, 't, N>,
    ) -> Result<()> {
        self.0.visit_leaves_mut(others.map(|o| &o.0), path, f)
    }

    fn map_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut MapFn<'_, 't, N>,
    ) -> Result<Self> {
        self.0.map_leaves(others.map(|o| &o.0), path, f).map(MaybeState)
    }

    fn state_dict(&self) -> Value {
        self.0.as_ref().map_or_else(|| Value::Dict(FrozenDict::new()), Tree::state_dict)
    }

    fn restore_state_dict<'t>(
        &'t self,
        state: &Value,
        path: &mut KeyPath<'t>,
        report: &mut StateDictMismatches,
    ) -> Option<Self> {
        match (&self.0, state) {
            (Some(inner), state) => {
                inner.restore_state_dict(state, path, report).map(|s| MaybeState(Some(s)))
            }
            (None, Value::Dict(d)) if d.is_empty() => Some(MaybeState(None)),
            (None, state) => {
                report.mismatched(path, "an empty state {}", state);
                None
            }
        }
    }
}
