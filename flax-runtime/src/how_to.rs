//! How to: the patterns a Flax user looks for, each as a short program that runs (every block
//! here is a doc test).
//!
//! The model of every section:
//!
//! ```
//! use flax::prelude::*;
//!
//! #[module]
//! pub struct Net;
//!
//! #[module]
//! impl Net {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
//!         let x = nn::Dense::new(4).name("backbone").call(cx, x)?;
//!         let x = nn::BatchNorm::new().call(cx, &x, Some(!train))?.relu();
//!         nn::Dense::new(2).name("head").call(cx, &x)
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! # Extend `TrainState` with your own fields
//!
//! Flax subclasses `TrainState`; here the extra fields are a `#[derive(Tree)]` struct given to
//! [`TrainState::create_with`](crate::training::TrainState::create_with). They are saved
//! next to `step`, `params` and `opt_state`, as a subclass's fields are, and replaced with
//! struct update syntax (Flax's `state.replace(...)`):
//!
//! ```
//! # use flax::prelude::*;
//! # #[module] pub struct Net;
//! # #[module] impl Net { #[compact] pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
//! #   let x = nn::Dense::new(4).name("backbone").call(cx, x)?;
//! #   let x = nn::BatchNorm::new().call(cx, &x, Some(!train))?.relu();
//! #   nn::Dense::new(2).name("head").call(cx, &x) } }
//! use flax::optax;
//! use flax::training::TrainState;
//! use flax::tree::Tree;
//!
//! #[derive(Tree)]
//! struct Extra {
//!     batch_stats: FrozenDict,
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let x = Tensor::ones([8, 3], (Kind::Float, Device::Cpu));
//! let variables = Net::new().init(PRNGKey::new(0), &x, false)?;
//! let collection = |name: &str| variables.get_dict(name).cloned().unwrap_or_default();
//! let extra = Extra { batch_stats: collection("batch_stats") };
//! let state = TrainState::create_with(Net::new(), collection("params"), optax::adam(1e-3), extra)?;
//! let state = TrainState { extra: Extra { batch_stats: FrozenDict::new() }, ..state };
//! assert!(state.extra.batch_stats.is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! # Thread `batch_stats` through a training step
//!
//! `apply` with `mutable(["batch_stats"])` returns the updated collection beside the output
//! (Flax's `apply(..., mutable=['batch_stats'])`); keep it in the state for the next step:
//!
//! ```
//! # use flax::prelude::*;
//! # #[module] pub struct Net;
//! # #[module] impl Net { #[compact] pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
//! #   let x = nn::Dense::new(4).name("backbone").call(cx, x)?;
//! #   let x = nn::BatchNorm::new().call(cx, &x, Some(!train))?.relu();
//! #   nn::Dense::new(2).name("head").call(cx, &x) } }
//! # fn main() -> flax::Result<()> {
//! let model = Net::new();
//! let x = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
//! let variables = model.init(PRNGKey::new(0), &x, false)?;
//! let params = variables.get_dict("params").cloned().unwrap_or_default();
//! let mut batch_stats = variables.get_dict("batch_stats").cloned().unwrap_or_default();
//! let (loss, updates, grads) = flax::value_and_grad_with_aux(&params, |params| {
//!     let variables = frozen_dict! { "params": params, "batch_stats": &batch_stats };
//!     let (y, updates) =
//!         model.apply_with(&variables, ApplyOptions::new().mutable(["batch_stats"]), &x, true)?;
//!     Ok((y.square().mean(Kind::Float), updates))
//! })?;
//! batch_stats = updates.get_dict("batch_stats").cloned().unwrap_or_default();
//! let mean = batch_stats.tensor(&["BatchNorm_0", "mean"]).unwrap();
//! assert!(mean.abs().sum(Kind::Float).double_value(&[]) > 0.0); // moved off its zero init
//! # let _ = (loss, grads);
//! # Ok(())
//! # }
//! ```
//!
//! # Freeze part of the model
//!
//! Label each parameter by its path and give the frozen label
//! [`set_to_zero`](crate::optax::set_to_zero) in [`multi_transform`](crate::optax::multi_transform)
//! (the transfer-learning guide's recipe): its updates are zero, so it never moves. Each label's
//! state has Optax's layout: Adam's moments mirror the parameters, with `{}` (Optax's
//! `MaskedNode`) at the frozen leaves.
//!
//! ```
//! # use flax::prelude::*;
//! # #[module] pub struct Net;
//! # #[module] impl Net { #[compact] pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
//! #   let x = nn::Dense::new(4).name("backbone").call(cx, x)?;
//! #   let x = nn::BatchNorm::new().call(cx, &x, Some(!train))?.relu();
//! #   nn::Dense::new(2).name("head").call(cx, &x) } }
//! use flax::optax::{self, GradientTransformation};
//! use flax::tree::Key;
//! use flax::Value;
//!
//! # fn main() -> flax::Result<()> {
//! let tx = optax::multi_transform(
//!     [("trainable", optax::adam(1e-2).boxed()), ("frozen", optax::set_to_zero().boxed())],
//!     |path, _| if path.keys().contains(&Key::Name("backbone")) { "frozen" } else { "trainable" },
//! );
//! let x = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
//! let params = Net::new().init(PRNGKey::new(0), &x, false)?.get_dict("params").cloned().unwrap();
//! let grads = flax::tree::tree_map(&params, |g| Ok(g.ones_like()))?;
//! let (updates, opt_state) = tx.update(grads, tx.init(&params)?, Some(&params))?;
//! let frozen = updates.tensor(&["backbone", "kernel"]).unwrap();
//! assert_eq!(frozen.abs().sum(Kind::Float).double_value(&[]), 0.0);
//! // Adam's state of the "trainable" label: `(ScaleByAdamState, learning rate's state)`.
//! let trainable = &opt_state.inner_states["trainable"].inner_state;
//! let (adam, ()) = trainable.downcast_ref::<(optax::ScaleByAdamState<Value>, ())>().unwrap();
//! assert_eq!(adam.mu.tensor(&["head", "kernel"]).unwrap().size(), [4, 2]);
//! assert!(adam.mu.tensor(&["backbone", "kernel"]).is_none()); // a MaskedNode: `{}`
//! # Ok(())
//! # }
//! ```
//!
//! # Operate on parameters and optimizer state
//!
//! Parameters are a [`FrozenDict`](crate::FrozenDict): flatten it to paths
//! ([`traverse_util::flatten_dict`](crate::traverse_util::flatten_dict)), change what you need,
//! rebuild it. A changed shape needs a fresh optimizer state for the new tree (`tx.init`), as
//! in Flax; a typed optimizer state is a struct whose fields are Optax's (`mu`, `nu`, `count`).
//!
//! ```
//! # use flax::prelude::*;
//! # #[module] pub struct Net;
//! # #[module] impl Net { #[compact] pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
//! #   let x = nn::Dense::new(4).name("backbone").call(cx, x)?;
//! #   let x = nn::BatchNorm::new().call(cx, &x, Some(!train))?.relu();
//! #   nn::Dense::new(2).name("head").call(cx, &x) } }
//! use flax::optax::{self, GradientTransformation};
//! use flax::traverse_util::{flatten_dict, unflatten_dict, FlatValue};
//! use flax::Value;
//!
//! # fn main() -> flax::Result<()> {
//! let x = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
//! let params = Net::new().init(PRNGKey::new(0), &x, false)?.get_dict("params").cloned().unwrap();
//! // A new, zero-initialised head of 5 outputs instead of 2.
//! let mut flat = flatten_dict(&params);
//! let zeros = |shape: &[i64]| FlatValue::Leaf(Value::Tensor(Tensor::zeros(shape, (Kind::Float, Device::Cpu))));
//! flat.insert(vec!["head".into(), "kernel".into()], zeros(&[4, 5]));
//! flat.insert(vec!["head".into(), "bias".into()], zeros(&[5]));
//! let params = unflatten_dict(flat)?;
//! let tx = optax::adam(1e-3);
//! let opt_state = tx.init(&params)?; // Adam's `mu` and `nu` now have the new head's shapes
//! assert_eq!(opt_state.0.mu.tensor(&["head", "kernel"]).unwrap().size(), [4, 5]);
//! # Ok(())
//! # }
//! ```
//!
//! # Restore a checkpoint written by Python
//!
//! [`restore_checkpoint`](crate::training::checkpoints::restore_checkpoint) reads what
//! Flax's `save_checkpoint` writes (msgpack) and what Orbax writes (a directory), into a typed
//! target, strictly: every missing, unexpected or mismatched entry is listed in one error. With
//! no target, [`restore_checkpoint_raw`](crate::training::checkpoints::restore_checkpoint_raw)
//! (or [`orbax::restore_raw`](crate::training::orbax::restore_raw)) returns the stored tree as
//! it is. The round trip, with a checkpoint this program writes:
//!
//! ```
//! # use flax::prelude::*;
//! # #[module] pub struct Net;
//! # #[module] impl Net { #[compact] pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
//! #   let x = nn::Dense::new(4).name("backbone").call(cx, x)?;
//! #   let x = nn::BatchNorm::new().call(cx, &x, Some(!train))?.relu();
//! #   nn::Dense::new(2).name("head").call(cx, &x) } }
//! use flax::training::checkpoints::{restore_checkpoint, save_checkpoint};
//!
//! # fn main() -> flax::Result<()> {
//! let x = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
//! let variables = Net::new().init(PRNGKey::new(0), &x, false)?;
//! let dir = std::env::temp_dir().join(format!("flax-how-to-{}", std::process::id()));
//! save_checkpoint(&dir, &variables, 1, &Default::default())?;
//! let template = Net::new().init(PRNGKey::new(1), &x, false)?; // the shapes to restore into
//! let restored = restore_checkpoint(&dir, template, &Default::default())?;
//! let kernel = ["params", "head", "kernel"];
//! assert!(restored.tensor(&kernel).unwrap().equal(variables.tensor(&kernel).unwrap()));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
