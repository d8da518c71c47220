//! `Option` and `Box`: a node that may be absent, and an indirection that is transparent.
//!
//! `None` is a tree without leaves (as in JAX) whose state dict is `None`; as a struct field
//! it has no entry at all, as an absent `bias` has no key in Flax's parameter dicts. A `None`
//! target accepts an absent entry or a `None` one. Zipping `Some` with `None` is a structure
//! mismatch.

use crate::core::errors::Result;
use crate::core::frozen_dict::{Scalar, Value};
use crate::tree::impls::zip_children;
use crate::tree::key_path::KeyPath;
use crate::tree::pytree::{MapFn, Tree, VisitFn, VisitMutFn};
use crate::tree::state_dict::StateDictMismatches;

/// The children of `others` when the first tree is `Some`; all must be `Some`.
fn some_children<'t, T, const N: usize>(
    others: [&'t Option<T>; N],
    path: &KeyPath<'_>,
) -> Result<[&'t T; N]> {
    zip_children(others, path, Option::as_ref, || "Some in the first tree, None in another".to_owned())
}

/// Checks that all of `others` are `None`, as the first tree is.
fn check_all_none<T, const N: usize>(others: [&Option<T>; N], path: &KeyPath<'_>) -> Result<()> {
    zip_children(
        others,
        path,
        |o| o.is_none().then_some(&()),
        || "None in the first tree, Some in another".to_owned(),
    )
    .map(drop)
}

impl<T: Tree> Tree for Option<T> {
    fn visit_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitFn<'_, 't, N>,
    ) -> Result<()> {
        match self {
            Some(x) => x.visit_leaves(some_children(others, path)?, path, f),
            None => check_all_none(others, path),
        }
    }

    fn visit_leaves_mut<'t, const N: usize>(
        &'t mut self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitMutFn<'_, 't, N>,
    ) -> Result<()> {
        match self {
            Some(x) => x.visit_leaves_mut(some_children(others, path)?, path, f),
            None => check_all_none(others, path),
        }
    }

    fn map_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut MapFn<'_, 't, N>,
    ) -> Result<Self> {
        match self {
            Some(x) => Ok(Some(x.map_leaves(some_children(others, path)?, path, f)?)),
            None => check_all_none(others, path).map(|()| None),
        }
    }

    fn state_dict(&self) -> Value {
        self.as_ref().map_or(Value::Scalar(Scalar::None), T::state_dict)
    }

    fn restore_state_dict<'t>(
        &'t self,
        state: &Value,
        path: &mut KeyPath<'t>,
        report: &mut StateDictMismatches,
    ) -> Option<Self> {
        match (self, state) {
            (None, Value::Scalar(Scalar::None)) => Some(None),
            (Some(x), state) if !matches!(state, Value::Scalar(Scalar::None)) => {
                x.restore_state_dict(state, path, report).map(Some)
            }
            _ => {
                report.mismatched(path, self.state_dict().describe(), state);
                None
            }
        }
    }

    fn state_dict_entry(&self) -> Option<Value> {
        self.as_ref().map(T::state_dict)
    }

    /// A `None` target accepts no entry or a `None` entry (what Python Flax writes for a
    /// dataclass field that is `None`); any other entry is unexpected (and dropped when the
    /// options allow it).
    fn restore_state_dict_entry<'t>(
        &'t self,
        state: Option<&Value>,
        path: &mut KeyPath<'t>,
        report: &mut StateDictMismatches,
    ) -> Option<Self> {
        match (self, state) {
            (None, None | Some(Value::Scalar(Scalar::None))) => Some(None),
            (None, Some(_)) => {
                report.unexpected(path);
                Some(None)
            }
            (Some(_), None) => report.missing(self, path),
            (Some(_), Some(state)) => self.restore_state_dict(state, path, report),
        }
    }
}

impl<T: Tree> Tree for Box<T> {
    fn visit_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitFn<'_, 't, N>,
    ) -> Result<()> {
        (**self).visit_leaves(others.map(|o| &**o), path, f)
    }

    fn visit_leaves_mut<'t, const N: usize>(
        &'t mut self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitMutFn<'_, 't, N>,
    ) -> Result<()> {
        (**self).visit_leaves_mut(others.map(|o| &**o), path, f)
    }

    fn map_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut MapFn<'_, 't, N>,
    ) -> Result<Self> {
        (**self).map_leaves(others.map(|o| &**o), path, f).map(Box::new)
    }

    fn state_dict(&self) -> Value {
        (**self).state_dict()
    }

    fn restore_state_dict<'t>(
        &'t self,
        state: &Value,
        path: &mut KeyPath<'t>,
        report: &mut StateDictMismatches,
    ) -> Option<Self> {
        (**self).restore_state_dict(state, path, report).map(Box::new)
    }

    fn state_dict_entry(&self) -> Option<Value> {
        (**self).state_dict_entry()
    }

    fn restore_state_dict_entry<'t>(
        &'t self,
        state: Option<&Value>,
        path: &mut KeyPath<'t>,
        report: &mut StateDictMismatches,
    ) -> Option<Self> {
        (**self).restore_state_dict_entry(state, path, report).map(Box::new)
    }
}
