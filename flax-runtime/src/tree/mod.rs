//! Pytrees: the [`Tree`] trait, its derive, and JAX's `tree_util` and Flax's state-dict
//! functions over any tree.
//!
//! A tree is a value made of containers whose leaves are tensors: parameters, gradients,
//! optimizer states, train states. Every operation here is a generic function over
//! `T: Tree` that returns the same type, so a typed parameter struct stays typed through an
//! optimizer step:
//!
//! ```
//! use flax::tch::{Device, Kind, Tensor};
//! use flax::tree::{self, Tree};
//!
//! #[derive(Tree)]
//! struct DenseParams {
//!     kernel: Tensor,
//!     bias: Option<Tensor>,
//! }
//!
//! #[derive(Tree)]
//! struct TrainState {
//!     step: i64,                 // a scalar leaf: in the state dict, untouched by tensor maps
//!     params: DenseParams,
//!     #[tree(static)]            // Flax's `pytree_node=False`: not a leaf, not saved
//!     learning_rate: f64,
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let params = DenseParams { kernel: Tensor::ones([3, 2], (Kind::Float, Device::Cpu)), bias: None };
//! let grads = tree::tree_map(&params, |p| Ok(p * 0.5))?;
//! let state = TrainState { step: 0, params, learning_rate: 0.1 };
//! let params = tree::tree_zip_map(&state.params, &grads, |p, g| Ok(p - g * state.learning_rate))?;
//! // Rust's struct update syntax is Flax's `state.replace(step=..., params=...)`:
//! let state = TrainState { step: state.step + 1, params, ..state };
//! assert_eq!(tree::num_leaves(&state), 1);
//! let paths: Vec<_> = tree::leaves_with_path(&state).into_iter().map(|(path, _)| path).collect();
//! assert_eq!(paths, [["params", "kernel"]]);
//!
//! let saved = tree::to_state_dict(&state); // {step: 1, params: {kernel: …}}
//! let restored = tree::from_state_dict(&state, &saved)?;
//! assert_eq!(restored.step, 1);
//! # Ok(())
//! # }
//! ```
//!
//! `#[derive(Tree)]` works on structs with named or positional fields. Field attributes:
//! `#[tree(static)]` (Flax's `pytree_node=False`: the field must be `Clone`, is copied from
//! the first tree by maps and from the target by restores, and is not in the state dict) and
//! `#[tree(rename = "Dense_0")]` (the key used in paths and state dicts, for Flax's names).
//! There is no generated `replace`: struct update syntax (`State { params, ..state }`) is the
//! Rust idiom for it.

mod impls;
mod key_path;
mod pytree;
mod state_dict;
mod tree_util;

pub(crate) use impls::{impl_tree_for_host_value, int_from_state};
pub use key_path::{Key, KeyPath};
pub use pytree::{MapFn, Tree, VisitFn, VisitMutFn};
pub use state_dict::{
    from_state_dict, from_state_dict_with, struct_state, struct_state_dict, to_state_dict, RestoreOptions,
    StateDictMismatches,
};
pub(crate) use tree_util::with_sorted_keys;
pub use tree_util::{
    leaves, leaves_with_path, num_leaves, shallow_clone, to_device, tree_for_each_mut, tree_map,
    tree_map_with_path, tree_stack, tree_unflatten, tree_zip_for_each_mut, tree_zip_map,
    tree_zip_map_with_path,
};

/// `#[derive(Tree)]`: implements [`Tree`] for a struct (see the module docs for attributes).
pub use flax_macros::Tree;
