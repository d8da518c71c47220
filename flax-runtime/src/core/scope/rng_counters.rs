//! `make_rng` counters per module path (Flax's `Scope.rng_counters`).

use crate::core::naming::Name;

/// A module's `make_rng` counters, one per stream, and those of the children it has entered:
/// a tree along the module paths, as Flax keeps `rng_counters` in nested dicts, so that a
/// module called again (or re-entered by a lifted transform) continues every stream below it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RngCounters {
    pub(crate) own: Vec<u32>,
    children: Vec<(Name, RngCounters)>,
}

impl RngCounters {
    /// Nothing drawn yet from any of `streams` streams.
    pub(crate) fn new(streams: usize) -> Self {
        RngCounters { own: vec![0; streams], children: Vec::new() }
    }

    /// The counters of the child `name`: where it left them, or fresh.
    pub(crate) fn child(&self, name: &str, streams: usize) -> RngCounters {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| RngCounters::new(streams), |(_, c)| c.clone())
    }

    /// Records where the child `name` left its counters (nothing when it drew no key).
    pub(crate) fn set_child(&mut self, name: Name, counters: RngCounters) {
        let unused = counters.own.iter().all(|c| *c == 0) && counters.children.is_empty();
        match self.children.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => *existing = counters,
            None if unused => {}
            None => self.children.push((name, counters)),
        }
    }
}
