//! Flax's `to_state_dict`, `from_state_dict`, `to_bytes` and `from_bytes` in
//! `flax.serialization`'s shape: thin wrappers over the generic state dicts of
//! [`crate::tree`], which hold the one implementation of the rules (lists become dicts keyed
//! `"0"`, `"1"`, …; restores walk the target and report every missing, unexpected and
//! mismatched entry in one [`Error::StateDictMismatch`](crate::Error::StateDictMismatch);
//! [`RestoreOptions`] opts into partial restores). Here they take variable dicts
//! ([`FrozenDict`]), and the byte functions any [`Tree`], as Flax's take any pytree.

use super::chunking::MAX_CHUNK_SIZE;
use super::msgpack::{msgpack_restore, Encoder, KeyOrder};
use crate::core::errors::Result;
use crate::core::frozen_dict::{FrozenDict, Value};
use crate::tree::{self, RestoreOptions, Tree};

/// Flax's `to_state_dict` for a variable dict: lists become dictionaries keyed `"0"`, `"1"`,
/// …; everything else is kept (tensors are shared, not copied).
pub fn to_state_dict(variables: &FrozenDict) -> FrozenDict {
    let Value::Dict(state) = tree::to_state_dict(variables) else {
        unreachable!("the state dict of a dict is a dict")
    };
    state
}

/// Flax's `from_state_dict` for a variable dict, strictly (see [`tree::from_state_dict`]):
/// `state` must have exactly the target's entries, with the target's shapes, dtypes and
/// scalar types. A list in the target is restored from a dictionary keyed `"0"`, `"1"`, …
/// (or from a list). Restored tensors are moved to the device of the target's.
pub fn from_state_dict(target: &FrozenDict, state: &FrozenDict) -> Result<FrozenDict> {
    from_state_dict_with(target, state, RestoreOptions::default())
}

/// [`from_state_dict`] with a choice of [`RestoreOptions`]; mismatched shapes, dtypes, scalar
/// types and kinds of node are an error under every option.
pub fn from_state_dict_with(
    target: &FrozenDict,
    state: &FrozenDict,
    options: RestoreOptions,
) -> Result<FrozenDict> {
    // The clone shares the tensors; only the dictionaries are rebuilt.
    tree::from_state_dict_with(target, &Value::Dict(state.clone()), options)
}

/// Flax's `to_bytes`: the msgpack bytes of the state dict of `tree` (variables, a train
/// state, any [`Tree`]), keys in insertion order (Flax serializes the state dict in place,
/// unsorted; see the [module docs](super)).
pub fn to_bytes(tree: &impl Tree) -> Result<Vec<u8>> {
    let encoder = Encoder { key_order: KeyOrder::Insertion, max_chunk_size: MAX_CHUNK_SIZE };
    encoder.encode(&tree::to_state_dict(tree))
}

/// Flax's `from_bytes`, strictly: restores the bytes into `target`'s structure (see
/// [`tree::from_state_dict`]). Malformed bytes are an [`Error::Format`](crate::Error::Format);
/// a structure that does not match is one
/// [`Error::StateDictMismatch`](crate::Error::StateDictMismatch) listing every difference.
pub fn from_bytes<T: Tree>(target: &T, bytes: &[u8]) -> Result<T> {
    from_bytes_with(target, bytes, RestoreOptions::default())
}

/// [`from_bytes`] with a choice of [`RestoreOptions`], e.g. a partial restore:
/// `from_bytes_with(&target, &bytes, RestoreOptions { allow_partial: true, ..Default::default() })`.
pub fn from_bytes_with<T: Tree>(target: &T, bytes: &[u8], options: RestoreOptions) -> Result<T> {
    tree::from_state_dict_with(target, &msgpack_restore(bytes)?, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::errors::Error;
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
