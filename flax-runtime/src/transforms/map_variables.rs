//! `map_variables` (Flax's `nn.map_variables`): a module run on a transformed view of its
//! variables: masked, standardised, tied or swapped weights, without changing the module.
//!
//! ```
//! use flax::prelude::*;
//! use flax::tree;
//!
//! /// Flax's `CausalDense`: output `i` depends on inputs `<= i` (the kernel is masked to its
//! /// upper triangle when used; the stored kernel is not).
//! #[module]
//! pub struct CausalDense { pub features: i64 }
//!
//! #[module]
//! impl CausalDense {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
//!         let initializing = cx.is_initializing();
//!         let mask = move |v: FrozenDict| if initializing { Ok(v) } else { tree::tree_map(&v, |t| Ok(t.triu(0))) };
//!         nn::map_variables(nn::Dense::new(self.features).use_bias(false))
//!             .mapped_collections("params")
//!             .trans_in_fn(mask)
//!             .init(initializing)
//!             .call(cx, |dense, cx| dense.call(cx, x))
//!     }
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let x = Tensor::ones([1, 3], (Kind::Float, Device::Cpu));
//! let m = CausalDense::new(3);
//! let v = m.init(PRNGKey::new(0), &x)?;
//! let kernel = v.tensor(&["params", "Map_variablesDense_0", "kernel"]).unwrap();
//! let y = m.apply(&v, &x)?;
//! assert!(y.allclose(&x.matmul(&kernel.triu(0)), 1e-6, 1e-6, false));
//! # Ok(())
//! # }
//! ```

use crate::core::errors::Result;
use crate::core::filter::CollectionFilter;
use crate::core::frozen_dict::FrozenDict;
use crate::core::module::Module;
use crate::core::naming::Name;
use crate::core::scope::Scope;
use crate::transforms::lifted::{merge, run_lifted, LiftedModule};
use std::fmt;
use std::sync::Arc;

/// A transformation of the mapped collections, `{collection: subtree}` to the same.
pub type TransFn = Arc<dyn Fn(FrozenDict) -> Result<FrozenDict> + Send + Sync>;

/// A module lifted by [`map_variables`]: Flax's `nn.map_variables(Module, …)` class,
/// instantiated (named `Map_variables{Type}_{n}`, as Flax names it).
#[derive(Clone)]
pub struct MapVariables<M: Module> {
    lifted: LiftedModule<M>,
    mapped_collections: CollectionFilter,
    trans_in_fn: TransFn,
    trans_out_fn: TransFn,
    init: bool,
    mutable: bool,
}

/// Lifts `module` so that it sees its variables through `trans_in_fn` and writes them back
/// through `trans_out_fn` (Flax's `nn.map_variables`, defaults: every collection mapped,
/// identity functions, `init` and `mutable` false).
pub fn map_variables<M: Module>(module: M) -> MapVariables<M> {
    let identity: TransFn = Arc::new(Ok);
    MapVariables {
        lifted: LiftedModule::new("Map_variables", module),
        mapped_collections: CollectionFilter::Everything,
        trans_in_fn: identity.clone(),
        trans_out_fn: identity,
        init: false,
        mutable: false,
    }
}

impl<M: Module> MapVariables<M> {
    /// The collections the functions transform (default: all).
    pub fn mapped_collections(mut self, filter: impl Into<CollectionFilter>) -> Self {
        self.mapped_collections = filter.into();
        self
    }

    /// The view the module sees of the mapped collections.
    pub fn trans_in_fn(
        mut self,
        f: impl Fn(FrozenDict) -> Result<FrozenDict> + Send + Sync + 'static,
    ) -> Self {
        self.trans_in_fn = Arc::new(f);
        self
    }

    /// What is stored of the mapped collections after the module changed its view of them.
    pub fn trans_out_fn(
        mut self,
        f: impl Fn(FrozenDict) -> Result<FrozenDict> + Send + Sync + 'static,
    ) -> Self {
        self.trans_out_fn = Arc::new(f);
        self
    }

    /// Whether to create the mapped variables first, by running the module once on the
    /// untransformed (empty) collections: pass `cx.is_initializing()` during `init`.
    pub fn init(mut self, init: bool) -> Self {
        self.init = init;
        self
    }

    /// Whether the module may change the mapped collections (through `trans_out_fn`).
    pub fn mutable(mut self, mutable: bool) -> Self {
        self.mutable = mutable;
        self
    }

    /// Names the lifted module explicitly (Flax's `name=`).
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.lifted.set_name(name.into());
        self
    }

    /// Runs `body(module, scope)` on the mapped view (twice when creating the variables with
    /// `init`: first to create them, then on their view, as Flax does).
    pub fn call<R>(
        &self,
        cx: &mut Scope<'_>,
        mut body: impl FnMut(&M, &mut Scope<'_>) -> Result<R>,
    ) -> Result<R> {
        let (module, owner) = (&self.lifted.module, self.lifted.owner());
        self.lifted.enter(cx, |cx| {
            let (mut target, rest) = self.split(cx.frame_variables());
            let rngs = cx.rng_streams().clone();
            let target_out = self.mutable || self.init;
            if self.init && cx.has_mutable_collections() {
                let made = run_lifted(
                    cx,
                    merge(&target, &rest),
                    rngs.clone(),
                    CollectionFilter::Everything,
                    owner,
                    |inner| body(module, inner),
                )?;
                cx.set_rng_counters(made.counters);
                target = (self.trans_out_fn)(self.split(made.state).0)?;
            }
            let view = (self.trans_in_fn)(target)?;
            let mutable = if target_out {
                CollectionFilter::Everything
            } else {
                CollectionFilter::deny(self.mapped_collections.clone())
            };
            let run = run_lifted(cx, merge(&view, &rest), rngs, mutable, owner, |inner| body(module, inner))?;
            cx.set_rng_counters(run.counters);
            let (out_target, out_rest) = self.split(run.state);
            let out_target = if target_out { (self.trans_out_fn)(out_target)? } else { FrozenDict::new() };
            cx.publish(merge(&out_target, &out_rest));
            Ok(run.out)
        })
    }

    /// `(mapped collections, the others)`.
    fn split(&self, variables: FrozenDict) -> (FrozenDict, FrozenDict) {
        let (mut target, mut rest) = (FrozenDict::new(), FrozenDict::new());
        for (collection, value) in variables.into_inner() {
            if self.mapped_collections.matches(&collection) {
                target.insert(collection, value);
            } else {
                rest.insert(collection, value);
            }
        }
        (target, rest)
    }
}

impl<M: Module> fmt::Debug for MapVariables<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapVariables")
            .field("module", &self.lifted.module)
            .field("mapped_collections", &self.mapped_collections)
            .field("init", &self.init)
            .field("mutable", &self.mutable)
            .finish_non_exhaustive()
    }
}
