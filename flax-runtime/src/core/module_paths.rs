//! Flax's `Module.module_paths`: every module a run reaches, by its path.

use crate::core::apply::{ApplyOptions, Rngs};
use crate::core::errors::Result;
use crate::core::module::Module;
use crate::core::scope::Scope;
use indexmap::IndexMap;
use std::fmt;
use tch::Device;

/// A module that [`module_paths`] found: what Flax's `module_paths` maps a path to. Rust
/// cannot hand back modules of different types in one map, so this holds the module's type
/// and its repr (Flax prints a module the same way, `Dense(features=3, …)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    /// The module's type, as Flax names its class (`Dense`).
    pub type_name: &'static str,
    /// The module's attributes, as its `Debug` (Flax's repr) shows them.
    pub repr: String,
}

impl fmt::Display for ModuleInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repr)
    }
}

/// Runs `init` of `module` through `f` and maps every module path the run reached (`""` for
/// the root, `"Mlp_0/enc/Dense_0"` below it) to the module found there, in the order the
/// modules were first called (Flax's `module_paths`). Generated `module_paths` methods call this.
pub fn module_paths<M: Module, R>(
    module: &M,
    rngs: Rngs,
    device: Option<Device>,
    f: impl FnOnce(&M, &mut Scope<'_>) -> Result<R>,
) -> Result<IndexMap<String, ModuleInfo>> {
    let mut options = ApplyOptions::new().rngs(rngs);
    options.device = device;
    let (calls, _) = module.init_method(options, |m, cx| {
        cx.record_calls();
        f(m, cx)?;
        Ok(cx.take_calls())
    })?;
    let mut paths = IndexMap::new();
    for call in calls {
        paths
            .entry(call.path.join("/"))
            .or_insert_with(|| ModuleInfo { type_name: call.module_type, repr: call.module });
    }
    Ok(paths)
}
