//! Splitting variables and inputs along a mapped axis, and stacking results back: what
//! `scan`'s `variable_axes`/`in_axes`/`out_axes` and `vmap`'s do to every leaf.

use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{FrozenDict, Value};
use crate::core::meta::{self, MetadataParams};
use crate::core::scope::Scope;
use crate::tree::{self, Tree};
use tch::Tensor;

/// Which transform is lifting which module: the facts every error of a transform names.
pub(crate) struct Lifting {
    pub transform: &'static str,
    pub scope: String,
}

impl Lifting {
    pub fn new(transform: &'static str, cx: &Scope<'_>) -> Self {
        Lifting { transform, scope: cx.path_text() }
    }

    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::Transform { transform: self.transform, scope: self.scope.clone(), message: message.into() }
    }

    /// `error` from the body, explained when it comes from a collection the transform does
    /// not map (not visible, or not writable, in the body): Flax's lifted scopes see only the
    /// collections a transform is told about, which surprises users of unlifted code.
    pub fn explain(&self, error: Error, is_mapped: impl Fn(&str) -> bool, how: &str) -> Error {
        let unmapped = |collection: &str, what: String| {
            self.error(format!(
                "{what} in collection \"{collection}\", which this {} does not map: {how}",
                self.transform
            ))
        };
        match error {
            Error::ScopeCollectionNotFound { collection, name, scope } if !is_mapped(&collection) => {
                unmapped(&collection, format!("{scope} needs the variable \"{name}\""))
            }
            Error::ScopeParamNotFound { name, scope } if !is_mapped("params") => {
                unmapped("params", format!("{scope} needs the param \"{name}\""))
            }
            Error::ModifyScopeVariable { collection, name, scope } if !is_mapped(&collection) => {
                unmapped(&collection, format!("{scope} writes the variable \"{name}\""))
            }
            other => other,
        }
    }

    /// `axis` of a tensor of rank `rank` as a non-negative index (`-1` is the last axis).
    pub fn axis(&self, axis: i64, rank: usize, what: &str) -> Result<i64> {
        let rank = rank as i64;
        let resolved = if axis < 0 { axis + rank } else { axis };
        if (0..rank).contains(&resolved) {
            Ok(resolved)
        } else {
            Err(self.error(format!("axis {axis} is out of range for {what} of rank {rank}")))
        }
    }

    /// The size of `axis` of `tensor`, checked against the rank.
    pub fn axis_size(&self, tensor: &Tensor, axis: i64, what: &str) -> Result<i64> {
        if !tensor.defined() {
            return Err(self.error(format!("{what} is an undefined tensor")));
        }
        let shape = tensor.size();
        let axis = self.axis(axis, shape.len(), what)?;
        Ok(shape[axis as usize])
    }

    /// The distinct sizes of `axis` over the leaves of `tree` (named `{what} {path}` in
    /// errors): the length a transform maps over, or several when they disagree.
    pub fn leaf_sizes<T: Tree>(&self, tree: &T, axis: i64, what: &str) -> Result<Vec<i64>> {
        let mut sizes = Vec::new();
        for (path, leaf) in tree::leaves_with_path(tree) {
            let name = if path.is_empty() { what.to_owned() } else { format!("{what} {}", path.join("/")) };
            let size = self.axis_size(leaf, axis, &name)?;
            if !sizes.contains(&size) {
                sizes.push(size);
            }
        }
        Ok(sizes)
    }

    /// `tensor` split along `axis` into its `length` slices, checking the axis's size.
    pub fn unstack_tensor(&self, tensor: &Tensor, axis: i64, length: i64, what: &str) -> Result<Vec<Tensor>> {
        let size = self.axis_size(tensor, axis, what)?;
        if size != length {
            return Err(self.error(format!(
                "{what} has size {size} on axis {axis}, but the mapped axis has size {length}"
            )));
        }
        Ok(tensor.f_unbind(axis)?)
    }

    /// Every tensor of `value` split along `axis`: one value per slice, same structure.
    pub fn unstack_value(&self, value: &Value, axis: i64, length: i64, path: &str) -> Result<Vec<Value>> {
        match value {
            Value::Tensor(t) => {
                Ok(self.unstack_tensor(t, axis, length, path)?.into_iter().map(Value::Tensor).collect())
            }
            Value::Dict(dict) => {
                let mut slices: Vec<FrozenDict> = (0..length).map(|_| FrozenDict::new()).collect();
                for (key, child) in dict.iter() {
                    let parts = self.unstack_value(child, axis, length, &format!("{path}/{key}"))?;
                    for (slice, part) in slices.iter_mut().zip(parts) {
                        slice.insert(key, part);
                    }
                }
                Ok(slices.into_iter().map(Value::Dict).collect())
            }
            Value::List(items) => {
                let mut slices: Vec<Vec<Value>> = (0..length).map(|_| Vec::new()).collect();
                for (i, item) in items.iter().enumerate() {
                    let parts = self.unstack_value(item, axis, length, &format!("{path}/{i}"))?;
                    for (slice, part) in slices.iter_mut().zip(parts) {
                        slice.push(part);
                    }
                }
                Ok(slices.into_iter().map(Value::List).collect())
            }
            // Names are adjusted by the transform (`meta::remove_axis`); each slice keeps the box.
            Value::Boxed(b) => {
                let parts = self.unstack_value(b.unbox(), axis, length, path)?;
                Ok(parts.into_iter().map(|part| Value::Boxed(Box::new(b.replace_boxed(part)))).collect())
            }
            Value::Scalar(_) => {
                Err(self.error(format!("{path} is not an array and has no axis {axis} to map")))
            }
        }
    }

    /// The slices in `values` (same structure) stacked along a new `axis`.
    pub fn stack_values(&self, values: &[Value], axis: i64, path: &str) -> Result<Value> {
        let Some(first) = values.first() else {
            return Err(self.error(format!("nothing to stack for {path}")));
        };
        let mismatch = || self.error(format!("{path} has a different structure in different iterations"));
        match first {
            Value::Tensor(_) => {
                let tensors =
                    values.iter().map(|v| v.as_tensor().ok_or_else(mismatch)).collect::<Result<Vec<_>>>()?;
                let rank = tensors[0].dim() + 1;
                Ok(Value::Tensor(Tensor::f_stack(&tensors, self.axis(axis, rank, path)?)?))
            }
            Value::Dict(dict) => {
                let mut out = FrozenDict::new();
                for (key, _) in dict.iter() {
                    let children = values
                        .iter()
                        .map(|v| v.as_dict().and_then(|d| d.get(key)).cloned().ok_or_else(mismatch))
                        .collect::<Result<Vec<_>>>()?;
                    out.insert(key, self.stack_values(&children, axis, &format!("{path}/{key}"))?);
                }
                Ok(Value::Dict(out))
            }
            Value::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in 0..items.len() {
                    let children = values
                        .iter()
                        .map(|v| v.as_list().and_then(|l| l.get(i)).cloned().ok_or_else(mismatch))
                        .collect::<Result<Vec<_>>>()?;
                    out.push(self.stack_values(&children, axis, &format!("{path}/{i}"))?);
                }
                Ok(Value::List(out))
            }
            Value::Scalar(_) => Err(self.error(format!("{path} is not an array and cannot be stacked"))),
            Value::Boxed(b) => {
                let inner = values
                    .iter()
                    .map(|v| v.as_boxed().map(|b| b.unbox().clone()).ok_or_else(mismatch))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Value::Boxed(Box::new(b.replace_boxed(self.stack_values(&inner, axis, path)?))))
            }
        }
    }

    /// Every leaf of `tree` split along `axis` into `length` trees.
    pub fn unstack_tree<T: Tree>(&self, tree: &T, axis: i64, length: i64, what: &str) -> Result<Vec<T>> {
        let mut per_slice: Vec<Vec<Tensor>> = (0..length).map(|_| Vec::new()).collect();
        for (path, leaf) in tree::leaves_with_path(tree) {
            let name = format!("{what} leaf {}", path.join("/"));
            for (slice, part) in per_slice.iter_mut().zip(self.unstack_tensor(leaf, axis, length, &name)?) {
                slice.push(part);
            }
        }
        per_slice.into_iter().map(|leaves| tree::tree_unflatten(tree, leaves)).collect()
    }

    /// The trees in `trees` (same structure) stacked leaf by leaf along a new `axis`.
    pub fn stack_trees<T: Tree>(&self, trees: &[T], axis: i64, what: &str) -> Result<T> {
        let Some(first) = trees.first() else {
            return Err(self.error(format!("nothing to stack for {what}")));
        };
        let leaves: Vec<Vec<&Tensor>> = trees.iter().map(|t| tree::leaves(t)).collect();
        let count = leaves[0].len();
        if leaves.iter().any(|l| l.len() != count) {
            return Err(self.error(format!("{what} has a different structure in different iterations")));
        }
        let mut stacked = Vec::with_capacity(count);
        for j in 0..count {
            let parts: Vec<&Tensor> = leaves.iter().map(|l| l[j]).collect();
            let rank = parts[0].dim() + 1;
            stacked.push(Tensor::f_stack(&parts, self.axis(axis, rank, what)?)?);
        }
        tree::tree_unflatten(first, stacked)
    }
}

/// A stacked (or mapped) collection as the body sees it: its boxes without the stacking axis (Flax's
/// `meta.remove_axis` on the way in). Unannotated collections are returned as they are.
pub(crate) fn without_axis(
    value: &Value,
    axis: i64,
    collection: &str,
    params: &MetadataParams,
) -> Result<Value> {
    on_boxes(value, axis, collection, |value, index| meta::remove_axis(value, index, params))
}

/// A collection stacked after the body: its boxes with the stacking axis named (Flax's
/// `meta.add_axis` on the way out).
pub(crate) fn with_axis(
    value: &Value,
    axis: i64,
    collection: &str,
    params: &MetadataParams,
) -> Result<Value> {
    on_boxes(value, axis, collection, |value, index| meta::add_axis(value, index, params))
}

/// `change` applied at the boxes' index of `axis`, when `value` holds boxes at all.
fn on_boxes(
    value: &Value,
    axis: i64,
    collection: &str,
    change: impl FnOnce(&Value, usize) -> Result<Value>,
) -> Result<Value> {
    match meta::has_axis_metadata(value) {
        true => change(value, meta::box_axis(axis, collection)?),
        false => Ok(value.clone()),
    }
}
