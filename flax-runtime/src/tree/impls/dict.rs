//! String-keyed maps (`BTreeMap`, `IndexMap`, [`FrozenDict`]): children keyed by name, state
//! dicts with the same keys (Flax's dict rule). Zipped maps must have the same keys.
//!
//! Key order follows JAX: `jax.tree_util` flattens a dict (and Flax's `FrozenDict`) in sorted
//! key order and rebuilds it sorted, so visits go in sorted key order, maps return sorted
//! dicts, and an in-place update (a `tree_map` result in JAX) sorts the dict's keys first.
//! State dicts and restores keep the dict's own order (Flax's `to_state_dict` and
//! `from_state_dict` iterate `dict.items()`), which is why a freshly initialised model saves
//! `kernel` before `bias` and a trained one (its params rebuilt by `apply_updates`) `bias`
//! first, byte for byte as Flax.

use crate::core::errors::Result;
use crate::core::frozen_dict::{FrozenDict, Value};
use crate::tree::impls::{restore_each, structure_mismatch, zip_children};
use crate::tree::key_path::{Key, KeyPath};
use crate::tree::pytree::{MapFn, Tree, VisitFn, VisitMutFn};
use crate::tree::state_dict::{dict_state, StateDictMismatches};
use indexmap::map::Slice;
use indexmap::IndexMap;
use smallvec::SmallVec;
use std::collections::BTreeMap;

/// What the dict rules need of a map, so that one implementation serves every map type.
trait Dict: Sized + FromIterator<(String, Self::Item)> {
    type Item: Tree;
    fn len(&self) -> usize;
    fn entries(&self) -> impl Iterator<Item = (&str, &Self::Item)>;
    fn entries_mut(&mut self) -> impl Iterator<Item = (&str, &mut Self::Item)>;
    fn lookup(&self, key: &str) -> Option<&Self::Item>;
    /// The entries in sorted key order (JAX's flattening order).
    fn sorted_entries(&self) -> impl Iterator<Item = (&str, &Self::Item)>;
    /// Puts the keys in sorted order, as JAX rebuilds a dict; a no-op when they are already.
    fn sort_keys(&mut self);
}

/// `slice`'s entries in sorted key order. Dicts that maps built are sorted already, so the
/// check (one comparison per key) usually finds nothing to do; otherwise the permutation is
/// kept inline for up to 8 keys (a module's params), so neither case allocates.
fn sorted_slice_entries<V>(slice: &Slice<String, V>) -> impl Iterator<Item = (&str, &V)> {
    let order = (!slice.keys().is_sorted()).then(|| {
        let mut order: SmallVec<[usize; 8]> = (0..slice.len()).collect();
        order.sort_unstable_by_key(|&i| slice.get_index(i).map(|(k, _)| k));
        order
    });
    let in_place = order.is_none().then_some(0..slice.len());
    in_place.into_iter().flatten().chain(order.into_iter().flatten()).filter_map(|i| {
        let (k, v) = slice.get_index(i)?;
        Some((k.as_str(), v))
    })
}

/// Implements `Dict` for a standard map with `String` keys (the two have the same methods
/// but for the sorting ones, given as `sorted_entries` and `sort_keys` bodies).
macro_rules! impl_dict_for_string_map {
    ($($map:ident { sorted_entries: |$s:ident| $sorted:expr, sort_keys: |$m:ident| $sort:expr }),*) => {$(
        impl<T: Tree> Dict for $map<String, T> {
            type Item = T;
            fn len(&self) -> usize {
                self.len()
            }
            fn entries(&self) -> impl Iterator<Item = (&str, &T)> {
                self.iter().map(|(k, v)| (k.as_str(), v))
            }
            fn entries_mut(&mut self) -> impl Iterator<Item = (&str, &mut T)> {
                self.iter_mut().map(|(k, v)| (k.as_str(), v))
            }
            fn lookup(&self, key: &str) -> Option<&T> {
                self.get(key)
            }
            fn sorted_entries(&self) -> impl Iterator<Item = (&str, &T)> {
                let $s = self;
                $sorted
            }
            fn sort_keys(&mut self) {
                let $m = self;
                $sort
            }
        }
    )*};
}

impl_dict_for_string_map!(
    BTreeMap { sorted_entries: |map| map.entries(), sort_keys: |_map| () },
    IndexMap {
        sorted_entries: |map| sorted_slice_entries(map.as_slice()),
        sort_keys: |map| if !map.keys().is_sorted() {
            map.sort_keys()
        }
    }
);

impl Dict for FrozenDict {
    type Item = Value;
    fn len(&self) -> usize {
        self.len()
    }
    fn entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.iter()
    }
    fn entries_mut(&mut self) -> impl Iterator<Item = (&str, &mut Value)> {
        self.iter_mut()
    }
    fn lookup(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }
    fn sorted_entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        sorted_slice_entries(self.as_slice())
    }
    fn sort_keys(&mut self) {
        FrozenDict::sort_keys(self)
    }
}

/// Checks that every one of `others` has as many keys as the first map.
fn check_sizes<M: Dict, const N: usize>(len: usize, others: &[&M; N], path: &KeyPath<'_>) -> Result<()> {
    match others.iter().find(|o| o.len() != len) {
        Some(other) => Err(structure_mismatch(
            path,
            format!("dicts have different keys ({len} and {} keys)", other.len()),
        )),
        None => Ok(()),
    }
}

/// The value under `key` in each of `others`.
fn values<'t, M: Dict, const N: usize>(
    others: [&'t M; N],
    key: &str,
    path: &KeyPath<'_>,
) -> Result<[&'t M::Item; N]> {
    zip_children(others, path, |o| o.lookup(key), || format!("key \"{key}\" is missing from another dict"))
}

fn visit_dict<'t, M: Dict, const N: usize>(
    map: &'t M,
    others: [&'t M; N],
    path: &mut KeyPath<'t>,
    f: &mut VisitFn<'_, 't, N>,
) -> Result<()> {
    check_sizes(map.len(), &others, path)?;
    map.sorted_entries().try_for_each(|(key, value)| {
        let rest = values(others, key, path)?;
        path.scoped(Key::Name(key), |path| value.visit_leaves(rest, path, f))
    })
}

fn visit_dict_mut<'t, M: Dict, const N: usize>(
    map: &'t mut M,
    others: [&'t M; N],
    path: &mut KeyPath<'t>,
    f: &mut VisitMutFn<'_, 't, N>,
) -> Result<()> {
    check_sizes(map.len(), &others, path)?;
    map.sort_keys();
    map.entries_mut().try_for_each(|(key, value)| {
        let rest = values(others, key, path)?;
        path.scoped(Key::Name(key), |path| value.visit_leaves_mut(rest, path, f))
    })
}

fn map_dict<'t, M: Dict, const N: usize>(
    map: &'t M,
    others: [&'t M; N],
    path: &mut KeyPath<'t>,
    f: &mut MapFn<'_, 't, N>,
) -> Result<M> {
    check_sizes(map.len(), &others, path)?;
    map.sorted_entries()
        .map(|(key, value)| {
            let rest = values(others, key, path)?;
            Ok((key.to_owned(), path.scoped(Key::Name(key), |path| value.map_leaves(rest, path, f))?))
        })
        .collect()
}

fn dict_state_dict<M: Dict>(map: &M) -> Value {
    Value::Dict(map.entries().map(|(key, value)| (key.to_owned(), value.state_dict())).collect())
}

fn restore_dict<'t, M: Dict>(
    map: &'t M,
    state: &Value,
    path: &mut KeyPath<'t>,
    report: &mut StateDictMismatches,
) -> Option<M> {
    let state = dict_state(state, path, report, |key| map.lookup(key).is_some())?;
    restore_each(map.entries().map(|(key, value)| {
        let restored =
            path.scoped(Key::Name(key), |path| value.restore_state_dict_entry(state.get(key), path, report));
        Some((key.to_owned(), restored?))
    }))
}

/// Implements `Tree` for a map type by the dict rules above.
macro_rules! impl_tree_for_dict {
    (impl[$($generics:tt)*] $map:ty) => {
        impl<$($generics)*> Tree for $map {
            fn visit_leaves<'t, const N: usize>(
                &'t self,
                others: [&'t Self; N],
                path: &mut KeyPath<'t>,
                f: &mut VisitFn<'_, 't, N>,
            ) -> Result<()> {
                visit_dict(self, others, path, f)
            }

            fn visit_leaves_mut<'t, const N: usize>(
                &'t mut self,
                others: [&'t Self; N],
                path: &mut KeyPath<'t>,
                f: &mut VisitMutFn<'_, 't, N>,
            ) -> Result<()> {
                visit_dict_mut(self, others, path, f)
            }

            fn map_leaves<'t, const N: usize>(
                &'t self,
                others: [&'t Self; N],
                path: &mut KeyPath<'t>,
                f: &mut MapFn<'_, 't, N>,
            ) -> Result<Self> {
                map_dict(self, others, path, f)
            }

            fn state_dict(&self) -> Value {
                dict_state_dict(self)
            }

            fn restore_state_dict<'t>(
                &'t self,
                state: &Value,
                path: &mut KeyPath<'t>,
                report: &mut StateDictMismatches,
            ) -> Option<Self> {
                restore_dict(self, state, path, report)
            }
        }
    };
}

impl_tree_for_dict!(impl[T: Tree] BTreeMap<String, T>);
impl_tree_for_dict!(impl[T: Tree] IndexMap<String, T>);
impl_tree_for_dict!(impl[] FrozenDict);
