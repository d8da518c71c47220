//! libtorch's scalar-argument ops, returning libtorch's failures as errors instead of panicking.
//!
//! # Why not tch's `f_*` ops
//!
//! tch 0.26's fallible ops that take a scalar (`f_mul_scalar`, `f_full`, `f_clamp_min`, every
//! generated `f_*` with an `S: Into<tch::Scalar>` argument) panic when libtorch fails inside
//! them. The generated code passes a temporary `tch::Scalar` to the C function; the temporary
//! is dropped when that statement ends, before the op's error is read, and `tch::Scalar`'s
//! `Drop` frees it through tch's panicking error check, which finds the op's error pending.
//! So an allocation that fails, or a dtype or device the op refuses, is a panic
//! (`called Result::unwrap() on an Err value: Torch(…)`) where the signature promises an
//! `Err`.
//!
//! # The mechanism
//!
//! [`ScalarOps`] has the ops this crate uses, with tch's names and argument order, each prefixed
//! `try_` (`x.try_mul_scalar(2.0)?`, `Tensor::try_full(&[2, 3], 1.0, options)?`). Each calls
//! torch-sys's C function itself with a C++ scalar that this module owns: dropping it only
//! frees it (`ats_free` is a plain `delete`, which cannot fail), so the op's error is still
//! there when the op reads it, the way tch reads it, into the same `tch::TchError::Torch`. A
//! failure therefore reaches `?` as tch's `f_*` ops' errors do, and becomes
//! [`Error::Torch`](crate::Error::Torch) (or `TorchIn`, inside a module). The cost per op is
//! tch's: one C++ `Scalar` allocated and freed, one handle for the result; no extra tensor.
//!
//! One macro generates the ops from their C functions' argument lists: an op the crate needs
//! next is one line there. Clippy's `disallowed-methods` (the workspace's `clippy.toml`) refuses
//! tch's scalar-argument `f_*` ops, so new code cannot bring the panic back.

use std::ffi::{c_char, c_int, CStr};
use tch::{Device, Kind, TchError, Tensor};
use torch_sys::c_generated as c;
use torch_sys::{C_scalar, C_tensor, IntList};

/// A scalar argument, as libtorch's `c10::Scalar` holds it (and `tch::Scalar` converts):
/// an integer keeps an integer tensor's dtype, a double promotes it to floating point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    /// `c10::Scalar(int64_t)`.
    Int(i64),
    /// `c10::Scalar(double)`.
    Float(f64),
}

impl From<i64> for Scalar {
    fn from(value: i64) -> Self {
        Scalar::Int(value)
    }
}

impl From<f64> for Scalar {
    fn from(value: f64) -> Self {
        Scalar::Float(value)
    }
}

/// A C++ `Scalar` owned for the duration of one op. Unlike `tch::Scalar`, its `Drop` reads no
/// error: the pending one, if any, is the op's.
struct OwnedScalar(*mut C_scalar);

/// A C++ scalar for one op's argument.
fn scalar(value: impl Into<Scalar>) -> Result<OwnedScalar, TchError> {
    // SAFETY: plain constructors; on failure they return null and record an error.
    let ptr = unsafe {
        match value.into() {
            Scalar::Int(v) => torch_sys::ats_int(v),
            Scalar::Float(v) => torch_sys::ats_float(v),
        }
    };
    take_error()?;
    Ok(OwnedScalar(ptr))
}

impl Drop for OwnedScalar {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `ats_int`/`ats_float` and is freed once; `ats_free` is a
        // `delete`, which records no error.
        unsafe { torch_sys::ats_free(self.0) }
    }
}

/// libtorch's error from the last C call on this thread, taken (as tch's own check does).
fn take_error() -> Result<(), TchError> {
    // SAFETY: null, or a `strdup`ed message that the caller owns and frees.
    let message: *mut c_char = unsafe { torch_sys::get_and_reset_last_err() };
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a NUL-terminated string, read once, then freed with `free` as `strdup` needs.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    unsafe { libc::free(message.cast()) };
    Err(TchError::Torch(text))
}

/// The handle of a borrowed tensor for the duration of one C call.
fn tensor(t: &Tensor) -> *mut C_tensor {
    t.as_ptr().cast_mut()
}

/// libtorch's `c10::ScalarType` number of `kind` (the table of tch's private `Kind::c_int`).
fn kind_code(kind: Kind) -> c_int {
    match kind {
        Kind::Uint8 => 0,
        Kind::Int8 => 1,
        Kind::Int16 => 2,
        Kind::Int => 3,
        Kind::Int64 => 4,
        Kind::Half => 5,
        Kind::Float => 6,
        Kind::Double => 7,
        Kind::ComplexHalf => 8,
        Kind::ComplexFloat => 9,
        Kind::ComplexDouble => 10,
        Kind::Bool => 11,
        Kind::QInt8 => 12,
        Kind::QUInt8 => 13,
        Kind::QInt32 => 14,
        Kind::BFloat16 => 15,
        Kind::Float8e5m2 => 23,
        Kind::Float8e4m3fn => 24,
        Kind::Float8e5m2fnuz => 25,
        Kind::Float8e4m3fnuz => 26,
    }
}

/// torch-sys's device number (`device_of_int` in its `torch_api.cpp`; tch's private
/// `Device::c_int`): CUDA devices by index, the others negative.
fn device_code(device: Device) -> c_int {
    match device {
        Device::Cpu => -1,
        Device::Cuda(index) => index as c_int,
        Device::Mps => -2,
        Device::Vulkan => -3,
    }
}

/// Generates [`ScalarOps`]: each entry is the op's signature and its C function with the C
/// arguments after the output slot. Scalars are created as the arguments are evaluated and
/// freed when the call's statement ends, which does not touch the op's pending error.
macro_rules! scalar_ops {
    ($(
        $(#[$doc:meta])*
        fn $name:ident($($param:tt)*) => $c_fn:ident($($arg:expr),* $(,)?);
    )*) => {
        /// libtorch ops with scalar arguments that return libtorch's failures as errors (see
        /// the [module docs](self)): tch's `f_*` ops of the same names, prefixed `try_`.
        pub trait ScalarOps {
            $(
                $(#[$doc])*
                fn $name($($param)*) -> Result<Tensor, TchError>;
            )*
        }

        impl ScalarOps for Tensor {
            $(
                fn $name($($param)*) -> Result<Tensor, TchError> {
                    let mut out: *mut C_tensor = std::ptr::null_mut();
                    // SAFETY: the tensor handles are borrowed for the call, the scalars live
                    // until the statement ends, and the C function writes one new handle.
                    unsafe { c::$c_fn(&mut out, $($arg),*) };
                    take_error()?;
                    // SAFETY: libtorch succeeded, so `out` is a new handle that we own.
                    Ok(unsafe { Tensor::from_ptr(out) })
                }
            )*
        }
    };
}

scalar_ops! {
    /// `self + other`.
    fn try_add_scalar(&self, other: impl Into<Scalar>) => atg_add_scalar(tensor(self), scalar(other)?.0);
    /// `self += other`.
    fn try_add_scalar_(&mut self, other: impl Into<Scalar>)
        => atg_add_scalar_(tensor(self), scalar(other)?.0);
    /// `self - other`.
    fn try_sub_scalar(&self, other: impl Into<Scalar>) => atg_sub_scalar(tensor(self), scalar(other)?.0);
    /// `other - self`.
    fn try_rsub_scalar(&self, other: impl Into<Scalar>) => atg_rsub_scalar(tensor(self), scalar(other)?.0);
    /// `self * other`.
    fn try_mul_scalar(&self, other: impl Into<Scalar>) => atg_mul_scalar(tensor(self), scalar(other)?.0);
    /// `self *= other`.
    fn try_mul_scalar_(&mut self, other: impl Into<Scalar>)
        => atg_mul_scalar_(tensor(self), scalar(other)?.0);
    /// `self / other`.
    fn try_div_scalar(&self, other: impl Into<Scalar>) => atg_div_scalar(tensor(self), scalar(other)?.0);
    /// `self /= other`.
    fn try_div_scalar_(&mut self, other: impl Into<Scalar>)
        => atg_div_scalar_(tensor(self), scalar(other)?.0);
    /// `self / other` written into `out`.
    fn try_div_scalar_out(&self, out: &Tensor, other: impl Into<Scalar>)
        => atg_div_scalar_out(tensor(out), tensor(self), scalar(other)?.0);
    /// Python's `self % other` (the remainder has the divisor's sign).
    fn try_remainder(&self, other: impl Into<Scalar>) => atg_remainder(tensor(self), scalar(other)?.0);
    /// `self ** exponent`.
    fn try_pow_tensor_scalar(&self, exponent: impl Into<Scalar>)
        => atg_pow_tensor_scalar(tensor(self), scalar(exponent)?.0);
    /// `max(self, min)`.
    fn try_clamp_min(&self, min: impl Into<Scalar>) => atg_clamp_min(tensor(self), scalar(min)?.0);
    /// `min(self, max)`.
    fn try_clamp_max(&self, max: impl Into<Scalar>) => atg_clamp_max(tensor(self), scalar(max)?.0);
    /// `self` clamped to `[min, max]` in place.
    fn try_clamp_(&mut self, min: impl Into<Scalar>, max: impl Into<Scalar>)
        => atg_clamp_(tensor(self), scalar(min)?.0, scalar(max)?.0);
    /// `self < other`.
    fn try_lt(&self, other: impl Into<Scalar>) => atg_lt(tensor(self), scalar(other)?.0);
    /// `self <= other`.
    fn try_le(&self, other: impl Into<Scalar>) => atg_le(tensor(self), scalar(other)?.0);
    /// `self > other`.
    fn try_gt(&self, other: impl Into<Scalar>) => atg_gt(tensor(self), scalar(other)?.0);
    /// `self >= other`.
    fn try_ge(&self, other: impl Into<Scalar>) => atg_ge(tensor(self), scalar(other)?.0);
    /// `self == other`.
    fn try_eq(&self, other: impl Into<Scalar>) => atg_eq(tensor(self), scalar(other)?.0);
    /// `self != other`.
    fn try_ne(&self, other: impl Into<Scalar>) => atg_ne(tensor(self), scalar(other)?.0);
    /// `self + weight · (end - self)`.
    fn try_lerp(&self, end: &Tensor, weight: impl Into<Scalar>)
        => atg_lerp(tensor(self), tensor(end), scalar(weight)?.0);
    /// `self += weight · (end - self)`.
    fn try_lerp_(&mut self, end: &Tensor, weight: impl Into<Scalar>)
        => atg_lerp_(tensor(self), tensor(end), scalar(weight)?.0);
    /// Every element of `self` set to `value`.
    fn try_fill_(&mut self, value: impl Into<Scalar>) => atg_fill_(tensor(self), scalar(value)?.0);
    /// `self` with `value` where the boolean `mask` is true.
    fn try_masked_fill(&self, mask: &Tensor, value: impl Into<Scalar>)
        => atg_masked_fill(tensor(self), tensor(mask), scalar(value)?.0);
    /// `where(condition, self, other)`.
    fn try_where_scalarother(&self, condition: &Tensor, other: impl Into<Scalar>)
        => atg_where_scalarother(tensor(condition), tensor(self), scalar(other)?.0);
    /// `where(condition, self_scalar, other)`.
    fn try_where_scalarself(condition: &Tensor, self_scalar: impl Into<Scalar>, other: &Tensor)
        => atg_where_scalarself(tensor(condition), scalar(self_scalar)?.0, tensor(other));
    /// A tensor of shape `size` filled with `fill_value`.
    fn try_full(size: impl IntList, fill_value: impl Into<Scalar>, options: (Kind, Device))
        => atg_full(
            size.as_ptr(),
            size.len_i32(),
            scalar(fill_value)?.0,
            kind_code(options.0),
            device_code(options.1),
        );
    /// A 0-dimensional tensor holding `s`.
    fn try_scalar_tensor(s: impl Into<Scalar>, options: (Kind, Device))
        => atg_scalar_tensor(scalar(s)?.0, kind_code(options.0), device_code(options.1));
    /// `0, 1, …, end - 1`.
    fn try_arange(end: impl Into<Scalar>, options: (Kind, Device))
        => atg_arange(scalar(end)?.0, kind_code(options.0), device_code(options.1));
    /// `start, start + 1, …` below `end`.
    fn try_arange_start(start: impl Into<Scalar>, end: impl Into<Scalar>, options: (Kind, Device))
        => atg_arange_start(scalar(start)?.0, scalar(end)?.0, kind_code(options.0), device_code(options.1));
    /// `start, start + step, …` up to `end` (excluded).
    fn try_arange_start_step(
        start: impl Into<Scalar>,
        end: impl Into<Scalar>,
        step: impl Into<Scalar>,
        options: (Kind, Device),
    ) => atg_arange_start_step(
        scalar(start)?.0,
        scalar(end)?.0,
        scalar(step)?.0,
        kind_code(options.0),
        device_code(options.1),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: Device = Device::Cpu;

    #[test]
    fn ops_compute_what_tchs_compute() {
        let x = Tensor::from_slice(&[-2.0f32, 0.5, 3.0]);
        let ints = Tensor::from_slice(&[-3i64, 4, 7]);
        assert!(x.try_mul_scalar(2.0).unwrap().equal(&(&x * 2.0)));
        // An integer scalar keeps an integer tensor's dtype, a double promotes it.
        assert_eq!(ints.try_mul_scalar(2).unwrap().kind(), Kind::Int64);
        assert_eq!(ints.try_mul_scalar(2.0).unwrap().kind(), Kind::Float);
        assert!(ints.try_remainder(3).unwrap().equal(&Tensor::from_slice(&[0i64, 1, 1])));
        assert!(x.try_clamp_min(0.0).unwrap().equal(&Tensor::from_slice(&[0.0f32, 0.5, 3.0])));
        assert!(x
            .try_where_scalarother(&x.try_gt(0.0).unwrap(), 9.0)
            .unwrap()
            .equal(&Tensor::from_slice(&[9.0f32, 0.5, 3.0])));
        let mut y = x.copy();
        let returned = y.try_add_scalar_(1.0).unwrap();
        assert!(y.equal(&(&x + 1.0)) && returned.equal(&y), "in place, and the result is the tensor");
        let steps = Tensor::try_arange_start_step(5, -1, -2, (Kind::Int64, CPU)).unwrap();
        assert!(steps.equal(&Tensor::from_slice(&[5i64, 3, 1])));
    }

    #[test]
    fn factories_make_every_dtype_they_are_asked_for() {
        // `kind_code` against libtorch: each dtype comes back as asked, or the op refuses it.
        let kinds = [
            Kind::Uint8,
            Kind::Int8,
            Kind::Int16,
            Kind::Int,
            Kind::Int64,
            Kind::Half,
            Kind::Float,
            Kind::Double,
            Kind::ComplexHalf,
            Kind::ComplexFloat,
            Kind::ComplexDouble,
            Kind::Bool,
            Kind::QInt8,
            Kind::QUInt8,
            Kind::QInt32,
            Kind::BFloat16,
            Kind::Float8e5m2,
            Kind::Float8e4m3fn,
            Kind::Float8e5m2fnuz,
            Kind::Float8e4m3fnuz,
        ];
        let mut refused = Vec::new();
        for kind in kinds {
            match Tensor::try_full([2], 1, (kind, CPU)) {
                Ok(t) => assert_eq!((t.kind(), t.size()), (kind, vec![2])),
                Err(_) => refused.push(kind),
            }
            assert_eq!(
                Tensor::try_scalar_tensor(0, (kind, CPU)).map(|t| t.kind()).ok(),
                (!refused.contains(&kind)).then_some(kind)
            );
        }
        // Quantized tensors are made by quantizing, not filled.
        assert_eq!(refused, [Kind::QInt8, Kind::QUInt8, Kind::QInt32]);
    }

    #[test]
    fn libtorch_failures_are_errors_and_leave_no_error_behind() {
        let half = Tensor::ones([3], (Kind::Half, CPU));
        let failures = [
            // 2^60 bytes: beyond any address space, whatever the overcommit policy.
            ("allocation", Tensor::try_full([1i64 << 58], 0.0, (Kind::Float, CPU))),
            ("allocation", Tensor::try_arange(1i64 << 57, (Kind::Int64, CPU))),
            ("dtype", Tensor::ones([2], (Kind::ComplexFloat, CPU)).try_clamp_min(0.0)),
            ("value", half.shallow_clone().try_clamp_(-1e6, 1e6)),
            ("value", Tensor::try_scalar_tensor(1i64 << 40, (Kind::Int, CPU))),
            ("arguments", Tensor::try_arange_start_step(0, 5, -1, (Kind::Int64, CPU))),
        ];
        for (what, result) in failures {
            let error = result.expect_err(what);
            assert!(matches!(error, TchError::Torch(_)), "{what}: {error:?}");
        }
        // Each error was taken: the next op on the thread succeeds.
        assert!(half.try_mul_scalar(2.0).is_ok());
    }

    /// The reason for this module: when tch's ops stop panicking here (a tch upgrade), this
    /// fails, and `ScalarOps` can give way to tch's `f_*` ops.
    #[test]
    #[allow(clippy::disallowed_methods)]
    fn tchs_scalar_ops_panic_where_scalar_ops_return_errors() {
        let complex = Tensor::ones([2], (Kind::ComplexFloat, CPU));
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let outcome = std::panic::catch_unwind(|| complex.f_clamp_min(0.0).is_err());
        std::panic::set_hook(default_hook);
        assert!(outcome.is_err(), "tch returned {outcome:?} instead of panicking");
        assert!(complex.try_clamp_min(0.0).is_err());
    }
}
