//! `flax.training.lr_schedule`: Flax's learning-rate schedules of its image-classification
//! examples, measured in epochs.
//!
//! Flax deprecates them in favour of Optax's schedules ([`crate::optax`]); they are kept for
//! code ported from those examples. Each returns an [`optax::Schedule`](crate::optax::Schedule),
//! so it goes wherever a learning rate does (`optax::sgd(schedule)`). Flax evaluates them in
//! `float32`; here they are `f64`, equal to Flax's within `float32` rounding. Arguments are
//! not validated, as in Flax: a zero `steps_per_epoch` gives infinite or NaN factors.
//!
//! Every schedule takes an optional linear warmup of `warmup_length` epochs: when it is
//! positive, the rate is multiplied by `min(1, step / warmup_length / steps_per_epoch)`.

use crate::optax::Schedule;

/// `base_learning_rate` at every step, after the warmup
/// (`create_constant_learning_rate_schedule`).
pub fn create_constant_learning_rate_schedule(
    base_learning_rate: f64,
    steps_per_epoch: i64,
    warmup_length: f64,
) -> Schedule {
    let warmup = Warmup::new(steps_per_epoch, warmup_length);
    Schedule::new(move |step| warmup.apply(base_learning_rate, step))
}

/// `base_learning_rate` times the factor of the last `[epoch, factor]` step passed
/// (`create_stepped_learning_rate_schedule`); e.g. ImageNet's `[(30, 0.1), (60, 0.01),
/// (80, 0.001)]`. A step's boundary is `round(epoch * steps_per_epoch)` (numpy's rounding,
/// half to even), and the new factor applies from the step after it: Flax compares
/// `boundary < step`.
pub fn create_stepped_learning_rate_schedule(
    base_learning_rate: f64,
    steps_per_epoch: i64,
    lr_sched_steps: &[(f64, f64)],
    warmup_length: f64,
) -> Schedule {
    let boundaries: Vec<f64> =
        lr_sched_steps.iter().map(|&(epoch, _)| (epoch * steps_per_epoch as f64).round_ties_even()).collect();
    let values: Vec<f64> = std::iter::once(1.0)
        .chain(lr_sched_steps.iter().map(|&(_, factor)| factor))
        .map(|factor| factor * base_learning_rate)
        .collect();
    let warmup = Warmup::new(steps_per_epoch, warmup_length);
    Schedule::new(move |step| {
        let index = boundaries.iter().filter(|&&boundary| boundary < step as f64).count();
        warmup.apply(values[index], step)
    })
}

/// Half a cosine wave from `base_learning_rate` down to 0 over `halfcos_epochs` epochs
/// (`create_cosine_learning_rate_schedule`):
/// `base * (0.5 * cos(pi * step / (halfcos_epochs * steps_per_epoch)) + 0.5)`. Like Flax's,
/// it is not clamped: past the half wave it rises again.
pub fn create_cosine_learning_rate_schedule(
    base_learning_rate: f64,
    steps_per_epoch: i64,
    halfcos_epochs: f64,
    warmup_length: f64,
) -> Schedule {
    let halfwavelength_steps = halfcos_epochs * steps_per_epoch as f64;
    let warmup = Warmup::new(steps_per_epoch, warmup_length);
    Schedule::new(move |step| {
        let scale_factor = (step as f64 * std::f64::consts::PI / halfwavelength_steps).cos() * 0.5 + 0.5;
        warmup.apply(base_learning_rate * scale_factor, step)
    })
}

/// The linear warmup shared by the three schedules.
#[derive(Debug, Clone, Copy)]
struct Warmup {
    steps_per_epoch: f64,
    length: f64,
}

impl Warmup {
    fn new(steps_per_epoch: i64, length: f64) -> Self {
        Warmup { steps_per_epoch: steps_per_epoch as f64, length }
    }

    /// `lr * min(1, step / length / steps_per_epoch)` when the warmup is on; `min`
    /// propagates NaN, as `jnp.minimum` does.
    fn apply(self, lr: f64, step: i64) -> f64 {
        if self.length > 0.0 {
            let ramp = step as f64 / self.length / self.steps_per_epoch;
            lr * if ramp.is_nan() { ramp } else { ramp.min(1.0) }
        } else {
            lr
        }
    }
}
