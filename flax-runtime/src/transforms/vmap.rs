//! `vmap` (Flax's `nn.vmap`): a module mapped over an axis of its inputs, its variables
//! stacked on an axis (an ensemble: one set of parameters per member) or shared.
//!
//! ```
//! use flax::prelude::*;
//!
//! #[module]
//! pub struct MLP {}
//!
//! #[module]
//! impl MLP {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, xs: &Tensor) -> Result<Tensor> {
//!         let h = nn::Dense::new(4).name("hidden").call(cx, xs)?.relu();
//!         nn::Dense::new(1).name("out").call(cx, &h)
//!     }
//! }
//!
//! /// The spec's `LinenVmapMLP`: one MLP per row of `xs`.
//! #[module]
//! pub struct LinenVmapMLP {}
//!
//! #[module]
//! impl LinenVmapMLP {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, xs: &Tensor) -> Result<Tensor> {
//!         nn::vmap(MLP::new())
//!             .variable_axes([("params", 0)])
//!             .split_rngs([("params", true)])
//!             .in_axes(0)
//!             .name("mlp")
//!             .call(cx, xs, |mlp, cx, x: Tensor| mlp.call(cx, &x))
//!     }
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let xs = Tensor::ones([3, 4], (Kind::Float, Device::Cpu));
//! let variables = LinenVmapMLP::new().init(PRNGKey::new(0), &xs)?;
//! assert_eq!(variables.tensor(&["params", "mlp", "hidden", "kernel"]).unwrap().size(), [3, 4, 4]);
//! assert_eq!(variables.tensor(&["params", "mlp", "out", "kernel"]).unwrap().size(), [3, 4, 1]);
//! assert_eq!(LinenVmapMLP::new().apply(&variables, &xs)?.size(), [3, 1]);
//! # Ok(())
//! # }
//! ```
//!
//! `apply` runs batched on libtorch's own vmap (functorch's batching rules, through
//! [`crate::core::batching`]): each layer runs once for all members, as one batched kernel,
//! not as a loop; operators without a batching rule take functorch's fallback, which is right
//! but loops in C++. `init` runs the members one after another, since each member's
//! parameters come from its own key (`split(key, axis_size)[i]`, as Flax splits them, so the
//! same seed gives Flax's parameters). A member that draws keys from a split stream in
//! `apply` (dropout with `split_rngs={"dropout": true}`) also runs the loop, as the keys are
//! per member.
//!
//! As in Flax, only the collections in `variable_axes` are visible in the mapped module
//! (an axis of `None` shares the collection between members), and only the RNG streams
//! listed in `split_rngs`. With `axis_name`, [`Scope::pmean`] and [`Scope::psum`] (and
//! `BatchNorm`'s `axis_name`) reduce over the members; while `init` loops, they see one
//! member, which changes `init`'s output but not the variables it creates.
//!
//! Differences from Flax: arguments Flax broadcasts with `in_axes=None` are captured by the
//! body closure; `in_axes` and `out_axes` are one axis for all mapped input and output
//! leaves; `spmd_axis_name` is left out (there is no device mesh to name). `metadata_params`
//! is Flax's, as for [`scan`](crate::transforms::scan()).

use crate::core::apply::Rngs;
use crate::core::batching::{is_batched_at, Randomness, VmapLevel};
use crate::core::errors::{Error, Result};
use crate::core::filter::CollectionFilter;
use crate::core::frozen_dict::{FrozenDict, Value};
use crate::core::meta::{self, MetadataParams};
use crate::core::module::Module;
use crate::core::naming::Name;
use crate::core::partition_spec::IntoAxisName;
use crate::core::scope::{MappedAxis, Scope};
use crate::transforms::axes::{with_axis, without_axis, Lifting};
use crate::transforms::lifted::{forward_options, in_frame_of, map_value, run_lifted, LiftedModule};
use crate::tree::{self, Tree};

/// How a [`vmap`] maps variables, RNG streams, inputs and outputs (Flax's `nn.vmap` keyword
/// arguments, with Flax's defaults). Made by [`vmap_fn`] to map a module in its own scope,
/// keeping its name, and held by [`Vmap`].
#[derive(Clone, Debug)]
pub struct VmapOptions {
    variable_axes: Vec<(String, Option<i64>)>,
    split_rngs: Vec<(String, bool)>,
    in_axes: i64,
    out_axes: i64,
    axis_size: Option<i64>,
    axis_name: Option<String>,
    metadata_params: MetadataParams,
}

impl Default for VmapOptions {
    /// Flax's defaults: no variable mapped, no RNG stream visible, axis 0.
    fn default() -> Self {
        VmapOptions {
            variable_axes: Vec::new(),
            split_rngs: Vec::new(),
            in_axes: 0,
            out_axes: 0,
            axis_size: None,
            axis_name: None,
            metadata_params: MetadataParams::new(),
        }
    }
}

/// Flax's `nn.vmap` of a function that takes a module: set the options, then
/// [`VmapOptions::call`] maps a module in its own scope, keeping its name, and
/// [`VmapOptions::call_here`] maps code of the running module (Flax's
/// `nn.vmap(Module.method, …)(self, …)`).
pub fn vmap_fn() -> VmapOptions {
    VmapOptions::default()
}

impl VmapOptions {
    /// Collections mapped along an axis (`Some(axis)`: one slice per member) or shared by all
    /// members (`None`): `[("params", 0)]`, `[("params", Some(0)), ("batch_stats", None)]`.
    pub fn variable_axes<S: Into<String>, A: Into<Option<i64>>>(
        mut self,
        axes: impl IntoIterator<Item = (S, A)>,
    ) -> Self {
        self.variable_axes = axes.into_iter().map(|(name, axis)| (name.into(), axis.into())).collect();
        self
    }

    /// The RNG streams visible to the members: split per member (`true`) or shared (`false`).
    pub fn split_rngs<S: Into<String>>(mut self, streams: impl IntoIterator<Item = (S, bool)>) -> Self {
        self.split_rngs = streams.into_iter().map(|(name, split)| (name.into(), split)).collect();
        self
    }

    /// The axis of the mapped inputs' leaves (default 0).
    pub fn in_axes(mut self, axis: i64) -> Self {
        self.in_axes = axis;
        self
    }

    /// The axis the outputs' members are stacked along (default 0).
    pub fn out_axes(mut self, axis: i64) -> Self {
        self.out_axes = axis;
        self
    }

    /// The number of members, needed when nothing mapped has the axis.
    pub fn axis_size(mut self, size: i64) -> Self {
        self.axis_size = Some(size);
        self
    }

    /// A name for the mapped axis, for collectives ([`Scope::pmean`], `BatchNorm`'s
    /// `axis_name`).
    pub fn axis_name(mut self, name: impl Into<String>) -> Self {
        self.axis_name = Some(name.into());
        self
    }

    /// What the vmap tells the axis-metadata boxes of its mapped collections (Flax's
    /// `metadata_params`): `[(nn::PARTITION_NAME, Some("members"))]` names the mapped axis of
    /// every `Partitioned` variable. A mapped collection holding boxes needs the key
    /// (`PartitioningUnspecifiedError`).
    pub fn metadata_params<S: Into<String>, A: IntoAxisName>(
        mut self,
        params: impl IntoIterator<Item = (S, A)>,
    ) -> Self {
        self.metadata_params = meta::metadata_params(params);
        self
    }

    /// Maps `module` in its own scope, keeping its name: `body(module, scope, x)` per member,
    /// `x` the member's slice of `xs`; returns the outputs stacked along `out_axes`.
    pub fn call<M: Module, X: Tree, Y: Tree>(
        &self,
        cx: &mut Scope<'_>,
        module: &M,
        xs: &X,
        mut body: impl FnMut(&M, &mut Scope<'_>, X) -> Result<Y>,
    ) -> Result<Y> {
        let owner = module.module_handle().token;
        in_frame_of(cx, module.module_handle(), M::TYPE_NAME, |cx| {
            self.run(cx, owner, xs, &mut |cx, x| body(module, cx, x))
        })
    }

    /// Maps `body` over `xs` in the scope of the module running now (Flax's
    /// `nn.vmap(Module.method, …)(self, …)`): the module's collections in `variable_axes` are
    /// mapped, and modules constructed in `body` are its children.
    pub fn call_here<X: Tree, Y: Tree>(
        &self,
        cx: &mut Scope<'_>,
        xs: &X,
        mut body: impl FnMut(&mut Scope<'_>, X) -> Result<Y>,
    ) -> Result<Y> {
        let owner = cx.owner();
        self.run(cx, owner, xs, &mut body)
    }

    /// The map, in the frame of the module being mapped (whose calls are `owner`'s).
    pub(crate) fn run<X: Tree, Y: Tree>(
        &self,
        cx: &mut Scope<'_>,
        owner: u64,
        xs: &X,
        body: &mut dyn FnMut(&mut Scope<'_>, X) -> Result<Y>,
    ) -> Result<Y> {
        let lifting = Lifting::new("vmap", cx);
        let groups = self.group(cx.frame_variables())?;
        let size = self.size_of(&lifting, xs, &groups)?;
        let how = "list it in variable_axes (Some(axis): one per member, None: shared)";
        let explain = |e| lifting.explain(e, |c| self.axis_of(c).is_some(), how);
        let mapping = Mapping { lifting: &lifting, owner, size, groups: &groups };
        if !cx.is_initializing() {
            match self.run_batched(cx, &mapping, xs, body) {
                Err(Error::InvalidRng { stream, .. }) if self.is_split(&stream) => {}
                done => return done.map_err(explain),
            }
        }
        self.run_looped(cx, &mapping, xs, body).map_err(explain)
    }

    /// Every member at once, on a libtorch vmap level.
    fn run_batched<X: Tree, Y: Tree>(
        &self,
        cx: &mut Scope<'_>,
        mapping: &Mapping<'_>,
        xs: &X,
        body: &mut dyn FnMut(&mut Scope<'_>, X) -> Result<Y>,
    ) -> Result<Y> {
        let &Mapping { lifting, owner, size, groups } = mapping;
        let level = VmapLevel::push(size, Randomness::Error)?;
        let mut variables = groups.shared.clone();
        for (collection, axis, value) in &groups.mapped {
            let batched =
                map_value(value, &mut |t| level.add_batch_dim(t, lifting.axis(*axis, t.dim(), collection)?))?;
            variables.insert(collection.clone(), batched);
        }
        let x = tree::tree_map(xs, |t| {
            level.add_batch_dim(t, lifting.axis(self.in_axes, t.dim(), "a mapped input")?)
        })?;
        let rngs = self.member_rngs(cx.rng_streams(), None);
        let axis = self.axis_name.clone().map(|name| (name, MappedAxis::Batched(level.level())));
        let run = run_lifted(cx, variables, rngs, self.mapped(), owner, |inner| {
            if let Some((name, axis)) = axis {
                inner.bind_axis(name, axis);
            }
            body(inner, x)
        })?;
        let out = tree::tree_map(&run.out, |t| {
            let rank = t.dim() as i64 + 1;
            level.remove_batch_dim(t, if self.out_axes < 0 { self.out_axes + rank } else { self.out_axes })
        })?;
        let mut state = FrozenDict::new();
        for (collection, value) in run.state.into_inner() {
            match self.axis_of(&collection) {
                Some(Some(axis)) => {
                    let unbatched = map_value(&value, &mut |t| level.remove_batch_dim(t, axis))?;
                    let unbatched = with_axis(&unbatched, axis, &collection, &self.metadata_params)?;
                    state.insert(collection, unbatched);
                }
                _ => {
                    if any_tensor(&value, &mut |t| is_batched_at(t, level.level())) {
                        return Err(lifting.error(format!(
                            "collection \"{collection}\" is shared by the members (axis None) but was written per member"
                        )));
                    }
                    state.insert(collection, value);
                }
            }
        }
        drop(level);
        cx.set_rng_counters(run.counters);
        cx.publish(self.in_axes_order(state));
        Ok(out)
    }

    /// One member after another (`init`, or members drawing per-member keys).
    fn run_looped<X: Tree, Y: Tree>(
        &self,
        cx: &mut Scope<'_>,
        mapping: &Mapping<'_>,
        xs: &X,
        body: &mut dyn FnMut(&mut Scope<'_>, X) -> Result<Y>,
    ) -> Result<Y> {
        let &Mapping { lifting, owner, size, groups } = mapping;
        let slices = lifting.unstack_tree(xs, self.in_axes, size, "the mapped inputs")?;
        let mut member_values = Vec::with_capacity(groups.mapped.len());
        for (collection, axis, value) in &groups.mapped {
            member_values.push(lifting.unstack_value(value, *axis, size, collection)?);
        }
        let streams = cx.rng_streams().clone();
        let keys = self.split_keys(&streams, size as usize);
        let mut ys = Vec::with_capacity(size as usize);
        let mut outputs: Vec<(String, i64, Vec<Value>)> = Vec::new();
        let mut shared_out = FrozenDict::new();
        let mut end = None;
        for (i, x) in slices.into_iter().enumerate() {
            let mut variables = groups.shared.clone();
            for ((collection, _, _), values) in groups.mapped.iter().zip(&member_values) {
                variables.insert(collection.clone(), values[i].clone());
            }
            let rngs = self.member_rngs(&streams, Some((&keys, i)));
            let axis = self.axis_name.clone();
            let run = run_lifted(cx, variables, rngs, self.mapped(), owner, |inner| {
                if let Some(name) = axis {
                    inner.bind_axis(name, MappedAxis::Looped);
                }
                body(inner, x)
            })?;
            ys.push(run.out);
            end = Some(run.counters);
            for (collection, value) in run.state.into_inner() {
                match self.axis_of(&collection) {
                    Some(Some(axis)) => match outputs.iter_mut().find(|(c, _, _)| *c == collection) {
                        Some((_, _, values)) => values.push(value),
                        None => outputs.push((collection, axis, vec![value])),
                    },
                    _ if i == 0 => shared_out.insert(collection, value),
                    _ => {}
                }
            }
        }
        let ys = lifting.stack_trees(&ys, self.out_axes, "the mapped outputs")?;
        for (collection, axis, values) in outputs {
            if values.len() != size as usize {
                return Err(
                    lifting.error(format!("collection \"{collection}\" was written by only some members"))
                );
            }
            let stacked = lifting.stack_values(&values, axis, &collection)?;
            let stacked = with_axis(&stacked, axis, &collection, &self.metadata_params)?;
            shared_out.insert(collection, stacked);
        }
        if let Some(end) = end {
            cx.set_rng_counters(end);
        }
        cx.publish(self.in_axes_order(shared_out));
        Ok(ys)
    }

    /// The module's collections as the members see them: mapped along an axis, or shared.
    fn group(&self, variables: FrozenDict) -> Result<Groups> {
        let mut groups = Groups { mapped: Vec::new(), shared: FrozenDict::new() };
        for (collection, value) in variables.into_inner() {
            match self.axis_of(&collection) {
                Some(Some(axis)) => {
                    let value = without_axis(&value, axis, &collection, &self.metadata_params)?;
                    groups.mapped.push((collection, axis, value))
                }
                Some(None) => groups.shared.insert(collection, value),
                None => {}
            }
        }
        Ok(groups)
    }

    /// `variables` with its collections in the order of `variable_axes` (the order Flax
    /// writes them back in, and so their order in checkpoints).
    fn in_axes_order(&self, variables: FrozenDict) -> FrozenDict {
        let mut entries = variables.into_inner();
        let mut ordered = FrozenDict::new();
        for (collection, _) in &self.variable_axes {
            if let Some(value) = entries.shift_remove(collection.as_str()) {
                ordered.insert(collection.clone(), value);
            }
        }
        for (collection, value) in entries {
            ordered.insert(collection, value);
        }
        ordered
    }

    /// `Some(axis)` for a collection in `variable_axes`.
    fn axis_of(&self, collection: &str) -> Option<Option<i64>> {
        self.variable_axes.iter().find(|(name, _)| name == collection).map(|(_, axis)| *axis)
    }

    /// The collections the members may write: those in `variable_axes`.
    fn mapped(&self) -> CollectionFilter {
        CollectionFilter::Only(self.variable_axes.iter().map(|(name, _)| name.clone()).collect())
    }

    fn is_split(&self, stream: &str) -> bool {
        self.split_rngs.iter().any(|(name, split)| name == stream && *split)
    }

    /// The number of members: the mapped inputs' and variables' size along their axes, or
    /// `axis_size`.
    fn size_of<X: Tree>(&self, lifting: &Lifting, xs: &X, groups: &Groups) -> Result<i64> {
        let mut sizes = lifting.leaf_sizes(xs, self.in_axes, "mapped input")?;
        let mut add = |size: i64| {
            if !sizes.contains(&size) {
                sizes.push(size);
            }
        };
        for (collection, axis, value) in &groups.mapped {
            if let Some(t) = first_tensor(value) {
                add(lifting.axis_size(&t, *axis, &format!("collection \"{collection}\""))?);
            }
        }
        if let Some(size) = self.axis_size {
            add(size);
        }
        match sizes[..] {
            [] => Err(lifting.error("axis_size should be specified manually (nothing mapped has the axis)")),
            [size] if size > 0 => Ok(size),
            [size] => Err(lifting.error(format!("a vmap needs at least one member (axis size {size})"))),
            _ => Err(lifting.error(format!("inconsistent batch axis sizes: {sizes:?}"))),
        }
    }

    /// Each split stream's per-member keys (Flax's `split(key, axis_size)`).
    fn split_keys(&self, streams: &Rngs, size: usize) -> Vec<MemberKeys> {
        let mut keys = Vec::new();
        for (name, split) in &self.split_rngs {
            if let (true, Some(index)) = (*split, streams.index_of(name)) {
                keys.push((Name::Owned(name.clone()), streams.key(index).split(size)));
            }
        }
        keys
    }

    /// The streams a member sees: the shared ones, and, in the loop, member `i`'s key of
    /// each split one (batched, the split streams are left out: a member asking for one
    /// makes the map run as a loop).
    fn member_rngs(&self, streams: &Rngs, member: Option<(&[MemberKeys], usize)>) -> Rngs {
        let mut rngs = Rngs::new();
        for (name, split) in &self.split_rngs {
            let Some(index) = streams.index_of(name) else { continue };
            if !split {
                rngs = rngs.with(name.clone(), streams.key(index));
            } else if let Some((keys, i)) = member {
                if let Some((_, member_keys)) = keys.iter().find(|(n, _)| n == name) {
                    rngs = rngs.with(name.clone(), member_keys[i]);
                }
            }
        }
        rngs
    }
}

/// A split stream's keys, one per member.
type MemberKeys = (Name, Vec<crate::PRNGKey>);

/// What both ways of mapping need: the transform's facts for errors, the module whose calls
/// run in the lifted scope, the number of members and the module's variables.
struct Mapping<'a> {
    lifting: &'a Lifting,
    owner: u64,
    size: i64,
    groups: &'a Groups,
}

/// The module's variables while mapping: `(collection, axis, value)` mapped, the rest shared.
struct Groups {
    mapped: Vec<(String, i64, Value)>,
    shared: FrozenDict,
}

/// The first array of `value`, if any.
fn first_tensor(value: &Value) -> Option<tch::Tensor> {
    match value {
        Value::Tensor(t) => Some(t.shallow_clone()),
        Value::Dict(d) => d.iter().find_map(|(_, v)| first_tensor(v)),
        Value::List(items) => items.iter().find_map(first_tensor),
        Value::Scalar(_) => None,
        Value::Boxed(b) => first_tensor(b.unbox()),
    }
}

/// Whether `f` holds for some array of `value`.
fn any_tensor(value: &Value, f: &mut impl FnMut(&tch::Tensor) -> bool) -> bool {
    match value {
        Value::Tensor(t) => f(t),
        Value::Dict(d) => d.iter().any(|(_, v)| any_tensor(v, f)),
        Value::List(items) => items.iter().any(|v| any_tensor(v, f)),
        Value::Scalar(_) => false,
        Value::Boxed(b) => any_tensor(b.unbox(), f),
    }
}

/// A module lifted by [`vmap`]: Flax's `nn.vmap(Module, …)` class, instantiated.
///
/// It takes the module's place in its parent, auto-named `Vmap{Type}_{n}` (or named with
/// [`Vmap::name`]); the module runs in its scope, so its variables sit directly under that
/// name, stacked for the collections mapped in `variable_axes`.
#[derive(Clone, Debug)]
pub struct Vmap<M: Module> {
    lifted: LiftedModule<M>,
    options: VmapOptions,
}

/// Lifts `module` into a map over an axis (Flax's `nn.vmap(Module, …)` applied to the
/// module's class and instantiated with its attributes). Set the options with the builder
/// methods, then run it with [`Vmap::call`].
pub fn vmap<M: Module>(module: M) -> Vmap<M> {
    Vmap { lifted: LiftedModule::new("Vmap", module), options: VmapOptions::default() }
}

impl<M: Module> Vmap<M> {
    forward_options! {
        /// See [`VmapOptions::variable_axes`].
        fn variable_axes(axes: impl IntoIterator<Item = (S, A)>) <S: Into<String>, A: Into<Option<i64>>>;
        /// See [`VmapOptions::split_rngs`].
        fn split_rngs(streams: impl IntoIterator<Item = (S, bool)>) <S: Into<String>>;
        /// See [`VmapOptions::in_axes`].
        fn in_axes(axis: i64);
        /// See [`VmapOptions::out_axes`].
        fn out_axes(axis: i64);
        /// See [`VmapOptions::axis_size`].
        fn axis_size(size: i64);
        /// See [`VmapOptions::axis_name`].
        fn axis_name(name: impl Into<String>);
        /// See [`VmapOptions::metadata_params`].
        fn metadata_params(params: impl IntoIterator<Item = (S, A)>) <S: Into<String>, A: IntoAxisName>;
    }

    /// Names the lifted module explicitly (Flax's `name=`).
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.lifted.set_name(name.into());
        self
    }

    /// The module being mapped.
    pub fn module(&self) -> &M {
        &self.lifted.module
    }

    /// Runs the map: `body(module, scope, x)` per member, `x` its slice of `xs` along
    /// `in_axes`; returns the outputs stacked along `out_axes`.
    pub fn call<X: Tree, Y: Tree>(
        &self,
        cx: &mut Scope<'_>,
        xs: &X,
        mut body: impl FnMut(&M, &mut Scope<'_>, X) -> Result<Y>,
    ) -> Result<Y> {
        let (module, owner) = (&self.lifted.module, self.lifted.owner());
        self.lifted.enter(cx, |cx| self.options.run(cx, owner, xs, &mut |cx, x| body(module, cx, x)))
    }
}
