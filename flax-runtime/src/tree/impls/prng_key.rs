//! [`PRNGKey`] as a pytree leaf that is not a tensor: saved in the state dict as the `uint32[2]`
//! array `jax.random.PRNGKey(seed)` is, so a `TrainState` holding its dropout key as Flax's
//! guides do (`key: jax.Array`) saves and restores it byte-compatibly with Flax, while tensor
//! maps (optimizers, device moves) copy it through unchanged, like the `step` counter.

use super::scalar::impl_tree_for_host_value;
use crate::core::frozen_dict::{Scalar, Value};
use crate::core::rng::PRNGKey;
use crate::core::uint_array::{UintArray, UintDtype};

/// The key whose data `state` holds: a `uint32` array of shape `(2,)`.
fn key_from_state(state: &Value) -> Option<PRNGKey> {
    let Value::Scalar(Scalar::UintArray(array)) = state else { return None };
    if array.dtype() != UintDtype::Uint32 || array.shape() != [2] {
        return None;
    }
    match array.values()[..] {
        [hi, lo] => Some(PRNGKey::from_raw([u32::try_from(hi).ok()?, u32::try_from(lo).ok()?])),
        _ => None,
    }
}

impl_tree_for_host_value!(
    PRNGKey,
    // The raw key data, `jax.random.key_data(key)`: a `uint32` array of shape `(2,)`.
    |key: &PRNGKey| Value::Scalar(Scalar::UintArray(UintArray::from_u32(&key.raw()))),
    key_from_state
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{from_state_dict, leaves, to_state_dict, tree_map};
    use crate::Error;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn state_dict_is_the_raw_uint32_key_data() {
        let key = PRNGKey::new(42).fold_in(7);
        let Value::Scalar(Scalar::UintArray(array)) = to_state_dict(&key) else { panic!("not an array") };
        assert_eq!((array.dtype(), array.shape()), (UintDtype::Uint32, &[2][..]));
        assert_eq!(array.values(), key.raw().map(u64::from));
        assert_eq!(from_state_dict(&PRNGKey::new(0), &to_state_dict(&key)).unwrap(), key);
    }

    #[test]
    fn tensor_maps_copy_it_through() {
        let key = PRNGKey::new(3);
        assert!(leaves(&key).is_empty());
        assert_eq!(tree_map(&key, |t| Ok(t * 2)).unwrap(), key);
    }

    #[test]
    fn anything_but_a_uint32_pair_is_a_mismatch() {
        let wrong = [
            Value::Scalar(Scalar::UintArray(UintArray::from_u32(&[0, 42, 1]))),
            Value::Scalar(Scalar::UintArray(
                UintArray::new(UintDtype::Uint64, vec![2], vec![0; 16]).unwrap(),
            )),
            Value::Tensor(Tensor::zeros([2], (Kind::Int, Device::Cpu))),
            Value::Scalar(Scalar::Int(42)),
        ];
        let found = [
            "Array(shape=(3,), dtype=uint32)",
            "Array(shape=(2,), dtype=uint64)",
            "Array(shape=(2,), dtype=int32)",
            "42",
        ];
        for (state, found) in wrong.iter().zip(found) {
            let Err(Error::StateDictMismatch { mismatched, .. }) = from_state_dict(&PRNGKey::new(0), state)
            else {
                panic!("expected a mismatch for {state:?}");
            };
            assert_eq!(mismatched, [format!(".: expected Array(shape=(2,), dtype=uint32), found {found}")]);
        }
    }
}
