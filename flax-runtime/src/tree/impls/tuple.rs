//! Tuples up to four elements, and `()` (a tree without leaves, like optax's `EmptyState`):
//! children keyed by position, state dicts keyed `"0"`, `"1"`, … (Flax's tuple rule).

use crate::core::errors::Result;
use crate::core::frozen_dict::Value;
use crate::tree::key_path::{Key, KeyPath};
use crate::tree::pytree::{MapFn, Tree, VisitFn, VisitMutFn};
use crate::tree::state_dict::{seq_state_dict, SeqState, StateDictMismatches};

/// Implements `Tree` for the tuple of the given element types and positions.
macro_rules! impl_tree_for_tuple {
    ($len:literal; $($elem:ident $idx:tt),*) => {
        // `()` has no elements, so the arguments go unused there.
        #[allow(unused_variables)]
        impl<$($elem: Tree),*> Tree for ($($elem,)*) {
            fn visit_leaves<'t, const N: usize>(
                &'t self,
                others: [&'t Self; N],
                path: &mut KeyPath<'t>,
                f: &mut VisitFn<'_, 't, N>,
            ) -> Result<()> {
                $(path.scoped(Key::Index($idx), |path| self.$idx.visit_leaves(others.map(|o| &o.$idx), path, f))?;)*
                Ok(())
            }

            fn visit_leaves_mut<'t, const N: usize>(
                &'t mut self,
                others: [&'t Self; N],
                path: &mut KeyPath<'t>,
                f: &mut VisitMutFn<'_, 't, N>,
            ) -> Result<()> {
                $(path.scoped(Key::Index($idx), |path| {
                    self.$idx.visit_leaves_mut(others.map(|o| &o.$idx), path, f)
                })?;)*
                Ok(())
            }

            fn map_leaves<'t, const N: usize>(
                &'t self,
                others: [&'t Self; N],
                path: &mut KeyPath<'t>,
                f: &mut MapFn<'_, 't, N>,
            ) -> Result<Self> {
                Ok(($(path.scoped(Key::Index($idx), |path| {
                    self.$idx.map_leaves(others.map(|o| &o.$idx), path, f)
                })?,)*))
            }

            fn state_dict(&self) -> Value {
                seq_state_dict([$(self.$idx.state_dict()),*])
            }

            fn restore_state_dict<'t>(
                &'t self,
                state: &Value,
                path: &mut KeyPath<'t>,
                report: &mut StateDictMismatches,
            ) -> Option<Self> {
                let state = SeqState::new(state, $len, path, report)?;
                // Every element is restored before any failure is returned, so that all
                // mismatches are reported.
                let restored = ($(path.scoped(Key::Index($idx), |path| {
                    self.$idx.restore_state_dict_entry(state.get($idx), path, report)
                }),)*);
                Some(($(restored.$idx?,)*))
            }
        }
    };
}

impl_tree_for_tuple!(0;);
impl_tree_for_tuple!(1; A 0);
impl_tree_for_tuple!(2; A 0, B 1);
impl_tree_for_tuple!(3; A 0, B 1, C 2);
impl_tree_for_tuple!(4; A 0, B 1, C 2, D 3);
