//! [`Value`], the dynamic node of Flax's variable dicts: a tensor leaf, a dict, a list or a
//! scalar. Scalars are not tensor leaves: maps copy them from the first tree, zips only check
//! that the other trees have a scalar there too.

use crate::core::errors::Result;
use crate::core::frozen_dict::{Scalar, Value};
use crate::core::meta::AxisMetadata;
use crate::tree::impls::sequence::{map_seq, restore_seq, visit_seq, visit_seq_mut};
use crate::tree::impls::zip_children;
use crate::tree::key_path::Key;
use crate::tree::key_path::KeyPath;
use crate::tree::pytree::{MapFn, Tree, VisitFn, VisitMutFn};
use crate::tree::state_dict::{seq_state_dict, struct_state, StateDictMismatches};
use std::mem;

/// The same kind of node in each of `others` as the first tree's `kind`.
fn same_kind<'t, C: ?Sized, const N: usize>(
    others: [&'t Value; N],
    path: &KeyPath<'_>,
    kind: &str,
    child: impl Fn(&'t Value) -> Option<&'t C>,
) -> Result<[&'t C; N]> {
    zip_children(others, path, child, || format!("a {kind} in the first tree, something else in another"))
}

/// A box's value in another tree, which must be boxed there too (JAX compares node types).
fn as_boxed_value(value: &Value) -> Option<&Value> {
    value.as_boxed().map(AxisMetadata::unbox)
}

/// The key JAX's key paths and Flax's state dicts use for a box's content (`.value`).
const BOX_VALUE: &str = "value";

fn as_scalar(value: &Value) -> Option<&()> {
    matches!(value, Value::Scalar(_)).then_some(&())
}

impl Tree for Value {
    fn visit_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitFn<'_, 't, N>,
    ) -> Result<()> {
        match self {
            Value::Tensor(t) => t.visit_leaves(same_kind(others, path, "tensor", Value::as_tensor)?, path, f),
            Value::Dict(d) => d.visit_leaves(same_kind(others, path, "dict", Value::as_dict)?, path, f),
            Value::List(l) => visit_seq(l, same_kind(others, path, "list", Value::as_list)?, path, f),
            Value::Scalar(_) => same_kind(others, path, "scalar", as_scalar).map(drop),
            Value::Boxed(b) => {
                let others = same_kind(others, path, "box", as_boxed_value)?;
                path.scoped(Key::Name(BOX_VALUE), |path| b.unbox().visit_leaves(others, path, f))
            }
        }
    }

    fn visit_leaves_mut<'t, const N: usize>(
        &'t mut self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitMutFn<'_, 't, N>,
    ) -> Result<()> {
        match self {
            Value::Tensor(t) => {
                t.visit_leaves_mut(same_kind(others, path, "tensor", Value::as_tensor)?, path, f)
            }
            Value::Dict(d) => d.visit_leaves_mut(same_kind(others, path, "dict", Value::as_dict)?, path, f),
            Value::List(l) => visit_seq_mut(l, same_kind(others, path, "list", Value::as_list)?, path, f),
            Value::Scalar(_) => same_kind(others, path, "scalar", as_scalar).map(drop),
            Value::Boxed(b) => {
                let others = same_kind(others, path, "box", as_boxed_value)?;
                path.scoped(Key::Name(BOX_VALUE), |path| b.value_mut().visit_leaves_mut(others, path, f))
            }
        }
    }

    fn map_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut MapFn<'_, 't, N>,
    ) -> Result<Self> {
        Ok(match self {
            Value::Tensor(t) => {
                Value::Tensor(t.map_leaves(same_kind(others, path, "tensor", Value::as_tensor)?, path, f)?)
            }
            Value::Dict(d) => {
                Value::Dict(d.map_leaves(same_kind(others, path, "dict", Value::as_dict)?, path, f)?)
            }
            Value::List(l) => {
                Value::List(map_seq(l, same_kind(others, path, "list", Value::as_list)?, path, f)?)
            }
            Value::Scalar(s) => {
                same_kind(others, path, "scalar", as_scalar)?;
                Value::Scalar(s.clone())
            }
            Value::Boxed(b) => {
                let others = same_kind(others, path, "box", as_boxed_value)?;
                let value =
                    path.scoped(Key::Name(BOX_VALUE), |path| b.unbox().map_leaves(others, path, f))?;
                Value::Boxed(Box::new(b.replace_boxed(value)))
            }
        })
    }

    fn state_dict(&self) -> Value {
        match self {
            Value::Tensor(t) => t.state_dict(),
            Value::Dict(d) => d.state_dict(),
            Value::List(l) => seq_state_dict(l.iter().map(Value::state_dict)),
            Value::Scalar(s) => Value::Scalar(s.clone()),
            // A box is a dataclass whose one pytree field is `value` (Flax's state dict of it).
            Value::Boxed(b) => {
                Value::Dict([(BOX_VALUE.to_owned(), b.unbox().state_dict())].into_iter().collect())
            }
        }
    }

    /// A scalar target takes a scalar of the same Python type (an `int` target refuses a
    /// `float` or a `str`, unlike Flax, which takes any leaf it has no rule for), and an
    /// unsigned array target one of the same dtype and shape, as tensors do; dicts, lists and
    /// tensors follow their own rules.
    fn restore_state_dict<'t>(
        &'t self,
        state: &Value,
        path: &mut KeyPath<'t>,
        report: &mut StateDictMismatches,
    ) -> Option<Self> {
        match (self, state) {
            (Value::Tensor(t), _) => t.restore_state_dict(state, path, report).map(Value::Tensor),
            (Value::Dict(d), _) => d.restore_state_dict(state, path, report).map(Value::Dict),
            (Value::List(l), _) => restore_seq(l, state, path, report).map(Value::List),
            (Value::Boxed(b), _) => {
                let fields = struct_state(state, &[BOX_VALUE], path, report)?;
                let value = path.scoped(Key::Name(BOX_VALUE), |path| {
                    b.unbox().restore_state_dict_entry(fields.get(BOX_VALUE), path, report)
                })?;
                Some(Value::Boxed(Box::new(b.replace_boxed(value))))
            }
            (Value::Scalar(Scalar::UintArray(t)), Value::Scalar(Scalar::UintArray(s)))
                if (t.dtype(), t.shape()) == (s.dtype(), s.shape()) =>
            {
                Some(state.clone())
            }
            (Value::Scalar(t), Value::Scalar(s))
                if mem::discriminant(t) == mem::discriminant(s) && !matches!(t, Scalar::UintArray(_)) =>
            {
                Some(state.clone())
            }
            (Value::Scalar(_), _) => {
                report.mismatched(path, self.describe(), state);
                None
            }
        }
    }
}
