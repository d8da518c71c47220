//! Batching on libtorch's own vmap (functorch's dynamic layers and `BatchedTensor`s), the
//! tensor-level machinery under `flax::transforms::vmap` (DESIGN.md §10): one batched kernel per
//! operator, not a loop over examples.
//!
//! A [`VmapLevel`] pushes a vmap layer on this thread's functorch stack (what
//! `torch._C._functorch._vmap_increment_nesting` does for `torch.vmap`) and pops it when
//! dropped, also when the code inside returns an error or panics. Inside a level,
//! [`VmapLevel::add_batch_dim`] turns a tensor into its per-example view: `size()` and every
//! operator see one example, and libtorch runs each operator once on the whole batch through
//! its batching rules (or, for an operator without one, functorch's fallback, which loops in
//! C++). [`VmapLevel::remove_batch_dim`] turns a result back into the whole batch. [`vmap`] does
//! the three steps for a function of tensors.
//!
//! Autograd composes: the batched tensors wrap ordinary tensors, and libtorch records the
//! batched kernels on those, so the gradient of a loss of `vmap`'s outputs with respect to
//! tensors from outside the vmap is the gradient of the loop over examples.
//!
//! Collectives over a mapped axis (Flax's `axis_name`: `lax.pmean` for BatchNorm under vmap,
//! `psum`, `all_gather`) go through [`expose_axis`], which gives code running per example the
//! whole axis of one (possibly outer) level; [`mean_over_axis`] and [`sum_over_axis`] are built
//! on it.
//!
//! ```
//! use flax::core::batching::{mean_over_axis, vmap_with, Randomness};
//! use flax::tch::{Device, Kind, Tensor};
//!
//! # fn main() -> flax::Result<()> {
//! let x = Tensor::arange(6, (Kind::Float, Device::Cpu)).reshape([3, 2]);
//! let w = Tensor::ones([2, 4], (Kind::Float, Device::Cpu));
//! // Per example: x is [2] inside; w is broadcast (`None`); the output is [3, 4] again.
//! let out = vmap_with(3, Randomness::Error, &[Some(0), None], &[x, w], &[0, 0], |level, xs| {
//!     assert_eq!(xs[0].size(), [2]);
//!     let y = xs[0].matmul(&xs[1]);
//!     let centered = &y - mean_over_axis(&y, level.level())?;
//!     Ok(vec![y, centered])
//! })?;
//! assert_eq!(out[0].size(), [3, 4]);
//! assert_eq!(out[1].sum(Kind::Float).double_value(&[]), 0.0);
//! # Ok(())
//! # }
//! ```
//!
//! Limits, as in PyTorch: levels are per thread (a [`VmapLevel`] is not `Send`); a batched
//! tensor must not outlive its level (return it through [`VmapLevel::remove_batch_dim`]);
//! random operators inside a level fail unless the level was pushed with
//! [`Randomness::Different`] or [`Randomness::Same`]; in-place writes of a batched value into
//! an unbatched tensor fail (libtorch's "vmap: inplace arithmetic" error). `torch.vmap` also
//! registers a few Python decompositions (`nll_loss_forward`, `nll_loss2d_forward` and the
//! backward of `mse_loss`, `smooth_l1_loss`, `huber_loss`) that libtorch alone lacks: here those
//! operators take functorch's fallback, which is right but loops over the examples. Custom
//! autograd functions cannot run inside a level (see
//! [`custom_function`](super::custom_function)).
//! Forward-mode AD ([`forward_ad`](super::forward_ad)) inside a level is not tested.

use crate::core::errors::{Error, Result};
use crate::core::shim::{self, Handle};
use std::ffi::{c_char, c_int};
use std::marker::PhantomData;
use tch::{Kind, Tensor};

extern "C" {
    fn flax_vmap_push(
        batch_size: i64,
        randomness: c_int,
        level: *mut i64,
        error: *mut c_char,
        len: usize,
    ) -> c_int;
    fn flax_vmap_pop(level: i64, error: *mut c_char, len: usize) -> c_int;
    fn flax_functorch_depth() -> i64;
    fn flax_vmap_current_level() -> i64;
    fn flax_vmap_add_batch_dim(
        t: Handle,
        dim: i64,
        level: i64,
        out: *mut Handle,
        error: *mut c_char,
        len: usize,
    ) -> c_int;
    fn flax_vmap_remove_batch_dim(
        t: Handle,
        level: i64,
        out_dim: i64,
        out: *mut Handle,
        error: *mut c_char,
        len: usize,
    ) -> c_int;
    fn flax_vmap_expose_axis(
        t: Handle,
        level: i64,
        out: *mut Handle,
        error: *mut c_char,
        len: usize,
    ) -> c_int;
    fn flax_vmap_is_batched_at(t: Handle, level: i64) -> c_int;
}

/// What random operators do inside a vmap level (`torch.vmap`'s `randomness`; Flax's
/// `split_rngs` decides the same question for its explicit keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Randomness {
    /// Random operators fail: the safe default, since neither choice below is implied.
    #[default]
    Error,
    /// Each example draws its own numbers.
    Different,
    /// Every example sees the same numbers.
    Same,
}

impl Randomness {
    fn code(self) -> c_int {
        match self {
            Randomness::Error => 0,
            Randomness::Different => 1,
            Randomness::Same => 2,
        }
    }
}

/// One vmap level on this thread's functorch stack, popped when dropped (on every exit path:
/// return, `?`, panic), so the stack is clean after any `vmap`. Not `Send`: the stack is
/// thread-local.
#[derive(Debug)]
pub struct VmapLevel {
    level: i64,
    batch_size: i64,
    _thread_local: PhantomData<*const ()>,
}

impl VmapLevel {
    /// Pushes a vmap level of `batch_size` examples (`_vmap_increment_nesting`).
    ///
    /// # Errors
    /// [`Error::Value`] for a batch size below 1; libtorch's, past its 64 levels.
    pub fn push(batch_size: i64, randomness: Randomness) -> Result<Self> {
        if batch_size < 1 {
            return Err(Error::Value(format!("vmap: the batch size must be positive, got {batch_size}")));
        }
        let mut level = 0;
        // SAFETY: plain values and a buffer for the message.
        shim::call(|error, len| unsafe {
            flax_vmap_push(batch_size, randomness.code(), &mut level, error, len)
        })?;
        Ok(Self { level, batch_size, _thread_local: PhantomData })
    }

    /// The level's id on the functorch stack (1 for the outermost), which names its axis for
    /// [`expose_axis`], [`mean_over_axis`] and [`sum_over_axis`].
    pub fn level(&self) -> i64 {
        self.level
    }

    /// The number of examples mapped over.
    pub fn batch_size(&self) -> i64 {
        self.batch_size
    }

    /// `t` seen per example: dimension `in_dim` (negative counts from the end) is mapped at this
    /// level and disappears from `size()`. The level must be the innermost one.
    ///
    /// # Errors
    /// libtorch's, for a dimension out of range or whose size is not the batch size, or when an
    /// inner level is live.
    pub fn add_batch_dim(&self, t: &Tensor, in_dim: i64) -> Result<Tensor> {
        // SAFETY: `t` is borrowed for the call; the shim allocates the result for us.
        shim::call_tensor(|out, error, len| unsafe {
            flax_vmap_add_batch_dim(shim::handle(t), in_dim, self.level, out, error, len)
        })
    }

    /// The whole batch of a per-example tensor, the mapped axis at `out_dim` (negative counts
    /// from the end of the result): the inverse of [`add_batch_dim`](Self::add_batch_dim). A
    /// tensor not batched at this level (computed from broadcast inputs only) is the same for
    /// every example and is expanded along the new axis, as `torch.vmap` does.
    ///
    /// # Errors
    /// libtorch's, for an `out_dim` out of range or a tensor still batched at an inner level.
    pub fn remove_batch_dim(&self, t: &Tensor, out_dim: i64) -> Result<Tensor> {
        remove_batch_dim(t, self.level, out_dim)
    }
}

impl Drop for VmapLevel {
    fn drop(&mut self) {
        // The pop cannot fail for a live level; a level already popped (by an outer guard
        // dropped first) is left alone.
        // SAFETY: a plain value and a buffer for the message.
        let _ = shim::call(|error, len| unsafe { flax_vmap_pop(self.level, error, len) });
    }
}

/// [`VmapLevel::remove_batch_dim`] for a level named by its id, for code that holds the id
/// rather than the guard.
///
/// # Errors
/// As [`VmapLevel::remove_batch_dim`], and when `level` is not a live vmap level.
pub fn remove_batch_dim(t: &Tensor, level: i64, out_dim: i64) -> Result<Tensor> {
    // SAFETY: `t` is borrowed for the call; the shim allocates the result for us.
    shim::call_tensor(|out, error, len| unsafe {
        flax_vmap_remove_batch_dim(shim::handle(t), level, out_dim, out, error, len)
    })
}

/// The mapped axis of vmap level `level` as a new leading dimension of `t`, for code running
/// per example (at that level or inside an inner one): every example's value, `[batch, ...]`.
/// The result is no longer batched at `level`, so whatever is computed from it is the same for
/// every example of that level: this is how a collective over a named axis is written. A `t`
/// not batched at `level` is the same for every example and is expanded. Levels inside `level`
/// stay batched.
///
/// # Errors
/// libtorch's, when `level` is not a live vmap level.
pub fn expose_axis(t: &Tensor, level: i64) -> Result<Tensor> {
    // SAFETY: `t` is borrowed for the call; the shim allocates the result for us.
    shim::call_tensor(|out, error, len| unsafe {
        flax_vmap_expose_axis(shim::handle(t), level, out, error, len)
    })
}

/// The mean of `t` over the examples of vmap level `level` (`lax.pmean(t, axis_name)`), the
/// same for every example: what BatchNorm under vmap with `axis_name` averages its statistics
/// with. Differentiable.
///
/// # Errors
/// As [`expose_axis`]; libtorch's for an integer `t`.
pub fn mean_over_axis(t: &Tensor, level: i64) -> Result<Tensor> {
    Ok(expose_axis(t, level)?.f_mean_dim(0, false, None::<Kind>)?)
}

/// The sum of `t` over the examples of vmap level `level` (`lax.psum(t, axis_name)`), the same
/// for every example. Differentiable.
///
/// # Errors
/// As [`expose_axis`].
pub fn sum_over_axis(t: &Tensor, level: i64) -> Result<Tensor> {
    Ok(expose_axis(t, level)?.f_sum_dim_intlist(0, false, None::<Kind>)?)
}

/// Whether `t` is batched at vmap level `level`, directly or under inner levels.
pub fn is_batched_at(t: &Tensor, level: i64) -> bool {
    // SAFETY: `t` is borrowed for the call.
    unsafe { flax_vmap_is_batched_at(shim::handle(t), level) != 0 }
}

/// The innermost live vmap level of this thread, if any.
pub fn current_level() -> Option<i64> {
    // SAFETY: reads the thread's functorch stack.
    let level = unsafe { flax_vmap_current_level() };
    (level > 0).then_some(level)
}

/// How many functorch layers are live on this thread (0 outside any vmap): a check that every
/// level was popped.
pub fn functorch_depth() -> usize {
    // SAFETY: reads the thread's functorch stack.
    usize::try_from(unsafe { flax_functorch_depth() }).unwrap_or(0)
}

/// `torch.vmap(f, in_dims, out_dims)(*inputs)` over tensor lists: `f` runs once on per-example
/// views of `inputs` (`in_dims[i]`: the mapped dimension of `inputs[i]`, or `None` to give every
/// example the whole tensor), and each output's mapped axis is put at `out_dims[i]`. Random
/// operators inside fail ([`vmap_with`] chooses otherwise).
///
/// # Errors
/// [`Error::Value`] when the lists' lengths disagree or a mapped dimension's size is not
/// `batch_size`; `f`'s own error; libtorch's.
pub fn vmap(
    batch_size: i64,
    in_dims: &[Option<i64>],
    inputs: &[Tensor],
    out_dims: &[i64],
    f: impl FnOnce(&[Tensor]) -> Result<Vec<Tensor>>,
) -> Result<Vec<Tensor>> {
    vmap_with(batch_size, Randomness::Error, in_dims, inputs, out_dims, |_, xs| f(xs))
}

/// [`vmap`] with a choice of [`Randomness`], giving `f` the level, whose id names the mapped
/// axis for collectives ([`mean_over_axis`]).
///
/// # Errors
/// As [`vmap`].
pub fn vmap_with(
    batch_size: i64,
    randomness: Randomness,
    in_dims: &[Option<i64>],
    inputs: &[Tensor],
    out_dims: &[i64],
    f: impl FnOnce(&VmapLevel, &[Tensor]) -> Result<Vec<Tensor>>,
) -> Result<Vec<Tensor>> {
    if in_dims.len() != inputs.len() {
        return Err(Error::Value(format!("vmap: {} in_dims for {} inputs", in_dims.len(), inputs.len())));
    }
    for (i, (x, dim)) in inputs.iter().zip(in_dims).enumerate() {
        if let Some(dim) = *dim {
            let rank = x.dim() as i64;
            let wrapped = if dim < 0 { dim + rank } else { dim };
            if !(0..rank).contains(&wrapped) {
                return Err(Error::Value(format!(
                    "vmap: in_dim {dim} of input {i} is out of range for its {rank} dimensions"
                )));
            }
            let size = x.size()[wrapped as usize];
            if size != batch_size {
                return Err(Error::Value(format!(
                    "vmap: input {i} has size {size} along its mapped dimension {dim}, but the batch size \
                     is {batch_size}"
                )));
            }
        }
    }
    let level = VmapLevel::push(batch_size, randomness)?;
    let batched = inputs
        .iter()
        .zip(in_dims)
        .map(|(x, dim)| match dim {
            Some(dim) => level.add_batch_dim(x, *dim),
            None => Ok(x.shallow_clone()),
        })
        .collect::<Result<Vec<_>>>()?;
    let outputs = f(&level, &batched)?;
    drop(batched);
    if outputs.len() != out_dims.len() {
        return Err(Error::Value(format!("vmap: {} out_dims for {} outputs", out_dims.len(), outputs.len())));
    }
    outputs.iter().zip(out_dims).map(|(y, dim)| level.remove_batch_dim(y, *dim)).collect()
}
