//! The table of a declared method's submodule calls that the macro follows at compile time
//! (the `# Shapes` section of the method's rustdoc), as the hidden constant
//! `__FLAX_SHAPE_TABLE` of the module's impl block, so it can be held against `tabulate`.

/// One submodule call of a declared method's body: what `tabulate` shows of it, its shapes
/// in the declaration's symbols (`[B, 784]`, `784*B`, `self.features`, `_` for a dimension not
/// known and `?` for a tensor not known; a value that is not a tensor is its source text).
#[derive(Debug)]
pub struct TableRow {
    /// The declared method whose body makes the call.
    pub method: &'static str,
    /// The module's path under the declared module (`Dense_0`); `None` where the macro cannot
    /// be sure of the name.
    pub path: Option<&'static str>,
    /// The module's type, with the method unless `call` (`Embed (attend)`); `None` where the
    /// macro does not know it (a submodule field's type, which the impl block does not see).
    pub module: Option<&'static str>,
    /// One cell per argument after the scope.
    pub inputs: &'static [&'static str],
    /// The output.
    pub output: &'static str,
}
