//! Prefetch for per-unit gathering, as PyTorch's FSDP does it (`forward_prefetch`,
//! `backward_prefetch=BACKWARD_PRE`): while one [`fully_shard`](super::fully_shard()) unit
//! computes, the all-gather of the unit that gathers next is already in flight on Gloo's
//! threads, so its parameters are (ideally) there when it starts.
//!
//! Units are found as the model runs, so which one gathers next is learned, as PyTorch's FSDP
//! records its execution order in the first iteration: a step records the sequence of its
//! gathers (each named by the paths of the unit's split parameters), the forward pass's in
//! execution order, then the backward pass's in reverse. The next step prefetches by that
//! record: when its `k`-th gather is the record's `k`-th, the record's `k+1`-th starts
//! (forward: the next unit; backward: the previous one). The first step, and any step once its
//! gathers depart from the record, gathers without prefetch; a changed sequence is recorded
//! for the step after it. A prefetched gather is used only when the unit's pieces are the very
//! tensors it sent (the same memory, unmodified since): a loss function that hands the model
//! other tensors than the step's pieces turns prefetch off for good.
//!
//! Memory: at most one prefetch is in flight, started after the current unit's gathered
//! buffer is joined and released, so a rank holds the current unit's full parameters and the
//! next unit's gathered buffer (bounded by two units, plus, for a moment, the buffer Gloo is
//! still releasing). Collectives: every rank starts the same prefetches at the same points,
//! since every rank records the same sequence (per-unit gathering already requires that every
//! rank runs the same units in the same order); a started prefetch is always waited for, used
//! or not, so no rank is left with an unmatched collective.

use super::work::StartedGather;
use super::ProcessGroup;
use crate::core::errors::Result;
use crate::core::tensor_identity::Snapshot;
use crate::tree::{self, Tree};
use std::collections::HashMap;
use tch::Tensor;

/// One gather of a step: the paths of the unit's split parameters, in its leaf order.
type Unit = Vec<Vec<String>>;

/// A prefetch in flight: the gather of the recorded sequence's `index`-th unit.
struct Pending {
    index: usize,
    /// What the unit's pieces were when they were sent.
    inputs: Vec<Snapshot>,
    gather: StartedGather<Vec<Tensor>>,
}

/// The recorded order of a per-unit step's gathers and the prefetch in flight.
pub(super) struct Prefetch {
    enabled: bool,
    /// The last complete step's gathers, in order; `None` before the first.
    order: Option<Vec<Unit>>,
    /// This step's gathers so far.
    seen: Vec<Unit>,
    /// Whether this step's gathers have followed `order` so far.
    on_track: bool,
    /// This step's pieces, by path: what a prefetch sends.
    pieces: HashMap<Vec<String>, Tensor>,
    pending: Option<Pending>,
    /// This step's gathers served by a prefetch.
    hits: usize,
}

impl Prefetch {
    /// Prefetching when `enabled`; otherwise every gather waits for its own collective.
    pub(super) fn new(enabled: bool) -> Self {
        Prefetch {
            enabled,
            order: None,
            seen: Vec::new(),
            on_track: false,
            pieces: HashMap::new(),
            pending: None,
            hits: 0,
        }
    }

    /// How many of the last step's gathers a prefetch served.
    pub(super) fn hits(&self) -> usize {
        self.hits
    }

    /// Starts a step on this rank's `pieces`.
    pub(super) fn begin<T: Tree>(&mut self, pieces: &T) {
        self.seen.clear();
        self.hits = 0;
        self.pending = None;
        self.on_track = self.enabled && self.order.is_some();
        self.pieces = match self.on_track {
            true => tree::leaves_with_path(pieces).into_iter().map(|(p, t)| (p, t.shallow_clone())).collect(),
            false => HashMap::new(),
        };
    }

    /// The gather of `unit`, whose pieces the model holds as `pieces`: what the prefetch
    /// gathered ([`ProcessGroup::all_gather`]'s result) when it prefetched this very gather,
    /// else `None` (the caller gathers). A prefetch in flight is waited for either way.
    ///
    /// # Errors
    /// As [`StartedGather::wait`].
    pub(super) fn take(
        &mut self,
        group: &ProcessGroup,
        unit: &[Vec<String>],
        pieces: &[Tensor],
    ) -> Result<Option<Vec<Tensor>>> {
        let index = self.seen.len();
        self.seen.push(unit.to_vec());
        self.on_track &=
            self.order.as_ref().and_then(|order| order.get(index)).map(Vec::as_slice) == Some(unit);
        let Some(pending) = self.pending.take() else { return Ok(None) };
        let gathered = pending.gather.wait(group)?;
        let same = pending.inputs.len() == pieces.len()
            && pending.inputs.iter().zip(pieces).all(|(sent, piece)| *sent == Snapshot::of(piece));
        if self.on_track && pending.index == index && same {
            self.hits += 1;
            return Ok(Some(gathered));
        }
        if !same {
            // The model was handed other tensors than the step's pieces: every step would
            // gather twice.
            self.enabled = false;
        }
        self.on_track = false;
        Ok(None)
    }

    /// Starts the gather the record says comes next, if this step still follows it; returns
    /// it, for the caller to count its buffers.
    ///
    /// # Errors
    /// As [`ProcessGroup::all_gather_start`].
    pub(super) fn start_next(&mut self, group: &ProcessGroup) -> Result<Option<&StartedGather<Vec<Tensor>>>> {
        let index = self.seen.len();
        let next = match (&self.order, self.on_track && self.enabled) {
            (Some(order), true) => order.get(index),
            _ => None,
        };
        let Some(next) = next else { return Ok(None) };
        let Some(inputs) = next
            .iter()
            .map(|path| self.pieces.get(path).map(Tensor::shallow_clone))
            .collect::<Option<Vec<_>>>()
        else {
            self.on_track = false;
            return Ok(None);
        };
        let gather = group.all_gather_start(&inputs)?;
        let inputs = inputs.iter().map(Snapshot::of).collect();
        Ok(Some(&self.pending.insert(Pending { index, inputs, gather }).gather))
    }

    /// Ends a step: after a successful one (`ok`), waits for a prefetch the step did not use
    /// and records the step's gathers as the order the next step prefetches by; after a
    /// failed one, releases the prefetch unwaited (a peer may be gone) and forgets the order.
    ///
    /// # Errors
    /// As [`StartedGather::wait`].
    pub(super) fn finish(&mut self, group: &ProcessGroup, ok: bool) -> Result<()> {
        self.pieces.clear();
        let pending = self.pending.take();
        if !ok {
            self.order = None;
            return Ok(());
        }
        self.order = Some(std::mem::take(&mut self.seen));
        match pending {
            Some(pending) => pending.gather.wait(group).map(drop),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for Prefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetch")
            .field("enabled", &self.enabled)
            .field("recorded", &self.order.as_ref().map(Vec::len))
            .field("in_flight", &self.pending.is_some())
            .field("hits", &self.hits)
            .finish()
    }
}
