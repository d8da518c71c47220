//! Flax's `flax.traverse_util`: flattening nested dictionaries to path-keyed maps and back,
//! path-aware maps, and `ModelParamTraversal`.
//!
//! Python's flat keys are tuples of strings, or `sep`-joined strings when `sep` is given; here
//! these are separate functions: [`flatten_dict`] / [`unflatten_dict`] with `Vec<String>`
//! keys and [`flatten_dict_sep`] / [`unflatten_dict_sep`] with `String` keys. Flax's other
//! keyword arguments are [`FlattenOptions`], taken by the `_with` forms. Flat maps keep
//! the nested dictionaries' insertion order, as Python's dicts do. Flax's `empty_node`
//! sentinel is [`FlatValue::EmptyNode`].
//!
//! The generic `Traversal` classes (`TraverseAttr`, `TraverseItem`, …, deprecated in Flax) are
//! in [`traversal`], over state-dict [`Value`]s; typed trees are better traversed with
//! [`crate::tree`].

pub mod traversal;

pub use traversal::{
    t_identity, ItemKey, Traversal, TraverseAttr, TraverseCompose, TraverseEach, TraverseFilter, TraverseId,
    TraverseItem, TraverseMerge, TraverseTree,
};

use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{FrozenDict, Value};
use indexmap::IndexMap;

/// A value of a flattened dictionary: a leaf, or the marker of an empty dictionary that
/// `flatten_dict(…, keep_empty_nodes = true)` keeps so that `unflatten_dict` restores it
/// (Flax's `traverse_util.empty_node`).
#[derive(Debug, Clone)]
pub enum FlatValue {
    /// A leaf: anything but a dictionary, or a dictionary that `is_leaf` kept whole.
    Leaf(Value),
    /// An empty dictionary (Flax's `empty_node`).
    EmptyNode,
}

impl FlatValue {
    /// The leaf, unless this is the empty-node marker.
    pub fn as_leaf(&self) -> Option<&Value> {
        match self {
            FlatValue::Leaf(value) => Some(value),
            FlatValue::EmptyNode => None,
        }
    }

    /// The value this stands for in a nested dictionary: the leaf, or `{}`.
    fn into_value(self) -> Value {
        match self {
            FlatValue::Leaf(value) => value,
            FlatValue::EmptyNode => Value::Dict(FrozenDict::new()),
        }
    }
}

/// Flax's `is_leaf(path, dict)`: whether a nested dictionary at `path` is kept whole
/// instead of being flattened further.
pub type IsLeaf<'a> = &'a dyn Fn(&[String], &FrozenDict) -> bool;

/// The keyword arguments of [`flatten_dict_with`] and [`flatten_dict_sep_with`], Flax's
/// defaults by [`Default`].
#[derive(Clone, Copy, Default)]
pub struct FlattenOptions<'a> {
    /// Keeps empty dictionaries as [`FlatValue::EmptyNode`] (Flax's default `false`).
    pub keep_empty_nodes: bool,
    /// Keeps the dictionaries it accepts whole, as leaves (Flax's `is_leaf`; default none).
    pub is_leaf: Option<IsLeaf<'a>>,
}

impl std::fmt::Debug for FlattenOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlattenOptions")
            .field("keep_empty_nodes", &self.keep_empty_nodes)
            .field("is_leaf", &self.is_leaf.map(|_| ".."))
            .finish()
    }
}

impl<'a> FlattenOptions<'a> {
    /// Flax's defaults: empty dictionaries dropped, every dictionary flattened.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps empty dictionaries as [`FlatValue::EmptyNode`] when `keep_empty_nodes`.
    pub fn keep_empty_nodes(mut self, keep_empty_nodes: bool) -> Self {
        self.keep_empty_nodes = keep_empty_nodes;
        self
    }

    /// Keeps the dictionaries `is_leaf` accepts whole.
    pub fn is_leaf(mut self, is_leaf: IsLeaf<'a>) -> Self {
        self.is_leaf = Some(is_leaf);
        self
    }
}

/// Flattens a nested dictionary to a map from key tuples to leaves, dropping empty
/// dictionaries (Flax's `flatten_dict(xs)`).
pub fn flatten_dict(xs: &FrozenDict) -> IndexMap<Vec<String>, FlatValue> {
    flatten_dict_with(xs, FlattenOptions::new())
}

/// [`flatten_dict`] with Flax's keyword arguments: empty dictionaries are dropped unless
/// `keep_empty_nodes`, which keeps them as [`FlatValue::EmptyNode`] (a wholly empty `xs`
/// still flattens to an empty map); dictionaries `is_leaf` accepts stay whole.
pub fn flatten_dict_with(xs: &FrozenDict, options: FlattenOptions<'_>) -> IndexMap<Vec<String>, FlatValue> {
    let mut flat = IndexMap::new();
    let mut prefix = Vec::new();
    flatten_into(xs, &mut prefix, options.keep_empty_nodes, options.is_leaf, &mut flat);
    flat
}

/// [`flatten_dict`] with keys joined by `sep` (Flax's `flatten_dict(xs, sep=sep)`).
pub fn flatten_dict_sep(xs: &FrozenDict, sep: &str) -> IndexMap<String, FlatValue> {
    flatten_dict_sep_with(xs, sep, FlattenOptions::new())
}

/// [`flatten_dict_with`] with keys joined by `sep`.
pub fn flatten_dict_sep_with(
    xs: &FrozenDict,
    sep: &str,
    options: FlattenOptions<'_>,
) -> IndexMap<String, FlatValue> {
    flatten_dict_with(xs, options).into_iter().map(|(path, value)| (path.join(sep), value)).collect()
}

fn flatten_into(
    xs: &FrozenDict,
    prefix: &mut Vec<String>,
    keep_empty_nodes: bool,
    is_leaf: Option<IsLeaf<'_>>,
    flat: &mut IndexMap<Vec<String>, FlatValue>,
) {
    if is_leaf.is_some_and(|is_leaf| is_leaf(prefix, xs)) {
        flat.insert(prefix.clone(), FlatValue::Leaf(Value::Dict(xs.clone())));
        return;
    }
    if xs.is_empty() {
        if keep_empty_nodes && !prefix.is_empty() {
            flat.insert(prefix.clone(), FlatValue::EmptyNode);
        }
        return;
    }
    for (key, value) in xs.iter() {
        prefix.push(key.to_owned());
        match value {
            Value::Dict(child) => flatten_into(child, prefix, keep_empty_nodes, is_leaf, flat),
            leaf => {
                flat.insert(prefix.clone(), FlatValue::Leaf(leaf.clone()));
            }
        }
        prefix.pop();
    }
}

/// Rebuilds a nested dictionary from `(key tuple, value)` pairs (Flax's `unflatten_dict`);
/// [`FlatValue::EmptyNode`] becomes `{}`. A later pair overwrites an earlier one at the same
/// path, as in Python.
///
/// # Errors
/// [`Error::Value`] for an empty key tuple, or a path that runs through a leaf (Python fails
/// there with a `TypeError`).
pub fn unflatten_dict(xs: impl IntoIterator<Item = (Vec<String>, FlatValue)>) -> Result<FrozenDict> {
    let mut root = FrozenDict::new();
    for (path, value) in xs {
        insert_at(&mut root, &path, value.into_value())?;
    }
    Ok(root)
}

/// [`unflatten_dict`] for keys joined by `sep` (Flax's `unflatten_dict(xs, sep=sep)`).
pub fn unflatten_dict_sep(
    xs: impl IntoIterator<Item = (String, FlatValue)>,
    sep: &str,
) -> Result<FrozenDict> {
    unflatten_dict(xs.into_iter().map(|(key, value)| (key.split(sep).map(str::to_owned).collect(), value)))
}

fn insert_at(root: &mut FrozenDict, path: &[String], value: Value) -> Result<()> {
    let Some((last, parents)) = path.split_last() else {
        return Err(Error::Value("unflatten_dict: a flat key must have at least one element".to_owned()));
    };
    let mut cursor = root;
    for (depth, key) in parents.iter().enumerate() {
        if cursor.get(key).is_some_and(|node| node.as_dict().is_none()) {
            return Err(Error::Value(format!(
                "unflatten_dict: the path {path:?} runs through the leaf at {:?}",
                &path[..=depth]
            )));
        }
        cursor = cursor.dict_mut(key);
    }
    cursor.insert(last.clone(), value);
    Ok(())
}

/// Maps `f(path, leaf)` over every leaf of a nested dictionary, keeping its structure,
/// empty dictionaries included (Flax's `path_aware_map`).
pub fn path_aware_map(
    mut f: impl FnMut(&[String], &Value) -> Result<Value>,
    nested_dict: &FrozenDict,
) -> Result<FrozenDict> {
    let flat = flatten_dict_with(nested_dict, FlattenOptions::new().keep_empty_nodes(true));
    let mapped = flat
        .into_iter()
        .map(|(path, value)| {
            let value = match value {
                FlatValue::Leaf(leaf) => FlatValue::Leaf(f(&path, &leaf)?),
                FlatValue::EmptyNode => FlatValue::EmptyNode,
            };
            Ok((path, value))
        })
        .collect::<Result<Vec<_>>>()?;
    unflatten_dict(mapped)
}

/// Selects parameters by name (Flax's `ModelParamTraversal`): `filter_fn(name, value)` gets
/// the parameter's `/`-prefixed path, e.g. `/Dense_0/kernel`. Used to treat subsets of the
/// parameters differently (no weight decay on biases, a frozen encoder).
pub struct ModelParamTraversal<F> {
    filter_fn: F,
}

impl<F: Fn(&str, &Value) -> bool> ModelParamTraversal<F> {
    /// A traversal selecting the parameters for which `filter_fn` is true.
    pub fn new(filter_fn: F) -> Self {
        Self { filter_fn }
    }

    /// The selected parameters, in sorted path order (as Flax iterates them).
    pub fn iterate(&self, params: &FrozenDict) -> impl Iterator<Item = Value> + '_ {
        sorted_flat(flatten_dict(params)).into_iter().filter_map(move |(path, value)| {
            let leaf = value.into_value();
            (self.filter_fn)(&param_name(&path), &leaf).then_some(leaf)
        })
    }

    /// The parameters with `f` applied to the selected ones. As in Flax, the result's keys
    /// are in sorted order and empty dictionaries are kept.
    pub fn update(
        &self,
        mut f: impl FnMut(&Value) -> Result<Value>,
        params: &FrozenDict,
    ) -> Result<FrozenDict> {
        let flat = sorted_flat(flatten_dict_with(params, FlattenOptions::new().keep_empty_nodes(true)));
        let updated = flat
            .into_iter()
            .map(|(path, value)| match value {
                FlatValue::Leaf(leaf) if (self.filter_fn)(&param_name(&path), &leaf) => {
                    Ok((path, FlatValue::Leaf(f(&leaf)?)))
                }
                other => Ok((path, other)),
            })
            .collect::<Result<Vec<_>>>()?;
        unflatten_dict(updated)
    }
}

/// The flat entries sorted by path (Python sorts the key tuples).
fn sorted_flat(flat: IndexMap<Vec<String>, FlatValue>) -> Vec<(Vec<String>, FlatValue)> {
    let mut entries: Vec<_> = flat.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
}

/// A parameter's name as `ModelParamTraversal` filters see it: `/` + the `/`-joined path.
fn param_name(path: &[String]) -> String {
    format!("/{}", path.join("/"))
}
