//! The sharded mode (FSDP, ZeRO-3): each rank holds a `1/world_size` piece of every split
//! parameter and of its optimizer state; the full parameters are gathered for each step and
//! the gradients reduce-scattered, so that each rank updates only its piece.
//!
//! What the pjit guide's `with_partitioning` annotations ask of JAX, here over the process
//! group as the one mesh axis: which axis of each leaf is split comes from a
//! [`ShardingSpec`] (read from those annotations by [`ShardingSpec::from_partition_spec`]).
//! A step is
//! 1. all-gather: every rank's pieces joined into the full parameters (one collective per
//!    dtype);
//! 2. the loss and its gradient, as on one process, on this rank's slice of the batch;
//! 3. reduce-scatter: the gradients averaged over the ranks, each rank receiving only its
//!    piece (replicated leaves are averaged whole);
//! 4. the optimizer on the pieces, which is exact for the [`Elementwise`] transformations
//!    (`sgd`, `adam`, `adamw`, …); the others (`clip_by_global_norm`, `lamb`) do not compile
//!    with [`Fsdp::train_state`].
//!
//! Memory: between steps a rank holds its pieces of the parameters and of the optimizer
//! state (about `1/world_size` of them, plus the replicated leaves and the padding). During a
//! step it also holds full parameters, as [`Gathering`] chooses: with
//! [`Gathering::WholeModel`] one full copy of all of them for the forward and backward passes
//! (two while gathering: the gathered buffer and the joined copy), then of the gradients
//! (up to three times while they are packed for the reduce-scatter); with
//! [`Gathering::PerUnit`] the full parameters of one [`fully_shard`](super::fully_shard) unit
//! at a time (two copies while gathering it; with [prefetch](Fsdp::prefetch), also the next
//! unit's gathered buffer while it computes) and that unit's full gradients. What the
//! gathers leave alive is measured, [`Fsdp::peak_gathered_bytes`]. Initialising with
//! [`Fsdp::init`] holds this rank's pieces and one unit's full parameters at a time (a plain
//! `init` and [`Fsdp::train_state`] hold the full parameters); [`Fsdp::restore_sharded`]
//! reads only this rank's pieces into a target of pieces.

use super::fully_shard::activate;
use super::gathered::GatheredMemory;
use super::prefetch::Prefetch;
use super::sharding_spec::{LeafSharding, ShardingSpec};
use super::ProcessGroup;
use crate::core::errors::Result;
use crate::core::scalar_ops::ScalarOps;
use crate::core::tensor_identity::owned;
use crate::optax::{Elementwise, GradientTransformation};
use crate::training::TrainState;
use crate::transforms::autodiff::value_and_grad;
use crate::tree::{self, Tree};
use indexmap::IndexMap;
use std::cell::RefCell;
use tch::{Device, Kind, Tensor};

/// When a sharded step gathers the full parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Gathering {
    /// All of them, once, before the loss function runs; the gradients of all of them are
    /// reduce-scattered after the backward pass. A rank holds the whole model's parameters
    /// during the step (and briefly two copies of them, the gathered buffer and the joined
    /// leaves). The fewest collectives: the faster mode while the model fits.
    #[default]
    WholeModel,
    /// Each [`fully_shard`](super::fully_shard) unit's, just before the unit runs, freed
    /// after it, and gathered again for its backward pass, where its gradients are
    /// reduce-scattered as soon as they are complete: a rank holds the full parameters of
    /// about one unit at a time (measured: [`Fsdp::peak_gathered_bytes`]), at the cost of a
    /// second forward pass of compute and a second all-gather per unit. Every split parameter
    /// must belong to a unit: the model receives this rank's pieces, so a module outside a
    /// unit reading a split parameter fails on its shape.
    PerUnit,
}

/// The sharded mode over one process group: splits trees into this rank's pieces, gathers
/// them back, and runs a training step's gradient on pieces.
///
/// Data parallelism with sharded state; the user's step is the data-parallel one with
/// `fsdp.value_and_grad` in place of `flax::grad` and `pmean`:
///
/// ```no_run
/// use flax::distributed::{Fsdp, ProcessGroup, ShardingSpec};
/// use flax::optax;
/// use flax::tch::{Device, Kind, Tensor};
///
/// # fn main() -> flax::Result<()> {
/// let group = ProcessGroup::initialize()?;
/// let params = vec![Tensor::randn([1024, 4096], (Kind::Float, Device::Cpu))];
/// let fsdp = Fsdp::new(&group, ShardingSpec::largest_divisible_axis(&params, group.world_size())?)?;
/// // Rank 0's parameters, and this rank's pieces of them and of Adam's state.
/// let mut state = fsdp.train_state((), &params, optax::adam(1e-3))?;
/// drop(params);
/// let x = group.shard(&Tensor::randn([64, 1024], (Kind::Float, Device::Cpu)))?;
/// let (loss, grads) = fsdp.value_and_grad(&state.params, |p| Ok(x.matmul(&p[0]).square().mean(Kind::Float)))?;
/// state = state.apply_gradients(grads)?;
/// let full = fsdp.gather(&state)?; // the whole TrainState, as one process's: what rank 0 saves
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Fsdp<'g> {
    group: &'g ProcessGroup,
    spec: ShardingSpec,
    gathering: Gathering,
    memory: RefCell<GatheredMemory>,
    prefetch: RefCell<Prefetch>,
}

impl<'g> Fsdp<'g> {
    /// The sharded mode for `spec` on `group`. A collective: every rank must call it.
    ///
    /// # Errors
    /// [`Error::TreeStructureMismatch`](crate::Error::TreeStructureMismatch) on every rank,
    /// naming the first differing leaf, when the ranks' specs differ (another model, another
    /// rule, another world size in the rule); libtorch's when a peer fails.
    pub fn new(group: &'g ProcessGroup, spec: ShardingSpec) -> Result<Self> {
        group.check_same_tree("Fsdp::new", &described(&spec)?)?;
        Ok(Self {
            group,
            spec,
            gathering: Gathering::default(),
            memory: RefCell::default(),
            prefetch: RefCell::new(Prefetch::new(true)),
        })
    }

    /// Gathers as `gathering` says in [`value_and_grad`](Self::value_and_grad) (default:
    /// [`Gathering::WholeModel`]). Every rank must choose the same.
    pub fn gathering(mut self, gathering: Gathering) -> Self {
        self.gathering = gathering;
        self
    }

    /// Whether [`Gathering::PerUnit`] steps prefetch (default: `true`): while a unit
    /// computes, the all-gather of the unit that gathers next (forward: the next unit;
    /// backward: the previous one) is already in flight, as PyTorch FSDP's `forward_prefetch`
    /// and `backward_prefetch`. Which unit gathers next is learned from the previous step's
    /// order, so the first step does not prefetch (see `distributed/prefetch.rs`). A rank then
    /// holds up to the current unit's full parameters and the next unit's gathered buffer
    /// at once. Every rank must choose the same.
    pub fn prefetch(mut self, prefetch: bool) -> Self {
        self.prefetch = RefCell::new(Prefetch::new(prefetch));
        self
    }

    /// How many unit gathers of the last [`value_and_grad`](Self::value_and_grad) were served
    /// by a prefetch: with prefetch on and the units running in the same order as in the
    /// step before, all but the step's first gather (0 in the first step, without prefetch,
    /// or when prefetch turned itself off because the model was handed other tensors than
    /// the step's pieces).
    pub fn prefetched_gathers(&self) -> usize {
        self.prefetch.borrow().hits()
    }

    /// The most bytes of gathered parameters this rank held at once during the last
    /// [`value_and_grad`](Self::value_and_grad): the all-gathered buffers and the full leaves
    /// joined from them, counted while any tensor (autograd's saved ones included) still
    /// refers to their memory. Measured with weak references to their storages, sampled
    /// after each gather, when that memory grows.
    pub fn peak_gathered_bytes(&self) -> u64 {
        self.memory.borrow().peak()
    }

    /// Which axis of each parameter is split.
    pub fn spec(&self) -> &ShardingSpec {
        &self.spec
    }

    /// The process group the pieces are spread over.
    pub fn group(&self) -> &'g ProcessGroup {
        self.group
    }

    /// This rank's pieces of a full tree: of the parameters, or of anything whose leaves
    /// follow them (a `TrainState`, whose optimizer state's leaves are found by their path
    /// ending in a parameter's path and by having its full shape; other leaves are kept
    /// whole). Each piece is a copy that owns its bytes, not a view of the full leaf. No
    /// communication.
    ///
    /// # Errors
    /// libtorch's.
    pub fn shard<T: Tree>(&self, tree: &T) -> Result<T> {
        self.shard_under(&[], tree)
    }

    /// [`shard`](Self::shard) for a subtree found at `prefix` in the parameters (a
    /// `fully_shard` unit's, while it initialises).
    pub(super) fn shard_under<T: Tree>(&self, prefix: &[String], tree: &T) -> Result<T> {
        let (rank, world) = (self.group.rank(), self.group.world_size());
        tree::tree_map_with_path(tree, |path, leaf| {
            let path: Vec<String> = prefix.iter().cloned().chain(path.to_strings()).collect();
            match self.spec.find(&path, &leaf.size(), true, world) {
                Some(layout) => piece(layout, leaf, rank, world),
                None => Ok(leaf.shallow_clone()),
            }
        })
    }

    /// The full tree from every rank's pieces (the inverse of [`shard`](Self::shard)): the
    /// parameters for a step, or a whole `TrainState` for rank 0 to save as one process's
    /// checkpoint, in Flax's format. A collective (one all-gather per dtype).
    ///
    /// # Errors
    /// As [`ProcessGroup::all_gather`].
    pub fn gather<T: Tree>(&self, tree: &T) -> Result<T> {
        let layouts = self.layouts(tree, false);
        let pieces: Vec<Tensor> = split_leaves(tree, &layouts, true);
        let split: Vec<&LeafSharding> = layouts.iter().flatten().copied().collect();
        let mut fulls = self.gather_pieces(&split, &pieces)?.into_iter();
        let leaves = tree::leaves(tree).into_iter().zip(&layouts).map(|(leaf, layout)| match layout {
            Some(_) => fulls.next().expect("one full leaf per piece"),
            None => leaf.shallow_clone(),
        });
        tree::tree_unflatten(tree, leaves.collect::<Vec<_>>())
    }

    /// The full leaves of this rank's `pieces` of the split leaves `layouts` (one
    /// all-gather per dtype), recorded for [`peak_gathered_bytes`](Self::peak_gathered_bytes).
    fn gather_pieces(&self, layouts: &[&LeafSharding], pieces: &[Tensor]) -> Result<Vec<Tensor>> {
        let gathered =
            self.group.all_gather(&pieces.iter().map(Tensor::shallow_clone).collect::<Vec<_>>())?;
        let fulls = join_all(layouts, &gathered, self.group.world_size())?;
        self.memory.borrow_mut().record(gathered.iter().chain(&fulls));
        Ok(fulls)
    }

    /// [`gather_pieces`](Self::gather_pieces) for the unit whose split leaves are at `paths`
    /// in a per-unit step: taken from the prefetch when it gathered them already; then the
    /// prefetch of the unit that gathers next starts (its buffer recorded too).
    pub(super) fn gather_unit(
        &self,
        paths: &[Vec<String>],
        layouts: &[&LeafSharding],
        pieces: &[Tensor],
    ) -> Result<Vec<Tensor>> {
        let mut prefetch = self.prefetch.borrow_mut();
        let fulls = match prefetch.take(self.group, paths, pieces)? {
            Some(gathered) => {
                // The gathered buffer was recorded when its prefetch started.
                let fulls = join_all(layouts, &gathered, self.group.world_size())?;
                self.memory.borrow_mut().record(&fulls);
                fulls
            }
            None => self.gather_pieces(layouts, pieces)?,
        };
        if let Some(started) = prefetch.start_next(self.group)? {
            self.memory.borrow_mut().record(started.buffers());
        }
        Ok(fulls)
    }

    /// This rank's pieces of the mean over ranks of full-shaped gradients: split leaves are
    /// reduce-scattered (`psum_scatter`, then divided by the world size), replicated ones
    /// averaged whole (`pmean`). A collective.
    ///
    /// # Errors
    /// As [`ProcessGroup::psum_scatter`].
    pub fn reduce_scatter_mean<T: Tree>(&self, grads: &T) -> Result<T> {
        let world = self.group.world_size();
        let layouts = self.layouts(grads, true);
        let rows = tree::leaves(grads)
            .into_iter()
            .zip(&layouts)
            .filter_map(|(leaf, layout)| layout.map(|layout| split_rows(layout, leaf, world)))
            .collect::<Result<Vec<_>>>()?;
        let whole: Vec<Tensor> = split_leaves(grads, &layouts, false);
        let mut rows = self.group.psum_scatter(&rows)?.into_iter();
        let mut whole = self.group.pmean(&whole)?.into_iter();
        let leaves = layouts.iter().map(|layout| match layout {
            Some(_) => Ok(rows.next().expect("one row per split leaf").try_div_scalar(world)?),
            None => Ok(whole.next().expect("one mean per replicated leaf")),
        });
        tree::tree_unflatten(grads, leaves.collect::<Result<Vec<_>>>()?)
    }

    /// The loss on this rank's batch and this rank's pieces of the gradient averaged over the
    /// ranks, from this rank's pieces of the parameters. With [`Gathering::WholeModel`]:
    /// gather, `flax::value_and_grad` with `f` on the full parameters, reduce-scatter. With
    /// [`Gathering::PerUnit`]: `flax::value_and_grad` with `f` on the pieces themselves, the
    /// model's [`fully_shard`](super::fully_shard) units gathering their parameters and
    /// reduce-scattering their gradients as they run; then the replicated leaves' gradients
    /// averaged. The full parameters and gradients are dropped before it returns. With each
    /// rank's loss a mean over an equal slice of the global batch, the gradient is the global
    /// batch's, as with `pmean` in data-parallel training.
    ///
    /// # Errors
    /// As [`gather`](Self::gather), [`flax::value_and_grad`](crate::value_and_grad) and
    /// [`reduce_scatter_mean`](Self::reduce_scatter_mean).
    pub fn value_and_grad<T: Tree>(
        &self,
        pieces: &T,
        f: impl FnOnce(&T) -> Result<Tensor>,
    ) -> Result<(Tensor, T)> {
        self.memory.borrow_mut().restart();
        if self.gathering == Gathering::PerUnit {
            return self.value_and_grad_per_unit(pieces, f);
        }
        let (loss, grads) = value_and_grad(&self.gather(pieces)?, f)?;
        Ok((loss, self.reduce_scatter_mean(&grads)?))
    }

    /// [`value_and_grad`](Self::value_and_grad) for [`Gathering::PerUnit`]: the split
    /// leaves' gradients come out of the units' backward passes already reduce-scattered.
    fn value_and_grad_per_unit<T: Tree>(
        &self,
        pieces: &T,
        f: impl FnOnce(&T) -> Result<Tensor>,
    ) -> Result<(Tensor, T)> {
        self.prefetch.borrow_mut().begin(pieces);
        let result = {
            let _active = activate(self);
            value_and_grad(pieces, f)
        };
        self.prefetch.borrow_mut().finish(self.group, result.is_ok())?;
        let (loss, grads) = result?;
        let layouts = self.layouts(&grads, false);
        let mut whole = self.group.pmean(&split_leaves(&grads, &layouts, false))?.into_iter();
        let leaves = tree::leaves(&grads).into_iter().zip(&layouts).map(|(leaf, layout)| match layout {
            Some(_) => leaf.shallow_clone(),
            None => whole.next().expect("one mean per replicated leaf"),
        });
        Ok((loss, tree::tree_unflatten(&grads, leaves.collect::<Vec<_>>())?))
    }

    /// A train state at step 0 holding this rank's pieces of rank 0's `params` and the
    /// optimizer's state for those pieces (`TrainState.create`, sharded). A collective: rank
    /// 0's parameters are broadcast first (`replicate`), as data-parallel training starts.
    /// Only an [`Elementwise`] optimizer is accepted, since it runs on pieces; a global norm,
    /// say, is not a function of one piece, so this does not compile:
    ///
    /// ```compile_fail,E0277
    /// # use flax::distributed::{Fsdp, ProcessGroup, ShardingSpec};
    /// # use flax::optax;
    /// # fn main() -> flax::Result<()> {
    /// # let group = ProcessGroup::initialize()?;
    /// # let params = vec![flax::tch::Tensor::from_slice(&[1.0f32, 2.0])];
    /// # let fsdp = Fsdp::new(&group, ShardingSpec::largest_divisible_axis(&params, 1)?)?;
    /// let tx = optax::chain((optax::clip_by_global_norm(1.0), optax::adam(1e-3)));
    /// let state = fsdp.train_state((), &params, tx)?; // `ClipByGlobalNorm` is not `Elementwise`
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`ProcessGroup::replicate`] and [`TrainState::create`].
    pub fn train_state<A, P: Tree, T>(&self, apply_fn: A, params: &P, tx: T) -> Result<TrainState<A, P, T>>
    where
        T: GradientTransformation<P> + Elementwise,
    {
        self.train_state_with(apply_fn, params, tx, ())
    }

    /// [`train_state`](Self::train_state) with extra fields (`TrainState::create_with`),
    /// which stay whole on every rank.
    ///
    /// # Errors
    /// As [`train_state`](Self::train_state).
    pub fn train_state_with<A, P: Tree, T, E: Tree>(
        &self,
        apply_fn: A,
        params: &P,
        tx: T,
        extra: E,
    ) -> Result<TrainState<A, P, T, E>>
    where
        T: GradientTransformation<P> + Elementwise,
    {
        let pieces = self.shard(&self.group.replicate(params)?)?;
        TrainState::create_with(apply_fn, pieces, tx, extra)
    }

    /// Each leaf's split parameter, for leaves of its full shape (`full`) or of its piece's.
    fn layouts<T: Tree>(&self, tree: &T, full: bool) -> Vec<Option<&LeafSharding>> {
        let world = self.group.world_size();
        tree::leaves_with_path(tree)
            .into_iter()
            .map(|(path, leaf)| self.spec.find(&path, &leaf.size(), full, world))
            .collect()
    }
}

/// The leaves that are split (`split`) or not, as shallow clones in tree order.
fn split_leaves<T: Tree>(tree: &T, layouts: &[Option<&LeafSharding>], split: bool) -> Vec<Tensor> {
    let leaves = tree::leaves(tree).into_iter().zip(layouts);
    leaves.filter(|(_, layout)| layout.is_some() == split).map(|(leaf, _)| leaf.shallow_clone()).collect()
}

/// The spec as a tree the ranks can compare with the collectives' structure check: one leaf
/// per parameter, keyed by its path and split axis, of the full shape (a zero-strided view,
/// which allocates nothing).
fn described(spec: &ShardingSpec) -> Result<IndexMap<String, Tensor>> {
    let zero = Tensor::f_zeros([], (Kind::Float, Device::Cpu))?;
    spec.leaves()
        .iter()
        .map(|leaf| {
            let split = leaf.axis.map_or("replicated".to_owned(), |a| format!("split along axis {a}"));
            Ok((format!("{} {split}", leaf.path.join("/")), zero.f_expand(&leaf.shape, false)?))
        })
        .collect()
}

/// The split axis, the piece's length along it, and the padded length (`chunk * world`).
fn split_axis(layout: &LeafSharding, world: i64) -> (i64, i64, i64) {
    let axis = layout.axis.expect("only split leaves have a layout");
    let chunk = layout.chunk(world).expect("a split leaf has a chunk");
    (axis as i64, chunk, chunk * world)
}

/// The full leaves of the split leaves `layouts` from their `gathered` pieces (each
/// `[world, piece...]`).
fn join_all(layouts: &[&LeafSharding], gathered: &[Tensor], world: i64) -> Result<Vec<Tensor>> {
    layouts.iter().zip(gathered).map(|(layout, stacked)| join(layout, stacked, world)).collect()
}

/// `leaf` with zeros appended along the split axis up to `chunk * world`.
fn padded(layout: &LeafSharding, leaf: &Tensor, world: i64) -> Result<Tensor> {
    let (axis, _, length) = split_axis(layout, world);
    let extra = length - layout.shape[axis as usize];
    if extra == 0 {
        return Ok(leaf.shallow_clone());
    }
    // constant_pad_nd's pairs run from the last axis backwards: (before, after) each.
    let mut pad = vec![0; 2 * (layout.shape.len() - axis as usize)];
    let last = pad.len() - 1;
    pad[last] = extra;
    Ok(leaf.f_constant_pad_nd(pad.as_slice())?)
}

/// Rank `rank`'s piece of a full leaf, copied out of it.
fn piece(layout: &LeafSharding, leaf: &Tensor, rank: i64, world: i64) -> Result<Tensor> {
    let (axis, chunk, _) = split_axis(layout, world);
    owned(&padded(layout, leaf, world)?.f_narrow(axis, rank * chunk, chunk)?)
}

/// A full-shaped leaf as `[world, piece...]`: row `r` is rank `r`'s piece (what
/// reduce-scatter splits).
pub(super) fn split_rows(layout: &LeafSharding, leaf: &Tensor, world: i64) -> Result<Tensor> {
    let (axis, chunk, _) = split_axis(layout, world);
    let mut shape = layout.shape.clone();
    shape.splice(axis as usize..=axis as usize, [world, chunk]);
    Ok(padded(layout, leaf, world)?.f_reshape(&shape)?.f_movedim([axis], [0])?)
}

/// The full leaf from every rank's piece stacked as `[world, piece...]` (the inverse of
/// [`split_rows`], padding dropped), in storage of its own: a view would keep the whole
/// gathered buffer alive next to the leaves that had to be copied.
pub(super) fn join(layout: &LeafSharding, stacked: &Tensor, world: i64) -> Result<Tensor> {
    let (axis, _, length) = split_axis(layout, world);
    let mut shape = layout.shape.clone();
    shape[axis as usize] = length;
    let joined = stacked.f_movedim([0], [axis])?.f_reshape(&shape)?;
    owned(&joined.f_narrow(axis, 0, layout.shape[axis as usize])?)
}
