//! `optax.masked`: a transformation applied to part of the tree.

use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{FrozenDict, Scalar, Value};
use crate::optax::transformation::GradientTransformation;
use crate::optax::transforms::leaf_groups::LeafGroups;
use crate::optax::update::add_updates;
use crate::traverse_util::flatten_dict;
use crate::tree::{KeyPath, Tree};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use tch::{Kind, Tensor};

/// Which leaves a masked transformation applies to: a predicate of the leaf's key path and
/// value (Optax's mask, as a function; `|path, leaf| leaf.dim() > 1` or a test on the path),
/// or Optax's mask as a tree of booleans ([`masked_tree`]).
#[derive(Clone)]
pub struct Mask(Selector);

#[derive(Clone)]
enum Selector {
    Predicate(Arc<Predicate>),
    /// The mask tree's leaves by their key path (as `flatten_dict` gives it): `true` selects.
    Tree(Arc<HashMap<Vec<String>, bool>>),
}

/// A predicate of a leaf's key path and value.
type Predicate = dyn Fn(&KeyPath<'_>, &Tensor) -> bool + Send + Sync;

impl Mask {
    /// A mask from a predicate.
    pub fn new(f: impl Fn(&KeyPath<'_>, &Tensor) -> bool + Send + Sync + 'static) -> Self {
        Mask(Selector::Predicate(Arc::new(f)))
    }

    /// A mask from a tree of booleans with the parameters' keys (Optax's `mask` pytree, as
    /// `ModelParamTraversal::update` makes it from an all-`false` tree): `true` selects. A leaf
    /// is a `bool` or a one-element boolean tensor.
    ///
    /// # Errors
    /// [`Error::Value`] naming a leaf that is neither.
    pub fn from_tree(mask: &FrozenDict) -> Result<Self> {
        let mut selected = HashMap::new();
        for (path, leaf) in flatten_dict(mask) {
            let flag = match leaf.as_leaf() {
                Some(Value::Scalar(Scalar::Bool(flag))) => *flag,
                Some(Value::Tensor(t)) if t.kind() == Kind::Bool && t.numel() == 1 => {
                    t.f_flatten(0, -1)?.f_int64_value(&[0])? != 0
                }
                other => {
                    let found = other.map_or_else(|| "an empty dict".to_owned(), |v| format!("{v:?}"));
                    let path = path.join("/");
                    return Err(Error::Value(format!(
                        "a mask tree's leaves are booleans; the leaf at '{path}' is {found}"
                    )));
                }
            };
            selected.insert(path, flag);
        }
        Ok(Mask(Selector::Tree(Arc::new(selected))))
    }

    /// Whether the leaf at `path` is selected (a leaf a mask tree does not have is not).
    pub fn selects(&self, path: &KeyPath<'_>, leaf: &Tensor) -> bool {
        self.select(path, leaf).unwrap_or(false)
    }

    /// [`selects`](Self::selects), with Optax's error for a leaf a mask tree does not have.
    fn select(&self, path: &KeyPath<'_>, leaf: &Tensor) -> Result<bool> {
        match &self.0 {
            Selector::Predicate(f) => Ok(f(path, leaf)),
            Selector::Tree(selected) => {
                let keys: Vec<String> = path.keys().iter().map(ToString::to_string).collect();
                selected.get(&keys).copied().ok_or_else(|| Error::TreeStructureMismatch {
                    path: path.to_string(),
                    message: "the mask tree has no leaf for this parameter".into(),
                })
            }
        }
    }
}

impl fmt::Debug for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Selector::Predicate(_) => f.write_str("Mask(<fn>)"),
            Selector::Tree(selected) => write!(f, "Mask(<tree of {} leaves>)", selected.len()),
        }
    }
}

/// The state of a masked transformation (`optax.MaskedState`).
#[derive(Tree, Debug)]
pub struct MaskedState<S> {
    /// The inner transformation's state, made for the parameters with the unselected leaves
    /// masked: Adam's `mu` of a masked Adam mirrors the parameters, `{}` at unselected leaves.
    pub inner_state: S,
}

/// A transformation applied to the selected leaves only; the others' updates pass through
/// unchanged (`optax.masked`).
///
/// As in Optax, the inner transformation sees the whole tree with the unselected leaves
/// masked: it works on the tree's state dict (a [`Value`], with Flax's keys) in which each
/// unselected leaf is an empty dict, what Flax writes for Optax's `MaskedNode()`. Leaf-wise
/// transformations skip the empty dicts, so the inner state (Adam's `mu`, `nu`, …) has the
/// parameters' structure and keys, reachable by path (`mu.tensor(&["params", "head",
/// "kernel"])`), and its state dict is Optax's: it saves to and restores from Flax's bytes.
/// The mask is evaluated on the updates at every step, as Optax evaluates a mask function.
///
/// ```
/// use flax::optax::{self, GradientTransformation};
/// use flax::tch::Tensor;
/// use flax::tree::{Key, Tree};
///
/// #[derive(Tree)]
/// struct Params {
///     kernel: Tensor,
///     bias: Tensor,
/// }
///
/// # fn main() -> flax::Result<()> {
/// let tx = optax::masked(optax::adam(0.1), |path, _| path.keys() == [Key::Name("kernel")]);
/// let params = Params { kernel: Tensor::from_slice(&[1.0f32]), bias: Tensor::from_slice(&[1.0f32]) };
/// let state = tx.init(&params)?;
/// let (adam, _) = &state.inner_state;
/// assert_eq!(adam.mu.tensor(&["kernel"]).unwrap().size(), [1]);
/// assert!(adam.mu.get_path(&["bias"]).unwrap().as_dict().unwrap().is_empty()); // a MaskedNode
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Masked<T> {
    inner: T,
    mask: Mask,
}

/// `inner`, applied where `mask(path, leaf)` is true.
pub fn masked<T>(
    inner: T,
    mask: impl Fn(&KeyPath<'_>, &Tensor) -> bool + Send + Sync + 'static,
) -> Masked<T> {
    Masked { inner, mask: Mask::new(mask) }
}

/// `inner`, applied where `mask` (Optax's mask as a tree of booleans with the parameters' keys)
/// is `true`: the optax guide's `optax.masked(optax.scale(-lr), kernels_mask)` is
/// `optax::masked_tree(optax::scale(-lr), &kernels_mask)?`. A parameter the mask does not have
/// is an error ([`Error::TreeStructureMismatch`]) at `init` and at every update, as Optax's
/// tree structures must match.
///
/// ```
/// use flax::optax::{self, GradientTransformation};
/// use flax::tch::{Device, Kind, Tensor};
/// use flax::traverse_util::ModelParamTraversal;
/// use flax::{tree, Value};
///
/// # fn main() -> flax::Result<()> {
/// let zeros = |shape: &[i64]| Tensor::zeros(shape, (Kind::Float, Device::Cpu));
/// let params = flax::frozen_dict! { "Dense_0": flax::frozen_dict! { "kernel": zeros(&[3, 2]), "bias": zeros(&[2]) } };
/// // kernels = ModelParamTraversal(lambda p, _: 'kernel' in p)
/// let kernels = ModelParamTraversal::new(|p: &str, _: &Value| p.contains("kernel"));
/// // all_false = jax.tree_util.tree_map(lambda _: False, params)
/// let all_false = tree::tree_map(&params, |_| Ok(Tensor::from(false)))?;
/// // kernels_mask = kernels.update(lambda _: True, all_false)
/// let kernels_mask = kernels.update(|_| Ok(true.into()), &all_false)?;
/// let tx = optax::chain((optax::trace(0.9), optax::masked_tree(optax::scale(-0.1), &kernels_mask)?));
/// let state = tx.init(&params)?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`Error::Value`] naming a leaf of `mask` that is not a boolean.
pub fn masked_tree<T>(inner: T, mask: &FrozenDict) -> Result<Masked<T>> {
    Ok(Masked { inner, mask: Mask::from_tree(mask)? })
}

impl<T> Masked<T> {
    fn groups<P: Tree>(&self, tree: &P) -> Result<LeafGroups> {
        LeafGroups::new(tree, |path, leaf| {
            let selected = self.mask.select(path, leaf)?;
            Ok(SELECTED.filter(|_| selected))
        })
    }
}

/// The group of the selected leaves; the others are in none.
const SELECTED: Option<usize> = Some(0);

impl<P: Tree, T: GradientTransformation<Value>> GradientTransformation<P> for Masked<T> {
    type State = MaskedState<T::State>;

    fn init(&self, params: &P) -> Result<Self::State> {
        let selected = self.groups(params)?.view(params, SELECTED)?;
        Ok(MaskedState { inner_state: self.inner.init(&selected)? })
    }

    fn update(&self, mut updates: P, state: Self::State, params: Option<&P>) -> Result<(P, Self::State)> {
        let groups = self.groups(&updates)?;
        let selected = groups.view(&updates, SELECTED)?;
        let params = params.map(|p| groups.view(p, SELECTED)).transpose()?;
        let (selected, inner_state) = self.inner.update(selected, state.inner_state, params.as_ref())?;
        groups.put_back(&mut updates, SELECTED, &selected)?;
        Ok((updates, MaskedState { inner_state }))
    }

    /// The inner transformation's `update_and_apply` on the selected leaves (one fused kernel
    /// where it has one), and the unselected leaves' updates added as they are.
    fn update_and_apply(&self, grads: P, state: Self::State, mut params: P) -> Result<(P, Self::State)> {
        let groups = self.groups(&grads)?;
        let [selected, selected_params] = [groups.view(&grads, SELECTED)?, groups.view(&params, SELECTED)?];
        let (selected_params, inner_state) =
            self.inner.update_and_apply(selected, state.inner_state, selected_params)?;
        groups.put_back(&mut params, SELECTED, &selected_params)?;
        let rest = add_updates(groups.view(&params, None)?, &groups.view(&grads, None)?)?;
        groups.put_back(&mut params, None, &rest)?;
        Ok((params, MaskedState { inner_state }))
    }
}
