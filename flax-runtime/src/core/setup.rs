//! `setup`-style modules: submodules and params declared once, from the module's attributes,
//! and used by any of its methods (Flax's `Module.setup`).
//!
//! The fields `setup` fills are declared on the struct with `#[setup]`; they are not attributes
//! (no constructor argument, no setter, not in the repr), and `#[module]` gathers them into a
//! struct `{Module}Setup` that the module's `fn setup` returns. In every other method
//! `self.field` reads them, as `self.dense1` reads an attribute assigned in Flax's `setup`:
//!
//! ```
//! use flax::prelude::*;
//!
//! #[module]
//! pub struct Mlp {
//!     #[setup]
//!     dense1: nn::Dense,
//!     #[setup]
//!     dense2: nn::Dense,
//! }
//!
//! #[module]
//! impl Mlp {
//!     fn setup(&self) -> MlpSetup {
//!         MlpSetup { dense1: nn::Dense::new(32), dense2: nn::Dense::new(32) }
//!     }
//!
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
//!         let x = self.dense1.call(cx, x)?.relu();
//!         self.dense2.call(cx, &x)
//!     }
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let x = Tensor::ones([1, 4], (Kind::Float, Device::Cpu));
//! let variables = Mlp::new().init(PRNGKey::new(0), &x)?;
//! assert_eq!(Mlp::params(&variables)?.dense2.kernel.size(), [32, 32]);
//! # Ok(())
//! # }
//! ```
//!
//! As in Flax:
//! - names come from the fields: `dense1`; a `Vec` field gives `layers_0`, `layers_1`, …; a map
//!   field (`BTreeMap`/`HashMap`) gives `{field}_{key}`; a param declared in `setup` with
//!   `cx.param("w", …)` (`fn setup(&self, cx: &mut Scope) -> Result<…>`) is named by its
//!   string and its value is the field's;
//! - `setup` runs lazily, the first time a method of the bound module runs, and once per bound
//!   module (see `Scope::setup_once`); a submodule it declares gets params only when called;
//! - every method may use the fields (several "forward" methods, `apply` with any of them),
//!   and `setup` and a `#[compact]` method may live in one module.
//!
//! Flax's errors: a field assigned twice in `setup` does not compile (rustc: field specified
//! more than once), nor does assigning an attribute in `setup` (`SetAttributeInModuleSetupError`:
//! attributes are not `Setup` fields), calling `setup` yourself (`CallSetupUnboundModuleError`:
//! the method is consumed by `#[module]`), or a `#[setup]` field without a `fn setup`; a
//! submodule constructed in a method that is neither `setup` nor `#[compact]`
//! (`AssignSubModuleError`) is the compile error it is for any module. A param name that
//! collides with a submodule field is `Error::NameInUse` at run time.
//!
//! Not supported: `#[setup]` fields on a generic struct.

use crate::core::errors::Result;
use crate::core::private::SubmoduleField;
use crate::core::scope::Scope;
use std::cell::RefCell;
use std::rc::Rc;

/// A module whose struct has `#[setup]` fields (implemented by `#[module]` on the struct).
#[doc(hidden)]
pub trait HasSetup: Sized {
    /// The struct of the `#[setup]` fields (`MlpSetup`).
    type Setup: 'static;
    /// The module seen with its setup fields, as `self` in the module's methods.
    type View<'a>
    where
        Self: 'a;

    /// The view of `self` with `setup`.
    fn view<'a>(&'a self, setup: &'a Self::Setup) -> Self::View<'a>;

    /// Names the submodules of the fields after the fields (`dense1`, `layers_0`, `blocks_a`).
    fn name_setup_fields(setup: &mut Self::Setup);
}

/// A module with a `setup` method (implemented by `#[module]` on the impl block).
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` has #[setup] fields but no `fn setup`",
    label = "its fields are never set",
    note = "add `fn setup(&self) -> {Self}Setup` (or `(&self, cx: &mut Scope) -> Result<{Self}Setup>`) to its #[module] impl block"
)]
pub trait DefinesSetup: HasSetup {
    /// Runs the user's `setup`.
    fn run_setup(&self, cx: &mut Scope<'_>) -> Result<Self::Setup>;
}

/// Compile-time proof that a struct with `#[setup]` fields has a `setup`.
#[doc(hidden)]
pub const fn assert_defines_setup<M: DefinesSetup>() {}

/// `module`'s setup in the running frame, run and named now if this is the frame's first use.
#[doc(hidden)]
pub fn setup<M: DefinesSetup>(cx: &mut Scope<'_>, module: &M) -> Result<Rc<M::Setup>> {
    cx.setup_once(|cx| {
        let mut built = module.run_setup(cx)?;
        M::name_setup_fields(&mut built);
        Ok(built)
    })
}

/// A `#[setup]` field while it is named: modules (in a `Vec`, `Option` or map) take the
/// field's name; anything else (a param's tensor, a number computed from the attributes) is
/// left as it is, chosen by the two traits below (autoref specialization).
#[doc(hidden)]
pub struct SetupField<'a, T>(pub RefCell<&'a mut T>);

/// Chosen when the field holds modules.
#[doc(hidden)]
pub trait ViaSubmoduleField {
    /// Names the modules after `field`.
    fn __flax_name_field(&self, field: &'static str);
}
impl<T: SubmoduleField> ViaSubmoduleField for SetupField<'_, T> {
    fn __flax_name_field(&self, field: &'static str) {
        self.0.borrow_mut().name_field(field);
    }
}

/// Chosen otherwise: nothing to name.
#[doc(hidden)]
pub trait ViaPlainField {
    /// Does nothing.
    fn __flax_name_field(&self, field: &'static str);
}
impl<T> ViaPlainField for &SetupField<'_, T> {
    fn __flax_name_field(&self, _field: &'static str) {}
}
