//! `optax.multi_transform` (`optax.partition` in Optax 0.2.8): a different transformation for
//! each labelled part of the tree.

use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::Value;
use crate::optax::boxed::BoxedTransformation;
use crate::optax::dyn_state::DynState;
use crate::optax::transformation::GradientTransformation;
use crate::optax::transforms::leaf_groups::LeafGroups;
use crate::optax::transforms::masked::MaskedState;
use crate::tree::{KeyPath, Tree};
use indexmap::IndexMap;
use std::fmt;
use tch::Tensor;

/// The label function, resolved to the index of the label's transformation.
type LabelIndex = dyn Fn(&KeyPath<'_>, &Tensor) -> Result<usize> + Send + Sync;

/// The states of a [`MultiTransform`], by label (`optax.MultiTransformState`, the
/// `PartitionState` of Optax 0.2.8).
#[derive(Tree, Debug)]
pub struct MultiTransformState {
    /// Each label's transformation state, made for the parameters with the other labels'
    /// leaves masked, as [`masked`] lays it out: `inner_states["trainable"].inner_state` of
    /// an Adam holds `mu` and `nu` with the parameters' keys and `{}` at the other labels'
    /// leaves, as Optax's do.
    ///
    /// [`masked`]: crate::optax::masked
    pub inner_states: IndexMap<String, MaskedState<DynState>>,
}

/// Applies to each leaf the transformation of its label (`optax.multi_transform`): the way to
/// freeze part of a model (label it with [`set_to_zero`](crate::optax::set_to_zero)) or to
/// give parts of it different optimizers or learning rates.
///
/// Each transformation sees the tree with the other labels' leaves masked, as with
/// [`masked`](crate::optax::masked): its state mirrors the parameters, with Optax's layout.
/// The labels come from a function of each leaf's key path and value (Flax's
/// `traverse_util.path_aware_map` in the spec's example), evaluated on the updates at every
/// step as Optax evaluates a label function.
pub struct MultiTransform {
    transforms: Vec<(String, BoxedTransformation<Value>)>,
    label_index: Box<LabelIndex>,
}

/// Applies `transforms[label(path, leaf)]` to each leaf.
///
/// ```
/// use flax::optax::{self, GradientTransformation};
/// use flax::tch::Tensor;
/// use flax::tree::{Key, Tree};
///
/// #[derive(Tree)]
/// struct Params {
///     backbone: Tensor,
///     head: Tensor,
/// }
///
/// # fn main() -> flax::Result<()> {
/// let tx = optax::multi_transform(
///     [("trainable", optax::adam(5e-3).boxed()), ("frozen", optax::set_to_zero().boxed())],
///     |path, _| if path.keys().contains(&Key::Name("backbone")) { "frozen" } else { "trainable" },
/// );
/// let params = Params { backbone: Tensor::from_slice(&[1.0f32]), head: Tensor::from_slice(&[1.0f32]) };
/// let state = tx.init(&params)?;
/// let grads = Params { backbone: Tensor::from_slice(&[0.5f32]), head: Tensor::from_slice(&[0.5f32]) };
/// let (updates, _state) = tx.update(grads, state, Some(&params))?;
/// assert_eq!(updates.backbone.double_value(&[0]), 0.0);
/// assert!(updates.head.double_value(&[0]) < 0.0);
/// # Ok(())
/// # }
/// ```
pub fn multi_transform<K, L>(
    transforms: impl IntoIterator<Item = (K, BoxedTransformation<Value>)>,
    labels: impl Fn(&KeyPath<'_>, &Tensor) -> L + Send + Sync + 'static,
) -> MultiTransform
where
    K: Into<String>,
    L: AsRef<str>,
{
    let transforms: Vec<_> = transforms.into_iter().map(|(label, tx)| (label.into(), tx)).collect();
    let names: Vec<String> = transforms.iter().map(|(label, _)| label.clone()).collect();
    let label_index = move |path: &KeyPath<'_>, leaf: &Tensor| {
        let label = labels(path, leaf);
        names.iter().position(|name| name == label.as_ref()).ok_or_else(|| {
            Error::Value(format!(
                "Some parameters have no corresponding transformation. Parameter label: {:?} (at {path}); \
                 transforms keys: {names:?}",
                label.as_ref()
            ))
        })
    };
    MultiTransform { transforms, label_index: Box::new(label_index) }
}

impl MultiTransform {
    fn groups<P: Tree>(&self, tree: &P) -> Result<LeafGroups> {
        LeafGroups::new(tree, |path, leaf| (self.label_index)(path, leaf).map(Some))
    }

    /// The next state of each label: `step(group, transformation, state)`, after checking that
    /// `state` has this transformation's labels, in order.
    fn each_label(
        &self,
        state: MultiTransformState,
        mut step: impl FnMut(usize, &BoxedTransformation<Value>, DynState) -> Result<DynState>,
    ) -> Result<IndexMap<String, MaskedState<DynState>>> {
        if state.inner_states.len() != self.transforms.len() {
            return Err(Error::TreeStructureMismatch {
                path: "inner_states".to_owned(),
                message: format!(
                    "{} states for {} transformations",
                    state.inner_states.len(),
                    self.transforms.len()
                ),
            });
        }
        let mut inner_states = IndexMap::with_capacity(self.transforms.len());
        for (group, ((label, tx), (state_label, state))) in
            self.transforms.iter().zip(state.inner_states).enumerate()
        {
            if *label != state_label {
                return Err(Error::TreeStructureMismatch {
                    path: format!("inner_states/{state_label}"),
                    message: format!("the state's label is not the transformation's, {label:?}"),
                });
            }
            let inner_state = step(group, tx, state.inner_state)?;
            inner_states.insert(state_label, MaskedState { inner_state });
        }
        Ok(inner_states)
    }
}

impl fmt::Debug for MultiTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiTransform").field("transforms", &self.transforms).finish_non_exhaustive()
    }
}

impl<P: Tree> GradientTransformation<P> for MultiTransform {
    type State = MultiTransformState;

    fn init(&self, params: &P) -> Result<MultiTransformState> {
        let groups = self.groups(params)?;
        let inner_states = self
            .transforms
            .iter()
            .enumerate()
            .map(|(group, (label, tx))| {
                let inner_state = tx.init(&groups.view(params, Some(group))?)?;
                Ok((label.clone(), MaskedState { inner_state }))
            })
            .collect::<Result<_>>()?;
        Ok(MultiTransformState { inner_states })
    }

    fn update(
        &self,
        mut updates: P,
        state: MultiTransformState,
        params: Option<&P>,
    ) -> Result<(P, MultiTransformState)> {
        let groups = self.groups(&updates)?;
        let inner_states = self.each_label(state, |group, tx, inner_state| {
            let group_updates = groups.view(&updates, Some(group))?;
            let group_params = params.map(|p| groups.view(p, Some(group))).transpose()?;
            let (group_updates, inner_state) =
                tx.update(group_updates, inner_state, group_params.as_ref())?;
            groups.put_back(&mut updates, Some(group), &group_updates)?;
            Ok(inner_state)
        })?;
        Ok((updates, MultiTransformState { inner_states }))
    }

    /// Each label's `update_and_apply` on its leaves, so that a label whose optimizer has a
    /// fused kernel (Adam, SGD) steps its leaves with one kernel call.
    fn update_and_apply(
        &self,
        grads: P,
        state: MultiTransformState,
        mut params: P,
    ) -> Result<(P, MultiTransformState)> {
        let groups = self.groups(&grads)?;
        let inner_states = self.each_label(state, |group, tx, inner_state| {
            let [group_grads, group_params] =
                [groups.view(&grads, Some(group))?, groups.view(&params, Some(group))?];
            let (group_params, inner_state) = tx.update_and_apply(group_grads, inner_state, group_params)?;
            groups.put_back(&mut params, Some(group), &group_params)?;
            Ok(inner_state)
        })?;
        Ok((params, MultiTransformState { inner_states }))
    }
}
