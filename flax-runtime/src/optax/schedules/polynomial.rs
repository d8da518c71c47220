//! `optax.polynomial_schedule` and `optax.linear_schedule`.

use crate::optax::schedules::Schedule;

/// From `init_value` to `end_value` along `(init - end) * (1 - t / transition_steps)^power +
/// end`, with `t` the steps since `transition_begin` clipped to `[0, transition_steps]`
/// (`optax.polynomial_schedule`; Optax's default `transition_begin` is 0).
///
/// As in Optax, a `transition_steps` that is not positive gives the constant `init_value`,
/// and a negative `transition_begin` is taken as 0.
pub fn polynomial_schedule(
    init_value: f64,
    end_value: f64,
    power: f64,
    transition_steps: i64,
    transition_begin: i64,
) -> Schedule {
    if transition_steps <= 0 {
        return Schedule::new(move |_| init_value);
    }
    let begin = transition_begin.max(0);
    Schedule::new(move |count| {
        let t = (count - begin).clamp(0, transition_steps) as f64;
        let frac = 1.0 - t / transition_steps as f64;
        (init_value - end_value) * frac.powf(power) + end_value
    })
}

/// [`polynomial_schedule`] with power 1 (`optax.linear_schedule`).
pub fn linear_schedule(
    init_value: f64,
    end_value: f64,
    transition_steps: i64,
    transition_begin: i64,
) -> Schedule {
    polynomial_schedule(init_value, end_value, 1.0, transition_steps, transition_begin)
}
