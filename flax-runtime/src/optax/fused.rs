//! libtorch's fused multi-tensor optimizer kernels (`torch._fused_sgd_`), which tch does not
//! expose, through the small C++ shim `csrc/fused_optimizers.cpp`: one call updates every
//! parameter and its state, instead of three or four kernels per parameter (DESIGN.md §8).
//!
//! The kernels compute what the corresponding Optax chain computes, up to the rounding of a
//! fused multiply-add; they are used only where they apply exactly (see [`fusable`]), and
//! [`GradientTransformation::update_and_apply`](super::GradientTransformation::update_and_apply)
//! falls back to the transformation's own kernels elsewhere.

use crate::core::errors::Result;
use std::ffi::{c_char, c_int, c_void, CStr};
use tch::{Kind, Tensor};

/// A tch tensor handle as the shim takes it (a pointer to libtorch's `at::Tensor`).
type Handle = *const c_void;

extern "C" {
    fn flax_fused_sgd(
        params: *const Handle,
        grads: *const Handle,
        bufs: *const Handle,
        n: c_int,
        momentum: f64,
        lr: f64,
        nesterov: c_int,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
}

/// Whether the fused kernels handle these leaf lists as the per-leaf kernels would: every
/// tensor floating point, contiguous (the CPU kernel writes through raw pointers) and on the
/// first one's device, and each group of the same length with equal dtypes and shapes.
pub(crate) fn fusable(groups: &[&[&Tensor]]) -> bool {
    let Some(first) = groups.first().and_then(|g| g.first()) else { return false };
    let device = first.device();
    let floating =
        |t: &Tensor| matches!(t.f_kind(), Ok(Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16));
    let len = groups[0].len();
    groups.iter().all(|group| {
        group.len() == len
            && group.iter().zip(groups[0]).all(|(t, reference)| {
                floating(t)
                    && t.is_contiguous()
                    && t.device() == device
                    && t.f_kind().ok() == reference.f_kind().ok()
                    && t.size() == reference.size()
            })
    })
}

fn handles(tensors: &[&Tensor]) -> Vec<Handle> {
    tensors.iter().map(|t| t.as_ptr() as Handle).collect()
}

/// `torch._fused_sgd_` without weight decay or dampening, in place: for each leaf,
/// `buf = momentum * buf + g` and `p -= lr * (nesterov ? g + momentum * buf : buf)` with
/// momentum buffers, `p -= lr * g` without. Optax's `sgd(lr, momentum, nesterov)` followed by
/// `apply_updates`, from the same buffers.
///
/// # Errors
/// libtorch's, for tensors the kernel refuses (check [`fusable`] first).
pub(crate) fn sgd(
    params: &[&Tensor],
    grads: &[&Tensor],
    bufs: Option<&[&Tensor]>,
    momentum: f64,
    lr: f64,
    nesterov: bool,
) -> Result<()> {
    let n = c_int::try_from(params.len()).expect("fewer than 2^31 parameters");
    assert!(grads.len() == params.len() && bufs.is_none_or(|b| b.len() == params.len()));
    let (params, grads, bufs) = (handles(params), handles(grads), bufs.map(handles));
    let bufs_ptr = bufs.as_ref().map_or(std::ptr::null(), |b| b.as_ptr());
    let mut error = [0 as c_char; 1024];
    let _no_grad = tch::no_grad_guard();
    // SAFETY: every handle points to a live `at::Tensor` borrowed for the call; the arrays
    // hold `n` handles each (checked above); the shim writes at most `error.len()` bytes.
    let status = unsafe {
        flax_fused_sgd(
            params.as_ptr(),
            grads.as_ptr(),
            bufs_ptr,
            n,
            momentum,
            lr,
            c_int::from(nesterov),
            error.as_mut_ptr(),
            error.len(),
        )
    };
    if status == 0 {
        return Ok(());
    }
    // SAFETY: the shim NUL-terminates the message it wrote.
    let message = unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned();
    Err(tch::TchError::Torch(message).into())
}
