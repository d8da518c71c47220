//! `Variable`: a handle to one variable declared with [`Scope::variable`].

use crate::core::errors::Result;
use crate::core::naming::Name;
use crate::core::scope::Scope;
use tch::Tensor;

/// A handle to a variable of the module call that declared it (Flax's `Variable`).
///
/// Reads and writes go through the scope (`var.value(cx)`, `var.set_value(cx, t)`), which is
/// where the data lives. Using the handle outside the module call that created it is an
/// `InvalidScopeError`, as using a variable of a finished scope is in Flax.
#[derive(Clone, Debug)]
pub struct Variable {
    collection: Name,
    name: Name,
    frame: u64,
}

impl Variable {
    pub(crate) fn new(collection: Name, name: Name, frame: u64) -> Self {
        Variable { collection, name, frame }
    }

    /// The collection this variable belongs to.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// The variable's name within its module.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current value (shares storage with the variables; no copy).
    pub fn value(&self, cx: &Scope<'_>) -> Result<Tensor> {
        cx.check_handle(self.frame)?;
        cx.read_variable(&self.collection, &self.name)
    }

    /// Replaces the value; a `ModifyScopeVariableError` when the collection is not mutable.
    pub fn set_value(&self, cx: &mut Scope<'_>, value: Tensor) -> Result<()> {
        cx.check_handle(self.frame)?;
        cx.write_variable(&self.collection, &self.name, value)
    }
}
