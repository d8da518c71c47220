//! A tensor is a tree with one leaf: itself.

use crate::core::errors::Result;
use crate::core::frozen_dict::Value;
use crate::tree::key_path::KeyPath;
use crate::tree::pytree::{MapFn, Tree, VisitFn, VisitMutFn};
use crate::tree::state_dict::StateDictMismatches;
use tch::Tensor;

/// Whether two tensors agree in dtype and shape (an undefined tensor agrees with nothing).
fn same_layout(target: &Tensor, state: &Tensor) -> bool {
    matches!((target.f_kind(), state.f_kind()), (Ok(a), Ok(b)) if a == b) && target.size() == state.size()
}

impl Tree for Tensor {
    fn visit_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitFn<'_, 't, N>,
    ) -> Result<()> {
        f(path, self, others)
    }

    fn visit_leaves_mut<'t, const N: usize>(
        &'t mut self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitMutFn<'_, 't, N>,
    ) -> Result<()> {
        f(path, self, others)
    }

    fn map_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut MapFn<'_, 't, N>,
    ) -> Result<Self> {
        f(path, self, others)
    }

    fn state_dict(&self) -> Value {
        Value::Tensor(self.shallow_clone())
    }

    /// Takes the state's tensor when its shape and dtype are the target's (`from_state_dict`
    /// then moves it to the target's device).
    fn restore_state_dict<'t>(
        &'t self,
        state: &Value,
        path: &mut KeyPath<'t>,
        report: &mut StateDictMismatches,
    ) -> Option<Self> {
        match state {
            Value::Tensor(t) if same_layout(self, t) => Some(t.shallow_clone()),
            _ => {
                report.mismatched(path, self.state_dict().describe(), state);
                None
            }
        }
    }
}
