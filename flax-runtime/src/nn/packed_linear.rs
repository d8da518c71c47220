//! Inference matrix products on weights packed once for oneDNN (`csrc/packed_linear.cpp`).
//!
//! `Dense` and `DenseGeneral` run libtorch's `addmm`, MKL's `sgemm`, which re-packs the
//! weight matrix at every call and, on AMD CPUs, takes MKL's generic code path. Where no
//! gradient is needed (an `apply` under `tch::no_grad`, or on params that do not require
//! gradients, as in serving), a large enough product runs instead as oneDNN's inner product
//! (`mkldnn::_linear_pointwise`, inside the same libtorch) on the kernel packed once into
//! oneDNN's blocked layout and cached per param tensor. The results are the same float32
//! products summed in another order (agreeing with `addmm` to float rounding, as two BLAS
//! libraries do).
//!
//! The cache follows the params, not their values: an entry is used only for the very tensor
//! it was packed from (libtorch's `TensorImpl`, as `loop_invariant` compares them) at the same
//! in-place version, storage, shape and strides, so new params (an optimizer step returning new
//! tensors) and params updated in place (fused optimizers, `copy_`) are packed afresh. Entries
//! do not keep params alive; those of dead params are dropped when the next kernel is packed.
//! Each param has at most one packed copy, made for the last number of rows seen (another
//! batch size repacks), so a server seeing many batch sizes holds one copy per kernel.
//! Writing into a param's memory behind libtorch's back (through a raw data pointer) is not
//! seen: call [`clear_packed_weights`] after doing so. Setting the environment variable
//! `FLAX_PACKED_LINEAR=0` before the first product turns this path off (every product then
//! runs `addmm`), as does disabling oneDNN in libtorch; `FLAX_PACKED_LINEAR=1` turns it on
//! where the CPU would not take it (for measuring it there).
//!
//! When: on a CPU with AVX-512, on the CPU device, float32, at least 8 rows, and
//! `rows · in · out > 2²³`. Measured on an AMD EPYC Zen 4 (AVX-512; one thread,
//! `scripts/bench/matmul_kernels.cpp`'s shapes and others): oneDNN on a packed weight was
//! 0.94-1.01x MKL's speed at `rows · in · out = 2²³` (64x256x512, 128x256x256), 1.07-1.24x above
//! it (64x256x768 to 1024x1024x256), 1.5-1.8x with large weights and few rows (32x3136x256,
//! 8x1024x4096), and slower below (0.48x on one row of 256x1024, 0.84x on 64x256x256: its
//! per-call set-up). On an AMD EPYC Zen 3 (AVX2 only, where oneDNN runs its AVX2 kernels and
//! MKL its Zen-tuned ones), the same comparison gave 0.80-0.89x on the batch-1 transformer's
//! shapes (64x256x256 to 64x1024x256), 0.90-0.99x on 1024x256x1024, 32x3136x256 and
//! 32x512x1024, and a gain only at 8x1024x4096 (1.39x): there MKL's `addmm` is kept.

use crate::core::errors::Result;
use crate::core::shim::{self, Handle};
use std::ffi::{c_char, c_int};
use std::sync::OnceLock;
use tch::Tensor;

extern "C" {
    fn flax_packed_linear(
        x: Handle,
        key: Handle,
        weight: Handle,
        bias: Handle,
        out: *mut Handle,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
    fn flax_packed_linear_clear();
}

/// The fewest rows the packed path runs for.
const MIN_ROWS: i64 = 8;
/// `rows · in · out` above which the packed path runs.
const MIN_PRODUCT: i64 = 1 << 23;

#[cfg(test)]
thread_local! {
    /// The tests' choice of path on this thread, whatever the CPU (they check the packed
    /// path's cache on machines that would not take it).
    static FORCED: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Whether the packed path may run: `FLAX_PACKED_LINEAR` (`0` off, `1` on) or else whether
/// the CPU has AVX-512 (see the module doc), read once.
fn enabled() -> bool {
    #[cfg(test)]
    if let Some(on) = FORCED.with(std::cell::Cell::get) {
        return on;
    }
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| match std::env::var("FLAX_PACKED_LINEAR").as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => has_avx512(),
    })
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// oneDNN's packed path was measured only against MKL on x86-64.
#[cfg(not(target_arch = "x86_64"))]
fn has_avx512() -> bool {
    false
}

/// `x @ weight + bias` for a `(rows, in)` matrix `x` and an `(in, out)` `weight`, on oneDNN
/// with `weight` packed once for the param `key` (the param `weight` was read from: itself, or
/// the tensor it is a reshaped view of); `None` where this path does not apply (too small a
/// product, another device or dtype, operands autograd tracks or a transform wraps, a libtorch
/// without oneDNN), for the caller's `addmm`.
pub(crate) fn packed_linear(
    x: &Tensor,
    key: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    let (rows, inner, out) = match (x.size().as_slice(), weight.size().as_slice()) {
        (&[rows, inner], &[_, out]) => (rows, inner, out),
        _ => return Ok(None),
    };
    if !enabled() || rows < MIN_ROWS || rows.saturating_mul(inner).saturating_mul(out) <= MIN_PRODUCT {
        return Ok(None);
    }
    let mut result: Handle = std::ptr::null_mut();
    shim::call(|error, len| {
        // SAFETY: the handles are alive for the call; the shim writes a new handle or null.
        unsafe {
            flax_packed_linear(
                shim::handle(x),
                shim::handle(key),
                shim::handle(weight),
                bias.map_or(std::ptr::null_mut(), shim::handle),
                &mut result,
                error,
                len,
            )
        }
    })?;
    // SAFETY: a non-null `result` is a handle the shim allocated for us.
    Ok((!result.is_null()).then(|| unsafe { shim::take(result) }))
}

/// Drops every weight the inference path packed, releasing their memory now rather than when
/// the params die; needed only after writing into a param's memory without libtorch's
/// operators (which the cache, keyed on libtorch's version counters, cannot see).
pub fn clear_packed_weights() {
    // SAFETY: takes the shim's lock and empties its map; no arguments.
    unsafe { flax_packed_linear_clear() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frozen_dict::Value;
    use crate::core::scalar_ops::ScalarOps;
    use crate::nn::{Dense, DenseGeneral};
    use crate::prelude::*;
    use tch::{Device, Kind};

    extern "C" {
        fn flax_packed_linear_count(key: Handle) -> usize;
    }

    /// Turns the packed path on or off for this test's thread, whatever the CPU.
    fn force(on: bool) {
        FORCED.with(|f| f.set(Some(on)));
    }

    /// How many packed weights the cache holds for the param `key`.
    fn cached(key: &Tensor) -> usize {
        // SAFETY: the handle is alive for the call; the shim reads its map under its lock.
        unsafe { flax_packed_linear_count(shim::handle(key)) }
    }

    fn kernel_of(variables: &Variables) -> Tensor {
        match variables.get_path(&["params", "kernel"]) {
            Some(Value::Tensor(t)) => t.shallow_clone(),
            _ => panic!("no kernel"),
        }
    }

    /// `x @ kernel + bias` by `addmm` (MKL), the path the packed one replaces.
    fn reference(x: &Tensor, variables: &Variables) -> Tensor {
        let bias = match variables.get_path(&["params", "bias"]) {
            Some(Value::Tensor(t)) => t.shallow_clone(),
            _ => panic!("no bias"),
        };
        let k = kernel_of(variables);
        let rows = x.numel() as i64 / k.size()[0];
        bias.reshape([-1]).addmm(&x.reshape([rows, k.size()[0]]), &k.reshape([k.size()[0], -1]))
    }

    /// Equal up to the rounding of a float32 sum taken in another order: within 1e-5 of the
    /// largest output (elementwise relative tolerances fail where a sum of 256 terms cancels).
    fn close(a: &Tensor, b: &Tensor) -> bool {
        let (a, b) = (a.reshape([-1]), b.reshape([-1]));
        let scale = b.abs().max().double_value(&[]).max(1.0);
        (a - &b).abs().max().double_value(&[]) <= 1e-5 * scale
    }

    #[test]
    fn a_large_inference_product_runs_packed_and_follows_in_place_and_new_params() -> Result<()> {
        force(true);
        let x = Tensor::randn([2, 64, 256], (Kind::Float, Device::Cpu));
        let dense = Dense::new(1024);
        let variables = dense.init(PRNGKey::new(0), &x)?;
        let y = dense.apply(&variables, &x)?;
        assert!(close(&y, &reference(&x, &variables)));
        let kernel = kernel_of(&variables);
        assert_eq!(cached(&kernel), 1, "the kernel was packed");
        let again = dense.apply(&variables, &x)?;
        assert!(close(&again, &y));
        assert_eq!(cached(&kernel), 1, "and reused");

        // A param updated in place (as the fused optimizers do) is packed again.
        let _ = kernel.shallow_clone().try_mul_scalar_(-0.5)?;
        let updated = tch::no_grad(|| dense.apply(&variables, &x))?;
        assert!(close(&updated, &reference(&x, &variables)));
        assert!(!close(&updated, &y), "the update is seen");
        assert_eq!(cached(&kernel), 1, "its entry was replaced");

        // New params (an optimizer returning new tensors) are packed for themselves.
        let fresh = dense.init(PRNGKey::new(1), &x)?;
        let y_fresh = dense.apply(&fresh, &x)?;
        assert!(close(&y_fresh, &reference(&x, &fresh)));
        assert_eq!(cached(&kernel_of(&fresh)), 1);

        // Another number of rows repacks, replacing the entry: one packed copy per param.
        let x8 = x.narrow(1, 0, 32).contiguous();
        assert!(close(&dense.apply(&variables, &x8)?, &reference(&x8, &variables)));
        assert_eq!(cached(&kernel), 1);
        assert!(close(&dense.apply(&variables, &x)?, &updated));
        assert_eq!(cached(&kernel), 1);
        clear_packed_weights();
        assert_eq!(cached(&kernel), 0);
        Ok(())
    }

    #[test]
    fn a_dense_general_kernel_is_keyed_by_its_param_not_its_reshaped_view() -> Result<()> {
        force(true);
        let x = Tensor::randn([64, 256], (Kind::Float, Device::Cpu));
        let dense = DenseGeneral::new([4, 192]);
        let variables = dense.init(PRNGKey::new(0), &x)?;
        let y = dense.apply(&variables, &x)?;
        assert_eq!(y.size(), [64, 4, 192]);
        assert!(close(&y, &reference(&x, &variables)));
        let _ = kernel_of(&variables).try_add_scalar_(1.0)?;
        assert!(close(&dense.apply(&variables, &x)?, &reference(&x, &variables)));
        Ok(())
    }

    #[test]
    fn products_autograd_tracks_or_small_ones_take_addmm() -> Result<()> {
        force(true);
        let x = Tensor::randn([64, 256], (Kind::Float, Device::Cpu));
        let k = Tensor::randn([256, 1024], (Kind::Float, Device::Cpu));
        assert!(packed_linear(&x, &k, &k, None)?.is_some());
        let tracked = k.detach().set_requires_grad(true);
        assert!(packed_linear(&x, &tracked, &tracked, None)?.is_none());
        assert!(tch::no_grad(|| packed_linear(&x, &tracked, &tracked, None))?.is_some());
        let small = Tensor::randn([256, 256], (Kind::Float, Device::Cpu));
        assert!(packed_linear(&x, &small, &small, None)?.is_none());
        let double = k.to_kind(Kind::Double);
        assert!(packed_linear(&x.to_kind(Kind::Double), &double, &double, None)?.is_none());
        // Where the path is off (a CPU without AVX-512, or `FLAX_PACKED_LINEAR=0`).
        force(false);
        assert!(packed_linear(&x, &k, &k, None)?.is_none());
        Ok(())
    }
}
