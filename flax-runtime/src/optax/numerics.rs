//! Optax's scalar numerics: its step counter and bias corrections, computed in the same
//! precision as Optax (int32 counts, float32 corrections).

/// The count after `count` (`optax.safe_increment` on Optax's int32 counters): saturates at
/// `i32::MAX` instead of wrapping.
pub(crate) fn safe_increment(count: i64) -> i64 {
    if count < i64::from(i32::MAX) {
        count + 1
    } else {
        i64::from(i32::MAX)
    }
}

/// `1 - decay**count`, the divisor of Adam-style bias correction
/// (`optax.tree.bias_correction`). Optax computes it in float32 from an int32 count; so does
/// this, because with `b2 = 0.999` the float32 and float64 results differ in the fifth
/// significant digit after a few steps.
pub(crate) fn bias_correction(decay: f64, count: i64) -> f64 {
    let decay = decay as f32;
    f64::from(1.0 - decay.powf(count as f32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_increment_saturates_like_optax() {
        assert_eq!(safe_increment(0), 1);
        assert_eq!(safe_increment(i64::from(i32::MAX) - 1), i64::from(i32::MAX));
        assert_eq!(safe_increment(i64::from(i32::MAX)), i64::from(i32::MAX));
    }
}
