//! `Scope`: the view of the variables and RNG streams that a module method runs in.
//!
//! One `Scope` exists per `init`/`apply` (or per `bind`). It holds the variables passed in
//! (read-only), a working copy of the mutable collections, the RNG streams, and a stack of
//! frames, one per module currently running, whose names form the module path (`Dense_0`,
//! `encoder/layers_1`, …). Modules never hold tensors: every read goes through the scope, by
//! path, so a module value can be reused with any variables, as in Flax.
//!
//! Hot-path budget: reading a param walks a few hash maps by `&str`, with no string building;
//! names are `'static` (literals and interned auto-names) and errors format paths only when
//! raised.
//!
//! The scope's parts, one file each: this file (frames, variables, params, RNG keys);
//! `scope/call.rs` (the module-call protocol: entering a module's frame, Flax's `parent`);
//! `scope/lift.rs` (re-entering a module's frame for a lifted transform, Flax's `pack`);
//! `scope/rng_counters.rs` (`make_rng` counters per path); `scope/axes.rs` (named mapped
//! axes and their collectives).

use crate::core::apply::{CaptureIntermediates, Rngs};
use crate::core::errors::{Error, NameKind, Result};
use crate::core::filter::CollectionFilter;
use crate::core::frozen_dict::{FrozenDict, Value};
use crate::core::initializer::Initializer;
use crate::core::naming::Name;
use crate::core::rng::{fold_in_static, PRNGKey, RngSuffix};
use crate::core::variable::Variable;
use std::any::Any;
use std::borrow::Cow;
use std::rc::Rc;
use tch::{Device, Kind, Tensor};

mod axes;
mod call;
mod lift;
mod rng_counters;
mod setup;

pub(crate) use axes::MappedAxis;
pub(crate) use rng_counters::RngCounters;

/// What a name in a module's namespace is taken by (Flax's scope reservations).
#[derive(Clone, Debug, PartialEq)]
enum Reservation {
    Param,
    Variable(Name),
    Submodule(u64),
}

struct Frame<'v> {
    /// The name in the parent's namespace; `None` for the root module.
    name: Option<Name>,
    module_type: &'static str,
    /// Identity of the module running in this frame (see [`ModuleHandle`]).
    owner: u64,
    /// Distinguishes this frame from earlier ones at the same depth, for [`Variable`] handles.
    serial: u64,
    /// Where this module's names start in [`Scope::reserved`].
    reserved_from: usize,
    /// This module's subtree of the read-only `params`, resolved once when the frame is
    /// entered, so reading a param is one lookup (only when the inputs are borrowed for `'v`
    /// and `params` is not mutable).
    params: Option<&'v FrozenDict>,
    /// `make_rng` counters, one per stream of [`Rngs`], in stream order, and those of the
    /// children already entered, so that calling a submodule again continues its streams
    /// (and its children's) instead of repeating keys, as Flax keeps `rng_counters` per path.
    counters: RngCounters,
    /// What the module's `setup` built in this frame (Flax runs `setup` once per bound
    /// module, lazily): see `scope/setup.rs`.
    setup: Option<Rc<dyn Any>>,
}

/// One module method call, as recorded for `tabulate` when [`Scope::record_calls`] is on.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// The module path of the call (`["Dense_0"]`; empty for the root module).
    pub path: Vec<String>,
    /// The module's type name (`Dense`).
    pub module_type: &'static str,
    /// The method, as Flax names it (`__call__` for `call`).
    pub method: &'static str,
    /// The module as Flax prints it (`Dense(features=3, …)`).
    pub module: String,
    /// The arguments after the scope: tensors as tensors, other values summarised.
    pub inputs: Vec<Value>,
    /// The output, when it is something `capture_intermediates` could store.
    pub output: Option<Value>,
}

/// What generated code describes of a module call while calls are being recorded.
#[doc(hidden)]
pub struct Described {
    /// The module's repr.
    pub module: String,
    /// The arguments after the scope.
    pub inputs: Vec<Value>,
}

/// Options that fix how one `init`/`apply` run behaves; built by [`crate::core::apply`].
#[derive(Clone)]
pub(crate) struct ScopeConfig {
    pub rngs: Rngs,
    pub mutable: CollectionFilter,
    /// Further filters a collection must pass to be mutable: one per lifted transform this
    /// scope runs inside (a transform makes only the collections it maps writable).
    pub within: Vec<CollectionFilter>,
    /// The named mapped axes (`vmap(axis_name=…)`) the code runs inside, innermost last.
    pub axes: Vec<(String, MappedAxis)>,
    pub capture: CaptureIntermediates,
    pub initializing: bool,
    pub device: Device,
}

impl ScopeConfig {
    /// `mutable`, plus `intermediates` while capturing them (Flax's `union_filters`).
    fn is_mutable(&self, collection: &str) -> bool {
        (self.mutable.matches(collection) || (collection == "intermediates" && self.capture.is_on()))
            && self.within.iter().all(|filter| filter.matches(collection))
    }
}

/// The handle a module method receives to declare and read its variables.
pub struct Scope<'v> {
    /// The module path above the root frame: empty for the scope of `init`/`apply`; for the
    /// scope a lifted transform runs its body in, the path of the module it lifts. Names in
    /// errors and RNG suffixes start with it, as a Flax lifted scope keeps its `path`.
    prefix: Vec<Name>,
    /// The names folded into RNG keys before the frames' names: `prefix`, except after a
    /// transform that forked its keys at the path (Flax's `jit` clears their suffix).
    rng_prefix: Vec<Name>,
    input: Option<Cow<'v, FrozenDict>>,
    state: FrozenDict,
    config: ScopeConfig,
    frames: Vec<Frame<'v>>,
    /// The names taken in the running modules, innermost last: one stack for all frames, so
    /// entering a module allocates nothing.
    reserved: Vec<(Name, Reservation)>,
    next_serial: u64,
    /// The compact naming frames of the methods running now, each with the index of the frame
    /// its module runs in: modules constructed there run as that module's children.
    owners: Vec<(u64, usize)>,
    /// Calls recorded for `tabulate`, when recording is on.
    calls: Option<Vec<CallRecord>>,
}

impl<'v> Scope<'v> {
    /// A root scope for `module_type`; mutable collections of `input` are copied (shallowly)
    /// into the working state so that writes never touch the caller's variables.
    pub(crate) fn new(
        input: Option<Cow<'v, FrozenDict>>,
        config: ScopeConfig,
        module_type: &'static str,
        owner: u64,
    ) -> Self {
        let mut state = FrozenDict::new();
        if let Some(input) = &input {
            for (collection, value) in input.iter() {
                if config.is_mutable(collection) {
                    state.insert(collection, value.clone());
                }
            }
        }
        let streams = config.rngs.len();
        let params = match &input {
            Some(Cow::Borrowed(vars)) if !config.is_mutable("params") => vars.get_dict("params"),
            _ => None,
        };
        let root = Frame {
            name: None,
            module_type,
            owner,
            serial: 0,
            reserved_from: 0,
            params,
            counters: RngCounters::new(streams),
            setup: None,
        };
        let mut frames = Vec::with_capacity(4);
        frames.push(root);
        Scope {
            prefix: Vec::new(),
            rng_prefix: Vec::new(),
            input,
            state,
            config,
            frames,
            reserved: Vec::with_capacity(16),
            next_serial: 1,
            owners: Vec::new(),
            calls: None,
        }
    }

    /// Starts recording every module method call with its inputs and output (`tabulate`).
    pub fn record_calls(&mut self) {
        self.calls = Some(Vec::new());
    }

    /// Whether calls are being recorded (generated code describes arguments only then).
    pub fn is_recording_calls(&self) -> bool {
        self.calls.is_some()
    }

    /// The calls recorded since [`record_calls`](Self::record_calls), in call order.
    pub fn take_calls(&mut self) -> Vec<CallRecord> {
        self.calls.take().unwrap_or_default()
    }

    /// Ends the run: the working copy of the mutable collections.
    pub(crate) fn into_state(self) -> FrozenDict {
        self.state
    }

    /// The variables this scope reads: the inputs overlaid with the mutable working copy.
    pub(crate) fn all_variables(&self) -> FrozenDict {
        match &self.input {
            None => self.state.clone(),
            Some(input) => input.copy(self.state.iter().map(|(k, v)| (k.to_owned(), v.clone()))),
        }
    }

    /// The running module's own variables, `{collection: {name: value}}` (Flax's
    /// `self.variables`): every collection's subtree at the module's path, as they are now
    /// (with what this run has written to mutable collections). Collections without an entry
    /// for the module are left out. Tensors are shared, not copied.
    pub fn variables(&self) -> FrozenDict {
        let mut own = FrozenDict::new();
        for (collection, value) in self.all_variables().iter() {
            let mut dict = value.as_dict();
            for frame in &self.frames[1..] {
                dict = dict.and_then(|d| d.get_dict(frame.name.as_deref().unwrap_or("")));
            }
            if let Some(dict) = dict {
                own.insert(collection.to_owned(), Value::Dict(dict.clone()));
            }
        }
        own
    }

    fn top(&self) -> &Frame<'v> {
        self.frames.last().expect("a scope always has its root frame")
    }

    fn top_mut(&mut self) -> &mut Frame<'v> {
        self.frames.last_mut().expect("a scope always has its root frame")
    }

    /// The module path as Flax prints it in errors: `/`, `/Dense_0`, `/encoder/layers_1`.
    pub fn path_text(&self) -> String {
        let mut path = String::new();
        for name in self.path() {
            path.push('/');
            path.push_str(name);
        }
        if path.is_empty() {
            path.push('/');
        }
        path
    }

    /// The names of the module path from the root (empty at the root).
    pub fn path(&self) -> Vec<&str> {
        let frames = self.frames[1..].iter().filter_map(|f| f.name.as_deref());
        self.prefix.iter().map(|name| &**name).chain(frames).collect()
    }

    /// The type name of the module running now (`Dense`), as Flax's errors name it.
    pub fn module_type(&self) -> &'static str {
        self.top().module_type
    }

    /// Whether this run is `init` (Flax's `is_initializing`).
    pub fn is_initializing(&self) -> bool {
        self.config.initializing
    }

    /// Whether `init`/`apply` was given the RNG stream `stream` (Flax's `has_rng`), so a
    /// module can draw from it only when present (`make_rng` of a missing stream is an error).
    pub fn has_rng(&self, stream: &str) -> bool {
        self.config.rngs.index_of(stream).is_some()
    }

    /// Whether `collection` may be written in this run.
    pub fn is_mutable_collection(&self, collection: &str) -> bool {
        self.config.is_mutable(collection)
    }

    /// The device new variables are created on: the device of the inputs given to `init`.
    pub fn device(&self) -> Device {
        self.config.device
    }

    /// Where `collection` is read from: the working copy if it is mutable, else the inputs.
    fn source(&self, collection: &str) -> Option<&FrozenDict> {
        if self.is_mutable_collection(collection) {
            self.state.get_dict(collection)
        } else {
            self.input.as_deref().and_then(|v| v.get_dict(collection))
        }
    }

    fn lookup(&self, collection: &str, name: &str) -> Option<&Value> {
        self.lookup_in(collection, None, name)
    }

    /// The value `collection/…path…/name`, or `collection/…path…/child/name` for a submodule
    /// `child` of the running module.
    fn lookup_in(&self, collection: &str, child: Option<&str>, name: &str) -> Option<&Value> {
        let dict = match self.top().params.filter(|_| collection == "params") {
            Some(params) => params,
            None => {
                let mut dict = self.source(collection)?;
                for frame in &self.frames[1..] {
                    dict = dict.get_dict(frame.name.as_deref()?)?;
                }
                dict
            }
        };
        match child {
            Some(child) => dict.get_dict(child)?.get(name),
            None => dict.get(name),
        }
    }

    fn is_collection_empty(&self, collection: &str) -> bool {
        self.source(collection).is_none_or(FrozenDict::is_empty)
    }

    fn put(&mut self, collection: &str, name: Name, value: Value) {
        let mut dict = self.state.dict_mut(collection);
        for frame in &self.frames[1..] {
            dict = dict.dict_mut(frame.name.as_deref().unwrap_or(""));
        }
        dict.insert(name, value);
    }

    /// The value of the variable `collection/…path…/name`, if it exists and is an array
    /// (Flax's `get_variable`, whose default is `None`).
    pub fn get_variable(&self, collection: &str, name: &str) -> Option<Tensor> {
        self.lookup(collection, name).and_then(Value::as_tensor).map(Tensor::shallow_clone)
    }

    /// Sets the variable `collection/…path…/name` to `value`, creating it if needed (Flax's
    /// `put_variable`); the collection must be mutable.
    pub fn put_variable(&mut self, collection: &str, name: impl Into<Name>, value: Tensor) -> Result<()> {
        let name = name.into();
        if self.lookup(collection, &name).is_none() && self.is_mutable_collection(collection) {
            self.reserve(&name, Reservation::Variable(Cow::Owned(collection.to_owned())))?;
        }
        self.write_variable(collection, &name, value)
    }

    /// The variable `collection/…path…/child/name` of the running module's submodule `child`,
    /// if it exists and is an array, read without entering the child's frame: for a computation
    /// that fuses several children's calls into one (`nn/fused_qkv.rs`), which must also check
    /// [`observes_calls`](Self::observes_calls).
    pub(crate) fn child_variable(&self, collection: &str, child: &str, name: &str) -> Option<Tensor> {
        self.lookup_in(collection, Some(child), name).and_then(Value::as_tensor).map(Tensor::shallow_clone)
    }

    /// Whether module calls are observed (recorded for `tabulate`, or their outputs captured
    /// as `intermediates`), so that each must really run as a call of its own module.
    pub(crate) fn observes_calls(&self) -> bool {
        self.calls.is_some() || self.config.capture.is_on()
    }

    /// Whether the variable `collection/…path…/name` exists.
    pub fn has_variable(&self, collection: &str, name: &str) -> bool {
        self.lookup(collection, name).is_some()
    }

    fn reserve(&mut self, name: &Name, what: Reservation) -> Result<()> {
        let frame = self.top();
        match self.reserved[frame.reserved_from..].iter().find(|(n, _)| same_name(n, name)) {
            None => {
                self.reserved.push((name.clone(), what));
                Ok(())
            }
            Some((_, existing)) if *existing == what && matches!(what, Reservation::Submodule(_)) => Ok(()),
            Some(_) => Err(Error::NameInUse {
                kind: match what {
                    Reservation::Param => NameKind::Param,
                    Reservation::Variable(_) => NameKind::Variable,
                    Reservation::Submodule(_) => NameKind::Submodule,
                },
                name: name.to_string(),
                module: frame.module_type.to_owned(),
            }),
        }
    }

    /// Declares or reads the parameter `name` (Flax's `self.param`), in `float32`.
    ///
    /// On `init` the initializer runs with a fresh key of the `params` stream; on `apply` the
    /// stored value is returned after checking that it has the shape asked for.
    pub fn param(&mut self, name: impl Into<Name>, init: impl Initializer, shape: &[i64]) -> Result<Tensor> {
        self.param_with_dtype(name, init, shape, Kind::Float)
    }

    /// [`param`](Self::param) with an explicit parameter dtype (Flax's `param_dtype`).
    pub fn param_with_dtype(
        &mut self,
        name: impl Into<Name>,
        init: impl Initializer,
        shape: &[i64],
        dtype: Kind,
    ) -> Result<Tensor> {
        let name = name.into();
        self.reserve(&name, Reservation::Param)?;
        if let Some(value) = self.lookup("params", &name) {
            let tensor = self.expect_tensor(value, &name)?;
            let Some(matches) = has_shape(tensor, shape) else {
                return Err(Error::Shape {
                    scope: self.path_text(),
                    message: format!("param \"{name}\" is an undefined tensor"),
                });
            };
            if !matches {
                return Err(Error::ScopeParamShape {
                    name: name.to_string(),
                    scope: self.path_text(),
                    value_shape: tensor.size(),
                    init_shape: shape.to_vec(),
                });
            }
            return Ok(tensor.shallow_clone());
        }
        self.require_mutable_params(&name)?;
        let key = self.make_rng("params")?;
        let value = init.init(key, shape, (dtype, self.config.device))?;
        // Flax's arrays are C-ordered; some initializers compute others (the orthogonal one's
        // QR is column-major, a constant may be a broadcast view, which an in-place optimizer
        // step could not write).
        let value = if value.is_contiguous() { value } else { value.f_contiguous()? };
        self.put("params", name, init.box_value(Value::Tensor(value.shallow_clone())));
        Ok(value)
    }

    /// Declares or reads a parameter whose initializer is an arbitrary function of a key
    /// (Flax's `self.param(name, init_fn, *args)` with a custom `init_fn`). No shape check.
    pub fn param_fn(
        &mut self,
        name: impl Into<Name>,
        init: impl FnOnce(PRNGKey) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let name = name.into();
        self.reserve(&name, Reservation::Param)?;
        if let Some(value) = self.lookup("params", &name) {
            return Ok(self.expect_tensor(value, &name)?.shallow_clone());
        }
        self.require_mutable_params(&name)?;
        let key = self.make_rng("params")?;
        let value = init(key)?;
        self.put("params", name, Value::Tensor(value.shallow_clone()));
        Ok(value)
    }

    /// Declares or reads a parameter that is a whole tree (Flax's `self.param` with an
    /// `init_fn` returning a pytree, as the spec's `ManualVmapMLP` stores a vmapped `init`'s
    /// params under one name). The tree is stored as it is and read back as stored.
    pub fn param_tree(
        &mut self,
        name: impl Into<Name>,
        init: impl FnOnce(PRNGKey) -> Result<Value>,
    ) -> Result<Value> {
        let name = name.into();
        self.reserve(&name, Reservation::Param)?;
        if let Some(value) = self.lookup("params", &name) {
            return Ok(value.clone());
        }
        self.require_mutable_params(&name)?;
        let key = self.make_rng("params")?;
        let value = init(key)?;
        self.put("params", name, value.clone());
        Ok(value)
    }

    fn require_mutable_params(&self, name: &str) -> Result<()> {
        if self.is_mutable_collection("params") {
            return Ok(());
        }
        if self.is_collection_empty("params") {
            return Err(Error::ScopeCollectionNotFound {
                collection: "params".into(),
                name: name.into(),
                scope: self.path_text(),
            });
        }
        Err(Error::ScopeParamNotFound { name: name.into(), scope: self.path_text() })
    }

    fn expect_tensor<'a>(&self, value: &'a Value, name: &str) -> Result<&'a Tensor> {
        value.as_tensor().ok_or_else(|| Error::Shape {
            scope: self.path_text(),
            message: format!("variable \"{name}\" is not an array but {value:?}"),
        })
    }

    /// Declares or reads a variable of any collection (Flax's `self.variable`), returning a
    /// handle to read and write it. `init` runs only when the variable does not exist yet and
    /// its collection is mutable.
    pub fn variable(
        &mut self,
        collection: impl Into<Name>,
        name: impl Into<Name>,
        init: impl FnOnce(&mut Scope<'v>) -> Result<Tensor>,
    ) -> Result<Variable> {
        let (collection, name) = (collection.into(), name.into());
        self.reserve(&name, Reservation::Variable(collection.clone()))?;
        if self.lookup(&collection, &name).is_none() {
            if !self.is_mutable_collection(&collection) {
                return Err(if self.is_collection_empty(&collection) {
                    Error::ScopeCollectionNotFound {
                        collection: collection.to_string(),
                        name: name.to_string(),
                        scope: self.path_text(),
                    }
                } else {
                    Error::ScopeVariableNotFound {
                        name: name.to_string(),
                        collection: collection.to_string(),
                        scope: self.path_text(),
                    }
                });
            }
            let value = init(self)?;
            self.put(&collection, name.clone(), Value::Tensor(value));
        }
        Ok(Variable::new(collection, name, self.top().serial))
    }

    pub(crate) fn check_handle(&self, serial: u64) -> Result<()> {
        if self.top().serial == serial {
            Ok(())
        } else {
            Err(Error::InvalidScope { scope: self.path_text() })
        }
    }

    pub(crate) fn read_variable(&self, collection: &str, name: &str) -> Result<Tensor> {
        match self.lookup(collection, name) {
            Some(value) => Ok(self.expect_tensor(value, name)?.shallow_clone()),
            None => Err(Error::ScopeVariableNotFound {
                name: name.into(),
                collection: collection.into(),
                scope: self.path_text(),
            }),
        }
    }

    pub(crate) fn write_variable(&mut self, collection: &str, name: &Name, value: Tensor) -> Result<()> {
        if !self.is_mutable_collection(collection) {
            return Err(Error::ModifyScopeVariable {
                collection: collection.into(),
                name: name.to_string(),
                scope: self.path_text(),
            });
        }
        self.put(collection, name.clone(), Value::Tensor(value));
        Ok(())
    }

    /// A fresh key of the RNG stream `stream` (Flax's `make_rng`): derived from the stream's
    /// root key, the module path and a per-module counter, exactly as Flax derives it, so the
    /// same seed gives the same parameters here as in Flax.
    pub fn make_rng(&mut self, stream: &str) -> Result<PRNGKey> {
        let Some(index) = self.config.rngs.index_of(stream) else {
            return Err(Error::InvalidRng {
                module: self.module_type().to_owned(),
                scope: self.path_text(),
                stream: stream.to_owned(),
            });
        };
        let counter = {
            let c = &mut self.top_mut().counters.own[index];
            *c += 1;
            *c
        };
        let mut suffix: Vec<RngSuffix<'_>> = Vec::with_capacity(self.rng_prefix.len() + self.frames.len());
        suffix.extend(self.rng_prefix.iter().map(|name| RngSuffix::Str(name)));
        suffix.extend(self.frames[1..].iter().map(|f| RngSuffix::Str(f.name.as_deref().unwrap_or(""))));
        suffix.push(RngSuffix::Int(u64::from(counter)));
        Ok(fold_in_static(self.config.rngs.key(index), &suffix))
    }

    /// Stores `value` in `collection` under `name`, appending it to a tuple (Flax's `sow` with
    /// its default `init_fn`/`reduce_fn`). Returns whether it was stored: nothing is stored
    /// when the collection is not mutable. `value` is a tensor (`&x` or `x`; a reference is
    /// stored as a shallow clone, which shares its data) or any other [`Value`].
    pub fn sow(&mut self, collection: &str, name: impl Into<Name>, value: impl Into<Value>) -> Result<bool> {
        self.sow_with(collection, name, value.into(), || Value::List(Vec::new()), append_to_tuple)
    }

    /// [`sow`](Self::sow) with a custom `init_fn` (the first accumulated value) and
    /// `reduce_fn` (how a new value is combined with the accumulated one).
    pub fn sow_with(
        &mut self,
        collection: &str,
        name: impl Into<Name>,
        value: Value,
        init: impl FnOnce() -> Value,
        reduce: impl FnOnce(Value, Value) -> Result<Value>,
    ) -> Result<bool> {
        if !self.is_mutable_collection(collection) {
            return Ok(false);
        }
        let name = name.into();
        let current = match self.lookup(collection, &name) {
            Some(existing) => existing.clone(),
            None => {
                self.reserve(&name, Reservation::Variable(Cow::Owned(collection.to_owned())))?;
                init()
            }
        };
        let reduced = reduce(current, value)?;
        self.put(collection, name, reduced);
        Ok(true)
    }

    /// Adds a zero-initialised variable of the `perturbations` collection to `value` (Flax's
    /// `perturb`): taking the gradient with respect to it gives the gradient with respect to
    /// this intermediate value.
    pub fn perturb(&mut self, name: impl Into<Name>, value: &Tensor) -> Result<Tensor> {
        self.perturb_in("perturbations", name, value)
    }

    /// [`perturb`](Self::perturb) in a chosen collection.
    pub fn perturb_in(&mut self, collection: &str, name: impl Into<Name>, value: &Tensor) -> Result<Tensor> {
        let name = name.into();
        if self.is_mutable_collection(collection) && self.lookup(collection, &name).is_none() {
            self.reserve(&name, Reservation::Variable(Cow::Owned(collection.to_owned())))?;
            self.put(collection, name.clone(), Value::Tensor(value.zeros_like()));
        }
        let collection_given = self.input.as_deref().is_some_and(|v| v.contains_key(collection))
            || self.state.contains_key(collection);
        if !collection_given {
            return Ok(value.shallow_clone());
        }
        let delta = self.read_variable(collection, &name)?;
        Ok(value.f_add(&delta)?)
    }
}

/// Name equality, by address first: literal and auto-names are `'static` and usually the
/// very same string.
fn same_name(a: &Name, b: &Name) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

/// Whether `tensor` has exactly `shape` (`None` for an undefined tensor), read into a stack
/// buffer: every `apply` checks every param's shape (Flax's `ScopeParamShapeError`), and
/// `Tensor::size` would allocate a `Vec` and make two checked calls into libtorch each time.
fn has_shape(tensor: &Tensor, shape: &[i64]) -> Option<bool> {
    const MAX_DIMS: usize = 8;
    let ptr = tensor.as_ptr() as *mut torch_sys::C_tensor;
    // SAFETY: `ptr` is a live tensor handle owned by `tensor` for the duration of the calls;
    // `at_shape` writes exactly `at_dim` values, which we bound by the buffer's length.
    unsafe {
        let dim = torch_sys::at_dim(ptr);
        if dim == usize::MAX {
            // An undefined tensor: libtorch recorded the error as a malloc'd string; take it
            // (so no later call reports it) and free it.
            libc::free(torch_sys::get_and_reset_last_err().cast());
            return None;
        }
        if dim != shape.len() {
            return Some(false);
        }
        if dim > MAX_DIMS {
            return Some(tensor.size() == shape);
        }
        let mut buffer = [0i64; MAX_DIMS];
        torch_sys::at_shape(ptr, buffer.as_mut_ptr());
        Some(buffer[..dim] == *shape)
    }
}

/// Flax's default `sow` reduction: append the value to the tuple accumulated so far.
fn append_to_tuple(acc: Value, value: Value) -> Result<Value> {
    match acc {
        Value::List(mut items) => {
            items.push(value);
            Ok(Value::List(items))
        }
        other => Err(Error::Value(format!("sow's default reduce_fn appends to a tuple, found {other:?}"))),
    }
}
