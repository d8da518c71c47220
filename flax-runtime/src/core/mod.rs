//! The module system: variables, scopes, RNG streams, `init`/`apply` plumbing and errors.
//!
//! # The module lifecycle (Flax's guide, in Rust)
//!
//! **Definition.** A module is a struct marked `#[module]` (its fields are the attributes) with
//! an `impl` block marked `#[module]` holding its methods. Submodules are held in fields
//! marked `#[submodule]` (given to the constructor, named after the field), declared in the
//! module's `setup` from its attributes (fields marked `#[setup]`, Flax's `setup` style: see
//! [`setup`]), or constructed inline in the one `#[compact]` method, auto-named per type in
//! construction order.
//!
//! ```
//! use flax::prelude::*;
//!
//! #[module]
//! pub struct Mlp {
//!     #[submodule]
//!     pub hidden: nn::Dense,
//!     #[submodule]
//!     pub out: nn::Dense,
//! }
//!
//! #[module]
//! impl Mlp {
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
//!         let a = self.hidden.call(cx, x)?;
//!         self.out.call(cx, &a.relu())
//!     }
//! }
//!
//! #[module]
//! pub struct CompactMlp {
//!     pub hidden_size: i64,
//!     pub out_size: i64,
//! }
//!
//! #[module]
//! impl CompactMlp {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
//!         let a = nn::Dense::new(self.hidden_size).call(cx, x)?; // Dense_0
//!         nn::Dense::new(self.out_size).call(cx, &a.relu()) // Dense_1
//!     }
//! }
//!
//! # fn main() -> flax::Result<()> {
//! // Construction creates no tensors: a module is a template, a value you can copy around.
//! let mlp = Mlp::new(nn::Dense::new(5), nn::Dense::new(3));
//! let x = Tensor::ones([1, 2], (Kind::Float, Device::Cpu));
//!
//! // `init` is `apply` with no variables, every collection but `intermediates` mutable, and
//! // the `params` stream: this is the same run.
//! let variables = mlp.init(PRNGKey::new(0), &x)?;
//! let (_, same) = mlp.apply_with(
//!     &Variables::new(),
//!     ApplyOptions::new().rngs(PRNGKey::new(0)).mutable(true),
//!     &x,
//! )?;
//! assert!(same.tensor(&["params", "hidden", "kernel"]).unwrap()
//!     .equal(variables.tensor(&["params", "hidden", "kernel"]).unwrap()));
//!
//! // `apply` is a pure function of (variables, inputs): variables stay outside the module.
//! let y = mlp.apply(&variables, &x)?;
//! assert_eq!(y.size(), [1, 3]);
//!
//! let compact = CompactMlp::new(5, 3);
//! let v = compact.init(PRNGKey::new(0), &x)?;
//! assert_eq!(v.get_dict("params").unwrap().keys().collect::<Vec<_>>(), ["Dense_0", "Dense_1"]);
//! # Ok(())
//! # }
//! ```
//!
//! **Binding.** `init`/`apply` create a root [`Scope`](scope::Scope) for the run and call the
//! method with it. A module method called from a parent enters the child's scope (its name
//! in the parent's namespace: `hidden`, `Dense_0`); a module calling its own methods stays in
//! its scope. Nothing is cloned: Rust's borrows give the purity Flax gets by cloning the module.
//! As in Flax, a module constructed in a compact method is that method's module's child
//! wherever it is called from (a `Dense` built inline and handed to an `nn::Sequential` is the
//! parent's `Dense_0`), while a module held in a `#[submodule]` field is the holder's.
//!
//! **Variables.** `cx.param`, `cx.variable`, `cx.sow` and `cx.perturb` declare variables in the
//! running module's scope; on `init` they are created, on `apply` they are read (and, in
//! mutable collections, written). The result is a [`FrozenDict`](frozen_dict::FrozenDict)
//! `{collection: {module path…: tensor}}`, the same tree Flax returns.
//!
//! **Top level and interactive use.** [`Module::bind`](module::Module::bind) gives a bound
//! module to call methods on outside `init`/`apply`; `unbind` returns the module and its
//! variables, and `unbind_submodule`/`unbind_setup_submodule` a child with its own (Flax's
//! `bind(variables).backbone.unbind()`). Inside a method, `cx.variables()` is the running
//! module's own variables (Flax's `self.variables`), `cx.path()` its path (`self.path`), and
//! `cx.get_variable`/`cx.put_variable` read and write one variable.
//!
//! **Errors.** Every fallible operation returns [`flax::Result`](crate::Result); see
//! [`errors`] for which of Flax's errors are compile errors, which cannot happen, and which
//! are runtime errors.
//!
//! **Differences from Flax**, each deliberate:
//! - Shape inference needs a real forward pass: libtorch has no shape-only evaluation like
//!   `jax.eval_shape` (so `init` and `tabulate` compute).
//! - A module constructed outside any compact method and called inside one is named when first
//!   called (Flax raises for an unbound module there).
//! - Missing RNG streams are `InvalidRngError` as in the spec (Flax ≥ 0.8 falls back to
//!   `params`).
//! - One set of variables serves several inference threads through per-thread clones
//!   (`variables.clone()` shares tensors; a tch `Tensor` is `Send` but not `Sync`).

pub mod apply;
pub mod array_repr;
pub mod batching;
pub mod custom_function;
pub mod declared_shape;
mod dict_literal;
pub mod errors;
pub mod filter;
pub mod forward_ad;
pub mod frozen_dict;
pub mod initializer;
pub mod lazy_init;
pub mod meta;
pub mod module;
pub mod module_paths;
pub mod naming;
pub mod params;
pub mod partition_spec;
#[doc(hidden)]
pub mod private;
pub mod repr;
pub mod rng;
pub mod scalar_ops;
pub mod scope;
pub mod setup;
pub(crate) mod shim;
pub(crate) mod tensor_checks;
pub(crate) mod tensor_identity;
mod threefry;
pub mod uint_array;
pub mod variable;
