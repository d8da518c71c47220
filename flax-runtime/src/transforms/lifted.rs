//! What every lifted transform shares: running a body in a scope lifted from the running
//! module, and entering the frame of the module a transform lifts.

use crate::core::apply::Rngs;
use crate::core::errors::Result;
use crate::core::filter::CollectionFilter;
use crate::core::frozen_dict::{FrozenDict, Value};
use crate::core::module::Module;
use crate::core::naming::{lifted_type_name, ModuleHandle, Name, NamingGuard};
use crate::core::scope::{RngCounters, Scope};
use tch::Tensor;

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

/// A module lifted by a transform as Flax lifts a module class (`nn.scan(Block)` is the
/// class `ScanBlock`): it takes the module's place in its parent, auto-named with the
/// transform's prefix (`ScanBlock_0`), and the module runs in its scope, so the module's
/// variables sit directly under that name.
#[derive(Clone, Debug)]
pub(crate) struct LiftedModule<M: Module> {
    pub module: M,
    handle: ModuleHandle,
    type_name: &'static str,
}

impl<M: Module> LiftedModule<M> {
    /// Lifts `module` under `prefix` (`"Scan"`, `"Vmap"`, `"Checkpoint"`, …).
    pub fn new(prefix: &'static str, mut module: M) -> Self {
        let type_name = lifted_type_name(prefix, M::TYPE_NAME);
        let handle = ModuleHandle::lift(module.module_handle_mut(), type_name);
        LiftedModule { module, handle, type_name }
    }

    /// Names the lifted module explicitly (Flax's `name=`).
    pub fn set_name(&mut self, name: Name) {
        self.handle.set_name(name);
    }

    /// The identity the module's calls run under (they run in the lifted scope's root).
    pub fn owner(&self) -> u64 {
        self.module.module_handle().token
    }

    /// Runs `body` in the lifted module's frame.
    pub fn enter<'v, R>(
        &self,
        cx: &mut Scope<'v>,
        body: impl FnOnce(&mut Scope<'v>) -> Result<R>,
    ) -> Result<R> {
        in_frame_of(cx, &self.handle, self.type_name, body)
    }
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
            Value::Boxed(b) => walk(prefix, b.unbox(), out),
        }
    }
    let mut out = Vec::new();
    for (k, v) in dict.iter() {
        walk(k, v, &mut out);
    }
    out.sort();
    out
}

/// Both dictionaries' collections in one.
pub(crate) fn merge(a: &FrozenDict, b: &FrozenDict) -> FrozenDict {
    a.copy(b.iter().map(|(k, v)| (k.to_owned(), v.clone())))
}

/// `value` with every array replaced by `f` of it, in traversal order.
pub(crate) fn map_value(value: &Value, f: &mut impl FnMut(&Tensor) -> Result<Tensor>) -> Result<Value> {
    Ok(match value {
        Value::Tensor(t) => Value::Tensor(f(t)?),
        Value::Dict(d) => Value::Dict(
            d.iter().map(|(k, v)| Ok((k.to_owned(), map_value(v, f)?))).collect::<Result<FrozenDict>>()?,
        ),
        Value::List(items) => Value::List(items.iter().map(|v| map_value(v, f)).collect::<Result<_>>()?),
        Value::Scalar(s) => Value::Scalar(s.clone()),
        Value::Boxed(b) => Value::Boxed(Box::new(b.replace_boxed(map_value(b.unbox(), f)?))),
    })
}

/// Builder methods of a lifted module (`Scan`, `Vmap`) that forward to its `options`.
macro_rules! forward_options {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(<$($g:ident: $bound:path),*>)?;)*) => {
        $(
            $(#[$doc])*
            pub fn $name$(<$($g: $bound),*>)?(mut self, $($arg: $ty),*) -> Self {
                self.options = self.options.$name($($arg),*);
                self
            }
        )*
    };
}

pub(crate) use forward_options;
