//! Custom gradients with Rust forward and backward functions, on libtorch's autograd: the
//! tensor-level machinery under `flax::transforms::custom_vjp` and `remat` (DESIGN.md §10).
//!
//! [`custom_vjp`] has JAX's shape: the forward function returns the outputs and the residuals
//! the backward function needs; the backward function maps the residuals and the outputs'
//! cotangents to the inputs' cotangents. The outputs are recorded as one autograd node (a
//! `torch::autograd::Function` in the C++ shim, `csrc/custom_function.cpp`) whose backward calls
//! the Rust closure. [`checkpoint`] (remat, `jax.checkpoint`) is built on it: the forward keeps
//! nothing but its inputs, and the backward recomputes the function with gradients enabled.
//!
//! ```
//! use flax::core::custom_function::custom_vjp;
//! use flax::tch::{Device, Kind, Tensor};
//!
//! # fn main() -> flax::Result<()> {
//! // A straight-through estimator: forward rounds, backward passes the gradient through.
//! let x = Tensor::from_slice(&[0.2f32, 1.7]).set_requires_grad(true);
//! let y = custom_vjp(
//!     &[x.shallow_clone()],
//!     |xs| Ok((vec![xs[0].round()], vec![])),
//!     |_residuals, grads| Ok(vec![Some(grads[0].shallow_clone())]),
//! )?;
//! let g = Tensor::run_backward(&[(&y[0] * 3.0).sum(Kind::Float)], &[&x], false, false);
//! assert_eq!(Vec::<f32>::try_from(&g[0])?, [3.0, 3.0]);
//! # Ok(())
//! # }
//! ```
//!
//! **Lifetimes.** The backward closure is owned by the autograd node: it is dropped when the
//! graph is freed (the outputs and everything computed from them dropped), or at once when no
//! input requires gradients and no node is recorded. It must be `Send + 'static`: libtorch runs
//! a CUDA graph's backward on its device threads, and the graph outlives any borrow. Calls are
//! serialized by a mutex, so the closure may be `FnMut`.
//!
//! **Errors and panics.** An error from the forward function is returned as is; a panic in it
//! resumes unwinding after the C++ frames are left. An error or panic in the backward function
//! becomes a C++ exception that the autograd engine hands to whoever ran the backward pass: tch's
//! `Tensor::f_run_backward` (and [`grad`]) return it as [`Error::Torch`]
//! with the message (a panic's message prefixed by `panicked:`).
//!
//! **Under vmap.** libtorch refuses a C++ autograd function inside a functorch transform
//! ("cannot use C++ torch::autograd::Function with functorch transforms"): [`custom_vjp`] and
//! [`checkpoint`] called inside [`vmap`](super::batching::vmap) return that as
//! [`Error::Torch`], never wrong gradients. Put the vmap inside instead:
//! `remat(vmap(f))` has the values and gradients of `vmap(remat(f))`, and a custom VJP of a
//! vmapped function is `custom_vjp(vmap(fwd), vmap(bwd))`, which is JAX's batching rule for
//! `custom_vjp`.
//!
//! **Higher order.** With `create_graph`, [`custom_vjp`]'s backward runs with gradients
//! enabled, so its operators are recorded and a second differentiation differentiates the
//! backward function as written (as in PyTorch). [`checkpoint`]'s backward refuses
//! `create_graph` with an error. Forward-mode AD ([`forward_ad`](super::forward_ad)) through a
//! custom function is libtorch's error ("jvp is not implemented for the c++ API of custom
//! Function yet").

use crate::core::errors::{Error, Result};
use crate::core::shim::{self, Handle};
use std::any::Any;
use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use tch::Tensor;

type ForwardFn = unsafe extern "C" fn(
    *mut c_void,
    *mut Handle,
    c_int,
    *mut c_void,
    *mut c_void,
    *mut c_char,
    usize,
) -> c_int;
type BackwardFn = unsafe extern "C" fn(
    *mut c_void,
    *mut Handle,
    c_int,
    *mut Handle,
    c_int,
    *mut c_void,
    *mut c_char,
    usize,
) -> c_int;
type DropFn = unsafe extern "C" fn(*mut c_void);
type PushFn = unsafe extern "C" fn(*mut c_void, Handle);

extern "C" {
    fn flax_tensor_list_push(list: *mut c_void, owned: Handle);
    #[allow(clippy::too_many_arguments)]
    fn flax_custom_function_apply(
        inputs: *const Handle,
        n: c_int,
        fwd_closure: *mut c_void,
        fwd: ForwardFn,
        bwd_closure: *mut c_void,
        bwd: BackwardFn,
        drop: DropFn,
        outputs: *mut c_void,
        push: PushFn,
        error: *mut c_char,
        len: usize,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn flax_autograd_grad(
        outputs: *const Handle,
        grad_outputs: *const Handle,
        n_outputs: c_int,
        inputs: *const Handle,
        n_inputs: c_int,
        retain_graph: c_int,
        create_graph: c_int,
        grads: *mut c_void,
        push: PushFn,
        error: *mut c_char,
        len: usize,
    ) -> c_int;
    fn flax_grad_mode_enabled() -> c_int;
}

/// Whether libtorch records operators for reverse mode on this thread (`torch.is_grad_enabled()`).
pub fn grad_enabled() -> bool {
    // SAFETY: reads a thread-local flag.
    unsafe { flax_grad_mode_enabled() != 0 }
}

/// The forward function and what became of it, on the caller's stack for the shim call.
struct ForwardState<F> {
    f: Option<F>,
    error: Option<Error>,
    panic: Option<Box<dyn Any + Send>>,
}

/// The backward function, owned by the autograd node.
struct BackwardState<B> {
    f: Mutex<B>,
}

/// A function's JAX-style custom VJP (`jax.custom_vjp` with `defvjp(fwd, bwd)`) over tensor
/// lists: `forward(inputs)` returns `(outputs, residuals)` and runs with gradients disabled
/// (nothing inside it is recorded); in the backward pass `backward(residuals, output_grads)`
/// returns one gradient per input (`None` for none). The gradients of outputs that the
/// differentiated value does not depend on are zeros, never missing. Residuals are saved as
/// autograd saves tensors (an input or output among them is tracked for in-place changes and
/// creates no reference cycle); the inputs themselves are not saved unless returned as
/// residuals.
///
/// # Errors
/// `forward`'s error; libtorch's, for example when an output is an input modified in place.
/// Errors of `backward` surface from the backward pass (see the module docs).
pub fn custom_vjp<F, B>(inputs: &[Tensor], forward: F, backward: B) -> Result<Vec<Tensor>>
where
    F: FnOnce(&[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>)>,
    B: FnMut(&[Tensor], &[Tensor]) -> Result<Vec<Option<Tensor>>> + Send + 'static,
{
    let n = c_int::try_from(inputs.len())
        .map_err(|_| Error::Value(format!("custom_vjp: {} inputs is too many", inputs.len())))?;
    let handles = shim::handles(inputs);
    let mut state = ForwardState { f: Some(forward), error: None, panic: None };
    let backward = Box::into_raw(Box::new(BackwardState { f: Mutex::new(backward) }));
    let mut outputs: Vec<Option<Tensor>> = Vec::new();
    // SAFETY: the handles borrow `inputs` for the call; `state` and `outputs` outlive it and
    // match the trampolines' types; the shim takes ownership of `backward` and calls
    // `drop_backward::<B>` on it exactly once.
    let result = shim::call(|error, len| unsafe {
        flax_custom_function_apply(
            handles.as_ptr(),
            n,
            (&mut state as *mut ForwardState<F>).cast(),
            forward_trampoline::<F>,
            backward.cast(),
            backward_trampoline::<B>,
            drop_backward::<B>,
            (&mut outputs as *mut Vec<Option<Tensor>>).cast(),
            push_rust,
            error,
            len,
        )
    });
    if let Some(payload) = state.panic.take() {
        resume_unwind(payload);
    }
    if let Some(error) = state.error.take() {
        return Err(error);
    }
    result?;
    outputs
        .into_iter()
        .map(|t| {
            t.ok_or_else(|| {
                Error::Value("custom_vjp: the forward function returned an undefined tensor".into())
            })
        })
        .collect()
}

/// `jax.checkpoint` (remat) over tensor lists: `f(inputs)` with its intermediate activations
/// not kept for the backward pass. The forward runs `f` with gradients disabled and saves only
/// the inputs; the backward pass runs `f` again, with gradients enabled, on detached copies of
/// the inputs, and differentiates that (libtorch's `torch::autograd::grad` with the outputs'
/// gradients). Memory falls from every layer's activations to the inputs, for a second forward
/// pass of compute.
///
/// Only gradients with respect to `inputs` flow: a tensor `f` captures instead of taking as an
/// input (a parameter) gets none, so pass everything differentiable as an input (the lifted
/// `remat` passes a module's variables). `f` must compute the same values both times: random
/// operators should draw from explicit keys among the inputs (as Flax's RNG streams do), not
/// from libtorch's global generator.
///
/// # Errors
/// `f`'s error in the forward pass; from the backward pass (through `f_run_backward`), `f`'s
/// error on recomputation, and an error under `create_graph` (higher-order gradients through a
/// checkpoint are not supported).
pub fn checkpoint<F>(inputs: &[Tensor], f: F) -> Result<Vec<Tensor>>
where
    F: FnMut(&[Tensor]) -> Result<Vec<Tensor>> + Send + 'static,
{
    let needs_grad: Vec<bool> = inputs.iter().map(Tensor::requires_grad).collect();
    let f = Arc::new(Mutex::new(f));
    let recompute = Arc::clone(&f);
    custom_vjp(
        inputs,
        move |xs| {
            let mut f = f.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let outputs = f(xs)?;
            Ok((outputs, xs.iter().map(Tensor::shallow_clone).collect()))
        },
        move |saved, output_grads| {
            if grad_enabled() {
                return Err(Error::Value(
                    "checkpoint: higher-order gradients (create_graph) through a checkpoint are not supported".into(),
                ));
            }
            tch::with_grad(|| {
                let xs: Vec<Tensor> = saved
                    .iter()
                    .zip(&needs_grad)
                    .map(|(x, &needs)| if needs { x.detach().set_requires_grad(true) } else { x.detach() })
                    .collect();
                let ys = {
                    let mut f = recompute.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    f(&xs)?
                };
                let (outputs, seeds): (Vec<&Tensor>, Vec<&Tensor>) =
                    ys.iter().zip(output_grads).filter(|(y, _)| y.requires_grad()).unzip();
                let wrt: Vec<&Tensor> =
                    xs.iter().zip(&needs_grad).filter(|(_, &n)| n).map(|(x, _)| x).collect();
                let mut grads = if outputs.is_empty() || wrt.is_empty() {
                    Vec::new()
                } else {
                    grad(&outputs, &seeds, &wrt, false, false)?
                }
                .into_iter();
                Ok(needs_grad.iter().map(|&n| if n { grads.next().flatten() } else { None }).collect())
            })
        },
    )
}

/// `torch.autograd.grad(outputs, inputs, grad_outputs, retain_graph, create_graph,
/// allow_unused=True)`: the gradients of `inputs` given the gradients of `outputs` (tch's
/// `run_backward` takes no output gradients), `None` for an input the outputs do not depend on.
/// Nothing is accumulated into any `.grad`.
///
/// # Errors
/// [`Error::Value`] when `outputs` and `grad_outputs` differ in length; libtorch's (an output
/// that does not require gradients, a gradient of the wrong shape, a backward function's error).
pub fn grad(
    outputs: &[&Tensor],
    grad_outputs: &[&Tensor],
    inputs: &[&Tensor],
    retain_graph: bool,
    create_graph: bool,
) -> Result<Vec<Option<Tensor>>> {
    if outputs.len() != grad_outputs.len() {
        return Err(Error::Value(format!(
            "grad: {} grad_outputs for {} outputs",
            grad_outputs.len(),
            outputs.len()
        )));
    }
    let count = |n: usize| c_int::try_from(n).map_err(|_| Error::Value("grad: too many tensors".into()));
    let (n_outputs, n_inputs) = (count(outputs.len())?, count(inputs.len())?);
    let outs: Vec<Handle> = outputs.iter().map(|t| shim::handle(t)).collect();
    let seeds: Vec<Handle> = grad_outputs.iter().map(|t| shim::handle(t)).collect();
    let ins: Vec<Handle> = inputs.iter().map(|t| shim::handle(t)).collect();
    let mut grads: Vec<Option<Tensor>> = Vec::with_capacity(inputs.len());
    // SAFETY: the handles borrow the tensors for the call; `grads` matches `push_rust`.
    shim::call(|error, len| unsafe {
        flax_autograd_grad(
            outs.as_ptr(),
            seeds.as_ptr(),
            n_outputs,
            ins.as_ptr(),
            n_inputs,
            c_int::from(retain_graph),
            c_int::from(create_graph),
            (&mut grads as *mut Vec<Option<Tensor>>).cast(),
            push_rust,
            error,
            len,
        )
    })?;
    Ok(grads)
}

/// Appends a handle the shim gives up (null: undefined) to a `Vec<Option<Tensor>>`.
unsafe extern "C" fn push_rust(list: *mut c_void, owned: Handle) {
    // SAFETY: `list` is the `Vec<Option<Tensor>>` passed with this function; `owned` is ours.
    let list = unsafe { &mut *list.cast::<Vec<Option<Tensor>>>() };
    list.push((!owned.is_null()).then(|| unsafe { shim::take(owned) }));
}

/// Takes ownership of `n` handles the shim allocated for us.
///
/// # Safety
/// `handles` points to `n` handles owned by the caller.
unsafe fn take_all(handles: *mut Handle, n: c_int) -> Vec<Tensor> {
    let n = usize::try_from(n).unwrap_or(0);
    if n == 0 {
        return Vec::new();
    }
    // SAFETY: as the caller promises.
    unsafe { std::slice::from_raw_parts(handles, n) }.iter().map(|&h| unsafe { shim::take(h) }).collect()
}

/// Gives tensors to a C++ list (`flax_tensor_list_push`), `None` as undefined.
///
/// # Safety
/// `list` is a `std::vector<at::Tensor>` from the shim.
unsafe fn give_all(list: *mut c_void, tensors: impl IntoIterator<Item = Option<Tensor>>) {
    for t in tensors {
        let handle = t.map_or(std::ptr::null_mut(), shim::give);
        // SAFETY: as the caller promises; the shim takes ownership of the handle.
        unsafe { flax_tensor_list_push(list, handle) };
    }
}

/// Writes `message` into the shim's error buffer, NUL-terminated and truncated to fit.
///
/// # Safety
/// `error` points to `len` writable bytes.
unsafe fn write_message(message: &str, error: *mut c_char, len: usize) {
    if len == 0 {
        return;
    }
    let bytes = &message.as_bytes()[..message.len().min(len - 1)];
    // SAFETY: as the caller promises; `bytes.len() < len`.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), error, bytes.len());
        *error.add(bytes.len()) = 0;
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    format!("panicked: {text}")
}

unsafe extern "C" fn forward_trampoline<F>(
    closure: *mut c_void,
    inputs: *mut Handle,
    n: c_int,
    outputs: *mut c_void,
    residuals: *mut c_void,
    error: *mut c_char,
    len: usize,
) -> c_int
where
    F: FnOnce(&[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>)>,
{
    // SAFETY: `closure` is the `ForwardState<F>` that `custom_vjp` passed, alive for its call.
    let state = unsafe { &mut *closure.cast::<ForwardState<F>>() };
    // SAFETY: the shim allocated `n` handles for us.
    let inputs = unsafe { take_all(inputs, n) };
    let Some(f) = state.f.take() else {
        // SAFETY: the shim's buffer.
        unsafe { write_message("custom_vjp: the forward function ran twice", error, len) };
        return 1;
    };
    let message = match catch_unwind(AssertUnwindSafe(|| f(&inputs))) {
        Ok(Ok((outs, res))) => {
            // SAFETY: the shim's lists.
            unsafe {
                give_all(outputs, outs.into_iter().map(Some));
                give_all(residuals, res.into_iter().map(Some));
            }
            return 0;
        }
        Ok(Err(e)) => {
            let message = format!("custom_vjp forward: {e}");
            state.error = Some(e);
            message
        }
        Err(payload) => {
            let message = panic_message(&*payload);
            state.panic = Some(payload);
            message
        }
    };
    // SAFETY: the shim's buffer.
    unsafe { write_message(&message, error, len) };
    1
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn backward_trampoline<B>(
    closure: *mut c_void,
    residuals: *mut Handle,
    n_residuals: c_int,
    grads: *mut Handle,
    n_grads: c_int,
    input_grads: *mut c_void,
    error: *mut c_char,
    len: usize,
) -> c_int
where
    B: FnMut(&[Tensor], &[Tensor]) -> Result<Vec<Option<Tensor>>> + Send + 'static,
{
    // SAFETY: `closure` is the `BackwardState<B>` the node owns; it outlives the node's calls.
    let state = unsafe { &*closure.cast::<BackwardState<B>>() };
    // SAFETY: the shim allocated these handles for us.
    let (residuals, grads) = unsafe { (take_all(residuals, n_residuals), take_all(grads, n_grads)) };
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut f = state.f.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&residuals, &grads)
    }));
    let message = match result {
        Ok(Ok(gradients)) => {
            // SAFETY: the shim's list.
            unsafe { give_all(input_grads, gradients) };
            return 0;
        }
        Ok(Err(e)) => format!("custom_vjp backward: {e}"),
        Err(payload) => format!("custom_vjp backward {}", panic_message(&*payload)),
    };
    // SAFETY: the shim's buffer.
    unsafe { write_message(&message, error, len) };
    1
}

unsafe extern "C" fn drop_backward<B>(closure: *mut c_void) {
    // A panicking destructor must not unwind into C++.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the pointer `Box::into_raw` made in `custom_vjp`, dropped once by the shim.
        drop(unsafe { Box::from_raw(closure.cast::<BackwardState<B>>()) });
    }));
}
