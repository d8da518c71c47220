//! State dicts and `to_bytes` / `from_bytes`: Flax's `to_state_dict`, `from_state_dict`,
//! `to_bytes` and `from_bytes` for variable trees.
//!
//! A state dict is the tree with every list or tuple replaced by a dictionary keyed `"0"`,
//! `"1"`, … (Flax's `_list_state_dict`); that is what `to_bytes` writes. Restoring walks the
//! *target* (a tree of the expected structure, e.g. freshly initialised variables), so the
//! result has the target's key order, containers and devices, filled with the restored leaves.
//!
//! Flax's `from_state_dict` raises at the first target key the state lacks, silently drops
//! keys the target lacks and never compares shapes. Here restoring is strict by default: every
//! missing, unexpected and mismatched (shape, dtype or kind of node) entry is reported in one
//! [`Error::StateDictMismatch`]. [`RestoreOptions`] opts into partial restores.

use super::chunking::MAX_CHUNK_SIZE;
use super::msgpack::{msgpack_restore, Encoder, KeyOrder};
use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{FrozenDict, Value};
use std::collections::HashMap;
use tch::Tensor;

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

/// Flax's `to_state_dict` for a variable tree: lists become dictionaries keyed `"0"`, `"1"`, …;
/// everything else is kept (tensors are shared, not copied).
pub fn to_state_dict(variables: &FrozenDict) -> FrozenDict {
    variables.iter().map(|(key, value)| (key.to_owned(), value_state_dict(value))).collect()
}

fn value_state_dict(value: &Value) -> Value {
    match value {
        Value::Dict(dict) => Value::Dict(to_state_dict(dict)),
        Value::List(items) => Value::Dict(
            items.iter().enumerate().map(|(i, item)| (i.to_string(), value_state_dict(item))).collect(),
        ),
        leaf => leaf.clone(),
    }
}

/// Flax's `from_state_dict`, strictly: `state` must have exactly the target's entries, with the
/// target's shapes and dtypes. A list in the target is restored from a dictionary keyed `"0"`,
/// `"1"`, … (or from a list). Restored tensors are moved to the device of the target's.
pub fn from_state_dict(target: &FrozenDict, state: &FrozenDict) -> Result<FrozenDict> {
    from_state_dict_with(target, state, RestoreOptions::default())
}

/// [`from_state_dict`] with a choice of [`RestoreOptions`]; mismatched shapes, dtypes and kinds
/// of node are an error under every option.
pub fn from_state_dict_with(
    target: &FrozenDict,
    state: &FrozenDict,
    options: RestoreOptions,
) -> Result<FrozenDict> {
    let mut restorer =
        Restorer { options, missing: Vec::new(), unexpected: Vec::new(), mismatched: Vec::new() };
    let restored = restorer.restore_children("", dict_children(target), dict_children(state))?;
    let Restorer { missing, unexpected, mismatched, .. } = restorer;
    if missing.is_empty() && unexpected.is_empty() && mismatched.is_empty() {
        Ok(restored.into_iter().collect())
    } else {
        Err(Error::StateDictMismatch { missing, unexpected, mismatched })
    }
}

/// Flax's `to_bytes`: the msgpack bytes of [`to_state_dict`]`(variables)`, keys in insertion
/// order (Flax serializes the state dict in place, unsorted; see the [module docs](super)).
pub fn to_bytes(variables: &FrozenDict) -> Result<Vec<u8>> {
    let encoder = Encoder { key_order: KeyOrder::Insertion, max_chunk_size: MAX_CHUNK_SIZE };
    encoder.encode(&Value::Dict(to_state_dict(variables)))
}

/// Flax's `from_bytes`, strictly: restores the bytes into `target`'s structure (see
/// [`from_state_dict`]). Malformed bytes are an [`Error::Format`]; a structure that does not
/// match is one [`Error::StateDictMismatch`] listing every difference.
pub fn from_bytes(target: &FrozenDict, bytes: &[u8]) -> Result<FrozenDict> {
    from_bytes_with(target, bytes, RestoreOptions::default())
}

/// [`from_bytes`] with a choice of [`RestoreOptions`], e.g. a partial restore:
/// `from_bytes_with(&target, &bytes, RestoreOptions { allow_partial: true, ..Default::default() })`.
pub fn from_bytes_with(target: &FrozenDict, bytes: &[u8], options: RestoreOptions) -> Result<FrozenDict> {
    match msgpack_restore(bytes)? {
        Value::Dict(state) => from_state_dict_with(target, &state, options),
        other => Err(Error::Format {
            format: "msgpack",
            message: format!("expected a state dict at the top level, found {}", describe(&other)),
        }),
    }
}

/// Collects every difference while restoring, so that one error can report them all.
struct Restorer {
    options: RestoreOptions,
    missing: Vec<String>,
    unexpected: Vec<String>,
    mismatched: Vec<String>,
}

impl Restorer {
    fn restore(&mut self, path: &str, target: &Value, state: &Value) -> Result<Value> {
        Ok(match (target, state) {
            (Value::Dict(t), Value::Dict(s)) => Value::Dict(
                self.restore_children(path, dict_children(t), dict_children(s))?.into_iter().collect(),
            ),
            // Flax stores lists and tuples as dicts keyed "0", "1", …; msgpack_serialize as lists.
            (Value::List(t), Value::Dict(s)) => Value::List(self.restore_list(path, t, dict_children(s))?),
            (Value::List(t), Value::List(s)) => Value::List(self.restore_list(path, t, list_children(s))?),
            (Value::Tensor(t), Value::Tensor(s)) if same_layout(t, s)? => {
                Value::Tensor(s.f_to_device(t.device())?)
            }
            (Value::Scalar(t), Value::Scalar(s))
                if std::mem::discriminant(t) == std::mem::discriminant(s) =>
            {
                state.clone()
            }
            _ => {
                self.mismatched.push(format!(
                    "{path}: expected {}, found {}",
                    describe(target),
                    describe(state)
                ));
                target.clone()
            }
        })
    }

    fn restore_list(
        &mut self,
        path: &str,
        target: &[Value],
        state: Vec<(String, &Value)>,
    ) -> Result<Vec<Value>> {
        let restored = self.restore_children(path, list_children(target), state)?;
        Ok(restored.into_iter().map(|(_, value)| value).collect())
    }

    /// Restores the target's children in the target's order, recording missing and
    /// unexpected keys under `path`.
    fn restore_children(
        &mut self,
        path: &str,
        target: Vec<(String, &Value)>,
        state: Vec<(String, &Value)>,
    ) -> Result<Vec<(String, Value)>> {
        let mut state: HashMap<String, &Value> = state.into_iter().collect();
        let mut restored = Vec::with_capacity(target.len());
        for (key, target_child) in target {
            let child_path = join(path, &key);
            let value = match state.remove(&key) {
                Some(state_child) => self.restore(&child_path, target_child, state_child)?,
                None => {
                    if !self.options.allow_partial {
                        self.missing.push(child_path);
                    }
                    target_child.clone()
                }
            };
            restored.push((key, value));
        }
        if !self.options.allow_unexpected {
            let mut extra: Vec<String> = state.into_keys().map(|key| join(path, &key)).collect();
            extra.sort();
            self.unexpected.extend(extra);
        }
        Ok(restored)
    }
}

/// Whether two tensors agree in dtype and shape (an undefined tensor is an error, not a panic).
fn same_layout(target: &Tensor, state: &Tensor) -> Result<bool> {
    Ok(target.f_kind()? == state.f_kind()? && target.size() == state.size())
}

fn dict_children(dict: &FrozenDict) -> Vec<(String, &Value)> {
    dict.iter().map(|(key, value)| (key.to_owned(), value)).collect()
}

/// A list's elements keyed `"0"`, `"1"`, … as its state dict holds them.
fn list_children(list: &[Value]) -> Vec<(String, &Value)> {
    list.iter().enumerate().map(|(i, value)| (i.to_string(), value)).collect()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}/{key}")
    }
}

/// A short description of a node for error messages (tensors as `Array(shape=…, dtype=…)`).
fn describe(value: &Value) -> String {
    match value {
        Value::Dict(_) => "a dict".to_owned(),
        Value::List(items) => format!("a list of {}", items.len()),
        leaf => format!("{leaf:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frozen_dict::Scalar;
    use crate::serialization::msgpack_serialize;
    use tch::{Device, Kind, Tensor};

    fn dict(entries: Vec<(&str, Value)>) -> FrozenDict {
        entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    fn ones(shape: &[i64]) -> Value {
        Value::Tensor(Tensor::ones(shape, (Kind::Float, Device::Cpu)))
    }

    fn sown() -> FrozenDict {
        let acts = Value::List(vec![ones(&[2]), Value::List(vec![Value::Scalar(Scalar::Int(3))])]);
        dict(vec![("intermediates", Value::Dict(dict(vec![("acts", acts)])))])
    }

    #[test]
    fn lists_become_dicts_keyed_by_index() {
        let state = to_state_dict(&sown());
        let acts = state.get_path(&["intermediates", "acts"]).and_then(Value::as_dict).unwrap();
        assert_eq!(acts.keys().collect::<Vec<_>>(), ["0", "1"]);
        assert!(matches!(acts.get_path(&["1", "0"]), Some(Value::Scalar(Scalar::Int(3)))));
    }

    #[test]
    fn lists_restore_from_dicts_and_from_lists() {
        let target = sown();
        let from_state_dict_bytes = from_bytes(&target, &to_bytes(&target).unwrap()).unwrap();
        let from_list_bytes =
            from_bytes(&target, &msgpack_serialize(&Value::Dict(target.clone())).unwrap()).unwrap();
        for restored in [from_state_dict_bytes, from_list_bytes] {
            let acts = restored.get_path(&["intermediates", "acts"]).and_then(Value::as_list).unwrap();
            assert!(acts[0].as_tensor().unwrap().equal(&Tensor::ones([2], (Kind::Float, Device::Cpu))));
        }
    }

    #[test]
    fn list_lengths_must_match() {
        let target = dict(vec![("l", Value::List(vec![ones(&[1]), ones(&[1])]))]);
        let state = dict(vec![("l", Value::List(vec![ones(&[1]), ones(&[1]), ones(&[1])]))]);
        let err = from_state_dict(&target, &state).unwrap_err();
        assert!(matches!(err, Error::StateDictMismatch { unexpected, .. } if unexpected == ["l/2"]));
        let err = from_state_dict(&state, &target).unwrap_err();
        assert!(matches!(err, Error::StateDictMismatch { missing, .. } if missing == ["l/2"]));
    }

    #[test]
    fn kinds_of_node_dtypes_and_scalar_types_must_match() {
        let target = dict(vec![
            ("a", ones(&[2])),
            ("b", Value::Dict(FrozenDict::new())),
            ("c", Value::Scalar(Scalar::Int(0))),
            ("d", Value::List(vec![])),
        ]);
        let state = dict(vec![
            ("a", Value::Tensor(Tensor::ones([2], (Kind::Double, Device::Cpu)))),
            ("b", ones(&[1])),
            ("c", Value::Scalar(Scalar::Str("0".into()))),
            ("d", Value::Scalar(Scalar::None)),
        ]);
        let Err(Error::StateDictMismatch { mismatched, missing, unexpected }) =
            from_state_dict(&target, &state)
        else {
            panic!("expected a mismatch");
        };
        assert!(missing.is_empty() && unexpected.is_empty());
        assert_eq!(
            mismatched,
            [
                "a: expected Array(shape=(2,), dtype=float32), found Array(shape=(2,), dtype=float64)",
                "b: expected a dict, found Array(shape=(1,), dtype=float32)",
                "c: expected 0, found '0'",
                "d: expected a list of 0, found None",
            ]
        );
    }

    #[test]
    fn undefined_tensors_are_errors_not_panics() {
        let target = dict(vec![("a", Value::Tensor(Tensor::new()))]);
        let state = dict(vec![("a", ones(&[1]))]);
        assert!(matches!(from_state_dict(&target, &state), Err(Error::Torch(_))));
        assert!(matches!(to_bytes(&target), Err(Error::Torch(_))));
    }

    #[test]
    fn restored_dicts_follow_the_targets_order() {
        let target = dict(vec![("b", ones(&[1])), ("a", ones(&[1]))]);
        let state = dict(vec![("a", ones(&[1])), ("b", ones(&[1]))]);
        assert_eq!(from_state_dict(&target, &state).unwrap().keys().collect::<Vec<_>>(), ["b", "a"]);
    }
}
