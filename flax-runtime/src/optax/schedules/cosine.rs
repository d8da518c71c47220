//! `optax.cosine_decay_schedule` and `optax.warmup_cosine_decay_schedule`.

use crate::core::errors::{Error, Result};
use crate::optax::schedules::{join_schedules, linear_schedule, Schedule};
use std::f64::consts::PI;

/// From `init_value` down to `alpha * init_value` along half a cosine over `decay_steps`
/// steps, then constant (`optax.cosine_decay_schedule`; Optax's defaults are `alpha = 0`,
/// `exponent = 1`): `init * ((1 - alpha) * (0.5 * (1 + cos(pi * t / decay_steps)))^exponent
/// + alpha)` with `t = min(count, decay_steps)`.
///
/// # Errors
/// [`Error::Value`] when `decay_steps` is not positive (Optax's `ValueError`).
pub fn cosine_decay_schedule(
    init_value: f64,
    decay_steps: i64,
    alpha: f64,
    exponent: f64,
) -> Result<Schedule> {
    if decay_steps <= 0 {
        return Err(Error::Value(format!(
            "The cosine_decay_schedule requires positive decay_steps, got decay_steps={decay_steps}."
        )));
    }
    let steps = decay_steps as f64;
    Ok(Schedule::new(move |count| {
        let t = count.min(decay_steps) as f64;
        let cosine_decay = 0.5 * (1.0 + (PI * t / steps).cos());
        init_value * ((1.0 - alpha) * cosine_decay.powf(exponent) + alpha)
    }))
}

/// A linear warmup from `init_value` to `peak_value` over `warmup_steps`, then a cosine
/// decay to `end_value` at step `decay_steps` (counted from the start, warmup included)
/// (`optax.warmup_cosine_decay_schedule`; Optax's defaults are `end_value = 0`,
/// `exponent = 1`).
///
/// # Errors
/// [`Error::Value`] when `decay_steps` is not greater than `warmup_steps`.
pub fn warmup_cosine_decay_schedule(
    init_value: f64,
    peak_value: f64,
    warmup_steps: i64,
    decay_steps: i64,
    end_value: f64,
    exponent: f64,
) -> Result<Schedule> {
    let alpha = if peak_value == 0.0 { 0.0 } else { end_value / peak_value };
    let warmup = linear_schedule(init_value, peak_value, warmup_steps, 0);
    let decay = cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent)?;
    join_schedules(vec![warmup, decay], vec![warmup_steps])
}
