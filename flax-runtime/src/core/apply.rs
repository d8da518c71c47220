//! `init` and `apply`: pure functions from (variables, RNG keys, inputs) to (output, updates).
//!
//! Generated `init`/`apply` methods of a module are thin wrappers over `run`. The general
//! forms are [`Module::init_method`](crate::core::module::Module::init_method) and
//! [`Module::apply_method`](crate::core::module::Module::apply_method), which take any closure
//! over the bound module (Flax's `method=` argument).

use crate::core::errors::{Error, Result};
use crate::core::filter::CollectionFilter;
use crate::core::frozen_dict::{FrozenDict, Value, Variables};
use crate::core::naming::Name;
use crate::core::rng::PRNGKey;
use crate::core::scope::{Scope, ScopeConfig};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use tch::Device;

/// Named RNG streams (`params`, `dropout`, …) with their root keys.
///
/// A single key converts into `{"params": key}`, as a single key passed to Flax's `init` does.
#[derive(Clone, Debug, Default)]
pub struct Rngs {
    streams: Vec<(Name, PRNGKey)>,
}

impl Rngs {
    /// No streams (enough for `apply` of deterministic modules).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the stream `name`.
    pub fn with(mut self, name: impl Into<Name>, key: PRNGKey) -> Self {
        let name = name.into();
        match self.streams.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = key,
            None => self.streams.push((name, key)),
        }
        self
    }

    pub(crate) fn len(&self) -> usize {
        self.streams.len()
    }

    /// The stream names, in order.
    pub(crate) fn names(&self) -> Vec<Name> {
        self.streams.iter().map(|(name, _)| name.clone()).collect()
    }

    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.streams.iter().position(|(n, _)| n == name)
    }

    pub(crate) fn key(&self, index: usize) -> PRNGKey {
        self.streams[index].1
    }
}

impl From<PRNGKey> for Rngs {
    fn from(key: PRNGKey) -> Self {
        Rngs::new().with("params", key)
    }
}

impl<const N: usize> From<[(&'static str, PRNGKey); N]> for Rngs {
    fn from(streams: [(&'static str, PRNGKey); N]) -> Self {
        streams.into_iter().fold(Rngs::new(), |rngs, (name, key)| rngs.with(name, key))
    }
}

/// What a `capture_intermediates` filter is shown about one method call.
#[derive(Debug, Clone, Copy)]
pub struct CallInfo<'a> {
    /// The module's type name (`Dense`).
    pub module_type: &'a str,
    /// The module's name in its parent, when known before the call (`Dense_0`, `encoder`).
    pub name: Option<&'a str>,
    /// The method, as Flax names it (`__call__` for `call`).
    pub method: &'a str,
}

/// Which method outputs `apply` stores in the `intermediates` collection.
#[derive(Clone, Default)]
pub enum CaptureIntermediates {
    /// None (the default).
    #[default]
    Nothing,
    /// The output of every module's `__call__` (Flax's `capture_intermediates=True`).
    Calls,
    /// The calls the function selects (Flax's `capture_intermediates=filter_fn`).
    Filter(Arc<dyn Fn(&CallInfo<'_>) -> bool + Send + Sync>),
}

impl CaptureIntermediates {
    /// A filter over calls.
    pub fn filter(f: impl Fn(&CallInfo<'_>) -> bool + Send + Sync + 'static) -> Self {
        CaptureIntermediates::Filter(Arc::new(f))
    }

    pub(crate) fn selects(&self, call: &CallInfo<'_>) -> bool {
        match self {
            CaptureIntermediates::Nothing => false,
            CaptureIntermediates::Calls => call.method == "__call__",
            CaptureIntermediates::Filter(f) => f(call),
        }
    }

    pub(crate) fn is_on(&self) -> bool {
        !matches!(self, CaptureIntermediates::Nothing)
    }
}

impl From<bool> for CaptureIntermediates {
    fn from(all: bool) -> Self {
        if all {
            CaptureIntermediates::Calls
        } else {
            CaptureIntermediates::Nothing
        }
    }
}

impl fmt::Debug for CaptureIntermediates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureIntermediates::Nothing => f.write_str("Nothing"),
            CaptureIntermediates::Calls => f.write_str("Calls"),
            CaptureIntermediates::Filter(_) => f.write_str("Filter(..)"),
        }
    }
}

/// The options of `init`/`apply` beyond variables and inputs, as Flax's keyword arguments.
#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    /// RNG streams (Flax's `rngs=`).
    pub rngs: Rngs,
    /// Collections that may be written and are returned (Flax's `mutable=`). `None` means the
    /// operation's default: nothing for `apply`, everything but `intermediates` for `init`.
    pub mutable: Option<CollectionFilter>,
    /// Which outputs to store in `intermediates` (Flax's `capture_intermediates=`).
    pub capture_intermediates: CaptureIntermediates,
    /// Where `init` creates variables. Generated `init` methods use the device of their first
    /// tensor argument; otherwise the CPU.
    pub device: Option<Device>,
}

impl ApplyOptions {
    /// The defaults: no RNG streams, the default `mutable`, no captured intermediates.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the RNG streams.
    pub fn rngs(mut self, rngs: impl Into<Rngs>) -> Self {
        self.rngs = rngs.into();
        self
    }

    /// Sets the mutable collections: `true`, `"batch_stats"`, `["a", "b"]`,
    /// `CollectionFilter::deny(...)`.
    pub fn mutable(mut self, mutable: impl Into<CollectionFilter>) -> Self {
        self.mutable = Some(mutable.into());
        self
    }

    /// Sets the device `init` creates variables on.
    pub fn device(mut self, device: Device) -> Self {
        self.device = Some(device);
        self
    }

    /// Sets which intermediates are captured: `true` or a [`CaptureIntermediates`] filter.
    pub fn capture_intermediates(mut self, capture: impl Into<CaptureIntermediates>) -> Self {
        self.capture_intermediates = capture.into();
        self
    }
}

impl From<Rngs> for ApplyOptions {
    fn from(rngs: Rngs) -> Self {
        ApplyOptions::new().rngs(rngs)
    }
}

impl From<PRNGKey> for ApplyOptions {
    fn from(key: PRNGKey) -> Self {
        ApplyOptions::new().rngs(key)
    }
}

/// The root module of a run: what [`run`] needs to know about it.
pub(crate) struct Root {
    pub module_type: &'static str,
    pub token: u64,
}

/// Runs `f` in a fresh root scope and returns its output with the mutable collections.
pub(crate) fn run<'v, R>(
    root: Root,
    variables: Option<Cow<'v, Variables>>,
    options: ApplyOptions,
    initializing: bool,
    device: Device,
    f: impl FnOnce(&mut Scope<'v>) -> Result<R>,
) -> Result<(R, Variables)> {
    if let Some(vars) = &variables {
        check_structure(vars)?;
    }
    let mut scope = root_scope(root, variables, options, initializing, device);
    let out = f(&mut scope)?;
    Ok((out, scope.into_state()))
}

/// A root scope with Flax's defaults applied to `options`.
pub(crate) fn root_scope<'v>(
    root: Root,
    variables: Option<Cow<'v, Variables>>,
    options: ApplyOptions,
    initializing: bool,
    device: Device,
) -> Scope<'v> {
    let default =
        if initializing { CollectionFilter::deny("intermediates") } else { CollectionFilter::Nothing };
    let mutable = options.mutable.unwrap_or(default);
    let config = ScopeConfig {
        rngs: options.rngs,
        mutable,
        within: Vec::new(),
        axes: Vec::new(),
        capture: options.capture_intermediates,
        initializing,
        device,
    };
    Scope::new(variables, config, root.module_type, root.token)
}

/// Flax's check against `apply({"params": {"params": …}})`, the most common mistake.
fn check_structure(variables: &FrozenDict) -> Result<()> {
    match variables.get("params") {
        Some(Value::Dict(params)) if matches!(params.get("params"), Some(Value::Dict(_))) => {
            Err(Error::ApplyScopeInvalidVariablesStructure)
        }
        _ => Ok(()),
    }
}
