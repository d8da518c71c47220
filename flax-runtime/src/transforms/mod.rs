//! Lifted transforms (Flax's `flax.linen.transforms`): functions from a module to a module
//! that run it in a loop, over a batch, under a branch, with its variables mapped.
//!
//! A lifted transform re-enters the scope of the module it lifts once per iteration, branch
//! or mapped slice, and decides per collection what happens to its variables: stacked on an
//! axis, broadcast, or carried from one iteration to the next. As in Flax, a transform given
//! a module *type's* instance (`nn::scan(Block::new())`) is a module of its own, auto-named
//! with the transform's prefix (`ScanBlock_0`), in which the module runs; the options types
//! also run a transform on a module in its own scope, keeping its name, as Flax's
//! transforms of functions that take a module do.
//!
//! This layer sits between [`crate::tree`] and [`crate::nn`]: it uses the scope and trees,
//! and layers (the recurrent `RNN`) are built on it. `nn` re-exports the transforms under
//! Flax's `nn.` names.
//!
//! | transform | status |
//! |---|---|
//! | [`scan`](scan::scan) | supported: `variable_axes`, `variable_broadcast`, `variable_carry`, `split_rngs`, `in_axes`/`out_axes` (one axis each), `length`, `reverse`; `unroll` has no effect (eager loop) |

pub mod autodiff;
pub(crate) mod axes;
pub(crate) mod lifted;
pub mod scan;

pub use scan::{scan, scan_fn, Scan, ScanOptions};
pub mod cond;
pub mod custom_vjp;
pub mod jit;
pub mod jvp;
pub mod map_variables;
pub mod remat;
pub mod switch;
pub mod vjp;
pub mod vmap;
pub mod while_loop;

pub use cond::cond;
pub use custom_vjp::{custom_vjp, CustomVjp};
pub use jit::{jit, Jit};
pub use jvp::jvp;
pub use map_variables::{map_variables, MapVariables, TransFn};
pub use remat::{checkpoint_module as checkpoint, remat, Remat, RematPolicy};
pub use switch::{switch, Branch};
pub use vjp::{vjp, vjp_with, VjpFn};
pub use vmap::{vmap, vmap_fn, Vmap, VmapOptions};
pub use while_loop::{while_loop, WhileLoopOptions};
