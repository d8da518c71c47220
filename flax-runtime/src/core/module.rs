//! The `Module` trait, implemented by `#[module]`, and `bind` for interactive use.

use crate::core::apply::{root_scope, run, ApplyOptions, Root};
use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::Variables;
use crate::core::naming::ModuleHandle;
use crate::core::scope::Scope;
use crate::core::setup::{setup, DefinesSetup};
use std::borrow::Cow;
use std::fmt;
use tch::Device;

/// A Flax module: an immutable configuration value whose methods declare and use variables
/// through a [`Scope`]. Implemented by `#[module]` on a struct; never by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Flax module",
    label = "not a module",
    note = "add `#[module]` to the definition of `{Self}`"
)]
pub trait Module: Clone + fmt::Debug {
    /// Flax's class name: the prefix of auto-names (`Dense` gives `Dense_0`).
    const TYPE_NAME: &'static str;

    /// The identity and name slot every module carries (see [`ModuleHandle`]).
    #[doc(hidden)]
    fn module_handle(&self) -> &ModuleHandle;

    #[doc(hidden)]
    fn module_handle_mut(&mut self) -> &mut ModuleHandle;

    /// The module's explicit or construction-time name, if it has one.
    fn module_name(&self) -> Option<&str> {
        self.module_handle().name()
    }

    /// A new module with the same attributes (Flax's `Module.copy`), to change some with the
    /// setters or Rust's struct update syntax: `nn::Dense { features: 4, ..dense.copy() }`
    /// for Flax's `dense.copy(features=4)`. Unlike `clone`, which is the same module (called
    /// twice, it shares its name and params, as reusing a Flax module instance does), the copy
    /// is another module: constructed in a compact method it is auto-named there
    /// (`Dense_1`, or `.name("…")`), elsewhere it is named where it is first called. Submodules
    /// held in fields stay shared, as in Flax.
    fn copy(&self) -> Self {
        let mut module = self.clone();
        let type_name = self.module_handle().type_name();
        *module.module_handle_mut() = ModuleHandle::new(type_name);
        module
    }

    /// Initializes variables by running `f` on this module (Flax's `init` with `method=`):
    /// every collection but `intermediates` is mutable unless `options` says otherwise.
    /// Returns `f`'s output and the variables.
    fn init_method<R>(
        &self,
        options: impl Into<ApplyOptions>,
        f: impl FnOnce(&Self, &mut Scope<'_>) -> Result<R>,
    ) -> Result<(R, Variables)> {
        let options = options.into();
        let device = options.device.unwrap_or(Device::Cpu);
        run(root_of(self), None, options, true, device, |cx| f(self, cx))
    }

    /// Runs `f` on this module bound to `variables` (Flax's `apply` with `method=`), and
    /// returns its output and the mutable collections after the run (empty when nothing is
    /// mutable).
    fn apply_method<'v, R>(
        &self,
        variables: &'v Variables,
        options: impl Into<ApplyOptions>,
        f: impl FnOnce(&Self, &mut Scope<'v>) -> Result<R>,
    ) -> Result<(R, Variables)> {
        let options = options.into();
        let device = options.device.unwrap_or(Device::Cpu);
        run(root_of(self), Some(Cow::Borrowed(variables)), options, false, device, |cx| f(self, cx))
    }

    /// Binds the module to variables for interactive use (Flax's `bind`).
    fn bind(&self, variables: Variables, options: impl Into<ApplyOptions>) -> Bound<Self> {
        let options = options.into();
        let device = options.device.unwrap_or(Device::Cpu);
        let scope = root_scope(root_of(self), Some(Cow::Owned(variables)), options, false, device);
        Bound { module: self.clone(), scope }
    }
}

fn root_of<M: Module>(module: &M) -> Root {
    Root { module_type: M::TYPE_NAME, token: module.module_handle().token }
}

/// A module bound to variables (Flax's bound module), for use outside `init`/`apply`:
/// notebooks, debugging, inspecting submodules.
pub struct Bound<M: Module> {
    module: M,
    scope: Scope<'static>,
}

impl<M: Module> Bound<M> {
    /// Runs a method of the bound module: `bound.run(|m, cx| m.call(cx, &x))`.
    pub fn run<R>(&mut self, f: impl FnOnce(&M, &mut Scope<'static>) -> Result<R>) -> Result<R> {
        f(&self.module, &mut self.scope)
    }

    /// The module.
    pub fn module(&self) -> &M {
        &self.module
    }

    /// The bound variables, including updates to mutable collections made so far.
    pub fn variables(&self) -> Variables {
        self.scope.all_variables()
    }

    /// Splits into the unbound module and its variables (Flax's `unbind`).
    pub fn unbind(self) -> (M, Variables) {
        let variables = self.scope.all_variables();
        (self.module, variables)
    }
}

impl<M: Module> Bound<M> {
    /// A submodule held in a `#[submodule]` field, unbound with its variables (Flax's
    /// `bound.child.unbind()`, the transfer-learning guide's
    /// `bind(variables).backbone.unbind()`): the module and every collection's subtree under
    /// its name. `pick` selects the field: `bound.unbind_submodule(|m| &m.backbone)`.
    ///
    /// A module constructed in another module's compact method and handed to the field keeps
    /// that module as its parent (its variables are not under this module): an error.
    pub fn unbind_submodule<C: Module>(&self, pick: impl FnOnce(&M) -> &C) -> Result<(C, Variables)> {
        child_of(pick(&self.module), &self.scope.all_variables())
    }
}

impl<M: DefinesSetup + Module> Bound<M> {
    /// A submodule declared in `setup`, unbound with its variables (Flax's
    /// `bind(variables).vision_model.unbind()` for an attribute assigned in `setup`). Runs the
    /// bound module's `setup` if no method has yet: `bound.unbind_setup_submodule(|s| &s.encoder)`.
    pub fn unbind_setup_submodule<C: Module>(
        &mut self,
        pick: impl FnOnce(&M::Setup) -> &C,
    ) -> Result<(C, Variables)> {
        let built = setup(&mut self.scope, &self.module)?;
        child_of(pick(&built), &self.scope.all_variables())
    }
}

/// `child` and every collection's subtree under its name in `variables` (of its parent).
fn child_of<C: Module>(child: &C, variables: &Variables) -> Result<(C, Variables)> {
    let handle = child.module_handle();
    let name = match (handle.has_parent(), handle.name()) {
        (false, Some(name)) => name,
        _ => {
            return Err(Error::Value(format!(
                "{} is not a submodule held by this module (unnamed, or constructed in another module's compact method)",
                C::TYPE_NAME
            )))
        }
    };
    let mut own = Variables::new();
    for (collection, value) in variables.iter() {
        if let Some(sub) = value.as_dict().and_then(|d| d.get(name)) {
            own.insert(collection.to_owned(), sub.clone());
        }
    }
    Ok((child.clone(), own))
}

impl<M: Module> fmt::Debug for Bound<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.module.fmt(f)
    }
}
