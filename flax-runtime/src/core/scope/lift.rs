//! Re-entering a module's scope for a lifted transform (Flax's `flax.core.lift.pack`).
//!
//! A lifted transform (`scan`, `vmap`, `cond`, …) runs its body in a scope of its own: the
//! running module's variables, regrouped by the transform (a slice of a stacked collection, a
//! broadcast one, a carried one), with RNG streams the transform may have split. The body's
//! scope has the module's path (errors and RNG suffixes are the same as without the
//! transform), and what the body created or changed is written back into the module's
//! subtree afterwards. These are the three operations Flax's `pack` provides: take the
//! variables and RNG streams out of a scope, make an inner scope from them, and publish the
//! inner scope's mutable collections back.

use crate::core::apply::Rngs;
use crate::core::filter::CollectionFilter;
use crate::core::frozen_dict::{FrozenDict, Value};
use crate::core::naming::Name;
use crate::core::scope::{RngCounters, Scope, ScopeConfig};
use std::borrow::Cow;

impl<'v> Scope<'v> {
    /// The running module's variables: `{collection: subtree}` for every collection that has
    /// a subtree at the module's path (mutable collections as written so far).
    pub(crate) fn frame_variables(&self) -> FrozenDict {
        let mut names: Vec<&str> = self.state.keys().collect();
        if let Some(input) = &self.input {
            names.extend(input.keys().filter(|name| !self.state.contains_key(name)));
        }
        let mut out = FrozenDict::new();
        for collection in names {
            if let Some(subtree) = self.frame_dict(collection) {
                out.insert(collection, Value::Dict(subtree.clone()));
            }
        }
        out
    }

    /// The running module's subtree of `collection` (mutable collections as written so far).
    pub(crate) fn frame_dict(&self, collection: &str) -> Option<&FrozenDict> {
        let mut dict = self.source(collection)?;
        for frame in &self.frames[1..] {
            dict = dict.get_dict(frame.name.as_deref()?)?;
        }
        Some(dict)
    }

    /// Whether `capture_intermediates` is on in this run (a layer may skip a shortcut that
    /// would hide calls from it).
    pub(crate) fn is_capturing_intermediates(&self) -> bool {
        self.config.capture.is_on()
    }

    /// Whether any collection may be written in this run.
    pub(crate) fn has_mutable_collections(&self) -> bool {
        !self.config.mutable.is_empty() && !self.config.within.iter().any(CollectionFilter::is_empty)
    }

    /// The identity of the module running now (whose calls run in this frame).
    pub(crate) fn owner(&self) -> u64 {
        self.top().owner
    }

    /// The RNG streams with their root keys (a transform splits them per iteration or
    /// member, as Flax's `split_rngs` splits the stream's key and keeps its path suffix).
    pub(crate) fn rng_streams(&self) -> &Rngs {
        &self.config.rngs
    }

    /// A scope for the body of a transform lifting the running module: it reads `variables`
    /// (the module's subtree per collection, regrouped by the transform), draws keys from
    /// `rngs`, and may write only the collections `mutable` selects and this scope may
    /// write. Calls of the module `owner` run in its root frame, and so do modules
    /// constructed while the naming frame `naming` is the innermost (the body's closure).
    pub(crate) fn lift(
        &self,
        variables: FrozenDict,
        rngs: Rngs,
        mutable: CollectionFilter,
        owner: u64,
        naming: Option<u64>,
    ) -> Scope<'static> {
        self.lift_spec(mutable, owner).scope(variables, rngs, naming)
    }

    /// What [`lift`](Self::lift) takes from this scope, kept to make the lifted scope later
    /// (`remat` re-runs its body in the backward pass, after this scope is gone).
    pub(crate) fn lift_spec(&self, mutable: CollectionFilter, owner: u64) -> LiftSpec {
        let mut config = self.config.clone();
        config.within.push(mutable);
        let top = self.top();
        LiftSpec {
            config,
            prefix: self.path().into_iter().map(|name| Cow::Owned(name.to_owned())).collect(),
            rng_prefix: self
                .rng_prefix
                .iter()
                .cloned()
                .chain(self.frames[1..].iter().map(|f| f.name.clone().unwrap_or_default()))
                .collect(),
            counters: top.counters.clone(),
            module_type: top.module_type,
            owner,
        }
    }

    /// Stops folding the module path into this lifted scope's RNG keys: its streams' keys
    /// were forked at the path already (Flax's `jit` clears their suffix).
    pub(crate) fn clear_rng_suffix(&mut self) {
        self.rng_prefix.clear();
    }

    /// Writes the collections a lifted body produced into the running module's subtree,
    /// replacing it; collections this scope may not write are left out (a transform may hand
    /// back collections it only read), and so are empty ones.
    ///
    /// Keys are sorted, as in Flax, where variables that went through a JAX transform come
    /// back from JAX's pytree flattening with sorted dict keys (and checkpoints list them in
    /// that order).
    pub(crate) fn publish(&mut self, variables: FrozenDict) {
        for (collection, value) in variables.into_inner() {
            let Value::Dict(subtree) = sorted(value) else { continue };
            if subtree.is_empty() || !self.is_mutable_collection(&collection) {
                continue;
            }
            let names: Vec<&str> = self.frames[1..].iter().map(|f| f.name.as_deref().unwrap_or("")).collect();
            match names.split_last() {
                None => self.state.insert(collection, Value::Dict(subtree)),
                Some((last, parents)) => {
                    let mut dict = self.state.dict_mut(&collection);
                    for name in parents {
                        dict = dict.dict_mut(name);
                    }
                    dict.insert(*last, Value::Dict(subtree));
                }
            }
        }
    }

    /// The `make_rng` counters of the running module and of its children so far.
    pub(crate) fn rng_counters(&self) -> RngCounters {
        self.top().counters.clone()
    }

    /// Sets the running module's counters: a transform continues them from where its body
    /// left them, as Flax's lifted scope shares `rng_counters` with the scope it lifts.
    pub(crate) fn set_rng_counters(&mut self, counters: RngCounters) {
        self.frames.last_mut().expect("a scope always has its root frame").counters = counters;
    }
}

/// Everything a lifted scope takes from the scope it lifts, apart from the variables and RNG
/// keys (see [`Scope::lift_spec`]). It holds no borrow, so a body can be re-run from it later.
#[derive(Clone)]
pub(crate) struct LiftSpec {
    config: ScopeConfig,
    prefix: Vec<Name>,
    rng_prefix: Vec<Name>,
    counters: RngCounters,
    module_type: &'static str,
    owner: u64,
}

impl LiftSpec {
    /// The lifted scope over `variables` with the RNG streams `rngs` (see [`Scope::lift`]).
    pub(crate) fn scope(&self, variables: FrozenDict, rngs: Rngs, naming: Option<u64>) -> Scope<'static> {
        let config = ScopeConfig { rngs, ..self.config.clone() };
        let mut inner = Scope::new(Some(Cow::Owned(variables)), config, self.module_type, self.owner);
        inner.prefix = self.prefix.clone();
        inner.rng_prefix = self.rng_prefix.clone();
        inner.frames[0].counters = self.counters.clone();
        if let Some(naming) = naming {
            inner.owners.push((naming, 0));
        }
        inner
    }
}

/// `value` with the keys of every dictionary in it sorted (JAX's order for dict pytrees).
fn sorted(value: Value) -> Value {
    match value {
        Value::Dict(dict) => {
            let mut entries: Vec<(String, Value)> = dict.into_inner().into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Dict(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::List(items) => Value::List(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
