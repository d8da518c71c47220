//! What every lifted transform shares: running a body in a scope lifted from the running
//! module, and entering the frame of the module a transform lifts.

use crate::core::apply::Rngs;
use crate::core::errors::Result;
use crate::core::filter::CollectionFilter;
use crate::core::frozen_dict::{FrozenDict, Value};
use crate::core::naming::{ModuleHandle, NamingGuard};
use crate::core::scope::{RngCounters, Scope};

/// What a lifted body left: its output, the lifted scope's mutable collections, and the
/// `make_rng` counters after it (which the transform hands back to the module or not).
pub(crate) struct Lifted<R> {
    pub out: R,
    pub state: FrozenDict,
    pub counters: RngCounters,
}

/// Runs `body` in a scope lifted from the running module of `cx` (see [`Scope::lift`]),
/// starting from the module's `make_rng` counters.
///
/// Modules constructed inside `body` (the closure a user passes to `cond`, `while_loop`, …)
/// are children of the lifted module, auto-named afresh per call, as in Flax, where the
/// closure receives a clone of the module bound to the lifted scope.
pub(crate) fn run_lifted<R>(
    cx: &mut Scope<'_>,
    variables: FrozenDict,
    rngs: Rngs,
    mutable: CollectionFilter,
    owner: u64,
    body: impl FnOnce(&mut Scope<'_>) -> Result<R>,
) -> Result<Lifted<R>> {
    let naming = NamingGuard::push(true);
    let mut inner = cx.lift(variables, rngs, mutable, owner, Some(naming.id()));
    let out = body(&mut inner);
    drop(naming);
    let out = out?;
    let counters = inner.rng_counters();
    Ok(Lifted { out, state: inner.into_state(), counters })
}

/// Runs `body` in the frame of the module `handle` names (its child frame in the running
/// module, as a method call of it would), so that `body` lifts that module's variables.
pub(crate) fn in_frame_of<'v, R>(
    cx: &mut Scope<'v>,
    handle: &ModuleHandle,
    type_name: &'static str,
    body: impl FnOnce(&mut Scope<'v>) -> Result<R>,
) -> Result<R> {
    cx.call_method(handle, type_name, "call", false, body, |_| None, None)
}

/// `collection/path: dtype[shape]` of every array of `dict`, in order.
pub(crate) fn signature(dict: &FrozenDict) -> Vec<String> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Dict(d) => {
                for (k, v) in d.iter() {
                    walk(&format!("{prefix}/{k}"), v, out);
                }
            }
            Value::List(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(&format!("{prefix}/{i}"), v, out);
                }
            }
            Value::Tensor(_) => out.push(format!("{}: {}", prefix.trim_start_matches('/'), value.describe())),
            Value::Scalar(_) => out.push(format!("{}: a scalar", prefix.trim_start_matches('/'))),
        }
    }
    let mut out = Vec::new();
    for (k, v) in dict.iter() {
        walk(k, v, &mut out);
    }
    out.sort();
    out
}
