//! Scalars (`i64`, `f64`, `bool`, `String`): leaves of the state dict, not tensor leaves.
//!
//! This is how a `TrainState`'s `step: i64` (a plain `int` field of a Flax dataclass, hence a
//! pytree leaf in JAX) is saved and restored with the state while tensor maps
//! (optimizers, device moves) copy it through unchanged. A field that should not be in the
//! state dict at all is marked `#[tree(static)]` instead.
//!
//! Restoring also accepts a one-element tensor of the matching kind, which is what Python
//! Flax writes for a counter that was updated under `jit` (a 0-d `jax.Array`).

use crate::core::frozen_dict::{Scalar, Value};
use tch::{Kind, Tensor};

/// The value of a one-element tensor whose dtype satisfies `kind_ok`.
fn tensor_item<T>(
    t: &Tensor,
    kind_ok: impl Fn(Kind) -> bool,
    read: impl Fn(&Tensor) -> Result<T, tch::TchError>,
) -> Option<T> {
    let kind = t.f_kind().ok()?;
    (t.numel() == 1 && kind_ok(kind)).then(|| read(t).ok()).flatten()
}

/// An integer state-dict entry: a Python int, or a one-element integer array (what Flax
/// writes for a counter updated under `jit`).
pub(crate) fn int_from_state(state: &Value) -> Option<i64> {
    match state {
        Value::Scalar(Scalar::Int(i)) => Some(*i),
        Value::Tensor(t) => tensor_item(t, is_integer, |t| t.f_int64_value(&[])),
        _ => None,
    }
}

fn float_from_state(state: &Value) -> Option<f64> {
    match state {
        Value::Scalar(Scalar::Float(x)) => Some(*x),
        Value::Scalar(Scalar::Int(i)) => Some(*i as f64),
        Value::Tensor(t) => tensor_item(t, is_float, |t| t.f_double_value(&[])),
        _ => None,
    }
}

fn bool_from_state(state: &Value) -> Option<bool> {
    match state {
        Value::Scalar(Scalar::Bool(b)) => Some(*b),
        Value::Tensor(t) => tensor_item(t, |k| k == Kind::Bool, |t| t.f_int64_value(&[]).map(|v| v != 0)),
        _ => None,
    }
}

fn string_from_state(state: &Value) -> Option<String> {
    match state {
        Value::Scalar(Scalar::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

fn is_integer(kind: Kind) -> bool {
    matches!(kind, Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64)
}

fn is_float(kind: Kind) -> bool {
    matches!(kind, Kind::Half | Kind::Float | Kind::Double | Kind::BFloat16)
}

/// Implements `Tree` for a value kept on the host (a scalar, a PRNG key, a step count): no
/// tensor leaves, so tensor maps copy it through; `$to_state` gives its state-dict entry and
/// `$from_state` reads one back (`None` is reported as a mismatch).
macro_rules! impl_tree_for_host_value {
    ($ty:ty, $to_state:expr, $from_state:expr) => {
        impl $crate::tree::Tree for $ty {
            fn visit_leaves<'t, const N: usize>(
                &'t self,
                _others: [&'t Self; N],
                _path: &mut $crate::tree::KeyPath<'t>,
                _f: &mut $crate::tree::VisitFn<'_, 't, N>,
            ) -> $crate::Result<()> {
                Ok(())
            }

            fn visit_leaves_mut<'t, const N: usize>(
                &'t mut self,
                _others: [&'t Self; N],
                _path: &mut $crate::tree::KeyPath<'t>,
                _f: &mut $crate::tree::VisitMutFn<'_, 't, N>,
            ) -> $crate::Result<()> {
                Ok(())
            }

            fn map_leaves<'t, const N: usize>(
                &'t self,
                _others: [&'t Self; N],
                _path: &mut $crate::tree::KeyPath<'t>,
                _f: &mut $crate::tree::MapFn<'_, 't, N>,
            ) -> $crate::Result<Self> {
                Ok(self.clone())
            }

            fn state_dict(&self) -> $crate::Value {
                $to_state(self)
            }

            fn restore_state_dict<'t>(
                &'t self,
                state: &$crate::Value,
                path: &mut $crate::tree::KeyPath<'t>,
                report: &mut $crate::tree::StateDictMismatches,
            ) -> Option<Self> {
                let restored = $from_state(state);
                if restored.is_none() {
                    report.mismatched(path, self.state_dict().describe(), state);
                }
                restored
            }
        }
    };
}

pub(crate) use impl_tree_for_host_value;

impl_tree_for_host_value!(i64, |x: &i64| Value::Scalar(Scalar::Int(*x)), int_from_state);
impl_tree_for_host_value!(f64, |x: &f64| Value::Scalar(Scalar::Float(*x)), float_from_state);
impl_tree_for_host_value!(bool, |x: &bool| Value::Scalar(Scalar::Bool(*x)), bool_from_state);
impl_tree_for_host_value!(String, |x: &String| Value::Scalar(Scalar::Str(x.clone())), string_from_state);
