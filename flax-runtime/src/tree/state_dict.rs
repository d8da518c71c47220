//! State dicts: Flax's `to_state_dict` / `from_state_dict` over any [`Tree`].
//!
//! A state dict is the tree as nested dictionaries ([`Value`]): what checkpoints and
//! `to_bytes` serialize. Flax's rules: dicts stay dicts, lists and tuples become dicts keyed
//! `"0"`, `"1"`, …, struct fields are keys, static fields are left out, tensors and scalars
//! are leaves.
//!
//! Restoring walks the *target* (a tree of the expected structure, e.g. freshly initialised
//! variables), so the result has the target's key order, containers, static fields and
//! devices, filled with the state's leaves. It is strict by default, unlike Flax (which
//! stops at the first missing key, ignores extra keys and never compares shapes): every
//! missing, unexpected and mismatched (shape, dtype, scalar type or kind of node) entry is
//! collected and reported in one [`Error::StateDictMismatch`]; [`RestoreOptions`] opts into
//! partial restores. Restored tensors are the state's, moved to the device of the target's
//! (shared, not copied, when already there). This is the one restore behind
//! `flax::serialization`'s `from_state_dict` and `from_bytes` too.

use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{FrozenDict, Value};
use crate::tree::key_path::KeyPath;
use crate::tree::pytree::Tree;
use crate::tree::tree_util::{shallow_clone, tree_zip_map};
use std::fmt;

/// How strictly a restore matches the stored entries to the target's. The default is strict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Target entries absent from the stored state keep the target's value, e.g. a new head
    /// on a pretrained backbone.
    pub allow_partial: bool,
    /// Stored entries absent from the target are dropped, as Flax's own `from_bytes` does
    /// silently, e.g. the old head of a pretrained backbone.
    pub allow_unexpected: bool,
}

/// Returns the state dict of `tree` (Flax's `serialization.to_state_dict`).
pub fn to_state_dict<T: Tree>(tree: &T) -> Value {
    tree.state_dict()
}

/// Rebuilds a tree shaped like `target` from `state` (Flax's
/// `serialization.from_state_dict`), strictly: `state` must have exactly the target's
/// entries, with the target's tensor shapes and dtypes and scalar types. `target`'s leaf
/// values are not used, only its structure, static fields, and tensor shapes, dtypes and
/// devices. A list or tuple in the target is restored from a dict keyed `"0"`, `"1"`, … (or
/// from a list).
///
/// # Errors
/// [`Error::StateDictMismatch`] listing every missing, unexpected and mismatched entry;
/// [`Error::Torch`] if a tensor of either tree is undefined or cannot be moved to its
/// target's device.
pub fn from_state_dict<T: Tree>(target: &T, state: &Value) -> Result<T> {
    from_state_dict_with(target, state, RestoreOptions::default())
}

/// [`from_state_dict`] with a choice of [`RestoreOptions`], e.g. a partial restore:
/// `from_state_dict_with(&target, &state, RestoreOptions { allow_partial: true, ..Default::default() })`.
/// Mismatched shapes, dtypes, scalar types and kinds of node are an error under every option.
pub fn from_state_dict_with<T: Tree>(target: &T, state: &Value, options: RestoreOptions) -> Result<T> {
    check_defined(target)?;
    check_defined(state)?;
    let mut report = StateDictMismatches { options, ..Default::default() };
    let restored = target.restore_state_dict(state, &mut KeyPath::new(), &mut report);
    match restored {
        Some(restored) if report.is_empty() => on_target_devices(restored, target),
        _ => Err(report.into_error()),
    }
}

/// `restored` with every tensor on its target's device. Moving is a map, which rebuilds
/// dicts in sorted key order as JAX's `device_put` does, while a restore keeps the target's
/// order (Flax's `from_state_dict`): so when a tensor has to move, the moved tree is restored
/// into the target once more (no copies). On one device nothing is rebuilt.
fn on_target_devices<T: Tree>(restored: T, target: &T) -> Result<T> {
    let mut elsewhere = false;
    restored.visit_leaves([target], &mut KeyPath::new(), &mut |_, r, [t]| {
        elsewhere |= r.device() != t.device();
        Ok(())
    })?;
    if !elsewhere {
        return Ok(restored);
    }
    // The restored tree comes first: maps keep its scalar leaves.
    let on_device = tree_zip_map(&restored, target, |r, t| Ok(r.f_to_device(t.device())?))?;
    let mut report = StateDictMismatches::default();
    target
        .restore_state_dict(&on_device.state_dict(), &mut KeyPath::new(), &mut report)
        .ok_or_else(|| report.into_error())
}

/// Checks that every tensor of `tree` is defined: an undefined one (`Tensor::new()`) has no
/// shape, dtype or device to compare, describe or move to, so it is an [`Error::Torch`]
/// up front rather than a panic halfway through a restore.
fn check_defined(tree: &impl Tree) -> Result<()> {
    tree.visit_leaves([], &mut KeyPath::new(), &mut |_, leaf, []| Ok(leaf.f_kind().map(drop)?))
}

/// The entries of a state dict that do not fit a target, collected during a restore under
/// its [`RestoreOptions`] (which decide whether a missing or unexpected entry counts).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StateDictMismatches {
    /// Paths the target has and the state lacks.
    pub missing: Vec<String>,
    /// Paths the state has and the target lacks.
    pub unexpected: Vec<String>,
    /// Paths present in both whose kind of node (tensor, dict, scalar) or tensor shape or
    /// dtype differs, each followed by what the target holds and what was found.
    pub mismatched: Vec<String>,
    options: RestoreOptions,
}

impl StateDictMismatches {
    /// What the target's node `target` at `path` restores to when the state has no entry
    /// for it: the target's own value (shared, not copied), recorded as missing unless the
    /// options allow partial restores.
    pub fn missing<T: Tree>(&mut self, target: &T, path: &KeyPath<'_>) -> Option<T> {
        if !self.options.allow_partial {
            self.missing.push(path.to_string());
        }
        shallow_clone(target).ok()
    }

    /// Records that the state has an entry at `path` that the target does not (unless the
    /// options allow unexpected entries, which are then dropped).
    pub fn unexpected(&mut self, path: &KeyPath<'_>) {
        if !self.options.allow_unexpected {
            self.unexpected.push(path.to_string());
        }
    }

    /// Records that the state's child `key` of `path` is not in the target (unless the
    /// options allow unexpected entries).
    pub fn unexpected_child(&mut self, path: &KeyPath<'_>, key: &str) {
        if !self.options.allow_unexpected {
            self.unexpected.push(path.child_string(key));
        }
    }

    /// Records that the entry `found` at `path` does not fit the target there, which holds
    /// `expected` (e.g. `params/Dense_0/kernel: expected Array(shape=(2, 3), dtype=float32),
    /// found Array(shape=(3,), dtype=float32)`).
    pub fn mismatched(&mut self, path: &KeyPath<'_>, expected: impl fmt::Display, found: &Value) {
        self.mismatched.push(format!("{path}: expected {expected}, found {}", found.describe()));
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// The error that reports everything recorded, each list sorted.
    pub fn into_error(mut self) -> Error {
        for paths in [&mut self.missing, &mut self.unexpected, &mut self.mismatched] {
            paths.sort();
        }
        Error::StateDictMismatch {
            missing: self.missing,
            unexpected: self.unexpected,
            mismatched: self.mismatched,
        }
    }
}

/// The state dict of a struct from its fields' entries (what `#[derive(Tree)]` generates;
/// usable by hand-written `Tree` impls): fields whose entry is `None` are left out.
pub fn struct_state_dict<const M: usize>(fields: [(&str, Option<Value>); M]) -> Value {
    Value::Dict(fields.into_iter().filter_map(|(name, value)| Some((name.to_owned(), value?))).collect())
}

/// The dictionary holding a struct's field entries, checked against the field names:
/// reports a non-dict state as mismatched (returning `None`) and keys that are not fields
/// as unexpected.
pub fn struct_state<'s>(
    state: &'s Value,
    fields: &[&str],
    path: &KeyPath<'_>,
    report: &mut StateDictMismatches,
) -> Option<&'s FrozenDict> {
    dict_state(state, path, report, |key| fields.contains(&key))
}

/// The dictionary of a dict-like node, reporting keys for which `is_expected` is false as
/// unexpected and a non-dict state as mismatched.
pub(crate) fn dict_state<'s>(
    state: &'s Value,
    path: &KeyPath<'_>,
    report: &mut StateDictMismatches,
    is_expected: impl Fn(&str) -> bool,
) -> Option<&'s FrozenDict> {
    let Value::Dict(dict) = state else {
        report.mismatched(path, "a dict", state);
        return None;
    };
    for key in dict.keys().filter(|key| !is_expected(key)) {
        report.unexpected_child(path, key);
    }
    Some(dict)
}

/// The state of a list or tuple of `len` elements: a dict keyed `"0"`, `"1"`, … (Flax's
/// form) or a [`Value::List`]. Entries past `len` are reported as unexpected, any other
/// state as mismatched with "a list of `len`".
pub(crate) enum SeqState<'s> {
    Dict(&'s FrozenDict),
    List(&'s [Value]),
}

impl<'s> SeqState<'s> {
    /// Checks `state` against a sequence of `len` elements.
    pub(crate) fn new(
        state: &'s Value,
        len: usize,
        path: &KeyPath<'_>,
        report: &mut StateDictMismatches,
    ) -> Option<Self> {
        match state {
            Value::List(items) => {
                for i in len..items.len() {
                    report.unexpected_child(path, &i.to_string());
                }
                Some(SeqState::List(items))
            }
            Value::Dict(_) => dict_state(state, path, report, |key| index_key(key).is_some_and(|i| i < len))
                .map(SeqState::Dict),
            _ => {
                report.mismatched(path, format_args!("a list of {len}"), state);
                None
            }
        }
    }

    /// The state of element `i`, if present.
    pub(crate) fn get(&self, i: usize) -> Option<&'s Value> {
        match self {
            SeqState::Dict(dict) => dict.get(&i.to_string()),
            SeqState::List(items) => items.get(i),
        }
    }
}

/// The state dict of a sequence: a dict keyed `"0"`, `"1"`, ….
pub(crate) fn seq_state_dict(items: impl IntoIterator<Item = Value>) -> Value {
    Value::Dict(items.into_iter().enumerate().map(|(i, value)| (i.to_string(), value)).collect())
}

/// The index a state-dict key stands for: its canonical decimal form only (`"1"`, not `"01"`).
fn index_key(key: &str) -> Option<usize> {
    let index: usize = key.parse().ok()?;
    (index.to_string() == key).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frozen_dict::Scalar;
    use indexmap::IndexMap;
    use std::collections::BTreeMap;
    use tch::{Kind, Tensor};

    fn zeros(shape: &[i64]) -> Tensor {
        Tensor::zeros(shape, (Kind::Float, tch::Device::Cpu))
    }

    fn dict(entries: Vec<(&str, Value)>) -> Value {
        Value::Dict(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn keys(value: &Value) -> Vec<&str> {
        value.as_dict().unwrap().keys().collect()
    }

    fn mismatches<T: std::fmt::Debug>(result: Result<T>) -> (Vec<String>, Vec<String>, Vec<String>) {
        match result {
            Err(Error::StateDictMismatch { missing, unexpected, mismatched }) => {
                (missing, unexpected, mismatched)
            }
            other => panic!("expected a state dict mismatch, got {other:?}"),
        }
    }

    #[test]
    fn sequences_and_tuples_become_dicts_keyed_by_index() {
        let tree = (vec![zeros(&[1]), zeros(&[2])], (), None::<Tensor>, 3i64);
        let state = to_state_dict(&tree);
        assert_eq!(keys(&state), ["0", "1", "2", "3"]);
        let d = state.as_dict().unwrap();
        assert_eq!(keys(d.get("0").unwrap()), ["0", "1"]);
        assert!(d.get_dict("1").unwrap().is_empty());
        assert!(matches!(d.get("2"), Some(Value::Scalar(Scalar::None))));
        assert!(matches!(d.get("3"), Some(Value::Scalar(Scalar::Int(3)))));
        let list = Value::List(vec![Value::Tensor(zeros(&[1])), Value::Scalar(Scalar::Bool(true))]);
        assert_eq!(keys(&to_state_dict(&list)), ["0", "1"]);
    }

    #[test]
    fn round_trips_restore_every_container() {
        let map: IndexMap<String, (Tensor, f64)> =
            [("w".to_owned(), (zeros(&[2]), 0.5)), ("b".to_owned(), (zeros(&[]), 1.5))].into_iter().collect();
        let tree =
            (map, BTreeMap::from([("s".to_owned(), "x".to_owned())]), Some(Box::new(vec![true, false])));
        let restored = from_state_dict(&tree, &to_state_dict(&tree)).unwrap();
        assert_eq!(restored.0.keys().collect::<Vec<_>>(), ["w", "b"]);
        assert_eq!(restored.0["b"].1, 1.5);
        assert_eq!(restored.1["s"], "x");
        assert_eq!(*restored.2.unwrap(), [true, false]);
    }

    #[test]
    fn restore_takes_the_states_leaves_and_checks_shapes() {
        let target = vec![zeros(&[2])];
        let state = dict(vec![("0", Value::Tensor(Tensor::from_slice(&[1.0f32, 2.0])))]);
        let restored = from_state_dict(&target, &state).unwrap();
        assert_eq!(Vec::<f32>::try_from(&restored[0]).unwrap(), [1.0, 2.0]);
        let list_state = Value::List(vec![Value::Tensor(Tensor::from_slice(&[3.0f32, 4.0]))]);
        assert!(from_state_dict(&target, &list_state).is_ok());
        let wrong_shape = dict(vec![("0", Value::Tensor(zeros(&[3])))]);
        assert_eq!(
            mismatches(from_state_dict(&target, &wrong_shape)).2,
            ["0: expected Array(shape=(2,), dtype=float32), found Array(shape=(3,), dtype=float32)"]
        );
        let wrong_dtype = dict(vec![("0", Value::Tensor(Tensor::from_slice(&[1i64, 2])))]);
        assert_eq!(
            mismatches(from_state_dict(&target, &wrong_dtype)).2,
            ["0: expected Array(shape=(2,), dtype=float32), found Array(shape=(2,), dtype=int64)"]
        );
    }

    #[test]
    fn restore_reports_every_mismatch_at_once() {
        let target: BTreeMap<String, Value> = BTreeMap::from([
            ("a".to_owned(), Value::Tensor(zeros(&[2, 2]))),
            ("b".to_owned(), Value::Tensor(zeros(&[3]))),
            ("c".to_owned(), Value::List(vec![Value::Tensor(zeros(&[1]))])),
            ("d".to_owned(), Value::Scalar(Scalar::Int(0))),
        ]);
        let state = dict(vec![
            ("a", Value::Tensor(zeros(&[2, 3]))),
            ("c", dict(vec![("0", Value::Tensor(zeros(&[1]))), ("1", Value::Tensor(zeros(&[1])))])),
            ("d", dict(vec![])),
            ("e", Value::Tensor(zeros(&[1]))),
        ]);
        let (missing, unexpected, mismatched) = mismatches(from_state_dict(&target, &state));
        assert_eq!(missing, ["b"]);
        assert_eq!(unexpected, ["c/1", "e"]);
        assert_eq!(
            mismatched,
            [
                "a: expected Array(shape=(2, 2), dtype=float32), found Array(shape=(2, 3), dtype=float32)",
                "d: expected 0, found a dict"
            ]
        );
        assert_eq!(
            mismatches(from_state_dict(&zeros(&[1]), &dict(vec![]))).2,
            [".: expected Array(shape=(1,), dtype=float32), found a dict"]
        );
    }

    #[test]
    fn scalars_restore_from_scalars_and_one_element_tensors() {
        assert_eq!(from_state_dict(&0i64, &Value::Scalar(Scalar::Int(5))).unwrap(), 5);
        assert_eq!(from_state_dict(&0i64, &Value::Tensor(Tensor::from(9i32))).unwrap(), 9);
        assert_eq!(from_state_dict(&0.0f64, &Value::Tensor(Tensor::from(0.25f32))).unwrap(), 0.25);
        assert_eq!(from_state_dict(&0.0f64, &Value::Scalar(Scalar::Int(2))).unwrap(), 2.0);
        assert!(from_state_dict(&false, &Value::Tensor(Tensor::from(true))).unwrap());
        assert_eq!(
            mismatches(from_state_dict(&0i64, &Value::Tensor(Tensor::from(1.5f32)))).2,
            [".: expected 0, found Array(shape=(), dtype=float32)"]
        );
        assert_eq!(
            mismatches(from_state_dict(&0i64, &Value::Scalar(Scalar::Str("1".into())))).2,
            [".: expected 0, found '1'"]
        );
        assert_eq!(
            mismatches(from_state_dict(&String::new(), &Value::Scalar(Scalar::Int(1)))).2,
            [".: expected '', found 1"]
        );
    }

    #[test]
    fn options_restore_only_into_the_same_variant() {
        let none = Value::Scalar(Scalar::None);
        assert_eq!(from_state_dict(&None::<i64>, &none).unwrap(), None);
        assert_eq!(from_state_dict(&Some(0i64), &Value::Scalar(Scalar::Int(4))).unwrap(), Some(4));
        assert_eq!(mismatches(from_state_dict(&Some(0i64), &none)).2, [".: expected 0, found None"]);
        assert_eq!(
            mismatches(from_state_dict(&None::<i64>, &Value::Scalar(Scalar::Int(4)))).2,
            [".: expected None, found 4"]
        );
    }

    #[test]
    fn partial_restores_keep_the_targets_entries_and_drop_unexpected_ones() {
        let target = (vec![zeros(&[1]), zeros(&[2])], None::<Tensor>);
        let state = dict(vec![
            ("0", dict(vec![("0", Value::Tensor(Tensor::from_slice(&[5.0f32])))])),
            ("1", Value::Tensor(zeros(&[3]))),
        ]);
        let (missing, unexpected, _) = mismatches(from_state_dict(&target, &state));
        assert_eq!((missing, unexpected), (vec!["0/1".to_owned()], vec!["1".to_owned()]));
        let partial = RestoreOptions { allow_partial: true, ..Default::default() };
        let (missing, unexpected, _) = mismatches(from_state_dict_with(&target, &state, partial));
        assert!(missing.is_empty() && unexpected == ["1"]);
        let lenient = RestoreOptions { allow_partial: true, allow_unexpected: true };
        let (restored, none) = from_state_dict_with(&target, &state, lenient).unwrap();
        assert_eq!(Vec::<f32>::try_from(&restored[0]).unwrap(), [5.0]);
        assert_eq!(restored[1].size(), [2]);
        assert!(none.is_none());
        let wrong_shape = dict(vec![("0", dict(vec![("0", Value::Tensor(zeros(&[3])))]))]);
        assert_eq!(mismatches(from_state_dict_with(&target, &wrong_shape, lenient)).2.len(), 1);
    }

    #[test]
    fn a_sequence_target_is_described_as_a_list() {
        assert_eq!(
            mismatches(from_state_dict(&vec![zeros(&[1])], &Value::Scalar(Scalar::None))).2,
            [".: expected a list of 1, found None"]
        );
    }

    #[test]
    fn undefined_tensors_are_errors_not_panics() {
        let defined = Value::Tensor(zeros(&[1]));
        assert!(matches!(from_state_dict(&Tensor::new(), &defined), Err(Error::Torch(_))));
        assert!(matches!(from_state_dict(&zeros(&[1]), &Value::Tensor(Tensor::new())), Err(Error::Torch(_))));
    }

    #[test]
    fn index_keys_are_canonical() {
        assert_eq!(index_key("0"), Some(0));
        assert_eq!(index_key("12"), Some(12));
        assert_eq!(index_key("01"), None);
        assert_eq!(index_key("+1"), None);
        assert_eq!(index_key("a"), None);
    }
}
