//! Flax's `precision` attribute (JAX's `lax.Precision`) on libtorch: the float32 precision of
//! the matrix products and convolutions a layer runs.
//!
//! In JAX the three precisions differ only on accelerators; on CPU all compute in float32. The
//! matching knob in libtorch is the float32 precision of its CUDA kernels (PyTorch's
//! `torch.backends.cuda.matmul.fp32_precision` and `torch.backends.cudnn.conv.fp32_precision`):
//! `Highest` runs them in full float32 (`"ieee"`), `High` and `Default` in TensorFloat-32
//! (`"tf32"`, on Ampere and later GPUs; JAX's `DEFAULT` is TF32 on those GPUs too, and
//! libtorch's CUDA kernels have no cheaper float32 mode). Only the CUDA backend is set, so on
//! CPU a precision changes nothing, as in JAX. Other dtypes than float32 are unaffected.
//!
//! The setting is libtorch's, process-wide: a layer with a `precision` sets it for its products
//! and restores the previous one after ([`with_precision`]). Layers with different precisions
//! running at the same time on several threads see each other's setting; a layer without one
//! (`None`, Flax's default) runs under whatever the process has set. Setting the same flags
//! through PyTorch's legacy `set_float32_matmul_precision` as well is what libtorch refuses
//! (it reports a mix of its legacy and new APIs).

use crate::core::errors::{Error, Result};
use crate::core::repr::FlaxRepr;
use crate::core::shim::call;
use std::ffi::{c_char, c_int, CStr, CString};

extern "C" {
    fn flax_cuda_fp32_precision(
        op: *const c_char,
        out: *mut c_char,
        out_len: usize,
        error: *mut c_char,
        len: usize,
    ) -> c_int;
    fn flax_set_cuda_fp32_precision(
        op: *const c_char,
        precision: *const c_char,
        error: *mut c_char,
        len: usize,
    ) -> c_int;
}

/// The CUDA operations a precision applies to, as libtorch names them.
const OPS: [&CStr; 2] = [c"matmul", c"conv"];

/// The precision of a layer's float32 products (JAX's `lax.Precision`; Flax's `precision`
/// attribute, `None` by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    /// The fastest mode (`lax.Precision.DEFAULT`): TensorFloat-32 on CUDA.
    Default,
    /// `lax.Precision.HIGH`: TensorFloat-32 on CUDA.
    High,
    /// `lax.Precision.HIGHEST`: full float32 everywhere.
    Highest,
}

impl Precision {
    /// libtorch's float32 precision of CUDA products for this precision: `"tf32"` or `"ieee"`.
    pub fn cuda_fp32_precision(self) -> &'static str {
        match self {
            Precision::Default | Precision::High => "tf32",
            Precision::Highest => "ieee",
        }
    }
}

impl FlaxRepr for Precision {
    fn flax_repr(&self) -> String {
        let name = match self {
            Precision::Default => "DEFAULT",
            Precision::High => "HIGH",
            Precision::Highest => "HIGHEST",
        };
        format!("Precision.{name}")
    }
}

/// libtorch's current float32 precision of CUDA matrix products and convolutions, `[matmul,
/// conv]`, as libtorch names them (`"none"`: its default; `"ieee"`, `"tf32"`).
pub fn cuda_fp32_precision() -> Result<[String; 2]> {
    let read = |op: &CStr| -> Result<String> {
        let mut out = [0 as c_char; 32];
        // SAFETY: `op` is NUL-terminated and `out` is a zeroed buffer of the length given.
        call(|error, len| unsafe {
            flax_cuda_fp32_precision(op.as_ptr(), out.as_mut_ptr(), out.len(), error, len)
        })?;
        // SAFETY: the shim NUL-terminates what it writes into the zeroed buffer.
        Ok(unsafe { CStr::from_ptr(out.as_ptr()) }.to_string_lossy().into_owned())
    };
    Ok([read(OPS[0])?, read(OPS[1])?])
}

/// Sets libtorch's float32 precision of CUDA `[matmul, conv]`.
fn set_cuda_fp32_precision(precisions: [&str; 2]) -> Result<()> {
    for (op, precision) in OPS.iter().zip(precisions) {
        let precision = CString::new(precision).map_err(|e| Error::Value(e.to_string()))?;
        // SAFETY: both strings are NUL-terminated and outlive the call.
        call(|error, len| unsafe {
            flax_set_cuda_fp32_precision(op.as_ptr(), precision.as_ptr(), error, len)
        })?;
    }
    Ok(())
}

/// Runs `f` with CUDA's float32 matrix products and convolutions at `precision`, then restores
/// the previous setting (also when `f` fails); with `None` (Flax's default) it just runs `f`.
pub fn with_precision<T>(precision: Option<Precision>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let Some(precision) = precision else { return f() };
    let previous = cuda_fp32_precision()?;
    let wanted = precision.cuda_fp32_precision();
    if previous.iter().all(|p| p == wanted) {
        return f();
    }
    set_cuda_fp32_precision([wanted; 2])?;
    let out = f();
    set_cuda_fp32_precision([previous[0].as_str(), previous[1].as_str()])?;
    out
}
