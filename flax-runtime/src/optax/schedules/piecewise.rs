//! `optax.piecewise_constant_schedule`.

use crate::core::errors::{Error, Result};
use crate::optax::schedules::Schedule;

/// `init_value`, multiplied by each `(boundary, scale)`'s scale from that boundary's step on
/// (`optax.piecewise_constant_schedule`; the boundaries may be given in any order).
///
/// # Errors
/// [`Error::Value`] when a scale is negative (Optax's `ValueError`).
pub fn piecewise_constant_schedule(
    init_value: f64,
    boundaries_and_scales: impl IntoIterator<Item = (i64, f64)>,
) -> Result<Schedule> {
    let mut boundaries: Vec<(i64, f64)> = boundaries_and_scales.into_iter().collect();
    if boundaries.iter().any(|&(_, scale)| scale < 0.0) {
        return Err(Error::Value(
            "`piecewise_constant_schedule` expects non-negative scale factors".to_owned(),
        ));
    }
    boundaries.sort_by_key(|&(boundary, _)| boundary);
    Ok(Schedule::new(move |count| {
        boundaries
            .iter()
            .filter(|&&(boundary, _)| count >= boundary)
            .fold(init_value, |value, &(_, scale)| value * scale)
    }))
}
