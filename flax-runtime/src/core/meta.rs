//! Boxed axis metadata (Flax's `flax.core.meta`): variables that carry, next to their value, a
//! name per dimension saying how they are partitioned.
//!
//! A box is a [`Value::Boxed`] node of the variables tree, so `init` returns
//! `{"params": {"kernel": Partitioned(value=…, names=(None, 'data'), mesh=None)}}` as Flax's
//! does. Code that reads variables sees the raw array, as Flax's `self.param(…, unbox=True)`
//! does: [`Value::as_tensor`] looks through a box, so `cx.param`, `cx.get_variable`, the
//! typed params views and `variables.tensor(path)` need no change, and a model without
//! annotations never meets a box. Tree maps (gradients, optimizer states) keep the boxes and
//! their names around the mapped values, as JAX's `tree_map` keeps a `Partitioned` node; the
//! key path through a box ends in `value` (JAX's `.value`), which is also its state-dict key,
//! so `to_bytes` of boxed variables equals `flax.serialization.to_bytes` of them.
//!
//! On one process the names are descriptions: nothing here shards a tensor. The partition
//! specs they give are what [`crate::distributed`]'s sharded mode acts on.

use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{FrozenDict, Scalar, Value};
use crate::core::initializer::Initializer;
use crate::core::partition_spec::{
    names_repr, AxisName, IntoAxisName, IntoLogicalNames, IntoLogicalRules, LogicalNames, LogicalRules, Mesh,
    PartitionSpec, SpecTree,
};
use crate::core::rng::PRNGKey;
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// The key of `metadata_params` naming the axis that `nn::scan`/`nn::vmap` add to
/// [`Partitioned`] variables (Flax's `nn.PARTITION_NAME`).
pub const PARTITION_NAME: &str = "partition_name";

/// The parameters a lifted transform passes to [`AxisMetadata::add_axis`] (Flax's
/// `metadata_params` dict): `{PARTITION_NAME: Some("layers")}`, or `None` for an axis left
/// unpartitioned.
pub type MetadataParams = BTreeMap<String, AxisName>;

/// `metadata_params` as the lifted transforms' builders take them: `(key, axis name)` pairs,
/// the name `None` or a string.
pub(crate) fn metadata_params<S: Into<String>, A: IntoAxisName>(
    params: impl IntoIterator<Item = (S, A)>,
) -> MetadataParams {
    params.into_iter().map(|(k, v)| (k.into(), v.into_axis_name())).collect()
}

/// A value with partitioning names for its dimensions (Flax's `nn.Partitioned`); `names` has
/// one entry per dimension, `None` for an unpartitioned one.
#[derive(Clone)]
pub struct Partitioned {
    /// The boxed value (an array, usually).
    pub value: Value,
    /// The mesh axis of each dimension.
    pub names: LogicalNames,
    /// The mesh the names refer to (`None`: the global one, which one process does not have).
    pub mesh: Option<Mesh>,
}

/// A value with *logical* axis names (`"embed"`, `"hidden"`), which axis rules map to mesh
/// axes (Flax's `nn.LogicallyPartitioned`).
#[derive(Clone)]
pub struct LogicallyPartitioned {
    /// The boxed value.
    pub value: Value,
    /// The logical axis of each dimension.
    pub names: LogicalNames,
    /// The mesh the names refer to once mapped.
    pub mesh: Option<Mesh>,
    /// Rules overriding the scoped ones (`None`: the scoped rules).
    pub rules: Option<LogicalRules>,
}

/// A box in a variables tree (Flax's `AxisMetadata` subclasses that Flax ships).
#[derive(Clone)]
pub enum AxisMetadata {
    /// Mesh axis names.
    Partitioned(Partitioned),
    /// Logical axis names.
    LogicallyPartitioned(LogicallyPartitioned),
}

impl From<Partitioned> for Value {
    fn from(p: Partitioned) -> Self {
        Value::Boxed(Box::new(AxisMetadata::Partitioned(p)))
    }
}

impl From<LogicallyPartitioned> for Value {
    fn from(p: LogicallyPartitioned) -> Self {
        Value::Boxed(Box::new(AxisMetadata::LogicallyPartitioned(p)))
    }
}

impl AxisMetadata {
    /// The boxed value, one level down (Flax's `unbox(apply_constraint=False)`: with no mesh
    /// on one process there is no constraint to apply).
    pub fn unbox(&self) -> &Value {
        match self {
            AxisMetadata::Partitioned(p) => &p.value,
            AxisMetadata::LogicallyPartitioned(p) => &p.value,
        }
    }

    pub(crate) fn value_mut(&mut self) -> &mut Value {
        match self {
            AxisMetadata::Partitioned(p) => &mut p.value,
            AxisMetadata::LogicallyPartitioned(p) => &mut p.value,
        }
    }

    /// The name of each dimension.
    pub fn names(&self) -> &[AxisName] {
        match self {
            AxisMetadata::Partitioned(p) => &p.names,
            AxisMetadata::LogicallyPartitioned(p) => &p.names,
        }
    }

    fn names_mut(&mut self) -> &mut LogicalNames {
        match self {
            AxisMetadata::Partitioned(p) => &mut p.names,
            AxisMetadata::LogicallyPartitioned(p) => &mut p.names,
        }
    }

    /// The mesh the names refer to.
    pub fn mesh(&self) -> Option<&Mesh> {
        match self {
            AxisMetadata::Partitioned(p) => p.mesh.as_ref(),
            AxisMetadata::LogicallyPartitioned(p) => p.mesh.as_ref(),
        }
    }

    /// The same box around another value (Flax's `replace_boxed`).
    pub fn replace_boxed(&self, value: Value) -> AxisMetadata {
        let mut out = self.clone();
        *out.value_mut() = value;
        out
    }

    /// The names as a spec (Flax's `get_partition_spec`): `PartitionSpec(None, 'data')`. For a
    /// [`LogicallyPartitioned`] box these are the logical names; `nn::logical_to_mesh` maps them.
    pub fn get_partition_spec(&self) -> PartitionSpec {
        PartitionSpec(self.names().to_vec())
    }

    /// The box after a lifted transform inserted a dimension at `index` (Flax's `add_axis`):
    /// the name `params[PARTITION_NAME]` is inserted there, after padding the names with `None`
    /// up to `index`. Without that key, `PartitioningUnspecifiedError`.
    pub fn add_axis(&self, index: usize, params: &MetadataParams) -> Result<AxisMetadata> {
        let name = self.partition_name(params)?;
        let mut out = self.clone();
        let names = out.names_mut();
        if names.len() < index {
            names.resize(index, None);
        }
        names.insert(index, name);
        Ok(out)
    }

    /// The inverse of [`add_axis`](Self::add_axis) (Flax's `remove_axis`): the name at `index`
    /// must be `params[PARTITION_NAME]`.
    pub fn remove_axis(&self, index: usize, params: &MetadataParams) -> Result<AxisMetadata> {
        let name = self.partition_name(params)?;
        let mut out = self.clone();
        let names = out.names_mut();
        if names.get(index) != Some(&name) {
            return Err(Error::Value(format!(
                "remove_axis({index}): the axis there is not {name:?} in {:?}",
                Value::Boxed(Box::new(self.clone()))
            )));
        }
        names.remove(index);
        Ok(out)
    }

    fn partition_name(&self, params: &MetadataParams) -> Result<AxisName> {
        params.get(PARTITION_NAME).cloned().ok_or_else(|| Error::PartitioningUnspecified {
            target: format!("{:?}", Value::Boxed(Box::new(self.clone()))),
        })
    }

    /// What follows `value=…` in the repr: `, names=(None, 'data'), mesh=None` (and
    /// `, rules=None` for a logical box).
    pub(crate) fn fields_repr(&self) -> String {
        let mesh = self.mesh().map_or("None".to_owned(), |m| format!("{m:?}"));
        let mut out = format!(", names=({}), mesh={mesh}", names_repr(self.names()));
        if let AxisMetadata::LogicallyPartitioned(p) = self {
            out.push_str(&format!(", rules={}", rules_repr(p.rules.as_deref())));
        }
        out
    }

    /// The class name Flax prints.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            AxisMetadata::Partitioned(_) => "Partitioned",
            AxisMetadata::LogicallyPartitioned(_) => "LogicallyPartitioned",
        }
    }
}

/// Rules as Python prints their tuple: `(('batch', 'data'), ('hidden', None))`.
pub(crate) fn rules_repr(rules: Option<&[(String, AxisName)]>) -> String {
    let Some(rules) = rules else { return "None".into() };
    let items: Vec<String> = rules
        .iter()
        .map(|(l, m)| format!("('{l}', {})", m.as_ref().map_or("None".into(), |m| format!("'{m}'"))))
        .collect();
    if items.len() == 1 {
        format!("({},)", items[0])
    } else {
        format!("({})", items.join(", "))
    }
}

/// Maps `f` over every box of `value` (Flax's `map_axis_meta`); the rest is kept.
pub fn map_axis_meta(value: &Value, f: &mut impl FnMut(&AxisMetadata) -> Result<Value>) -> Result<Value> {
    Ok(match value {
        Value::Boxed(b) => f(b)?,
        Value::Dict(d) => Value::Dict(map_dict(d, f)?),
        Value::List(items) => Value::List(items.iter().map(|v| map_axis_meta(v, f)).collect::<Result<_>>()?),
        other => other.clone(),
    })
}

fn map_dict(dict: &FrozenDict, f: &mut impl FnMut(&AxisMetadata) -> Result<Value>) -> Result<FrozenDict> {
    dict.iter().map(|(k, v)| Ok((k.to_owned(), map_axis_meta(v, f)?))).collect()
}

/// The axis a lifted transform adds to or removes from `collection`'s boxes, which must be
/// non-negative (Flax inserts the name at that index of the names).
pub(crate) fn box_axis(axis: i64, collection: &str) -> Result<usize> {
    usize::try_from(axis).map_err(|_| {
        Error::Value(format!(
            "collection \"{collection}\" holds Partitioned variables: its variable axis must be non-negative, got {axis}"
        ))
    })
}

/// The tree without its boxes, each replaced by its (recursively unboxed) value (Flax's
/// `meta.unbox`). Tensors are shared, not copied.
pub fn unbox(tree: &FrozenDict) -> FrozenDict {
    tree.iter().map(|(k, v)| (k.to_owned(), unbox_value(v))).collect()
}

/// [`unbox`] for any node.
pub fn unbox_value(value: &Value) -> Value {
    match value {
        Value::Boxed(b) => unbox_value(b.unbox()),
        Value::Dict(d) => Value::Dict(unbox(d)),
        Value::List(items) => Value::List(items.iter().map(unbox_value).collect()),
        other => other.clone(),
    }
}

/// Every box of the tree with a dimension added at `index` (Flax's `meta.add_axis`).
pub fn add_axis(tree: &Value, index: usize, params: &MetadataParams) -> Result<Value> {
    map_axis_meta(tree, &mut |b| Ok(Value::Boxed(Box::new(b.add_axis(index, params)?))))
}

/// Every box of the tree with the dimension at `index` removed (Flax's `meta.remove_axis`).
pub fn remove_axis(tree: &Value, index: usize, params: &MetadataParams) -> Result<Value> {
    map_axis_meta(tree, &mut |b| Ok(Value::Boxed(Box::new(b.remove_axis(index, params)?))))
}

/// Whether the tree holds any box (lets lifted transforms skip the metadata pass otherwise).
pub fn has_axis_metadata(value: &Value) -> bool {
    match value {
        Value::Boxed(_) => true,
        Value::Dict(d) => d.iter().any(|(_, v)| has_axis_metadata(v)),
        Value::List(items) => items.iter().any(has_axis_metadata),
        Value::Tensor(_) | Value::Scalar(_) => false,
    }
}

/// An initializer whose values are stored in an axis-metadata box (what
/// [`with_partitioning`] and [`with_logical_partitioning`] return). It initializes exactly as
/// the wrapped one does; only what `cx.param` stores differs.
#[derive(Clone)]
pub struct WithPartitioning<I> {
    init: I,
    names: LogicalNames,
    mesh: Option<Mesh>,
    /// `Some` for a logical box: its rules (`None` inside: the scoped ones).
    logical: Option<Option<LogicalRules>>,
}

impl<I> WithPartitioning<I> {
    /// The mesh the names refer to (Flax's `mesh=` argument).
    pub fn mesh(mut self, mesh: Mesh) -> Self {
        self.mesh = Some(mesh);
        self
    }

    /// Rules for a logical box overriding the scoped ones (Flax's `rules=` argument of
    /// `with_logical_partitioning`); a mesh-axes box has no rules and ignores them.
    pub fn rules(mut self, rules: impl IntoLogicalRules) -> Self {
        if let Some(r) = &mut self.logical {
            *r = Some(rules.into_rules());
        }
        self
    }
}

impl<I: Initializer> Initializer for WithPartitioning<I> {
    fn init(&self, key: PRNGKey, shape: &[i64], options: (Kind, Device)) -> Result<Tensor> {
        self.init.init(key, shape, options)
    }

    fn box_value(&self, value: Value) -> Value {
        let (value, names, mesh) = (self.init.box_value(value), self.names.clone(), self.mesh.clone());
        match &self.logical {
            None => Partitioned { value, names, mesh }.into(),
            Some(rules) => LogicallyPartitioned { value, names, mesh, rules: rules.clone() }.into(),
        }
    }
}

/// Wraps an initializer so its params are stored as [`Partitioned`] with `names`, one mesh axis
/// (or `None`) per dimension (Flax's `nn.with_partitioning`):
/// `nn::Dense::new(8).kernel_init(nn::with_partitioning(lecun_normal(), (None, "data")))`.
pub fn with_partitioning<I: Initializer>(init: I, names: impl IntoLogicalNames) -> WithPartitioning<I> {
    WithPartitioning { init, names: names.into_names(), mesh: None, logical: None }
}

/// Wraps an initializer so its params are stored as [`LogicallyPartitioned`] with logical axis
/// `names` (Flax's `nn.with_logical_partitioning`).
pub fn with_logical_partitioning<I: Initializer>(
    init: I,
    names: impl IntoLogicalNames,
) -> WithPartitioning<I> {
    WithPartitioning { init, names: names.into_names(), mesh: None, logical: Some(None) }
}

/// The partition spec of every leaf (Flax's `nn.get_partition_spec`): a box's names, a
/// `PartitionSpec()` for an unannotated array, `None` for a non-array leaf (a Python int).
pub fn get_partition_spec(tree: &FrozenDict) -> SpecTree {
    SpecTree::Dict(tree.iter().map(|(k, v)| (k.to_owned(), leaf_spec(v))).collect())
}

fn leaf_spec(value: &Value) -> SpecTree {
    match value {
        Value::Boxed(b) => SpecTree::Spec(b.get_partition_spec()),
        Value::Tensor(_) | Value::Scalar(Scalar::UintArray(_)) => SpecTree::Spec(PartitionSpec::default()),
        Value::Scalar(_) => SpecTree::None,
        Value::Dict(d) => get_partition_spec(d),
        Value::List(items) => SpecTree::List(items.iter().map(leaf_spec).collect()),
    }
}
