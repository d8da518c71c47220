//! Values a recurrent cell derives from its params, computed once per sequence instead of once
//! per step: the loop-invariant code motion XLA applies to Flax's `nn.OptimizedLSTMCell` inside
//! `nn.scan`, which concatenates its four gate kernels at every call and relies on the
//! compiler to hoist that out of the loop. Eager libtorch hoists nothing, so [`RNN`]'s
//! step-by-step path opens a [`sequence`] and a cell asks [`hoisted`] for the derived value.
//!
//! A value is reused only while its sources are the very same tensors (libtorch's
//! `TensorImpl`, not equal values) at the same in-place version, with the same grad mode:
//! within one sequence the params a scan broadcasts to every step are exactly that, and
//! anything else (a param updated in place, new leaves, a vmapped or recomputed call) misses
//! and computes afresh. Values recorded with autograd stay in the graph: each step's use adds
//! to the one concatenation's gradient, which the backward pass splits once.
//! Outside a sequence (a cell called in a user's own loop) nothing is kept, as in Flax.
//!
//! [`RNN`]: crate::nn::rnn::RNN

use crate::core::custom_function::grad_enabled;
use crate::core::errors::Result;
use crate::core::tensor_identity::{identity, version};
use std::cell::RefCell;
use tch::Tensor;

/// One hoisted value: what it was computed from, and the result.
struct Entry {
    tag: &'static str,
    /// Shallow clones of the sources: they keep each `TensorImpl` alive, so its address
    /// cannot be reused by another tensor while the entry exists.
    sources: Vec<Tensor>,
    versions: Vec<i64>,
    grad: bool,
    value: Tensor,
}

impl Entry {
    fn matches(&self, tag: &str, sources: &[&Tensor], grad: bool) -> bool {
        self.tag == tag
            && self.grad == grad
            && self.sources.len() == sources.len()
            && self
                .sources
                .iter()
                .zip(sources)
                .zip(&self.versions)
                .all(|((kept, s), &v)| identity(kept) == identity(s) && version(s) == v)
    }
}

thread_local! {
    /// One frame per open sequence (nested RNNs open nested frames); a frame's entries live
    /// until the sequence ends.
    static FRAMES: RefCell<Vec<Vec<Entry>>> = const { RefCell::new(Vec::new()) };
}

#[cfg(test)]
thread_local! {
    /// How many values [`hoisted`] computed on this thread (the tests count misses).
    static COMPUTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Closes the innermost frame when the sequence ends, by return, error or panic.
struct FrameGuard;

impl Drop for FrameGuard {
    fn drop(&mut self) {
        FRAMES.with(|frames| frames.borrow_mut().pop());
    }
}

/// Runs `body` (one sequence's steps) with a frame in which [`hoisted`] values are kept.
pub(crate) fn sequence<T>(body: impl FnOnce() -> T) -> T {
    FRAMES.with(|frames| frames.borrow_mut().push(Vec::new()));
    let _guard = FrameGuard;
    body()
}

/// `compute()`, a function of `sources` only that `tag` names, computed once per sequence:
/// the value kept in the innermost open [`sequence`] when it was computed from the same
/// tensors, else computed now (and kept, inside a sequence).
pub(crate) fn hoisted(
    tag: &'static str,
    sources: &[&Tensor],
    compute: impl FnOnce() -> Result<Tensor>,
) -> Result<Tensor> {
    let grad = grad_enabled();
    let found = FRAMES.with(|frames| {
        let frames = frames.borrow();
        let entry = frames.last()?.iter().find(|e| e.matches(tag, sources, grad))?;
        Some(entry.value.shallow_clone())
    });
    if let Some(value) = found {
        return Ok(value);
    }
    let value = compute()?;
    #[cfg(test)]
    COMPUTED.with(|n| n.set(n.get() + 1));
    FRAMES.with(|frames| {
        if let Some(frame) = frames.borrow_mut().last_mut() {
            frame.push(Entry {
                tag,
                sources: sources.iter().map(|s| s.shallow_clone()).collect(),
                versions: sources.iter().map(|s| version(s)).collect(),
                grad,
                value: value.shallow_clone(),
            });
        }
    });
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::scalar_ops::ScalarOps;
    use tch::{Device, Kind};

    fn counted(calls: &mut i32, a: &Tensor) -> Result<Tensor> {
        *calls += 1;
        Ok(a.try_mul_scalar(2.0)?)
    }

    #[test]
    fn a_value_is_computed_once_per_sequence_and_again_after_an_in_place_change() -> Result<()> {
        let a = Tensor::ones([3], (Kind::Float, Device::Cpu));
        let mut calls = 0;
        sequence(|| -> Result<()> {
            let _ = hoisted("double", &[&a], || counted(&mut calls, &a))?;
            let _ = hoisted("double", &[&a.shallow_clone()], || counted(&mut calls, &a))?;
            assert_eq!(calls, 1, "a shallow clone is the same tensor");
            let _ = hoisted("other", &[&a], || counted(&mut calls, &a))?;
            assert_eq!(calls, 2, "another tag is another value");
            let _ = a.shallow_clone().try_add_scalar_(1.0)?;
            let v = hoisted("double", &[&a], || counted(&mut calls, &a))?;
            assert_eq!(calls, 3, "an in-place change is a miss");
            assert_eq!(Vec::<f32>::try_from(&v)?, [4.0, 4.0, 4.0]);
            let copy = a.copy();
            let _ = hoisted("double", &[&copy], || counted(&mut calls, &copy))?;
            assert_eq!(calls, 4, "equal values in another tensor are a miss");
            Ok(())
        })?;
        let _ = hoisted("double", &[&a], || counted(&mut calls, &a))?;
        let _ = hoisted("double", &[&a], || counted(&mut calls, &a))?;
        assert_eq!(calls, 6, "outside a sequence nothing is kept");
        Ok(())
    }

    #[test]
    fn a_scanned_optimized_lstm_cell_concatenates_its_kernels_once_per_sequence() -> Result<()> {
        use crate::nn::{OptimizedLSTMCell, RNN};
        use crate::prelude::*;
        let x = Tensor::randn([2, 5, 3], (Kind::Float, Device::Cpu));
        let rnn = RNN::new(OptimizedLSTMCell::new(), 4).fused(false);
        let variables = rnn.init(PRNGKey::new(0), &x, None, None)?;
        let before = COMPUTED.with(std::cell::Cell::get);
        let _ = rnn.apply(&variables, &x, None, None)?;
        // The input kernels, the recurrent kernels and the recurrent biases, over 5 steps.
        assert_eq!(COMPUTED.with(std::cell::Cell::get) - before, 3);
        Ok(())
    }
}
