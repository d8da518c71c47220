//! `cond` (Flax's `nn.cond`): one of two branches runs on the module's variables; both
//! branches' variables exist after `init` (see [`switch`](mod@super::switch) for the rules).
//!
//! ```
//! use flax::prelude::*;
//!
//! /// The spec's `CondExample`: counts which branch ran in the `state` collection.
//! #[module]
//! pub struct CondExample {}
//!
//! #[module]
//! impl CondExample {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor, pred: bool) -> Result<Tensor> {
//!         let zero = |cx: &mut Scope| Ok(Tensor::zeros([], (Kind::Int, cx.device())));
//!         cx.variable("state", "true_count", zero)?;
//!         cx.variable("state", "false_count", zero)?;
//!         let count = |cx: &mut Scope, name: &'static str| -> Result<()> {
//!             let v = cx.variable("state", name, zero)?;
//!             let n = v.value(cx)?;
//!             v.set_value(cx, n + 1)
//!         };
//!         nn::cond(
//!             pred,
//!             |cx, x: Tensor| {
//!                 count(cx, "true_count")?;
//!                 nn::Dense::new(2).name("dense").call(cx, &x)
//!             },
//!             |cx, x: Tensor| {
//!                 count(cx, "false_count")?;
//!                 Ok(-nn::Dense::new(2).name("dense").call(cx, &x)?)
//!             },
//!             cx,
//!             x.shallow_clone(),
//!         )
//!     }
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let x = Tensor::ones([1, 3], (Kind::Float, Device::Cpu));
//! let v = CondExample::new().init(PRNGKey::new(0), &x, false)?;
//! assert_eq!(v.tensor(&["state", "false_count"]).unwrap().int64_value(&[]), 1);
//! assert_eq!(v.tensor(&["state", "true_count"]).unwrap().int64_value(&[]), 0);
//! assert_eq!(v.tensor(&["params", "dense", "kernel"]).unwrap().size(), [3, 2]);
//! # Ok(())
//! # }
//! ```

use crate::core::errors::Result;
use crate::core::scope::Scope;
use crate::transforms::switch::run_branches;
use crate::tree::Tree;

/// Runs `true_fun` if `pred`, else `false_fun`, on the running module's variables with
/// `operands` (Flax's `nn.cond(pred, true_fun, false_fun, mdl, *operands)`, where `cx`
/// plays `mdl`). During `init` both branches run, in that order, and must create the same
/// variables; the chosen branch's output and variables are kept.
pub fn cond<'f, X: Tree, Y>(
    pred: bool,
    true_fun: impl FnOnce(&mut Scope<'_>, X) -> Result<Y> + 'f,
    false_fun: impl FnOnce(&mut Scope<'_>, X) -> Result<Y> + 'f,
    cx: &mut Scope<'_>,
    operands: X,
) -> Result<Y> {
    run_branches("cond", i64::from(!pred), vec![Box::new(true_fun), Box::new(false_fun)], cx, operands)
}
