//! Forward-mode AD on libtorch's dual tensors: the tensor-level machinery under `flax::jvp`
//! and the lifted `nn.jvp` (DESIGN.md §10). A [`DualLevel`] enters a forward-AD level (Python's
//! `torch.autograd.forward_ad.dual_level`) and exits it when dropped, on every exit path;
//! [`DualLevel::make_dual`] attaches a tangent to a primal, and every operator libtorch runs on
//! a dual tensor propagates the tangent (its forward derivative, `J·v`) alongside the value, in
//! one pass. [`jvp`] does the three steps for a function of tensors, as `jax.jvp`.
//!
//! ```
//! use flax::core::forward_ad::jvp;
//! use flax::tch::Tensor;
//!
//! # fn main() -> flax::Result<()> {
//! let x = Tensor::from_slice(&[0.0f64, 1.0]);
//! let v = Tensor::from_slice(&[1.0f64, 2.0]);
//! let (y, dy) = jvp(&[x], &[v], |xs| Ok(vec![xs[0].sin()]))?;
//! // d sin(x) · v = cos(x) · v
//! assert_eq!(Vec::<f64>::try_from(&dy[0])?, [1.0, 2.0 * 1f64.cos()]);
//! assert_eq!(y[0].double_value(&[1]), 1f64.sin());
//! # Ok(())
//! # }
//! ```
//!
//! Limits, libtorch's: one forward-AD level exists at a time in the whole process (no nested
//! `jvp`, and no `jvp` of a `jvp`), so levels are serialized here: a [`DualLevel`] entered on
//! one thread makes another thread's wait, and entering a second one on the same thread is an
//! [`Error::Value`]. Operators without a forward derivative formula, and custom functions
//! ([`custom_function`](super::custom_function)), fail with libtorch's error. Primals must be
//! floating point (or complex) and tangents of the same shape.

use crate::core::errors::{Error, Result};
use crate::core::shim;
use std::cell::Cell;
use std::ffi::c_char;
use std::ffi::c_int;
use std::sync::{Mutex, MutexGuard};
use tch::Tensor;

extern "C" {
    fn flax_enter_dual_level(level: *mut u64, error: *mut c_char, len: usize) -> c_int;
    fn flax_exit_dual_level(level: u64, error: *mut c_char, len: usize) -> c_int;
}

/// Serializes forward-AD levels across threads (libtorch's levels are process-wide).
static LEVELS: Mutex<()> = Mutex::new(());

thread_local! {
    /// Whether this thread is inside a level (entering another would deadlock on `LEVELS`).
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// A forward-AD level, exited when dropped (every tangent recorded at it is then cleared from
/// its tensors; tangents already unpacked stay valid). Not `Send`: it holds the process-wide
/// level lock for its thread.
#[derive(Debug)]
pub struct DualLevel {
    level: u64,
    _lock: MutexGuard<'static, ()>,
}

impl DualLevel {
    /// Enters a forward-AD level, waiting while another thread is inside one.
    ///
    /// # Errors
    /// [`Error::Value`] when this thread is already inside a level (libtorch does not nest
    /// forward AD); libtorch's, when a level was entered outside this module.
    pub fn enter() -> Result<Self> {
        if INSIDE.with(Cell::get) {
            return Err(Error::Value(
                "forward-mode AD does not nest: this thread is already inside a dual level (jvp of a jvp)"
                    .into(),
            ));
        }
        let lock = LEVELS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut level = 0u64;
        // SAFETY: a plain out-value and a buffer for the message.
        shim::call(|error, len| unsafe { flax_enter_dual_level(&mut level, error, len) })?;
        INSIDE.with(|inside| inside.set(true));
        Ok(Self { level, _lock: lock })
    }

    /// The level's index, as aten's `_make_dual`/`_unpack_dual` take it.
    pub fn level(&self) -> i64 {
        self.level as i64
    }

    /// `primal` carrying `tangent` at this level (`forward_ad.make_dual`): a view of `primal`.
    ///
    /// # Errors
    /// libtorch's, for a non-floating primal or a tangent of another shape or dtype.
    pub fn make_dual(&self, primal: &Tensor, tangent: &Tensor) -> Result<Tensor> {
        Ok(Tensor::f_internal_make_dual(primal, tangent, self.level())?)
    }

    /// The primal and the tangent of `t` at this level (`forward_ad.unpack_dual`); a tensor
    /// that carries no tangent (it does not depend on the duals) gets zeros.
    ///
    /// # Errors
    /// libtorch's.
    pub fn unpack_dual(&self, t: &Tensor) -> Result<(Tensor, Tensor)> {
        let (primal, tangent) = Tensor::f_internal_unpack_dual(t, self.level())?;
        let tangent = if tangent.defined() { tangent } else { primal.f_zeros_like()? };
        Ok((primal, tangent))
    }
}

impl Drop for DualLevel {
    fn drop(&mut self) {
        // Exiting the last level created cannot fail.
        // SAFETY: a plain value and a buffer for the message.
        let _ = shim::call(|error, len| unsafe { flax_exit_dual_level(self.level, error, len) });
        INSIDE.with(|inside| inside.set(false));
    }
}

/// Whether this thread is inside a [`DualLevel`]: operators that have no forward-mode
/// derivative (custom autograd nodes) take their plain path there.
pub(crate) fn inside_level() -> bool {
    INSIDE.with(Cell::get)
}

/// `jax.jvp(f, primals, tangents)` over tensor lists: `f`'s outputs at `primals` and their
/// directional derivatives along `tangents` (`J·v`), in one forward pass. An output that does
/// not depend on the primals gets a zero tangent.
///
/// # Errors
/// [`Error::Value`] when the lists' lengths differ or inside another `jvp`; `f`'s own error;
/// libtorch's (mismatched tangent shapes, operators without forward derivatives).
pub fn jvp(
    primals: &[Tensor],
    tangents: &[Tensor],
    f: impl FnOnce(&[Tensor]) -> Result<Vec<Tensor>>,
) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
    if primals.len() != tangents.len() {
        return Err(Error::Value(format!("jvp: {} tangents for {} primals", tangents.len(), primals.len())));
    }
    let level = DualLevel::enter()?;
    let duals =
        primals.iter().zip(tangents).map(|(p, t)| level.make_dual(p, t)).collect::<Result<Vec<_>>>()?;
    let outputs = f(&duals)?;
    outputs
        .iter()
        .map(|y| level.unpack_dual(y))
        .collect::<Result<Vec<_>>>()
        .map(|pairs| pairs.into_iter().unzip())
}
