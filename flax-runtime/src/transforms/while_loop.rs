//! `while_loop` (Flax's `nn.while_loop`): a body run on the module's variables while a
//! condition holds, with collections carried from one iteration to the next.
//!
//! ```
//! use flax::prelude::*;
//! use flax::nn::WhileLoopOptions;
//!
//! /// The spec's `WhileLoopExample`: applies a `Dense` until the `state` counter reaches 10.
//! #[module]
//! pub struct WhileLoopExample {}
//!
//! #[module]
//! impl WhileLoopExample {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
//!         let cond_fn = |cx: &mut Scope, _c: &Tensor| -> Result<bool> {
//!             Ok(cx.get_variable("state", "acc").is_some_and(|acc| acc.int64_value(&[]) < 10))
//!         };
//!         let body_fn = |cx: &mut Scope, c: Tensor| -> Result<Tensor> {
//!             let acc = cx.variable("state", "acc", |cx| Ok(Tensor::zeros([], (Kind::Int, cx.device()))))?;
//!             let n = acc.value(cx)?;
//!             acc.set_value(cx, n + 1)?;
//!             nn::Dense::new(c.size()[1]).call(cx, &c)
//!         };
//!         if cx.is_mutable_collection("params") {
//!             return body_fn(cx, x.shallow_clone());
//!         }
//!         nn::while_loop(cond_fn, body_fn, cx, x.shallow_clone(), WhileLoopOptions::default().carry_variables("state"))
//!     }
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let x = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
//! let m = WhileLoopExample::new();
//! let variables = m.init(PRNGKey::new(0), &x)?;
//! let (_, state) = m.apply_with(&variables, ApplyOptions::new().mutable("state"), &x)?;
//! assert_eq!(state.tensor(&["state", "acc"]).unwrap().int64_value(&[]), 10);
//! # Ok(())
//! # }
//! ```
//!
//! As in Flax, the body cannot create variables (a carried collection keeps its structure;
//! call the body once before the loop during `init`, as the example does), the condition
//! cannot write any, and the collections that are neither carried nor broadcast are not
//! visible. RNG streams are visible only when listed in `split_rngs`: split (iteration `i`
//! draws from `fold_in(key, i)`, the condition from `fold_in(key, -i)`, as Flax folds) or
//! shared.

use crate::core::apply::Rngs;
use crate::core::errors::Result;
use crate::core::filter::CollectionFilter;
use crate::core::frozen_dict::FrozenDict;
use crate::core::scope::Scope;
use crate::transforms::axes::Lifting;
use crate::transforms::lifted::{merge, run_lifted, signature};

/// How [`while_loop`] treats the module's variables and RNG streams (Flax's keyword
/// arguments and defaults: nothing carried, everything else broadcast read-only).
#[derive(Clone, Debug)]
pub struct WhileLoopOptions {
    carry_variables: CollectionFilter,
    broadcast_variables: CollectionFilter,
    split_rngs: Vec<(String, bool)>,
}

impl Default for WhileLoopOptions {
    fn default() -> Self {
        WhileLoopOptions {
            carry_variables: CollectionFilter::Nothing,
            broadcast_variables: CollectionFilter::Everything,
            split_rngs: Vec::new(),
        }
    }
}

impl WhileLoopOptions {
    /// Collections the body may change, handed on to the next iteration and kept after it.
    pub fn carry_variables(mut self, filter: impl Into<CollectionFilter>) -> Self {
        self.carry_variables = filter.into();
        self
    }

    /// Collections the loop reads but never writes (default: all).
    pub fn broadcast_variables(mut self, filter: impl Into<CollectionFilter>) -> Self {
        self.broadcast_variables = filter.into();
        self
    }

    /// The RNG streams visible in the loop: split per iteration (`true`) or shared.
    pub fn split_rngs<S: Into<String>>(mut self, streams: impl IntoIterator<Item = (S, bool)>) -> Self {
        self.split_rngs = streams.into_iter().map(|(name, split)| (name.into(), split)).collect();
        self
    }

    /// The streams folded with `data` where split.
    fn rngs(&self, streams: &Rngs, data: u32) -> Rngs {
        let mut rngs = Rngs::new();
        for (name, split) in &self.split_rngs {
            if let Some(index) = streams.index_of(name) {
                let key = streams.key(index);
                rngs = rngs.with(name.clone(), if *split { key.fold_in(data) } else { key });
            }
        }
        rngs
    }
}

/// Runs `body_fn` on the running module's variables while `cond_fn` holds, starting from
/// `init`, and returns the last carry (Flax's `nn.while_loop(cond_fn, body_fn, mdl, init,
/// …)`, where `cx` plays `mdl`). The carried collections are written back after the loop.
pub fn while_loop<C>(
    mut cond_fn: impl FnMut(&mut Scope<'_>, &C) -> Result<bool>,
    mut body_fn: impl FnMut(&mut Scope<'_>, C) -> Result<C>,
    cx: &mut Scope<'_>,
    init: C,
    options: WhileLoopOptions,
) -> Result<C> {
    let lifting = Lifting::new("while_loop", cx);
    let (mut carried, broadcast) = options.group(cx.frame_variables());
    let owner = cx.owner();
    let streams = cx.rng_streams().clone();
    let start = cx.rng_counters();
    let mut carry = init;
    let mut body_start = None;
    let mut end = None;
    for i in 0u32.. {
        let variables = merge(&carried, &broadcast);
        let rngs = options.rngs(&streams, i.wrapping_neg());
        cx.set_rng_counters(start.clone());
        let check = run_lifted(cx, variables.clone(), rngs, CollectionFilter::Nothing, owner, |inner| {
            cond_fn(inner, &carry)
        })?;
        // Both functions are traced once in Flax: the body's keys come from the counters the
        // condition's trace left.
        let after_cond = body_start.get_or_insert(check.counters).clone();
        if !check.out {
            break;
        }
        cx.set_rng_counters(after_cond);
        let rngs = options.rngs(&streams, i);
        let mutable = options.carry_variables.clone();
        let step = run_lifted(cx, variables, rngs, mutable, owner, |inner| body_fn(inner, carry))?;
        carry = step.out;
        end = Some(step.counters);
        carried = options.carried(&lifting, &carried, step.state)?;
    }
    cx.set_rng_counters(end.or(body_start).unwrap_or(start));
    cx.publish(carried);
    Ok(carry)
}

impl WhileLoopOptions {
    /// The module's variables as `(carried, broadcast)`; the rest is not visible.
    fn group(&self, variables: FrozenDict) -> (FrozenDict, FrozenDict) {
        let (mut carried, mut broadcast) = (FrozenDict::new(), FrozenDict::new());
        for (collection, value) in variables.into_inner() {
            if self.carry_variables.matches(&collection) {
                carried.insert(collection, value);
            } else if self.broadcast_variables.matches(&collection) {
                broadcast.insert(collection, value);
            }
        }
        (carried, broadcast)
    }

    /// The carried collections after an iteration, which must keep their structure.
    fn carried(&self, lifting: &Lifting, before: &FrozenDict, state: FrozenDict) -> Result<FrozenDict> {
        let mut after = FrozenDict::new();
        for (collection, value) in state.into_inner() {
            if self.carry_variables.matches(&collection) {
                after.insert(collection, value);
            }
        }
        if signature(before) != signature(&after) {
            return Err(lifting.error(format!(
                "the body changed the structure of the carried variables (it cannot create variables: call it \
                 once before the loop during init): before {:?}, after {:?}",
                signature(before),
                signature(&after)
            )));
        }
        Ok(after)
    }
}
