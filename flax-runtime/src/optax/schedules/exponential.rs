//! `optax.exponential_decay`.

use crate::optax::schedules::Schedule;

/// `init_value * decay_rate^(t / transition_steps)` with `t` the steps since
/// `transition_begin` (`optax.exponential_decay`; Optax's defaults are `transition_begin =
/// 0`, `staircase = false`, `end_value = None`). `staircase` floors the exponent; `end_value`
/// bounds the result (below for a decay, above for a growth).
///
/// As in Optax, a `transition_steps` that is not positive or a `decay_rate` of 0 gives the
/// constant `init_value`, and a negative `transition_begin` is taken as 0.
pub fn exponential_decay(
    init_value: f64,
    transition_steps: i64,
    decay_rate: f64,
    transition_begin: i64,
    staircase: bool,
    end_value: Option<f64>,
) -> Schedule {
    if transition_steps <= 0 || decay_rate == 0.0 {
        return Schedule::new(move |_| init_value);
    }
    let begin = transition_begin.max(0);
    Schedule::new(move |count| {
        let decreased_count = count - begin;
        let mut p = decreased_count as f64 / transition_steps as f64;
        if staircase {
            p = p.floor();
        }
        let decayed = if decreased_count <= 0 { init_value } else { init_value * decay_rate.powf(p) };
        match end_value {
            Some(end) if decay_rate < 1.0 => decayed.max(end),
            Some(end) => decayed.min(end),
            None => decayed,
        }
    })
}
