//! The Rust side of the C++ shim's calling convention (`csrc/shim.h`), shared by
//! [`batching`](super::batching), [`custom_function`](super::custom_function) and
//! [`forward_ad`](super::forward_ad): tensors cross as tch's handles (pointers to libtorch's
//! `at::Tensor`), and a shim function returns nonzero after writing a C++ exception's message
//! into a buffer, which becomes [`Error::Torch`](crate::Error::Torch) here.

use crate::core::errors::Result;
use std::ffi::{c_char, c_int, c_void, CStr};
use tch::Tensor;

/// A tch tensor handle as the shim takes it (a pointer to libtorch's `at::Tensor`).
pub(crate) type Handle = *mut c_void;

/// The length of the buffer a shim function writes its error message into.
const ERROR_LEN: usize = 2048;

/// The handle of a borrowed tensor, for the duration of one shim call.
pub(crate) fn handle(t: &Tensor) -> Handle {
    t.as_ptr().cast_mut().cast()
}

/// The handles of borrowed tensors, for the duration of one shim call.
pub(crate) fn handles(tensors: &[Tensor]) -> Vec<Handle> {
    tensors.iter().map(handle).collect()
}

/// Takes ownership of a handle the shim allocated (`new at::Tensor`).
///
/// # Safety
/// `ptr` was returned by the shim for the caller to own, and is not used again.
pub(crate) unsafe fn take(ptr: Handle) -> Tensor {
    // SAFETY: as the caller promises; tch frees it with `delete`, as the shim allocated it.
    unsafe { Tensor::from_ptr(ptr.cast()) }
}

/// Gives ownership of a tensor's handle to the shim, which deletes it.
pub(crate) fn give(t: Tensor) -> Handle {
    let mut t = std::mem::ManuallyDrop::new(t);
    t.as_mut_ptr().cast()
}

/// Runs a shim function with a buffer for its error message.
pub(crate) fn call(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<()> {
    let mut error = vec![0 as c_char; ERROR_LEN];
    if f(error.as_mut_ptr(), error.len()) == 0 {
        return Ok(());
    }
    Err(tch::TchError::Torch(message(&error)).into())
}

/// A shim function's NUL-terminated message.
fn message(buffer: &[c_char]) -> String {
    // SAFETY: the shim NUL-terminates what it writes, and the buffer was zeroed.
    unsafe { CStr::from_ptr(buffer.as_ptr()) }.to_string_lossy().into_owned()
}

/// Runs a shim function that writes one new tensor handle, and takes ownership of it.
pub(crate) fn call_tensor(f: impl FnOnce(*mut Handle, *mut c_char, usize) -> c_int) -> Result<Tensor> {
    let mut out: Handle = std::ptr::null_mut();
    call(|error, len| f(&mut out, error, len))?;
    if out.is_null() {
        return Err(tch::TchError::Torch("the shim returned no tensor".to_owned()).into());
    }
    // SAFETY: the shim allocated `out` for us and forgets it.
    Ok(unsafe { take(out) })
}
