//! `optax.join_schedules`.

use crate::core::errors::{Error, Result};
use crate::optax::schedules::Schedule;

/// `schedules[0]` until `boundaries[0]`, then `schedules[1]` counted from that boundary, and
/// so on (`optax.join_schedules`). Extra schedules or boundaries are ignored, as Optax's
/// `zip` ignores them.
///
/// # Errors
/// [`Error::Value`] when `schedules` is empty.
pub fn join_schedules(schedules: Vec<Schedule>, boundaries: Vec<i64>) -> Result<Schedule> {
    let Some((first, rest)) = schedules.split_first() else {
        return Err(Error::Value("join_schedules needs at least one schedule".to_owned()));
    };
    let (first, rest) = (first.clone(), rest.to_vec());
    Ok(Schedule::new(move |count| {
        boundaries.iter().zip(&rest).fold(first.value(count), |value, (&boundary, schedule)| {
            match count < boundary {
                true => value,
                false => schedule.value(count - boundary),
            }
        })
    }))
}
