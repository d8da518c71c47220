//! Optax's scalar numerics: bias corrections, computed in the same precision as Optax
//! (float32 from int32 counts).

/// `1 - decay**count`, the divisor of Adam-style bias correction
/// (`optax.tree.bias_correction`). Optax computes it in float32 from an int32 count; so does
/// this, because with `b2 = 0.999` the float32 and float64 results differ in the fifth
/// significant digit after a few steps.
pub(crate) fn bias_correction(decay: f64, count: i64) -> f64 {
    let decay = decay as f32;
    f64::from(1.0 - decay.powf(count as f32))
}
