//! Lifted transforms (Flax's `flax.linen.transforms`) and JAX's `grad` over trees: functions
//! from a module to a module that run it in a loop, over a batch, under a branch, recomputed
//! in the backward pass, or with its variables mapped.
//!
//! A lifted transform re-enters the scope of the module it lifts once per iteration, branch
//! or mapped slice (the scope's three operations for it are in `core/scope/lift.rs`: take the
//! module's variables and RNG streams, make a lifted scope, publish what the body wrote), and
//! decides per collection what happens to its variables: stacked on an axis, broadcast, or
//! carried from one iteration to the next. As in Flax, a transform given a module
//! constructed in a compact body (`nn::scan(Block::new())`) is a module of its own, auto-named
//! with the transform's prefix (`ScanBlock_0`), in which the module runs; the `*_fn` forms
//! ([`scan_fn`], [`vmap_fn`]) and the function transforms ([`cond`](cond()), [`vjp`](vjp()), …) run on a
//! module in its own scope, keeping its name, as Flax's transforms of functions that take a
//! module do.
//!
//! This layer sits between [`crate::tree`] and [`crate::nn`]: it uses the scope and trees,
//! and layers (the recurrent `RNN`) are built on it. `nn` re-exports the transforms under
//! Flax's `nn.` names. The README's "Transforms" section has the support matrix.
//!
//! | Flax | here |
//! |---|---|
//! | `nn.scan` | [`scan`](scan()), [`scan_fn`] |
//! | `nn.vmap` | [`vmap`](vmap()), [`vmap_fn`] (batched on libtorch's vmap) |
//! | `nn.remat` / `nn.checkpoint` / `nn.remat_scan` | [`remat`](remat()), [`checkpoint`], [`remat_scan`](remat_scan()) |
//! | `nn.jit` | [`jit`](jit()) (eager) |
//! | `nn.map_variables` | [`map_variables`](map_variables()) |
//! | `nn.cond`, `nn.switch`, `nn.while_loop` | [`cond`](cond()), [`switch`](switch()), [`while_loop`](while_loop()) |
//! | `nn.vjp`, `nn.jvp`, `nn.custom_vjp` | [`vjp`](vjp()), [`jvp`](jvp()), [`custom_vjp`](custom_vjp()) |
//! | `jax.grad`, `jax.value_and_grad` | [`autodiff`] (`flax::grad`, `flax::value_and_grad`) |

pub mod autodiff;
pub(crate) mod axes;
pub mod cond;
pub mod custom_vjp;
pub mod jit;
pub mod jvp;
pub(crate) mod lifted;
pub mod map_variables;
pub mod remat;
pub mod remat_scan;
pub mod scan;
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
pub use remat_scan::{remat_scan, RematScan};
pub use scan::{scan, scan_fn, Scan, ScanOptions};
pub use switch::{switch, Branch};
pub use vjp::{vjp, vjp_with, VjpFn};
pub use vmap::{vmap, vmap_fn, Vmap, VmapOptions};
pub use while_loop::{while_loop, WhileLoopOptions};
