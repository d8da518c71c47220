//! Optax's step counters (the `count` of `ScaleByAdamState`, `ScaleByScheduleState`, …).

use crate::core::frozen_dict::Value;
use crate::tree::{impl_tree_for_host_value, int_from_state};
use tch::{Device, Kind, Tensor};

/// A step count, kept on the host so that schedules and bias corrections read it without
/// waiting for the device, and saved as Optax keeps it, a 0-d `int32` array
/// (`jnp.zeros([], jnp.int32)`), so that optimizer states write Flax's checkpoint bytes.
/// Restores from such an array or from a plain integer.
///
/// Counts saturate at `i32::MAX` ([`Count::increment`]), as Optax's `safe_increment` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Count(pub i64);

impl Count {
    /// The count after this one (`optax.safe_increment` on Optax's int32 counters):
    /// saturates at `i32::MAX` instead of wrapping.
    pub fn increment(self) -> Count {
        Count((self.0 + 1).min(i64::from(i32::MAX)))
    }
}

impl_tree_for_host_value!(
    Count,
    |count: &Count| {
        let value = count.0.clamp(0, i64::from(i32::MAX)) as f64;
        Value::Tensor(Tensor::scalar_tensor(value, (Kind::Int, Device::Cpu)))
    },
    |state: &Value| int_from_state(state).map(Count)
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frozen_dict::Scalar;
    use crate::tree::{from_state_dict, to_state_dict};

    #[test]
    fn increments_saturate_at_the_int32_maximum() {
        assert_eq!(Count(0).increment(), Count(1));
        assert_eq!(Count(i64::from(i32::MAX) - 1).increment(), Count(i64::from(i32::MAX)));
        assert_eq!(Count(i64::from(i32::MAX)).increment(), Count(i64::from(i32::MAX)));
    }

    #[test]
    fn saved_as_a_0d_int32_array_and_restored_from_that_or_an_int() {
        let Value::Tensor(t) = to_state_dict(&Count(7)) else { panic!("not an array") };
        assert_eq!((t.size(), t.kind(), t.int64_value(&[])), (vec![], Kind::Int, 7));
        assert_eq!(from_state_dict(&Count(0), &Value::Tensor(t)).unwrap(), Count(7));
        assert_eq!(from_state_dict(&Count(0), &Value::Scalar(Scalar::Int(3))).unwrap(), Count(3));
        assert!(from_state_dict(&Count(0), &Value::Scalar(Scalar::Float(3.0))).is_err());
    }
}
