//! Which tensor a handle is, whether it is still alive and whether anything else shares its
//! data, as tch does not expose them (`csrc/tensor_identity.cpp`, `csrc/weak_storage.cpp`):
//! what caches of values derived from params need to reuse a value only while its sources are
//! the very same, unmodified tensors (`nn/loop_invariant.rs` within a sequence,
//! `nn/fused_qkv.rs` across calls), and what the optimizers need to update in place only the
//! tensors nothing else sees ([`unshare`]).

use crate::core::errors::Result;
use crate::core::shim;
use std::ffi::c_void;
use std::ptr::NonNull;
use tch::{Kind, Tensor};

extern "C" {
    fn flax_tensor_impl(t: shim::Handle) -> *const c_void;
    fn flax_tensor_version(t: shim::Handle) -> i64;
    fn flax_tensor_shared(t: shim::Handle) -> i32;
    fn flax_storage_weak_new(t: shim::Handle) -> *mut c_void;
    fn flax_storage_weak_alive(weak: *const c_void) -> i32;
    fn flax_storage_weak_free(weak: *mut c_void);
}

/// The address of the tensor's `TensorImpl`: equal for two handles exactly when they are the
/// same tensor (shallow clones included), and stable while either is alive.
pub(crate) fn identity(t: &Tensor) -> *const c_void {
    // SAFETY: reads the handle's `TensorImpl` pointer; the handle is alive for the call.
    unsafe { flax_tensor_impl(shim::handle(t)) }
}

/// The tensor's in-place version counter (bumped by every in-place operation on it or a view).
pub(crate) fn version(t: &Tensor) -> i64 {
    // SAFETY: reads the handle's version counter; the handle is alive for the call.
    unsafe { flax_tensor_version(shim::handle(t)) }
}

/// Whether writing `t` in place could change what something else sees: another handle on the
/// same tensor (a shallow clone, such as a cloned `FrozenDict`'s leaf), a view of its storage,
/// or a tensor autograd keeps; weak references do not count.
pub(crate) fn shared(t: &Tensor) -> bool {
    // SAFETY: reads reference counts; the handle is alive for the call.
    unsafe { flax_tensor_shared(shim::handle(t)) != 0 }
}

/// Makes `t` the only handle on its data: where anything else shares it ([`shared`]), `t`
/// becomes a copy (same layout, no autograd history). Flax's arrays are immutable, so a copy of
/// a params tree (`params.clone()` here) keeps its values whatever happens to the original;
/// the optimizers, which update in place, call this on what they are about to write, so a
/// shared leaf is copied once and the usual training loop, where nothing else holds the
/// params, copies nothing.
///
/// # Errors
/// libtorch's, when the copy cannot be allocated.
pub(crate) fn unshare(t: &mut Tensor) -> Result<()> {
    if shared(t) {
        let _no_grad = tch::no_grad_guard();
        *t = owned(t)?;
    }
    Ok(())
}

/// A copy of `t` (same layout) in storage of its own: what nothing else shares, and what lets
/// the tensor `t` views be freed.
pub(crate) fn owned(t: &Tensor) -> Result<Tensor> {
    let mut copy = t.f_empty_like()?;
    copy.f_copy_(t)?;
    Ok(copy)
}

/// What a tensor was when something was derived from it: its memory, layout, dtype and
/// in-place version. Two equal snapshots of a live tensor mean the very same data, unmodified
/// in between (`nn/fused_qkv.rs`'s cache, `distributed/prefetch.rs`'s gathered inputs).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    data: usize,
    size: Vec<i64>,
    stride: Vec<i64>,
    kind: Kind,
    version: i64,
}

impl Snapshot {
    pub(crate) fn of(t: &Tensor) -> Self {
        Snapshot {
            data: t.data_ptr() as usize,
            size: t.size(),
            stride: t.stride(),
            kind: t.kind(),
            version: version(t),
        }
    }
}

/// A weak reference to a tensor's storage, released on drop: it keeps no memory alive.
pub(crate) struct WeakStorage(NonNull<c_void>);

// SAFETY: a `c10::weak_intrusive_ptr`, whose reference counts are atomic; nothing else is shared.
unsafe impl Send for WeakStorage {}

impl WeakStorage {
    /// A weak reference to the storage of `t`; `None` for a tensor without storage (the
    /// wrappers of functorch's transforms, for example).
    pub(crate) fn new(t: &Tensor) -> Option<Self> {
        // SAFETY: the handle is alive for the call; the shim returns an owned pointer or null.
        NonNull::new(unsafe { flax_storage_weak_new(shim::handle(t)) }).map(Self)
    }

    /// Whether some tensor still refers to the storage.
    pub(crate) fn alive(&self) -> bool {
        // SAFETY: a pointer from `flax_storage_weak_new`, not yet freed.
        unsafe { flax_storage_weak_alive(self.0.as_ptr()) != 0 }
    }
}

impl Drop for WeakStorage {
    fn drop(&mut self) {
        // SAFETY: a pointer from `flax_storage_weak_new`, freed once, here.
        unsafe { flax_storage_weak_free(self.0.as_ptr()) }
    }
}
