//! libtorch's fused multi-tensor optimizer kernels (`torch._fused_sgd_`, `_fused_adam_`,
//! `_fused_adamw_`), which tch does not expose, through the small C++ shim
//! `csrc/fused_optimizers.cpp`: one call updates every parameter and its state, instead of
//! four (SGD) to ten (Adam) kernels per parameter (DESIGN.md §8).
//!
//! The kernels compute what the corresponding Optax chain computes, up to float rounding
//! (fused multiply-adds; Adam's bias corrections, see [`adam`]); they are used only for the
//! configurations and tensors they implement exactly (see [`fusable`]), and
//! [`GradientTransformation::update_and_apply`](super::GradientTransformation::update_and_apply)
//! falls back to the transformation's own kernels elsewhere.

use crate::core::errors::Result;
use std::borrow::Borrow;
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

    fn flax_fused_adam(
        params: *const Handle,
        grads: *const Handle,
        mus: *const Handle,
        nus: *const Handle,
        n: c_int,
        step: Handle,
        lr: f64,
        b1: f64,
        b2: f64,
        weight_decay: f64,
        eps: f64,
        decoupled: c_int,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
}

/// Whether the fused kernels handle these leaves as the per-leaf kernels would: the tensors
/// they write (`written`: the parameters, then each state tree) contiguous, since the CPU
/// kernels write through raw pointers, and the gradients of any layout (the kernels are
/// given contiguous copies of those that are not, such as a convolution kernel's gradient,
/// which autograd returns in libtorch's layout); every tensor floating point and on one
/// device, every list as long as the parameters' with the same dtypes and shapes.
pub(crate) fn fusable(written: &[&[&Tensor]], grads: &[&Tensor]) -> bool {
    let Some(params) = written.first() else { return false };
    let Some(first) = params.first() else { return false };
    let device = first.device();
    let floating =
        |t: &Tensor| matches!(t.f_kind(), Ok(Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16));
    let like_params = |group: &[&Tensor], contiguous: bool| {
        group.len() == params.len()
            && group.iter().zip(params.iter()).all(|(t, p)| {
                floating(t)
                    && (!contiguous || t.is_contiguous())
                    && t.device() == device
                    && t.f_kind().ok() == p.f_kind().ok()
                    && t.size() == p.size()
            })
    };
    written.iter().all(|group| like_params(group, true)) && like_params(grads, false)
}

/// Contiguous versions of `grads`: the same tensors where they already are.
fn contiguous(grads: &[&Tensor]) -> Vec<Tensor> {
    grads.iter().map(|g| g.contiguous()).collect()
}

fn handles<T: Borrow<Tensor>>(tensors: &[T]) -> Vec<Handle> {
    tensors.iter().map(|t| t.borrow().as_ptr() as Handle).collect()
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
    let n = count_of(params, [grads].into_iter().chain(bufs));
    let grads = contiguous(grads);
    let (params, grads, bufs) = (handles(params), handles(&grads), bufs.map(handles));
    let bufs_ptr = bufs.as_ref().map_or(std::ptr::null(), |b| b.as_ptr());
    // SAFETY: every handle points to a live `at::Tensor` borrowed for the call, and each
    // array holds `n` of them (checked by `count_of`).
    call(|error, len| unsafe {
        flax_fused_sgd(
            params.as_ptr(),
            grads.as_ptr(),
            bufs_ptr,
            n,
            momentum,
            lr,
            c_int::from(nesterov),
            error,
            len,
        )
    })
}

/// Adam's hyper-parameters as the fused kernels take them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamConfig {
    pub b1: f64,
    pub b2: f64,
    pub eps: f64,
}

/// `torch._fused_adam_` (or, with `decoupled`, `torch._fused_adamw_`) without amsgrad, in
/// place, at step `count` (Optax's incremented count): the moments as Optax's
/// `scale_by_adam` updates them, then `p -= lr * (mu_hat / (sqrt(nu_hat) + eps))`, after
/// `p *= 1 - lr * weight_decay` when decoupled (Optax's `add_decayed_weights` before the
/// learning rate). libtorch computes the bias corrections `1 - b^count` in double precision
/// where Optax rounds `b` to float32 first: the updates differ from Optax's by up to about
/// 1e-5 relative (for `b2 = 0.999`), far below any training noise.
///
/// # Errors
/// libtorch's, for tensors the kernel refuses (check [`fusable`] first).
#[allow(clippy::too_many_arguments)]
pub(crate) fn adam(
    params: &[&Tensor],
    grads: &[&Tensor],
    mus: &[&Tensor],
    nus: &[&Tensor],
    count: i64,
    lr: f64,
    config: AdamConfig,
    weight_decay: Option<f64>,
) -> Result<()> {
    let n = count_of(params, [grads, mus, nus]);
    let Some(first) = params.first() else { return Ok(()) };
    let step = Tensor::f_full([], count as f64, (Kind::Float, first.device()))?;
    let grads = contiguous(grads);
    let (params, grads, mus, nus) = (handles(params), handles(&grads), handles(mus), handles(nus));
    let (decoupled, weight_decay) = weight_decay.map_or((0, 0.0), |wd| (1, wd));
    let AdamConfig { b1, b2, eps } = config;
    // SAFETY: as in `sgd`; `step` lives until the call returns.
    call(|error, len| unsafe {
        flax_fused_adam(
            params.as_ptr(),
            grads.as_ptr(),
            mus.as_ptr(),
            nus.as_ptr(),
            n,
            step.as_ptr() as Handle,
            lr,
            b1,
            b2,
            weight_decay,
            eps,
            decoupled,
            error,
            len,
        )
    })
}

/// The number of parameters, checking that every other list has as many.
fn count_of<'a>(params: &[&Tensor], others: impl IntoIterator<Item = &'a [&'a Tensor]>) -> c_int {
    assert!(others.into_iter().all(|other| other.len() == params.len()), "leaf lists of different lengths");
    c_int::try_from(params.len()).expect("fewer than 2^31 parameters")
}

/// Runs a shim function under `no_grad` (the kernels write tensors that may require
/// gradients) with a buffer for its error message.
fn call(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<()> {
    let mut error = [0 as c_char; 1024];
    let _no_grad = tch::no_grad_guard();
    if f(error.as_mut_ptr(), error.len()) == 0 {
        return Ok(());
    }
    // SAFETY: the shim NUL-terminates the message it wrote.
    let message = unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned();
    Err(tch::TchError::Torch(message).into())
}
