//! Sequences (`Vec`, and [`Value::List`] through the same functions): children keyed by
//! index, state dicts keyed `"0"`, `"1"`, … (Flax's list rule). Zipped sequences must have
//! the same length.

use crate::core::errors::Result;
use crate::core::frozen_dict::Value;
use crate::tree::impls::{restore_each, structure_mismatch, zip_children};
use crate::tree::key_path::{Key, KeyPath};
use crate::tree::pytree::{MapFn, Tree, VisitFn, VisitMutFn};
use crate::tree::state_dict::{seq_state_dict, SeqState, StateDictMismatches};

/// Checks that every one of `others` has `len` elements.
fn check_lengths<T, const N: usize>(len: usize, others: &[&[T]; N], path: &KeyPath<'_>) -> Result<()> {
    match others.iter().find(|o| o.len() != len) {
        Some(other) => {
            Err(structure_mismatch(path, format!("sequence lengths differ: {len} and {}", other.len())))
        }
        None => Ok(()),
    }
}

/// The `i`-th element of each of `others` (whose lengths were checked).
fn elements<'t, T, const N: usize>(others: [&'t [T]; N], i: usize, path: &KeyPath<'_>) -> Result<[&'t T; N]> {
    zip_children(others, path, |o| o.get(i), || format!("no element {i}"))
}

pub(crate) fn visit_seq<'t, T: Tree, const N: usize>(
    items: &'t [T],
    others: [&'t [T]; N],
    path: &mut KeyPath<'t>,
    f: &mut VisitFn<'_, 't, N>,
) -> Result<()> {
    check_lengths(items.len(), &others, path)?;
    items.iter().enumerate().try_for_each(|(i, item)| {
        let rest = elements(others, i, path)?;
        path.scoped(Key::Index(i), |path| item.visit_leaves(rest, path, f))
    })
}

pub(crate) fn visit_seq_mut<'t, T: Tree, const N: usize>(
    items: &'t mut [T],
    others: [&'t [T]; N],
    path: &mut KeyPath<'t>,
    f: &mut VisitMutFn<'_, 't, N>,
) -> Result<()> {
    check_lengths(items.len(), &others, path)?;
    items.iter_mut().enumerate().try_for_each(|(i, item)| {
        let rest = elements(others, i, path)?;
        path.scoped(Key::Index(i), |path| item.visit_leaves_mut(rest, path, f))
    })
}

pub(crate) fn map_seq<'t, T: Tree, const N: usize>(
    items: &'t [T],
    others: [&'t [T]; N],
    path: &mut KeyPath<'t>,
    f: &mut MapFn<'_, 't, N>,
) -> Result<Vec<T>> {
    check_lengths(items.len(), &others, path)?;
    let mut mapped = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let rest = elements(others, i, path)?;
        mapped.push(path.scoped(Key::Index(i), |path| item.map_leaves(rest, path, f))?);
    }
    Ok(mapped)
}

pub(crate) fn restore_seq<'t, T: Tree>(
    items: &'t [T],
    state: &Value,
    path: &mut KeyPath<'t>,
    report: &mut StateDictMismatches,
) -> Option<Vec<T>> {
    let state = SeqState::new(state, items.len(), path, report)?;
    restore_each(items.iter().enumerate().map(|(i, item)| {
        path.scoped(Key::Index(i), |path| item.restore_state_dict_entry(state.get(i), path, report))
    }))
}

impl<T: Tree> Tree for Vec<T> {
    fn visit_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitFn<'_, 't, N>,
    ) -> Result<()> {
        visit_seq(self, others.map(Vec::as_slice), path, f)
    }

    fn visit_leaves_mut<'t, const N: usize>(
        &'t mut self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitMutFn<'_, 't, N>,
    ) -> Result<()> {
        visit_seq_mut(self, others.map(Vec::as_slice), path, f)
    }

    fn map_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut MapFn<'_, 't, N>,
    ) -> Result<Self> {
        map_seq(self, others.map(Vec::as_slice), path, f)
    }

    fn state_dict(&self) -> Value {
        seq_state_dict(self.iter().map(T::state_dict))
    }

    fn restore_state_dict<'t>(
        &'t self,
        state: &Value,
        path: &mut KeyPath<'t>,
        report: &mut StateDictMismatches,
    ) -> Option<Self> {
        restore_seq(self, state, path, report)
    }
}
