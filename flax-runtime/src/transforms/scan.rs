//! `scan` (Flax's `nn.scan`): a module applied in a loop, its variables stacked on an axis,
//! broadcast to every iteration, or carried from one iteration to the next.
//!
//! ```
//! use flax::prelude::*;
//!
//! #[module]
//! pub struct ResidualMLPBlock {}
//!
//! #[module]
//! impl ResidualMLPBlock {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
//!         let h = nn::Dense::new(2).call(cx, x)?.relu();
//!         Ok(x + h)
//!     }
//! }
//!
//! #[module]
//! pub struct ResidualMLP {
//!     #[module(default = 4)]
//!     pub n_layers: i64,
//! }
//!
//! #[module]
//! impl ResidualMLP {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
//!         let (x, ()) = nn::scan(ResidualMLPBlock::new())
//!             .variable_axes([("params", 0)])
//!             .split_rngs([("params", true)])
//!             .length(self.n_layers)
//!             .call(cx, x.shallow_clone(), &(), |block, cx, x, ()| Ok((block.call(cx, &x)?, ())))?;
//!         Ok(x)
//!     }
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let x = Tensor::ones([1, 2], (Kind::Float, Device::Cpu));
//! let variables = ResidualMLP::new().init(PRNGKey::new(42), &x)?;
//! let kernel = variables.tensor(&["params", "ScanResidualMLPBlock_0", "Dense_0", "kernel"]).unwrap();
//! assert_eq!(kernel.size(), [4, 2, 2]); // one (2, 2) kernel per layer, stacked on axis 0
//! # Ok(())
//! # }
//! ```
//!
//! The loop runs eagerly, one iteration after another, each in a scope lifted from the
//! module's (see [`Scope`]): a collection in `variable_axes` is sliced along its axis for
//! each iteration (the slices are views of the stacked tensors, taken once per call with
//! `unbind`, so gradients flow back into the stacked parameters in one op), one in
//! `variable_broadcast` is the same for every iteration (created by the first one during
//! `init`), one in `variable_carry` is handed from each iteration to the next, and the others
//! are not visible in the body, as in Flax. RNG streams are visible in the body only when
//! listed in `split_rngs`: split per iteration (`true`, each iteration gets
//! `split(key, length)[i]`, so `init` gives Flax's stacked parameters for the same seed) or
//! the same for every iteration (`false`).
//!
//! Differences from Flax, each because Rust closures make them unnecessary or eager
//! execution makes them meaningless: arguments that Flax broadcasts with `in_axes=
//! nn.broadcast` are captured by the body closure; `in_axes` and `out_axes` are one axis for
//! all scanned input and output leaves; `unroll` is accepted and has no effect (there is no
//! compiled loop to unroll); `data_transform` is left out; a scan of length 0 is an error
//! (its output shapes are unknown without running the body). `metadata_params` is Flax's: the
//! stacked collections' `Partitioned` boxes lose the scan axis in the body and get it back,
//! named `metadata_params[PARTITION_NAME]`, after it (see [`crate::nn::spmd`]).

use crate::core::apply::Rngs;
use crate::core::errors::Result;
use crate::core::filter::CollectionFilter;
use crate::core::frozen_dict::{FrozenDict, Value};
use crate::core::meta::{self, MetadataParams};
use crate::core::module::Module;
use crate::core::naming::Name;
use crate::core::partition_spec::IntoAxisName;
use crate::core::scope::Scope;
use crate::transforms::axes::{with_axis, without_axis, Lifting};
use crate::transforms::lifted::{forward_options, in_frame_of, run_lifted, LiftedModule};
use crate::tree::{self, Tree};

/// How a [`scan`] treats variables, RNG streams and the scanned inputs and outputs (Flax's
/// `nn.scan` keyword arguments, with Flax's defaults). Made by [`scan_fn`] to scan a module
/// in its own scope, keeping its name ([`ScanOptions::call`]), and held by [`Scan`].
#[derive(Clone, Debug)]
pub struct ScanOptions {
    variable_axes: Vec<(String, i64)>,
    /// The axis of every collection not otherwise grouped (Flax's `variable_axes={True: axis}`).
    other_axis: Option<i64>,
    variable_broadcast: CollectionFilter,
    variable_carry: CollectionFilter,
    split_rngs: Vec<(String, bool)>,
    /// Whether every stream not listed in `split_rngs` is visible and split (Flax's
    /// `split_rngs={True: True}`).
    split_all: bool,
    in_axes: i64,
    out_axes: i64,
    length: Option<i64>,
    reverse: bool,
    unroll: i64,
    metadata_params: MetadataParams,
}

/// Flax's `nn.scan` of a function that takes a module (`nn.scan(body_fn, …)(module, carry,
/// xs)`): set the options, then [`ScanOptions::call`] scans the module in its own scope,
/// keeping its name, where [`scan`] makes a new module `Scan{Type}_{n}` around it.
///
/// ```
/// use flax::prelude::*;
///
/// #[module]
/// pub struct Encoder { pub features: i64 }
///
/// #[module]
/// impl Encoder {
///     #[compact]
///     pub fn call(&self, cx: &mut Scope, xs: &Tensor) -> Result<Tensor> {
///         let cell = nn::LSTMCell::new(); // LSTMCell_0, its params shared by every step
///         let carry = nn::LSTMCell::initialize_carry(
///             PRNGKey::new(0), &[xs.size()[0]], self.features, &nn::initializers::zeros(), xs.device())?;
///         let (_, ys) = nn::scan_fn()
///             .variable_broadcast("params")
///             .split_rngs([("params", false)])
///             .in_axes(1)
///             .out_axes(1)
///             .call(cx, &cell, carry, xs, |cell, cx, carry, x: Tensor| cell.call(cx, &carry, &x))?;
///         Ok(ys)
///     }
/// }
///
/// # fn main() -> flax::Result<()> {
/// let xs = Tensor::ones([2, 5, 3], (Kind::Float, Device::Cpu));
/// let variables = Encoder::new(4).init(PRNGKey::new(0), &xs)?;
/// assert!(variables.tensor(&["params", "LSTMCell_0", "hi", "kernel"]).is_some());
/// # Ok(())
/// # }
/// ```
pub fn scan_fn() -> ScanOptions {
    ScanOptions::default()
}

impl Default for ScanOptions {
    /// Flax's defaults: no variable mapped, no RNG stream visible, axis 0, unroll 1.
    fn default() -> Self {
        ScanOptions {
            variable_axes: Vec::new(),
            other_axis: None,
            variable_broadcast: CollectionFilter::Nothing,
            variable_carry: CollectionFilter::Nothing,
            split_rngs: Vec::new(),
            split_all: false,
            in_axes: 0,
            out_axes: 0,
            length: None,
            reverse: false,
            unroll: 1,
            metadata_params: MetadataParams::new(),
        }
    }
}

impl ScanOptions {
    /// Collections stacked along an axis, one slice per iteration: `[("params", 0)]`.
    pub fn variable_axes<S: Into<String>>(mut self, axes: impl IntoIterator<Item = (S, i64)>) -> Self {
        self.variable_axes = axes.into_iter().map(|(name, axis)| (name.into(), axis)).collect();
        self
    }

    /// Every collection not otherwise grouped stacked along `axis` (Flax's
    /// `variable_axes={True: axis}`).
    pub fn variable_axes_all(mut self, axis: i64) -> Self {
        self.other_axis = Some(axis);
        self
    }

    /// Every RNG stream visible in the body and split per iteration, besides those listed
    /// in `split_rngs` (Flax's `split_rngs={True: True}`).
    pub fn split_rngs_all(mut self) -> Self {
        self.split_all = true;
        self
    }

    /// Collections every iteration sees whole (`"params"` shares one set of parameters).
    pub fn variable_broadcast(mut self, filter: impl Into<CollectionFilter>) -> Self {
        self.variable_broadcast = filter.into();
        self
    }

    /// Collections each iteration can change, handed on to the next and kept after the loop.
    pub fn variable_carry(mut self, filter: impl Into<CollectionFilter>) -> Self {
        self.variable_carry = filter.into();
        self
    }

    /// The RNG streams visible in the body: split per iteration (`true`) or the same for
    /// every iteration (`false`): `[("params", true), ("dropout", true)]`.
    pub fn split_rngs<S: Into<String>>(mut self, streams: impl IntoIterator<Item = (S, bool)>) -> Self {
        self.split_rngs = streams.into_iter().map(|(name, split)| (name.into(), split)).collect();
        self
    }

    /// The axis of the scanned inputs' leaves to iterate over (default 0).
    pub fn in_axes(mut self, axis: i64) -> Self {
        self.in_axes = axis;
        self
    }

    /// The axis the outputs are stacked along (default 0).
    pub fn out_axes(mut self, axis: i64) -> Self {
        self.out_axes = axis;
        self
    }

    /// The number of iterations, needed when there are no scanned inputs.
    pub fn length(mut self, length: i64) -> Self {
        self.length = Some(length);
        self
    }

    /// Whether to iterate from the end (outputs stay in the inputs' order).
    pub fn reverse(mut self, reverse: bool) -> Self {
        self.reverse = reverse;
        self
    }

    /// What the scan tells the axis-metadata boxes of its stacked collections (Flax's
    /// `metadata_params`): `[(nn::PARTITION_NAME, Some("layers"))]` names the new axis of every
    /// `Partitioned` variable `layers`, `[(nn::PARTITION_NAME, None)]` leaves it unpartitioned.
    /// A stacked collection holding boxes needs the key (`PartitioningUnspecifiedError`).
    pub fn metadata_params<S: Into<String>, A: IntoAxisName>(
        mut self,
        params: impl IntoIterator<Item = (S, A)>,
    ) -> Self {
        self.metadata_params = meta::metadata_params(params);
        self
    }

    /// Flax's loop unrolling factor; checked (at least 1), with no effect on an eager loop.
    pub fn unroll(mut self, unroll: i64) -> Self {
        self.unroll = unroll;
        self
    }

    /// Scans `module` in its own scope, keeping its name (Flax's `nn.scan(fn, …)(module,
    /// carry, xs)`): `body(module, scope, carry, x)` runs once per slice `x` of `xs` and
    /// returns the next carry and the iteration's output; returns the last carry and the
    /// outputs stacked along `out_axes`.
    pub fn call<M: Module, C: Tree, X: Tree, Y: Tree>(
        &self,
        cx: &mut Scope<'_>,
        module: &M,
        init: C,
        xs: &X,
        mut body: impl FnMut(&M, &mut Scope<'_>, C, X) -> Result<(C, Y)>,
    ) -> Result<(C, Y)> {
        let owner = module.module_handle().token;
        in_frame_of(cx, module.module_handle(), M::TYPE_NAME, |cx| {
            self.run(cx, owner, init, xs, |cx, c, x| body(module, cx, c, x))
        })
    }

    /// The loop, in the frame of the module being scanned (whose calls are `owner`'s).
    pub(crate) fn run<C: Tree, X: Tree, Y: Tree>(
        &self,
        cx: &mut Scope<'_>,
        owner: u64,
        init: C,
        xs: &X,
        mut body: impl FnMut(&mut Scope<'_>, C, X) -> Result<(C, Y)>,
    ) -> Result<(C, Y)> {
        let lifting = Lifting::new("scan", cx);
        if self.unroll < 1 {
            return Err(lifting.error(format!("unroll must be at least 1, got {}", self.unroll)));
        }
        let length = self.length_of(&lifting, xs)?;
        let slices = lifting.unstack_tree(xs, self.in_axes, length, "the scanned inputs")?;
        let mut groups = self.group(&lifting, cx.frame_variables(), length)?;
        let rngs = self.iteration_rngs(cx.rng_streams(), length as usize);
        let mutable = self.mapped();
        let mut ys: Vec<Option<Y>> = (0..length).map(|_| None).collect();
        let mut slices: Vec<Option<X>> = slices.into_iter().map(Some).collect();
        let order: Vec<usize> =
            if self.reverse { (0..length as usize).rev().collect() } else { (0..length as usize).collect() };
        let mapped = |collection: &str| self.mapped().matches(collection);
        let how =
            "list it in variable_axes (one per iteration), variable_broadcast (shared) or variable_carry";
        let mut iteration = |cx: &mut Scope<'_>, groups: &Groups, i: usize, carry: C, x: X| {
            run_lifted(cx, groups.iteration_variables(i), rngs[i].clone(), mutable.clone(), owner, |inner| {
                body(inner, carry, x)
            })
            .map_err(|e| lifting.explain(e, mapped, how))
        };
        // Flax traces the body twice: once to compute the broadcast variables (from the
        // module's RNG counters), then for the loop, whose iterations all draw their keys from
        // the counters the first trace left. So the first iteration runs once from the
        // module's counters; if it drew no key it is the loop's first iteration, otherwise
        // only its broadcast variables are kept and the loop runs from the counters it left.
        let start = cx.rng_counters();
        let first = order[0];
        let x = tree::shallow_clone(slices[first].as_ref().expect("not used yet"))?;
        let probe = iteration(cx, &groups, first, tree::shallow_clone(&init)?, x)?;
        let mut end = probe.counters.clone();
        let mut carry = init;
        let todo = if probe.counters == start {
            let (next, y) = probe.out;
            carry = next;
            ys[first] = Some(y);
            groups.collect(&lifting, first, probe.state)?;
            &order[1..]
        } else {
            groups.keep_broadcast(probe.state);
            cx.set_rng_counters(probe.counters);
            &order[..]
        };
        for &i in todo {
            let x = slices[i].take().expect("each slice is used once");
            let done = iteration(cx, &groups, i, carry, x)?;
            let (next, y) = done.out;
            carry = next;
            ys[i] = Some(y);
            end = done.counters;
            groups.collect(&lifting, i, done.state)?;
        }
        cx.set_rng_counters(end);
        let ys: Vec<Y> = ys.into_iter().map(|y| y.expect("every iteration ran")).collect();
        let ys = lifting.stack_trees(&ys, self.out_axes, "the scan outputs")?;
        cx.publish(groups.finish(&lifting)?);
        Ok((carry, ys))
    }

    /// The number of iterations: the scanned inputs' size along `in_axes`, or `length`.
    fn length_of<X: Tree>(&self, lifting: &Lifting, xs: &X) -> Result<i64> {
        let mut sizes = lifting.leaf_sizes(xs, self.in_axes, "scanned input")?;
        if let Some(length) = self.length {
            sizes.retain(|s| *s != length);
            if !sizes.is_empty() {
                return Err(lifting.error(format!(
                    "length is {length} but the scanned inputs have size {sizes:?} on axis {}",
                    self.in_axes
                )));
            }
            sizes.push(length);
        }
        match sizes[..] {
            [] => Err(lifting.error("length should be specified manually (there are no scanned inputs)")),
            [length] if length > 0 => Ok(length),
            [length] => Err(lifting.error(format!(
                "a scan needs at least one iteration (length {length}): its outputs' shapes are unknown otherwise"
            ))),
            _ => Err(lifting.error(format!("inconsistent scan lengths: {sizes:?} on axis {}", self.in_axes))),
        }
    }

    /// The module's variables, grouped as the body sees them (Flax's group order:
    /// broadcast, then carry, then the axes).
    fn group(&self, lifting: &Lifting, variables: FrozenDict, length: i64) -> Result<Groups> {
        let mut groups = Groups {
            broadcast: FrozenDict::new(),
            carry: FrozenDict::new(),
            axes: self.variable_axes.iter().map(|(name, axis)| AxisGroup::new(name, *axis, length)).collect(),
            broadcast_filter: self.variable_broadcast.clone(),
            carry_filter: self.variable_carry.clone(),
            other_axis: self.other_axis,
            length,
            metadata_params: self.metadata_params.clone(),
        };
        for (collection, value) in variables.into_inner() {
            if self.variable_broadcast.matches(&collection) {
                groups.broadcast.insert(collection, value);
            } else if self.variable_carry.matches(&collection) {
                groups.carry.insert(collection, value);
            } else if let Some(group) = groups.axis_group(&collection) {
                let value = without_axis(&value, group.axis, &collection, &self.metadata_params)?;
                group.slices = lifting.unstack_value(&value, group.axis, length, &collection)?;
            }
        }
        Ok(groups)
    }

    /// The collections the body may write: those the transform maps.
    fn mapped(&self) -> CollectionFilter {
        if self.other_axis.is_some() {
            return CollectionFilter::Everything;
        }
        let axes = CollectionFilter::Only(self.variable_axes.iter().map(|(name, _)| name.clone()).collect());
        axes.union(&self.variable_broadcast).union(&self.variable_carry)
    }

    /// Each iteration's RNG streams: the listed streams, split or shared.
    fn iteration_rngs(&self, streams: &Rngs, length: usize) -> Vec<Rngs> {
        let mut rngs = vec![Rngs::new(); length];
        for (name, split) in &self.split_rngs {
            let Some(index) = streams.index_of(name) else { continue };
            let key = streams.key(index);
            let keys = if *split { key.split(length) } else { vec![key; length] };
            for (r, k) in rngs.iter_mut().zip(keys) {
                *r = std::mem::take(r).with(name.clone(), k);
            }
        }
        if self.split_all {
            for name in streams.names() {
                if self.split_rngs.iter().any(|(listed, _)| *listed == name) {
                    continue;
                }
                let keys = streams.key(streams.index_of(&name).expect("a listed stream")).split(length);
                for (r, k) in rngs.iter_mut().zip(keys) {
                    *r = std::mem::take(r).with(name.clone(), k);
                }
            }
        }
        rngs
    }
}

/// A collection mapped along an axis: its slices going in, each iteration's value coming out.
struct AxisGroup {
    collection: String,
    axis: i64,
    slices: Vec<Value>,
    outputs: Vec<Option<Value>>,
}

impl AxisGroup {
    fn new(collection: &str, axis: i64, length: i64) -> Self {
        AxisGroup {
            collection: collection.to_owned(),
            axis,
            slices: Vec::new(),
            outputs: vec![None; length as usize],
        }
    }
}

/// The module's variables while the loop runs.
struct Groups {
    broadcast: FrozenDict,
    carry: FrozenDict,
    axes: Vec<AxisGroup>,
    broadcast_filter: CollectionFilter,
    carry_filter: CollectionFilter,
    other_axis: Option<i64>,
    length: i64,
    metadata_params: MetadataParams,
}

impl Groups {
    /// The axis group of `collection`: listed in `variable_axes`, or made for it when every
    /// other collection is stacked.
    fn axis_group(&mut self, collection: &str) -> Option<&mut AxisGroup> {
        let position = match self.axes.iter().position(|g| g.collection == collection) {
            Some(position) => position,
            None => {
                self.axes.push(AxisGroup::new(collection, self.other_axis?, self.length));
                self.axes.len() - 1
            }
        };
        self.axes.get_mut(position)
    }

    /// What iteration `i` reads.
    fn iteration_variables(&self, i: usize) -> FrozenDict {
        let mut variables = self.broadcast.clone();
        for (collection, value) in self.carry.iter() {
            variables.insert(collection, value.clone());
        }
        for group in &self.axes {
            if let Some(slice) = group.slices.get(i) {
                variables.insert(group.collection.clone(), slice.clone());
            }
        }
        variables
    }

    /// Keeps the broadcast collections a first run of the body made (Flax computes broadcast
    /// variables in a trace of their own, before the loop).
    fn keep_broadcast(&mut self, state: FrozenDict) {
        for (collection, value) in state.into_inner() {
            if self.broadcast_filter.matches(&collection) {
                self.broadcast.insert(collection, value);
            }
        }
    }

    /// Takes in what iteration `i` wrote.
    fn collect(&mut self, lifting: &Lifting, i: usize, state: FrozenDict) -> Result<()> {
        for (collection, value) in state.into_inner() {
            if self.broadcast_filter.matches(&collection) {
                self.broadcast.insert(collection, value);
            } else if self.carry_filter.matches(&collection) {
                self.carry.insert(collection, value);
            } else if let Some(group) = self.axis_group(&collection) {
                group.outputs[i] = Some(value);
            } else {
                return Err(lifting.error(format!("unmapped output variables: collection \"{collection}\"")));
            }
        }
        Ok(())
    }

    /// The variables after the loop: per-iteration values stacked, the others as left.
    fn finish(self, lifting: &Lifting) -> Result<FrozenDict> {
        let mut out = self.broadcast;
        for (collection, value) in self.carry.into_inner() {
            out.insert(collection, value);
        }
        for group in self.axes {
            let written = group.outputs.iter().filter(|o| o.is_some()).count();
            if written == 0 {
                continue;
            }
            if written != group.outputs.len() {
                return Err(lifting.error(format!(
                    "collection \"{}\" was written in only {written} of {} iterations",
                    group.collection,
                    group.outputs.len()
                )));
            }
            let values: Vec<Value> = group.outputs.into_iter().flatten().collect();
            let stacked = lifting.stack_values(&values, group.axis, &group.collection)?;
            let stacked = with_axis(&stacked, group.axis, &group.collection, &self.metadata_params)?;
            out.insert(group.collection, stacked);
        }
        Ok(out)
    }
}

/// A module lifted by [`scan`]: Flax's `nn.scan(Module, …)` class, instantiated.
///
/// It takes the module's place in its parent, auto-named `Scan{Type}_{n}`; the module runs
/// in its scope, so the variables the module declares sit directly under that name, stacked
/// for the collections in `variable_axes`.
#[derive(Clone, Debug)]
pub struct Scan<M: Module> {
    lifted: LiftedModule<M>,
    options: ScanOptions,
}

/// Lifts `module` into a loop (Flax's `nn.scan(Module, …)` applied to the module's class and
/// instantiated with its attributes). Set the options with the builder methods, then run it
/// with [`Scan::call`].
pub fn scan<M: Module>(module: M) -> Scan<M> {
    Scan { lifted: LiftedModule::new("Scan", module), options: ScanOptions::default() }
}

impl<M: Module> Scan<M> {
    forward_options! {
        /// See [`ScanOptions::variable_axes`].
        fn variable_axes(axes: impl IntoIterator<Item = (S, i64)>) <S: Into<String>>;
        /// See [`ScanOptions::variable_axes_all`].
        fn variable_axes_all(axis: i64);
        /// See [`ScanOptions::split_rngs_all`].
        fn split_rngs_all();
        /// See [`ScanOptions::variable_broadcast`].
        fn variable_broadcast(filter: impl Into<CollectionFilter>);
        /// See [`ScanOptions::variable_carry`].
        fn variable_carry(filter: impl Into<CollectionFilter>);
        /// See [`ScanOptions::split_rngs`].
        fn split_rngs(streams: impl IntoIterator<Item = (S, bool)>) <S: Into<String>>;
        /// See [`ScanOptions::in_axes`].
        fn in_axes(axis: i64);
        /// See [`ScanOptions::out_axes`].
        fn out_axes(axis: i64);
        /// See [`ScanOptions::length`].
        fn length(length: i64);
        /// See [`ScanOptions::reverse`].
        fn reverse(reverse: bool);
        /// See [`ScanOptions::unroll`].
        fn unroll(unroll: i64);
        /// See [`ScanOptions::metadata_params`].
        fn metadata_params(params: impl IntoIterator<Item = (S, A)>) <S: Into<String>, A: IntoAxisName>;
    }

    /// Names the lifted module explicitly (Flax's `name=`).
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.lifted.set_name(name.into());
        self
    }

    /// The module being scanned.
    pub fn module(&self) -> &M {
        &self.lifted.module
    }

    /// Runs the loop: `body(module, scope, carry, x)` once per slice `x` of `xs` (along
    /// `in_axes`), returning the next carry and the iteration's output; returns the last
    /// carry and the outputs stacked along `out_axes`. Pass `&()` as `xs` to iterate
    /// `length` times without scanned inputs.
    pub fn call<C: Tree, X: Tree, Y: Tree>(
        &self,
        cx: &mut Scope<'_>,
        init: C,
        xs: &X,
        mut body: impl FnMut(&M, &mut Scope<'_>, C, X) -> Result<(C, Y)>,
    ) -> Result<(C, Y)> {
        let (module, owner) = (&self.lifted.module, self.lifted.owner());
        self.lifted.enter(cx, |cx| self.options.run(cx, owner, init, xs, |cx, c, x| body(module, cx, c, x)))
    }
}
