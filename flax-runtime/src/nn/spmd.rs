//! Partitioning metadata and logical axis names (Flax's `flax.linen.spmd`, and the
//! `flax.core.meta` names `flax.linen` re-exports).
//!
//! Params are annotated by wrapping their initializer ([`with_partitioning`] with mesh axis
//! names, [`with_logical_partitioning`] with logical ones such as `"embed"`); `init` then
//! stores them boxed ([`Partitioned`], [`LogicallyPartitioned`]) while modules compute with the
//! raw arrays. [`get_partition_spec`] reads the names back as a tree of [`PartitionSpec`]s, and
//! [`logical_to_mesh`] maps logical names to mesh axes through rules set for a scope
//! ([`logical_axis_rules`]) or given explicitly ([`logical_to_mesh_with`]).
//!
//! **What this does on one process: nothing to the tensors.** There is no device mesh here,
//! so [`with_sharding_constraint`] and [`with_logical_constraint`] check their arguments (the
//! names against the rules and the array's rank) and return the input unchanged, as Flax's do
//! outside a mesh. The annotations are acted on across processes by the sharded training mode
//! in [`crate::distributed`].

use crate::core::errors::{Error, Result};
use std::cell::RefCell;
use tch::Tensor;

pub use crate::core::meta::{
    get_partition_spec, unbox, with_logical_partitioning, with_partitioning, AxisMetadata,
    LogicallyPartitioned, MetadataParams, Partitioned, WithPartitioning, PARTITION_NAME,
};
pub use crate::core::partition_spec::{
    AxisName, IntoAxisName, IntoLogicalNames, IntoLogicalRules, IntoMeshAxis, LogicalNames, LogicalRules,
    Mesh, PartitionSpec, SpecTree,
};

thread_local! {
    /// The rules set for this thread (Flax keeps them in a `threading.local`).
    static AXIS_RULES: RefCell<LogicalRules> = const { RefCell::new(Vec::new()) };
}

/// Sets this thread's logical axis rules (Flax's `set_logical_axis_rules`).
pub fn set_logical_axis_rules(rules: impl IntoLogicalRules) {
    AXIS_RULES.with(|r| *r.borrow_mut() = rules.into_rules());
}

/// This thread's logical axis rules (Flax's `get_logical_axis_rules`; empty when none are set).
pub fn get_logical_axis_rules() -> LogicalRules {
    AXIS_RULES.with(|r| r.borrow().clone())
}

/// Runs `body` with `rules` as this thread's logical axis rules, restoring the previous ones
/// afterwards, also when `body` panics (Flax's `with nn.logical_axis_rules(rules):` block).
pub fn logical_axis_rules<R>(rules: impl IntoLogicalRules, body: impl FnOnce() -> R) -> R {
    struct Restore(Option<LogicalRules>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(old) = self.0.take() {
                AXIS_RULES.with(|r| *r.borrow_mut() = old);
            }
        }
    }
    let old = AXIS_RULES.with(|r| std::mem::replace(&mut *r.borrow_mut(), rules.into_rules()));
    let _restore = Restore(Some(old));
    body()
}

/// A logical dimension no rule has mapped yet (Flax's `_unassigned_axis`), or a mapped one.
#[derive(Clone, PartialEq)]
enum Assignment {
    Unassigned,
    Axis(AxisName),
}

/// Flax's `_logical_to_mesh_axes`: each named dimension takes the mesh axis of the first rule
/// for its name whose mesh axis no other dimension has taken yet.
fn assign(names: &[AxisName], rules: &[(String, AxisName)]) -> Result<Vec<Assignment>> {
    for (i, name) in names.iter().enumerate() {
        if let Some(name) = name {
            if names[..i].contains(&Some(name.clone())) {
                return Err(Error::Value(format!(
                    "Unsupported: Dimensions ('{name}',) occur more than once in array names."
                )));
            }
        }
    }
    let mut result: Vec<Assignment> = names
        .iter()
        .map(|n| if n.is_some() { Assignment::Unassigned } else { Assignment::Axis(None) })
        .collect();
    for (logical, mesh) in rules {
        let Some(pos) = names.iter().position(|n| n.as_deref() == Some(logical.as_str())) else { continue };
        let free = mesh.is_none() || !result.contains(&Assignment::Axis(mesh.clone()));
        if free && result[pos] == Assignment::Unassigned {
            result[pos] = Assignment::Axis(mesh.clone());
        }
    }
    Ok(result)
}

/// The mesh axes of an array whose dimensions have logical `names`, by this thread's rules
/// (Flax's `logical_to_mesh_axes(names)`; see [`logical_to_mesh_axes_with`]).
pub fn logical_to_mesh_axes(names: impl IntoLogicalNames) -> Result<PartitionSpec> {
    mesh_axes(&names.into_names(), &get_logical_axis_rules())
}

/// The mesh axes of an array whose dimensions have logical `names`, by `rules` (Flax's
/// `logical_to_mesh_axes(names, rules)`). The rules are in precedence order; a logical
/// dimension takes a rule's mesh axis if no earlier dimension took it, and stays unpartitioned
/// when no rule applies. Flax's worked example:
///
/// ```
/// use flax::nn::{self, spmd::PartitionSpec};
/// let rules = [("batch", "X"), ("features", "X"), ("heads", "Y"), ("batch", "Z")];
/// let spec = nn::logical_to_mesh_axes_with(("batch", "length", "heads", "features"), rules)?;
/// assert_eq!(spec, PartitionSpec::new(("X", None, "Y", None)));
/// # Ok::<(), flax::Error>(())
/// ```
///
/// A name given twice is Flax's `ValueError`.
pub fn logical_to_mesh_axes_with(
    names: impl IntoLogicalNames,
    rules: impl IntoLogicalRules,
) -> Result<PartitionSpec> {
    mesh_axes(&names.into_names(), &rules.into_rules())
}

fn mesh_axes(names: &[AxisName], rules: &[(String, AxisName)]) -> Result<PartitionSpec> {
    let assigned = assign(names, rules)?;
    Ok(PartitionSpec(
        assigned
            .into_iter()
            .map(|a| match a {
                Assignment::Axis(axis) => axis,
                Assignment::Unassigned => None,
            })
            .collect(),
    ))
}

/// [`logical_to_mesh_axes`] on every spec of a tree, by this thread's rules (Flax's
/// `logical_to_mesh(tree)`).
pub fn logical_to_mesh(tree: &SpecTree) -> Result<SpecTree> {
    logical_to_mesh_with(tree, get_logical_axis_rules())
}

/// [`logical_to_mesh_axes_with`] on every spec of a tree (Flax's `logical_to_mesh(tree,
/// rules)`), as the pjit guide turns `get_partition_spec` of a logically annotated model into
/// mesh specs.
pub fn logical_to_mesh_with(tree: &SpecTree, rules: impl IntoLogicalRules) -> Result<SpecTree> {
    let rules = rules.into_rules();
    tree.try_map(&mut |spec| mesh_axes(spec.names(), &rules))
}

/// What [`with_logical_constraint_with`] does with a logical name no rule maps (Flax's
/// `RulesFallback`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RulesFallback {
    /// The dimension is unpartitioned (Flax's default).
    #[default]
    AxisIsUnsharded,
    /// A `ValueError`: `Axis names … did not match a rule`.
    RaiseError,
    /// No constraint at all for that array.
    NoConstraint,
}

/// Constrains how an intermediate value is partitioned, by mesh axes (JAX's
/// `with_sharding_constraint`, which the pjit guide applies to activations). On one process
/// there is no mesh, so this only checks that `spec` has no more entries than `x` has
/// dimensions (JAX's error) and returns `x` unchanged (shared, not copied).
pub fn with_sharding_constraint(x: &Tensor, spec: &PartitionSpec) -> Result<Tensor> {
    check_rank(x, spec.names().len(), || format!("{spec:?}"))?;
    Ok(x.shallow_clone())
}

fn check_rank(x: &Tensor, entries: usize, what: impl FnOnce() -> String) -> Result<()> {
    if entries > x.dim() {
        return Err(Error::Value(format!(
            "One of with_sharding_constraint arguments was given the sharding {} which implies that it has a rank of at least {entries}, but it is {}",
            what(),
            x.dim()
        )));
    }
    Ok(())
}

/// Options of [`with_logical_constraint_with`] (Flax's keywords).
#[derive(Clone, Debug, Default)]
pub struct LogicalConstraintOptions {
    /// Rules overriding this thread's.
    pub rules: Option<LogicalRules>,
    /// What an unmatched name does.
    pub fallback: RulesFallback,
}

/// [`with_sharding_constraint`] by logical axis names (Flax's `with_logical_constraint`, as the
/// guide's `LogicalDotReluDot` writes `with_logical_constraint(y, ("batch", "hidden"))`). With no
/// rules (none given, none set) it returns `x` as Flax does; otherwise the names are mapped
/// through the rules, checked (a name twice, a rank below the names, an unmatched name under
/// [`RulesFallback::RaiseError`] are errors) and `x` is returned unchanged: one process has no
/// mesh to constrain to.
pub fn with_logical_constraint(x: &Tensor, names: impl IntoLogicalNames) -> Result<Tensor> {
    with_logical_constraint_with(x, names, &LogicalConstraintOptions::default())
}

/// [`with_logical_constraint`] with Flax's `rules` and `fallback` keywords.
pub fn with_logical_constraint_with(
    x: &Tensor,
    names: impl IntoLogicalNames,
    options: &LogicalConstraintOptions,
) -> Result<Tensor> {
    let rules = options.rules.clone().unwrap_or_else(get_logical_axis_rules);
    if rules.is_empty() {
        return Ok(x.shallow_clone());
    }
    let names = names.into_names();
    let assigned = assign(&names, &rules)?;
    if assigned.contains(&Assignment::Unassigned) {
        match options.fallback {
            RulesFallback::AxisIsUnsharded => {}
            RulesFallback::NoConstraint => return Ok(x.shallow_clone()),
            RulesFallback::RaiseError => {
                return Err(Error::Value(format!(
                    "Axis names ({}) did not match a rule",
                    crate::core::partition_spec::names_repr(&names)
                )))
            }
        }
    }
    check_rank(x, names.len(), || format!("{:?}", PartitionSpec(names.clone())))?;
    Ok(x.shallow_clone())
}
