//! `flax::Error`: one variant per applicable `flax.errors` class, carrying the facts that
//! Flax's message carries, plus libtorch, I/O and file-format failures.
//!
//! Flax errors that cannot happen in Rust have no variant: `SetAttributeFrozenModuleError`
//! (modules are immutable values), `CallCompactUnboundModuleError` (a compact method needs a
//! `&mut Scope`, which only `init`/`apply`/`bind` create), `InvalidInstanceModuleError`
//! (`init`/`apply` are methods of module values), `InvalidFilterError` (filters are typed),
//! `ApplyScopeInvalidVariablesTypeError` (variables are typed), `CallUnbindOnUnboundModuleError`
//! (only a `Bound` has `unbind`). The compile-time ones (`MultipleMethodsCompactError`,
//! `ReservedModuleAttributeError`, and `NameInUseError`/`AssignSubModuleError` where the syntax
//! proves them) are compiler errors raised by `#[module]`.

use std::fmt;

/// Shorthand used by every fallible operation of the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of name a [`Error::NameInUse`] collided on (Flax's `key_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A parameter (`params` collection).
    Param,
    /// A variable of any other collection.
    Variable,
    /// A submodule.
    Submodule,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Param => "param",
            NameKind::Variable => "variable",
            NameKind::Submodule => "submodule",
        })
    }
}

/// Every error the library reports. Messages follow Flax's wording so that Flax users
/// recognise them; each variant's fields are the facts that message is built from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `NameInUseError`: params, variables and submodules of one module share one namespace.
    #[error("Could not create {kind} \"{name}\" in Module {module}: Name in use.")]
    NameInUse { kind: NameKind, name: String, module: String },

    /// `ScopeParamNotFoundError`: `apply` asked for a param the variables do not have.
    #[error("Could not find parameter named \"{name}\" in scope \"{scope}\".")]
    ScopeParamNotFound { name: String, scope: String },

    /// `ScopeParamShapeError`: an existing param's shape differs from what its initializer
    /// would produce for the current inputs.
    #[error("For parameter \"{name}\" in \"{scope}\", the given initializer is expected to generate shape {init_shape:?}, but the existing parameter it received has shape {value_shape:?}.")]
    ScopeParamShape { name: String, scope: String, value_shape: Vec<i64>, init_shape: Vec<i64> },

    /// `ScopeCollectionNotFound`: reading a variable from a collection that is absent.
    #[error("Tried to access \"{name}\" from collection \"{collection}\" in \"{scope}\" but the collection is empty.")]
    ScopeCollectionNotFound { collection: String, name: String, scope: String },

    /// `ScopeVariableNotFoundError`: a variable is missing from an immutable collection.
    #[error("No Variable named \"{name}\" for collection \"{collection}\" exists in \"{scope}\".")]
    ScopeVariableNotFound { name: String, collection: String, scope: String },

    /// `ModifyScopeVariableError`: writing a variable of an immutable collection.
    #[error(
        "Cannot update variable \"{name}\" in \"{scope}\" because collection \"{collection}\" is immutable."
    )]
    ModifyScopeVariable { collection: String, name: String, scope: String },

    /// `InvalidRngError`: a module asked for an RNG stream that `init`/`apply` was not given.
    /// `module` is its type, `scope` its path (Flax names only the module).
    #[error(
        "{module} at {scope} needs PRNG for \"{stream}\": pass an RNG stream named \"{stream}\" in `rngs`"
    )]
    InvalidRng { module: String, scope: String, stream: String },

    /// `ApplyScopeInvalidVariablesStructureError`: `apply` got `{"params": {"params": …}}`.
    #[error("Expect the `variables` (first argument) passed to apply() to be a dict with the structure {{\"params\": ...}}, but got a dict with an extra params layer, i.e.  {{\"params\": {{\"params\": ... }} }}. You should instead pass in your dict's [\"params\"].")]
    ApplyScopeInvalidVariablesStructure,

    /// `AssignSubModuleError`: a submodule used outside a `#[compact]` method of its parent
    /// (when the macro could not prove it at compile time).
    #[error("Submodule {module} must be defined in `setup()` or in a method wrapped in `@compact`")]
    AssignSubModule { module: String },

    /// `InvalidScopeError`: a variable handle used outside the module call that created it.
    #[error("The scope \"{scope}\" is no longer valid.")]
    InvalidScope { scope: String },

    /// `InvalidCheckpointError`: saving a checkpoint at an outdated step.
    #[error("Trying to save an outdated checkpoint at step: \"{step}\" and path: \"{path}\".")]
    InvalidCheckpoint { path: String, step: String },

    /// `AlreadyExistsError`: refusing to overwrite a file.
    #[error("Trying overwrite an existing file: \"{path}\".")]
    AlreadyExists { path: String },

    /// `PartitioningUnspecifiedError`: a lifted transform (`scan`, `vmap`) added an axis to a
    /// [`Partitioned`](crate::core::meta::Partitioned) variable without `partition_name` in its
    /// `metadata_params`; `target` is the box's repr.
    #[error("Trying to transform a Partitioned variable but \"partition_name\" is not specified in metadata_params: {target}")]
    PartitioningUnspecified { target: String },

    /// A tensor's shape, rank or dtype is not what an operation needs; names the module path.
    #[error("{scope}: {message}")]
    Shape { scope: String, message: String },

    /// An argument value outside what an operation accepts (Flax raises `ValueError`).
    #[error("{0}")]
    Value(String),

    /// A libtorch operation failed outside any module (the message is libtorch's, without
    /// its C++ backtrace unless `TORCH_SHOW_CPP_STACKTRACES=1`, as in PyTorch).
    #[error("libtorch: {}", torch_message(.0))]
    Torch(tch::TchError),

    /// A libtorch operation failed while the module at `scope` ran: the innermost module's
    /// path, so the user sees which layer got the tensors libtorch refused.
    #[error("{scope}: libtorch: {}", torch_message(source))]
    TorchIn {
        scope: String,
        #[source]
        source: tch::TchError,
    },

    /// A libtorch operation failed on the leaf at `path` of a tree (an optimizer's arithmetic,
    /// `apply_updates`): updates or state of another shape than the parameter, for example.
    #[error("at leaf '{path}': libtorch: {}", torch_message(source))]
    TorchAtLeaf {
        path: String,
        #[source]
        source: tch::TchError,
    },

    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A file or byte buffer is not in the expected format (corrupt, truncated, wrong type).
    #[error("malformed {format} data: {message}")]
    Format { format: &'static str, message: String },

    /// A checkpoint's bytes differ from the checksum its sidecar recorded when it was saved
    /// (the file was damaged or replaced since): nothing is restored from it.
    #[error("checkpoint {path} does not match its checksum file {sidecar}: it records \"{recorded}\", the file has \"{found}\"")]
    ChecksumMismatch { path: String, sidecar: String, recorded: String, found: String },

    /// Restoring a state dict into a target whose structure differs. Flax raises a
    /// `ValueError` at the first missing key (and ignores extra ones); this reports every
    /// difference at once. Entries are `/`-joined paths from the root; a mismatched entry is
    /// followed by what the target holds and what was found instead.
    #[error("The state dict does not match the target: missing {missing:?}, unexpected {unexpected:?}, mismatched {mismatched:?}")]
    StateDictMismatch { missing: Vec<String>, unexpected: Vec<String>, mismatched: Vec<String> },

    /// Trees combined leaf by leaf (`tree_zip_map`, `tree_unflatten`) differ in structure
    /// (JAX's "Custom node type mismatch" / "Dict key mismatch" errors); `path` is where.
    #[error("tree structures differ at {path}: {message}")]
    TreeStructureMismatch { path: String, message: String },

    /// A layer attribute whose value Flax rejects with a `ValueError`/`TypeError` when the
    /// layer runs (a padding of the wrong format, feature groups that do not divide the
    /// features, …); `scope` is the module path, as in [`Error::Shape`].
    #[error("{scope}: {message}")]
    InvalidAttribute { scope: String, message: String },

    /// Flax's `merge_param` rule broken: a flag such as `use_running_average` or
    /// `deterministic` must be given exactly once, as an attribute or as a call argument.
    /// `given_twice` tells which way it was broken; `scope` is the module path.
    #[error("{scope}: Parameter \"{name}\" {}", if *given_twice {
        "was passed to the constructor and at call time. Should be passed just once."
    } else {
        "must be passed to the constructor or at call time."
    })]
    MergeParam { scope: String, name: String, given_twice: bool },

    /// A lifted transform (`scan`, `vmap`, `cond`, …) given inputs or a body it cannot lift:
    /// axis sizes that differ, an axis out of range, a variable created inside the body in
    /// a collection the transform does not map, branches that create different variables.
    /// `scope` is the module path.
    #[error("{scope}: {transform}: {message}")]
    Transform { transform: &'static str, scope: String, message: String },

    /// A tensor's shape violates the `#[shape(…)]` declaration of a module method, checked
    /// when the method is called: `argument` (or `output`) at dimension `axis` (`None`: the
    /// rank differs).
    #[error("{scope}: {message}")]
    DeclaredShape { scope: String, argument: String, axis: Option<usize>, message: String },

    /// Flax's `LazyInitError`: `lazy_init` computed the variable at `path` from the values of
    /// an input given only by its shape and dtype.
    #[error("Lazy init encountered a value that could not be computed with the given inputs: \"{path}\" depends on the values of an input, not only on its shape and dtype; pass a real tensor for it")]
    LazyInit { path: String },

    /// A module or function called with arguments it does not take, as a layer of a
    /// `Sequential` passes them on (Flax raises Python's `TypeError`); `scope` is the path of
    /// the module that called it.
    #[error("{scope}: {message}")]
    CallArguments { scope: String, message: String },

    /// A feature this build of the library left out, and why (PyTorch's
    /// `is_nccl_available()` false): NCCL process groups need a CUDA build of libtorch and
    /// CUDA's and NCCL's headers when the crate is compiled.
    #[error("{feature} is not available in this build: {reason}")]
    NotBuilt { feature: &'static str, reason: String },
}

/// libtorch's message without tch's `Internal torch error:` prefix and without the C++
/// backtrace (which the conversion below also drops from the error itself, for `Debug`, unless
/// `TORCH_SHOW_CPP_STACKTRACES=1`).
fn torch_message(error: &tch::TchError) -> String {
    let text = error.to_string();
    let text = text.strip_prefix("Internal torch error: ").unwrap_or(&text);
    without_backtrace(text).to_owned()
}

/// A libtorch message without the C++ exception's backtrace (`Exception raised from … frame
/// #0: …`, about 2-5 KB), which only a libtorch developer reads.
fn without_backtrace(text: &str) -> &str {
    text.split("\nException raised from ").next().unwrap_or(text).trim_end()
}

/// libtorch's errors as [`Error::Torch`], with the C++ backtrace dropped from the message as
/// PyTorch drops it from its exceptions: a `main` returning `flax::Result` prints the error's
/// `Debug` form, which would otherwise be kilobytes of C++ frames. `TORCH_SHOW_CPP_STACKTRACES=1`
/// (PyTorch's switch) keeps it.
impl From<tch::TchError> for Error {
    fn from(error: tch::TchError) -> Self {
        static SHOW: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let show = *SHOW.get_or_init(|| std::env::var("TORCH_SHOW_CPP_STACKTRACES").is_ok_and(|v| v == "1"));
        Error::Torch(match error {
            tch::TchError::Torch(text) if !show => tch::TchError::Torch(without_backtrace(&text).to_owned()),
            other => other,
        })
    }
}

impl Error {
    /// A libtorch failure ([`Error::Torch`]) placed at the tree leaf `path`; other errors as
    /// they are.
    pub(crate) fn at_leaf(self, path: impl std::fmt::Display) -> Self {
        match self {
            Error::Torch(source) => Error::TorchAtLeaf { path: path.to_string(), source },
            other => other,
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
}
