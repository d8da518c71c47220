//! `flax.training.early_stopping.EarlyStopping`.

use crate::tree::Tree;

/// Stops training once a metric (lower is better, e.g. a validation loss) has not improved
/// by more than `min_delta` for more than `patience` updates in a row
/// (`flax.training.early_stopping.EarlyStopping`).
///
/// Flax's rules, exactly: an update improves when no best metric is known yet (it is
/// infinite) or when `best_metric - metric > min_delta`; then `best_metric = metric` and the
/// patience count restarts at 0. Otherwise `should_stop` becomes (and stays) true if the
/// patience count had already reached `patience`, and the count goes up by one. So
/// `should_stop` turns true on the `(patience + 1)`-th non-improving update in a row:
///
/// ```
/// use flax::training::EarlyStopping;
///
/// // Flax's docstring example: losses [4, 3, 3, 3, 2, 2, 2, 2, 1, 1], stops at epoch 7.
/// let mut early_stop = EarlyStopping::new(1e-3, 2);
/// let mut stopped_at = None;
/// for (epoch, loss) in [4.0, 3.0, 3.0, 3.0, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0].into_iter().enumerate() {
///     (_, early_stop) = early_stop.update(loss);
///     if early_stop.should_stop {
///         stopped_at = Some(epoch);
///         break;
///     }
/// }
/// assert_eq!(stopped_at, Some(7));
/// ```
///
/// It is a [`Tree`] of scalars, so it is saved with a train state. `update` returns
/// `(has_improved, new_state)` as in the spec (Flax 0.6.10); Flax 0.12 returns only the new
/// state and keeps `has_improved` as a field instead.
#[derive(Debug, Clone, Copy, PartialEq, Tree)]
pub struct EarlyStopping {
    /// The least decrease of the metric that counts as an improvement.
    pub min_delta: f64,
    /// How many non-improving updates in a row are tolerated.
    pub patience: i64,
    /// The best (lowest) metric so far; infinite before the first update.
    pub best_metric: f64,
    /// The number of non-improving updates since the last improvement.
    pub patience_count: i64,
    /// Whether training should stop.
    pub should_stop: bool,
}

impl Default for EarlyStopping {
    /// Flax's defaults: `min_delta = 0`, `patience = 0` (stop at the first non-improving
    /// update).
    fn default() -> Self {
        EarlyStopping::new(0.0, 0)
    }
}

impl EarlyStopping {
    /// A fresh state with the given `min_delta` and `patience`
    /// (`EarlyStopping(min_delta=..., patience=...)`).
    pub fn new(min_delta: f64, patience: i64) -> Self {
        EarlyStopping {
            min_delta,
            patience,
            best_metric: f64::INFINITY,
            patience_count: 0,
            should_stop: false,
        }
    }

    /// The state after `metric` was observed, and whether it improved on the best metric by
    /// more than `min_delta` (`early_stop.update(metric)`).
    #[must_use]
    pub fn update(self, metric: f64) -> (bool, Self) {
        if self.best_metric.is_infinite() || self.best_metric - metric > self.min_delta {
            (true, EarlyStopping { best_metric: metric, patience_count: 0, ..self })
        } else {
            let should_stop = self.patience_count >= self.patience || self.should_stop;
            (false, EarlyStopping { patience_count: self.patience_count + 1, should_stop, ..self })
        }
    }

    /// The same `min_delta` and `patience`, with the history forgotten (`reset()`).
    #[must_use]
    pub fn reset(self) -> Self {
        EarlyStopping::new(self.min_delta, self.patience)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_forgets_the_history_and_keeps_the_settings() {
        let (_, stopped) = EarlyStopping::new(0.5, 0).update(1.0);
        let (improved, stopped) = stopped.update(2.0);
        assert!(!improved && stopped.should_stop);
        assert_eq!(stopped.reset(), EarlyStopping::new(0.5, 0));
        assert_eq!(EarlyStopping::default(), EarlyStopping::new(0.0, 0));
    }

    #[test]
    fn state_dict_has_flax_field_names() {
        let saved = crate::tree::to_state_dict(&EarlyStopping::new(1e-3, 2));
        let keys: Vec<&str> = saved.as_dict().unwrap().keys().collect();
        assert_eq!(keys, ["min_delta", "patience", "best_metric", "patience_count", "should_stop"]);
        let restored = crate::tree::from_state_dict(&EarlyStopping::default(), &saved).unwrap();
        assert_eq!(restored, EarlyStopping::new(1e-3, 2));
    }
}
