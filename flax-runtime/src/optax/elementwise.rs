//! Which transformations may run on a piece of each parameter: the ones whose update of an
//! element reads only that element.

use crate::optax::alias::{Adagrad, Adam, AdamW, RmsProp, Sgd};
use crate::optax::transforms::{
    AddDecayedWeights, Chain, Clip, Identity, Scale, ScaleByAdam, ScaleByRms, ScaleByRss, SetToZero, Trace,
};

/// A transformation whose update of each element of each leaf depends only on that element's
/// gradient, state and parameter (and on the step count): splitting every leaf into pieces,
/// updating the pieces apart and joining them gives what one update of the whole leaf gives.
///
/// The sharded mode ([`Fsdp`](crate::distributed::Fsdp)) runs the optimizer on each rank's
/// shard of every parameter, so it takes only these. Not elementwise, and so refused at
/// compile time: [`clip_by_global_norm`](crate::optax::clip_by_global_norm) (a norm over all
/// leaves), [`scale_by_trust_ratio`](crate::optax::scale_by_trust_ratio) and
/// [`lamb`](crate::optax::lamb) (norms per leaf), and the transformations that choose per leaf with a user's function of its value ([`masked`](crate::optax::masked),
/// [`multi_transform`](crate::optax::multi_transform)) or are chosen at run time
/// ([`BoxedTransformation`](crate::optax::BoxedTransformation)).
///
/// A weight-decay mask ([`AddDecayedWeights::mask`], [`AdamW::mask`]) is a user's function of
/// the leaf's path and value; on shards it sees the shard, so a mask that reads the leaf's
/// rank or path decides as on the whole leaf, and one that reads its sizes may not.
pub trait Elementwise {}

impl<L> Elementwise for Sgd<L> {}
impl<L> Elementwise for Adam<L> {}
impl<L, W> Elementwise for AdamW<L, W> {}
impl<L> Elementwise for Adagrad<L> {}
impl<L> Elementwise for RmsProp<L> {}
impl<L> Elementwise for Scale<L> {}
impl<W> Elementwise for AddDecayedWeights<W> {}
impl Elementwise for Trace {}
impl Elementwise for ScaleByAdam {}
impl Elementwise for ScaleByRms {}
impl Elementwise for ScaleByRss {}
impl Elementwise for Clip {}
impl Elementwise for Identity {}
impl Elementwise for SetToZero {}
impl<T: Elementwise> Elementwise for Option<T> {}
impl<T: Elementwise + ?Sized> Elementwise for &T {}
impl<A: Elementwise> Elementwise for Chain<(A,)> {}
impl<A: Elementwise, B: Elementwise> Elementwise for Chain<(A, B)> {}
impl<A: Elementwise, B: Elementwise, C: Elementwise> Elementwise for Chain<(A, B, C)> {}
impl<A: Elementwise, B: Elementwise, C: Elementwise, D: Elementwise> Elementwise for Chain<(A, B, C, D)> {}
