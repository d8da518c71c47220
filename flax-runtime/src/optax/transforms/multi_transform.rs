//! `optax.multi_transform` (`optax.partition` in Optax 0.2.8): a different transformation for
//! each labelled part of the tree.

use crate::core::errors::{Error, Result};
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
    /// Each label's transformation state, for that label's leaves (see [`masked`] for how
    /// they are laid out).
    ///
    /// [`masked`]: crate::optax::masked
    pub inner_states: IndexMap<String, MaskedState<DynState>>,
}

/// Applies to each leaf the transformation of its label (`optax.multi_transform`): the way to
/// freeze part of a model (label it with [`set_to_zero`](crate::optax::set_to_zero)) or to
/// give parts of it different optimizers or learning rates.
///
/// Each transformation sees only its label's leaves, as with [`masked`](crate::optax::masked).
/// The labels come from a function of each leaf's key path and value (Flax's
/// `traverse_util.path_aware_map` in the spec's example), evaluated on the updates at every
/// step as Optax evaluates a label function.
pub struct MultiTransform {
    transforms: Vec<(String, BoxedTransformation<Vec<Tensor>>)>,
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
    transforms: impl IntoIterator<Item = (K, BoxedTransformation<Vec<Tensor>>)>,
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
        LeafGroups::new(tree, self.transforms.len(), |path, leaf| (self.label_index)(path, leaf).map(Some))
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
        let selected = self.groups(params)?.select(params)?;
        let inner_states = self
            .transforms
            .iter()
            .zip(&selected)
            .map(|((label, tx), params)| Ok((label.clone(), MaskedState { inner_state: tx.init(params)? })))
            .collect::<Result<_>>()?;
        Ok(MultiTransformState { inner_states })
    }

    fn update(
        &self,
        mut updates: P,
        state: MultiTransformState,
        params: Option<&P>,
    ) -> Result<(P, MultiTransformState)> {
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
        let groups = self.groups(&updates)?;
        let taken = groups.take(&mut updates)?;
        let mut params = params.map(|p| groups.select(p)).transpose()?.map(Vec::into_iter);
        let mut inner_states = IndexMap::with_capacity(self.transforms.len());
        let mut results = Vec::with_capacity(self.transforms.len());
        for (((label, tx), group), (state_label, state)) in
            self.transforms.iter().zip(taken).zip(state.inner_states)
        {
            if *label != state_label {
                return Err(Error::TreeStructureMismatch {
                    path: format!("inner_states/{state_label}"),
                    message: format!("the state's label is not the transformation's, {label:?}"),
                });
            }
            let group_params = params.as_mut().and_then(Iterator::next);
            let (group, inner_state) = tx.update(group, state.inner_state, group_params.as_ref())?;
            results.push(group);
            inner_states.insert(state_label, MaskedState { inner_state });
        }
        groups.put_back(&mut updates, results)?;
        Ok((updates, MultiTransformState { inner_states }))
    }
}
