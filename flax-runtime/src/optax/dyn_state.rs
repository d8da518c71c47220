//! [`DynState`]: an optimizer state whose type is known only at run time, still a [`Tree`].
//!
//! `Tree`'s methods are generic (over the number of trees walked in lock step), so a tree
//! cannot be a trait object directly. `DynState` boxes the state behind an object-safe mirror
//! of the trait that walks the other trees as a slice, and dispatches back to the static
//! methods for up to [`MAX_ZIPPED`] other trees, which covers `tree_map`, `tree_zip_map` and
//! every traversal the library makes.

use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::Value;
use crate::tree::{KeyPath, MapFn, StateDictMismatches, Tree, VisitFn, VisitMutFn};
use std::any::{self, Any};
use std::fmt;
use tch::Tensor;

/// The most other trees a `DynState` can be walked together with.
pub const MAX_ZIPPED: usize = 3;

/// A type-erased optimizer state (what a [`BoxedTransformation`](crate::optax::BoxedTransformation)
/// keeps). It traverses, maps, saves and restores as the state it holds.
pub struct DynState(Box<dyn ErasedState>);

/// What the object-safe mirror calls back for each leaf: the path, the leaf, and the matching
/// leaves of the other trees.
type DynVisit<'f, 't> = dyn FnMut(&KeyPath<'t>, &'t Tensor, &[&'t Tensor]) -> Result<()> + 'f;
type DynVisitMut<'f, 't> = dyn FnMut(&KeyPath<'t>, &'t mut Tensor, &[&'t Tensor]) -> Result<()> + 'f;
type DynMap<'f, 't> = dyn FnMut(&KeyPath<'t>, &'t Tensor, &[&'t Tensor]) -> Result<Tensor> + 'f;

/// The object-safe mirror of [`Tree`], implemented for every `Tree + Send + 'static`.
trait ErasedState: Send {
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    fn type_name(&self) -> &'static str;
    fn visit<'t>(
        &'t self,
        others: &[&'t DynState],
        path: &mut KeyPath<'t>,
        f: &mut DynVisit<'_, 't>,
    ) -> Result<()>;
    fn visit_mut<'t>(
        &'t mut self,
        others: &[&'t DynState],
        path: &mut KeyPath<'t>,
        f: &mut DynVisitMut<'_, 't>,
    ) -> Result<()>;
    fn map<'t>(
        &'t self,
        others: &[&'t DynState],
        path: &mut KeyPath<'t>,
        f: &mut DynMap<'_, 't>,
    ) -> Result<DynState>;
    fn erased_state_dict(&self) -> Value;
    fn restore<'t>(
        &'t self,
        state: &Value,
        path: &mut KeyPath<'t>,
        report: &mut StateDictMismatches,
    ) -> Option<DynState>;
}

impl DynState {
    /// Erases the type of `state`.
    pub fn new<S: Tree + Send + 'static>(state: S) -> Self {
        DynState(Box::new(state))
    }

    /// The state, if it is an `S`.
    ///
    /// # Errors
    /// [`Error::Value`] naming both types when it is not (a state given to a transformation
    /// that did not make it).
    pub fn downcast<S: Tree + Send + 'static>(self) -> Result<S> {
        let held = self.0.type_name();
        self.0.into_any().downcast::<S>().map(|s| *s).map_err(|_| {
            Error::Value(format!(
                "an optimizer state of type {held} was given where {} is expected",
                any::type_name::<S>()
            ))
        })
    }

    /// The state, borrowed, if it is an `S`.
    pub fn downcast_ref<S: Tree + Send + 'static>(&self) -> Option<&S> {
        self.0.as_any().downcast_ref()
    }
}

impl fmt::Debug for DynState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DynState<{}>", self.0.type_name())
    }
}

/// The other trees as `S`s, or the error for one that holds another type.
fn downcast_all<'t, S: 'static>(others: &[&'t DynState], path: &KeyPath<'_>) -> Result<Vec<&'t S>> {
    others
        .iter()
        .map(|o| {
            o.0.as_any().downcast_ref::<S>().ok_or_else(|| Error::TreeStructureMismatch {
                path: path.to_string(),
                message: format!(
                    "states of types {} and {} were zipped",
                    any::type_name::<S>(),
                    o.0.type_name()
                ),
            })
        })
        .collect()
}

/// Runs `$call` with `$arr` bound to the other trees as an array of their actual count
/// (`Tree`'s methods take a fixed-size array).
macro_rules! with_array {
    ($others:expr, $path:expr, |$arr:ident| $call:expr) => {
        match $others.as_slice() {
            [] => {
                let $arr = [];
                $call
            }
            [a] => {
                let $arr = [*a];
                $call
            }
            [a, b] => {
                let $arr = [*a, *b];
                $call
            }
            [a, b, c] => {
                let $arr = [*a, *b, *c];
                $call
            }
            more => Err(Error::TreeStructureMismatch {
                path: $path.to_string(),
                message: format!("a DynState zips at most {MAX_ZIPPED} other trees, not {}", more.len()),
            }),
        }
    };
}

impl<S: Tree + Send + 'static> ErasedState for S {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }

    fn type_name(&self) -> &'static str {
        any::type_name::<S>()
    }

    fn visit<'t>(
        &'t self,
        others: &[&'t DynState],
        path: &mut KeyPath<'t>,
        f: &mut DynVisit<'_, 't>,
    ) -> Result<()> {
        let others = downcast_all::<S>(others, path)?;
        with_array!(others, path, |arr| self.visit_leaves(arr, path, &mut |p, leaf, rest| f(p, leaf, &rest)))
    }

    fn visit_mut<'t>(
        &'t mut self,
        others: &[&'t DynState],
        path: &mut KeyPath<'t>,
        f: &mut DynVisitMut<'_, 't>,
    ) -> Result<()> {
        let others = downcast_all::<S>(others, path)?;
        with_array!(others, path, |arr| self
            .visit_leaves_mut(arr, path, &mut |p, leaf, rest| f(p, leaf, &rest)))
    }

    fn map<'t>(
        &'t self,
        others: &[&'t DynState],
        path: &mut KeyPath<'t>,
        f: &mut DynMap<'_, 't>,
    ) -> Result<DynState> {
        let others = downcast_all::<S>(others, path)?;
        with_array!(others, path, |arr| self.map_leaves(arr, path, &mut |p, leaf, rest| f(p, leaf, &rest)))
            .map(DynState::new)
    }

    fn erased_state_dict(&self) -> Value {
        self.state_dict()
    }

    fn restore<'t>(
        &'t self,
        state: &Value,
        path: &mut KeyPath<'t>,
        report: &mut StateDictMismatches,
    ) -> Option<DynState> {
        self.restore_state_dict(state, path, report).map(DynState::new)
    }
}

/// The matching leaves of the other trees as the array `Tree`'s callbacks take.
fn as_array<'t, const N: usize>(rest: &[&'t Tensor], path: &KeyPath<'_>) -> Result<[&'t Tensor; N]> {
    rest.try_into().map_err(|_| Error::TreeStructureMismatch {
        path: path.to_string(),
        message: format!("{} leaves where {N} were expected", rest.len()),
    })
}

impl Tree for DynState {
    fn visit_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitFn<'_, 't, N>,
    ) -> Result<()> {
        self.0.visit(&others, path, &mut |p, leaf, rest| f(p, leaf, as_array(rest, p)?))
    }

    fn visit_leaves_mut<'t, const N: usize>(
        &'t mut self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitMutFn<'_, 't, N>,
    ) -> Result<()> {
        self.0.visit_mut(&others, path, &mut |p, leaf, rest| f(p, leaf, as_array(rest, p)?))
    }

    fn map_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut MapFn<'_, 't, N>,
    ) -> Result<Self> {
        self.0.map(&others, path, &mut |p, leaf, rest| f(p, leaf, as_array(rest, p)?))
    }

    fn state_dict(&self) -> Value {
        self.0.erased_state_dict()
    }

    fn restore_state_dict<'t>(
        &'t self,
        state: &Value,
        path: &mut KeyPath<'t>,
        report: &mut StateDictMismatches,
    ) -> Option<Self> {
        self.0.restore(state, path, report)
    }
}
