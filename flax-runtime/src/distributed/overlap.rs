//! Data-parallel gradients whose all-reduce overlaps the backward pass: the path PyTorch's DDP
//! takes with its `Reducer`, here as hooks on the differentiated leaves (`csrc/
//! distributed_overlap.cpp`) because `value_and_grad` differentiates fresh leaves with
//! `autograd.grad` and accumulates nothing in `.grad`, which DDP's reducer relies on.
//!
//! Gradients are grouped in buckets of about [`DEFAULT_BUCKET_CAP_BYTES`], last layer first;
//! a bucket's all-reduce starts on Gloo's threads as soon as its last gradient is computed,
//! while autograd works on the earlier layers, so only what is still in flight when backward
//! ends is waited for. The result equals `group.pmean(&flax::grad(params, f)?)` up to
//! summation order.

use super::ProcessGroup;
use crate::core::errors::{Error, Result};
use crate::core::shim::{self, Handle};
use crate::transforms::autodiff::{check_loss, differentiable_leaf};
use crate::tree::{self, Tree};
use std::ffi::{c_char, c_int, c_void};
use std::time::Duration;
use tch::Tensor;

/// The default bucket size: small enough that a CNN's large dense kernel and its
/// convolutions land in different buckets (PyTorch's DDP uses 25 MiB, sized for large
/// models, and 1 MiB for its first bucket).
pub const DEFAULT_BUCKET_CAP_BYTES: i64 = 1 << 20;

extern "C" {
    fn flax_dist_value_and_grad_pmean(
        group: *mut c_void,
        loss: Handle,
        leaves: *const Handle,
        n: c_int,
        bucket_cap_bytes: i64,
        grads_out: *mut Handle,
        wait_seconds: *mut f64,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
}

impl ProcessGroup {
    /// The loss `f(params)` on this rank and the gradient averaged over all ranks (the mean of
    /// the ranks' gradients: with each rank's loss a mean over its slice, the gradient of the
    /// global batch's mean loss), the all-reduce overlapping the backward pass. Equal to
    /// `group.pmean(&flax::grad(params, f)?)` within summation order.
    ///
    /// # Errors
    /// As [`flax::value_and_grad`](crate::value_and_grad) and [`ProcessGroup::pmean`].
    pub fn value_and_grad_pmean<T: Tree>(
        &self,
        params: &T,
        f: impl FnOnce(&T) -> Result<Tensor>,
    ) -> Result<(Tensor, T)> {
        self.value_and_grad_pmean_with(params, DEFAULT_BUCKET_CAP_BYTES, f)
    }

    /// [`ProcessGroup::value_and_grad_pmean`] with buckets of at most `bucket_cap_bytes`
    /// (a larger leaf is a bucket alone).
    ///
    /// # Errors
    /// [`Error::Value`] for a cap that is not positive; as
    /// [`ProcessGroup::value_and_grad_pmean`].
    pub fn value_and_grad_pmean_with<T: Tree>(
        &self,
        params: &T,
        bucket_cap_bytes: i64,
        f: impl FnOnce(&T) -> Result<Tensor>,
    ) -> Result<(Tensor, T)> {
        if bucket_cap_bytes <= 0 {
            return Err(Error::Value(format!("bucket_cap_bytes must be positive, got {bucket_cap_bytes}")));
        }
        self.check_same_tree("value_and_grad_pmean", params)?;
        tch::with_grad(|| {
            let inputs = tree::tree_map_with_path(params, differentiable_leaf)?;
            let loss = f(&inputs)?;
            check_loss(&loss)?;
            let leaves = tree::leaves(&inputs);
            let grads = self.backward_pmean(&loss, &leaves, bucket_cap_bytes)?;
            Ok((loss.detach(), tree::tree_unflatten(&inputs, grads)?))
        })
    }

    /// The shim's bucketed backward; records the bytes sent and the time waited after
    /// backward.
    fn backward_pmean(
        &self,
        loss: &Tensor,
        leaves: &[&Tensor],
        bucket_cap_bytes: i64,
    ) -> Result<Vec<Tensor>> {
        let handles: Vec<Handle> = leaves.iter().map(|t| shim::handle(t)).collect();
        let n = c_int::try_from(handles.len()).map_err(|_| {
            Error::Value(format!("value_and_grad_pmean: {} leaves are too many", handles.len()))
        })?;
        let mut out: Vec<Handle> = vec![std::ptr::null_mut(); handles.len()];
        let mut wait = 0.0;
        // SAFETY: the tensors behind the handles are borrowed for the call; the shim writes
        // `n` new handles into `out` on success, which we take ownership of.
        shim::call(|error, len| unsafe {
            flax_dist_value_and_grad_pmean(
                self.raw(),
                shim::handle(loss),
                handles.as_ptr(),
                n,
                bucket_cap_bytes,
                out.as_mut_ptr(),
                &mut wait,
                error,
                len,
            )
        })?;
        // SAFETY: every handle was allocated by the shim for us (the call succeeded).
        let grads: Vec<Tensor> = out.into_iter().map(|h| unsafe { shim::take(h) }).collect();
        let bytes = leaves.iter().map(|t| t.numel() as u64 * t.kind().elt_size_in_bytes() as u64).sum();
        self.record(bytes, Duration::from_secs_f64(wait));
        Ok(grads)
    }
}
