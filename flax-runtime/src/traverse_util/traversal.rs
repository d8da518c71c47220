//! Flax's `Traversal` classes: lenses that select parts of a tree to read (`iterate`) or to
//! replace (`update`, `set`), never changing the tree they are given.
//!
//! Here they traverse [`Value`] trees — the state-dict form every [`Tree`](crate::Tree)
//! has — so an attribute of a Flax dataclass is a dict entry: `TraverseAttr("foo")` and
//! `TraverseItem("foo")` select the same thing. A [`Value::List`] stands for a Python list or
//! tuple; `update` through a slice maps the function over each selected element (Flax's
//! behaviour for tuples). Flax deprecates these classes in favour of Optax's masks and
//! `traverse_util.path_aware_map`; they are here so that code written with them ports.
//!
//! ```
//! use flax::traverse_util::{t_identity, Traversal};
//! use flax::{Scalar, Value};
//!
//! # fn main() -> flax::Result<()> {
//! let int = |v: &Value| match v {
//!     Value::Scalar(Scalar::Int(i)) => *i,
//!     other => panic!("not an int: {other:?}"),
//! };
//! let item = |foo: i64, bar: i64| {
//!     Value::Dict([("foo".to_owned(), Value::from(foo)), ("bar".to_owned(), Value::from(bar))].into_iter().collect())
//! };
//! // Flax: `traverse_util.t_identity.each()['foo'].iterate(data)`.
//! let data = Value::List(vec![item(1, 2), item(3, 4)]);
//! let foos = t_identity().each().item("foo");
//! assert_eq!(foos.iterate(&data)?.iter().map(int).collect::<Vec<_>>(), [1, 3]);
//! let doubled = foos.update(&mut |x| Ok(Value::from(int(x) * 2)), &data)?;
//! assert_eq!(foos.iterate(&doubled)?.iter().map(int).collect::<Vec<_>>(), [2, 6]);
//! # Ok(())
//! # }
//! ```

use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{Scalar, Value};
use std::sync::Arc;

/// The function an update applies to each selected value.
pub type UpdateFn<'a> = dyn FnMut(&Value) -> Result<Value> + 'a;

/// A lens over a [`Value`] tree (Flax's `Traversal` base class).
pub trait Traversal: Send + Sync {
    /// A copy of `inputs` with each selected value `v` replaced by `f(v)`.
    ///
    /// # Errors
    /// [`Error::Value`] when the tree lacks what the traversal selects; `f`'s errors.
    fn update(&self, f: &mut UpdateFn<'_>, inputs: &Value) -> Result<Value>;

    /// The selected values, in order.
    ///
    /// # Errors
    /// [`Error::Value`] when the tree lacks what the traversal selects.
    fn iterate(&self, inputs: &Value) -> Result<Vec<Value>>;

    /// A copy of `inputs` with the selected values replaced by `values`, in order.
    ///
    /// # Errors
    /// [`Error::Value`] when there are fewer or more values than selected places (Flax's
    /// "Not enough values provided" / "Too many values provided").
    fn set(&self, values: Vec<Value>, inputs: &Value) -> Result<Value> {
        let mut values = values.into_iter();
        let updated = self.update(
            &mut |_| values.next().ok_or_else(|| Error::Value("Not enough values provided".into())),
            inputs,
        )?;
        match values.next() {
            Some(_) => Err(Error::Value("Too many values provided".into())),
            None => Ok(updated),
        }
    }

    /// `self` then `other` (Flax's `compose`).
    fn compose(self, other: impl Traversal + 'static) -> TraverseCompose
    where
        Self: Sized + 'static,
    {
        TraverseCompose::new(self, other)
    }

    /// `self` then the union of `traversals` (Flax's `merge`).
    fn merge(self, traversals: Vec<Box<dyn Traversal>>) -> TraverseCompose
    where
        Self: Sized + 'static,
    {
        self.compose(TraverseMerge::new(traversals))
    }

    /// `self` then each entry of the selected containers (Flax's `each`).
    fn each(self) -> TraverseCompose
    where
        Self: Sized + 'static,
    {
        self.compose(TraverseEach)
    }

    /// `self` then every leaf of the selected trees (Flax's `tree`).
    fn tree(self) -> TraverseCompose
    where
        Self: Sized + 'static,
    {
        self.compose(TraverseTree)
    }

    /// `self` then only the values `keep` accepts (Flax's `filter`).
    fn filter(self, keep: impl Fn(&Value) -> bool + Send + Sync + 'static) -> TraverseCompose
    where
        Self: Sized + 'static,
    {
        self.compose(TraverseFilter::new(keep))
    }

    /// `self` then the attribute `name` (Flax's `traversal.name`).
    fn attr(self, name: &str) -> TraverseCompose
    where
        Self: Sized + 'static,
    {
        self.compose(TraverseAttr::new(name))
    }

    /// `self` then the item `key` (Flax's `traversal[key]`).
    fn item(self, key: impl Into<ItemKey>) -> TraverseCompose
    where
        Self: Sized + 'static,
    {
        self.compose(TraverseItem::new(key))
    }
}

/// The identity traversal (Flax's `t_identity`), the start of a method chain.
pub fn t_identity() -> TraverseId {
    TraverseId
}

/// Selects its input itself (Flax's `TraverseId`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TraverseId;

impl Traversal for TraverseId {
    fn update(&self, f: &mut UpdateFn<'_>, inputs: &Value) -> Result<Value> {
        f(inputs)
    }

    fn iterate(&self, inputs: &Value) -> Result<Vec<Value>> {
        Ok(vec![inputs.clone()])
    }
}

/// The union of several traversals' selections, in order (Flax's `TraverseMerge`).
pub struct TraverseMerge {
    traversals: Vec<Box<dyn Traversal>>,
}

impl TraverseMerge {
    /// Merges `traversals`.
    pub fn new(traversals: Vec<Box<dyn Traversal>>) -> Self {
        TraverseMerge { traversals }
    }
}

impl Traversal for TraverseMerge {
    fn update(&self, f: &mut UpdateFn<'_>, inputs: &Value) -> Result<Value> {
        let mut value = inputs.clone();
        for traversal in &self.traversals {
            value = traversal.update(f, &value)?;
        }
        Ok(value)
    }

    fn iterate(&self, inputs: &Value) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for traversal in &self.traversals {
            out.extend(traversal.iterate(inputs)?);
        }
        Ok(out)
    }
}

/// One traversal applied to what another selects (Flax's `TraverseCompose`).
pub struct TraverseCompose {
    first: Box<dyn Traversal>,
    then: Box<dyn Traversal>,
}

impl TraverseCompose {
    /// `first`, then `then` on each of its selections.
    pub fn new(first: impl Traversal + 'static, then: impl Traversal + 'static) -> Self {
        TraverseCompose { first: Box::new(first), then: Box::new(then) }
    }
}

impl Traversal for TraverseCompose {
    fn update(&self, f: &mut UpdateFn<'_>, inputs: &Value) -> Result<Value> {
        self.first.update(&mut |x| self.then.update(f, x), inputs)
    }

    fn iterate(&self, inputs: &Value) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for x in self.first.iterate(inputs)? {
            out.extend(self.then.iterate(&x)?);
        }
        Ok(out)
    }
}

/// Selects its input when a predicate accepts it (Flax's `TraverseFilter`).
#[derive(Clone)]
pub struct TraverseFilter {
    keep: Arc<dyn Fn(&Value) -> bool + Send + Sync>,
}

impl TraverseFilter {
    /// Keeps the values `keep` accepts.
    pub fn new(keep: impl Fn(&Value) -> bool + Send + Sync + 'static) -> Self {
        TraverseFilter { keep: Arc::new(keep) }
    }
}

impl Traversal for TraverseFilter {
    fn update(&self, f: &mut UpdateFn<'_>, inputs: &Value) -> Result<Value> {
        if (self.keep)(inputs) {
            f(inputs)
        } else {
            Ok(inputs.clone())
        }
    }

    fn iterate(&self, inputs: &Value) -> Result<Vec<Value>> {
        Ok(if (self.keep)(inputs) { vec![inputs.clone()] } else { Vec::new() })
    }
}

/// Selects a field of a struct — a dict entry in the state-dict form (Flax's `TraverseAttr`).
#[derive(Debug, Clone)]
pub struct TraverseAttr {
    name: String,
}

impl TraverseAttr {
    /// Selects the attribute `name`.
    pub fn new(name: &str) -> Self {
        TraverseAttr { name: name.to_owned() }
    }
}

impl Traversal for TraverseAttr {
    fn update(&self, f: &mut UpdateFn<'_>, inputs: &Value) -> Result<Value> {
        let key = ItemKey::Name(self.name.clone());
        update_item(&key, f, inputs).map_err(|_| no_attribute(&self.name, inputs))
    }

    fn iterate(&self, inputs: &Value) -> Result<Vec<Value>> {
        let key = ItemKey::Name(self.name.clone());
        iterate_item(&key, inputs).map_err(|_| no_attribute(&self.name, inputs))
    }
}

fn no_attribute(name: &str, inputs: &Value) -> Error {
    Error::Value(format!("{} has no attribute {name:?}", describe(inputs)))
}

/// What [`TraverseItem`] selects: a dict key, a list index (negative from the end) or a slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemKey {
    /// A dict entry.
    Name(String),
    /// A list element; negative counts from the end, as in Python.
    Index(i64),
    /// Python's `start:stop:step` (each `None` when omitted).
    Slice {
        /// The first index (default: the start, or the end for a negative step).
        start: Option<i64>,
        /// The index to stop before (default: the end, or before the start for a negative step).
        stop: Option<i64>,
        /// The stride (default 1; 0 is an error).
        step: Option<i64>,
    },
}

impl From<&str> for ItemKey {
    fn from(name: &str) -> Self {
        ItemKey::Name(name.to_owned())
    }
}

impl From<String> for ItemKey {
    fn from(name: String) -> Self {
        ItemKey::Name(name)
    }
}

impl From<i64> for ItemKey {
    fn from(index: i64) -> Self {
        ItemKey::Index(index)
    }
}

impl From<std::ops::Range<i64>> for ItemKey {
    fn from(range: std::ops::Range<i64>) -> Self {
        ItemKey::Slice { start: Some(range.start), stop: Some(range.end), step: None }
    }
}

/// Selects an item of a dict or list: an entry, an element or a slice (Flax's
/// `TraverseItem`).
#[derive(Debug, Clone)]
pub struct TraverseItem {
    key: ItemKey,
}

impl TraverseItem {
    /// Selects `key`.
    pub fn new(key: impl Into<ItemKey>) -> Self {
        TraverseItem { key: key.into() }
    }
}

impl Traversal for TraverseItem {
    fn update(&self, f: &mut UpdateFn<'_>, inputs: &Value) -> Result<Value> {
        update_item(&self.key, f, inputs)
    }

    fn iterate(&self, inputs: &Value) -> Result<Vec<Value>> {
        iterate_item(&self.key, inputs)
    }
}

fn iterate_item(key: &ItemKey, inputs: &Value) -> Result<Vec<Value>> {
    match (key, inputs) {
        (ItemKey::Name(name), Value::Dict(dict)) => {
            dict.get(name).cloned().map(|v| vec![v]).ok_or_else(|| missing_key(name))
        }
        (ItemKey::Name(_), other) => Err(not_subscriptable(key, other)),
        (_, Value::List(items)) => Ok(list_indices(key, items.len())?.map(|i| items[i].clone()).collect()),
        (_, other) => Err(not_subscriptable(key, other)),
    }
}

fn update_item(key: &ItemKey, f: &mut UpdateFn<'_>, inputs: &Value) -> Result<Value> {
    match (key, inputs) {
        (ItemKey::Name(name), Value::Dict(dict)) => {
            let value = dict.get(name).ok_or_else(|| missing_key(name))?;
            Ok(Value::Dict(dict.copy([(name.clone(), f(value)?)])))
        }
        (ItemKey::Name(_), other) => Err(not_subscriptable(key, other)),
        (_, Value::List(items)) => {
            let mut items = items.clone();
            for i in list_indices(key, items.len())?.collect::<Vec<_>>() {
                items[i] = f(&items[i])?;
            }
            Ok(Value::List(items))
        }
        (_, other) => Err(not_subscriptable(key, other)),
    }
}

/// The list positions an index or slice selects, with Python's rules (`slice.indices`).
fn list_indices(key: &ItemKey, len: usize) -> Result<Box<dyn Iterator<Item = usize>>> {
    let len = len as i64;
    match *key {
        ItemKey::Index(i) => {
            let at = if i < 0 { i + len } else { i };
            if !(0..len).contains(&at) {
                return Err(Error::Value(format!("list index {i} out of range for length {len}")));
            }
            Ok(Box::new(std::iter::once(at as usize)))
        }
        ItemKey::Slice { start, stop, step } => {
            let step = step.unwrap_or(1);
            if step == 0 {
                return Err(Error::Value("slice step cannot be zero".into()));
            }
            let (lo, hi) = if step > 0 { (0, len) } else { (-1, len - 1) };
            let clamp = |v: i64| {
                let v = if v < 0 { v + len } else { v };
                v.clamp(lo, hi)
            };
            let start = start.map_or(if step > 0 { 0 } else { len - 1 }, clamp);
            let stop = stop.map_or(if step > 0 { len } else { -1 }, clamp);
            let mut i = start;
            Ok(Box::new(std::iter::from_fn(move || {
                let more = if step > 0 { i < stop } else { i > stop };
                more.then(|| {
                    let at = i as usize;
                    i += step;
                    at
                })
            })))
        }
        ItemKey::Name(_) => unreachable!("names select dict entries"),
    }
}

fn missing_key(name: &str) -> Error {
    Error::Value(format!("no item {name:?} in the dict"))
}

fn not_subscriptable(key: &ItemKey, inputs: &Value) -> Error {
    Error::Value(format!("{} cannot be indexed by {key:?}", describe(inputs)))
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Dict(_) => "a dict",
        Value::List(_) => "a list",
        Value::Tensor(_) => "an array",
        Value::Scalar(_) => "a scalar",
        Value::Boxed(_) => "a Partitioned box",
    }
}

/// Selects each entry of a dict (its values) or list (Flax's `TraverseEach`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TraverseEach;

impl Traversal for TraverseEach {
    fn update(&self, f: &mut UpdateFn<'_>, inputs: &Value) -> Result<Value> {
        match inputs {
            Value::Dict(dict) => {
                let entries =
                    dict.iter().map(|(k, v)| Ok((k.to_owned(), f(v)?))).collect::<Result<Vec<_>>>()?;
                Ok(Value::Dict(entries.into_iter().collect()))
            }
            Value::List(items) => Ok(Value::List(items.iter().map(&mut *f).collect::<Result<_>>()?)),
            other => Err(not_a_container(other)),
        }
    }

    fn iterate(&self, inputs: &Value) -> Result<Vec<Value>> {
        match inputs {
            Value::Dict(dict) => Ok(dict.iter().map(|(_, v)| v.clone()).collect()),
            Value::List(items) => Ok(items.clone()),
            other => Err(not_a_container(other)),
        }
    }
}

fn not_a_container(inputs: &Value) -> Error {
    Error::Value(format!(
        "Only the entries of a list or tuple can be traversed: {} has none",
        describe(inputs)
    ))
}

/// Selects every leaf of a tree, in the order JAX flattens it (Flax's `TraverseTree`): arrays
/// and scalars, dict entries by sorted key; `None` is an empty subtree, as in JAX. An update
/// returns dicts with sorted keys, as `jax.tree_util.tree_map` does.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraverseTree;

impl Traversal for TraverseTree {
    fn update(&self, f: &mut UpdateFn<'_>, inputs: &Value) -> Result<Value> {
        match inputs {
            Value::Dict(dict) => {
                let mut sorted: Vec<(&str, &Value)> = dict.iter().collect();
                sorted.sort_unstable_by_key(|(k, _)| *k);
                let entries = sorted
                    .into_iter()
                    .map(|(k, v)| Ok((k.to_owned(), self.update(f, v)?)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Value::Dict(entries.into_iter().collect()))
            }
            Value::List(_) => TraverseEach.update(&mut |v| self.update(f, v), inputs),
            Value::Scalar(Scalar::None) => Ok(inputs.clone()),
            leaf => f(leaf),
        }
    }

    fn iterate(&self, inputs: &Value) -> Result<Vec<Value>> {
        let mut leaves = Vec::new();
        self.update(
            &mut |leaf| {
                leaves.push(leaf.clone());
                Ok(leaf.clone())
            },
            inputs,
        )?;
        Ok(leaves)
    }
}
