//! `FrozenDict` and the values it holds: Flax's variable dictionaries.
//!
//! A [`FrozenDict`] is an immutable, insertion-ordered map from names to [`Value`]s. Its public
//! API only reads or builds new dictionaries (`copy`, `pop`), as Flax's does; the runtime
//! mutates its own private copies while a module runs. As in JAX, tree operations see its
//! keys sorted: they visit entries in sorted order and rebuild (or, updating leaves in place,
//! reorder) it sorted, while its state dict keeps its own order (`tree::impls::dict`). Cloning is cheap: tensors are shared
//! (`Tensor::shallow_clone`), never copied, so a clone per thread is how one set of variables
//! serves several inference threads (a tch `Tensor` is `Send` but not `Sync`).

use crate::core::errors::{Error, Result};
use crate::core::meta::AxisMetadata;
use crate::core::uint_array::UintArray;
use indexmap::IndexMap;
use std::fmt::{self, Write as _};
use tch::Tensor;

/// The map inside a [`FrozenDict`]. Keys are short names looked up on every param read, so
/// the hasher is Fx (fast on short strings; the keys are not attacker-controlled).
pub type DictMap = IndexMap<String, Value, rustc_hash::FxBuildHasher>;

/// The variables of a model: `{collection: {module path…: leaf}}`, as Flax's `init` returns them.
pub type Variables = FrozenDict;

/// A leaf that is not a tensor, as `flax.serialization` state dicts may hold them: a plain
/// Python scalar, or an array of an unsigned dtype libtorch cannot hold (see [`UintArray`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// Python `None`.
    None,
    /// A Python `bool`.
    Bool(bool),
    /// A Python `int` (msgpack integers fit in `i64` or `u64`; larger ones are an error).
    Int(i64),
    /// A Python `float`.
    Float(f64),
    /// A Python `str`.
    Str(String),
    /// Python `bytes`.
    Bytes(Vec<u8>),
    /// A Python `complex`: `(real, imaginary)`.
    Complex(f64, f64),
    /// A `uint16`/`uint32`/`uint64` array (a PRNG key's data, say), kept host-side because
    /// tch has no kind for it.
    UintArray(UintArray),
}

/// One node of a variable tree: a tensor leaf, a nested dictionary, a tuple (what `sow`
/// appends to; serialized as a dict keyed `"0"`, `"1"`, …), a scalar leaf, or a value in an
/// axis-metadata box (`Partitioned`, see [`crate::core::meta`]).
pub enum Value {
    /// An array leaf.
    Tensor(Tensor),
    /// A nested dictionary (a module's subtree, or a collection).
    Dict(FrozenDict),
    /// A tuple or list of values.
    List(Vec<Value>),
    /// A non-array leaf.
    Scalar(Scalar),
    /// A value with partitioning names (Flax's `AxisMetadata` boxes); see [`crate::core::meta`].
    Boxed(Box<AxisMetadata>),
}

impl Clone for Value {
    fn clone(&self) -> Self {
        match self {
            Value::Tensor(t) => Value::Tensor(t.shallow_clone()),
            Value::Dict(d) => Value::Dict(d.clone()),
            Value::List(l) => Value::List(l.clone()),
            Value::Scalar(s) => Value::Scalar(s.clone()),
            Value::Boxed(b) => Value::Boxed(b.clone()),
        }
    }
}

impl From<Tensor> for Value {
    fn from(t: Tensor) -> Self {
        Value::Tensor(t)
    }
}

/// A shallow clone: the value shares the tensor's data, as a cloned `Value` does.
impl From<&Tensor> for Value {
    fn from(t: &Tensor) -> Self {
        Value::Tensor(t.shallow_clone())
    }
}

impl From<FrozenDict> for Value {
    fn from(d: FrozenDict) -> Self {
        Value::Dict(d)
    }
}

/// A clone of the dictionary (its tensors shared), so `frozen_dict! { "params": &params }` reads
/// as Flax's `{'params': params}`.
impl From<&FrozenDict> for Value {
    fn from(dict: &FrozenDict) -> Self {
        Value::Dict(dict.clone())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Scalar(Scalar::Bool(b))
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Scalar(Scalar::Int(i))
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Scalar(Scalar::Float(f))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Scalar(Scalar::Str(s.to_owned()))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Scalar(Scalar::Str(s))
    }
}

impl From<Vec<Value>> for Value {
    fn from(values: Vec<Value>) -> Self {
        Value::List(values)
    }
}

impl Value {
    /// The tensor, if this is an array leaf, looking through axis-metadata boxes (Flax's
    /// `unbox=True` reading: `cx.param` and the typed params views see the raw array).
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            Value::Boxed(b) => b.unbox().as_tensor(),
            _ => None,
        }
    }

    /// The box, if this is a boxed value (`Partitioned`, …).
    pub fn as_boxed(&self) -> Option<&AxisMetadata> {
        match self {
            Value::Boxed(b) => Some(b),
            _ => None,
        }
    }

    /// The dictionary, if this is a nested dictionary.
    pub fn as_dict(&self) -> Option<&FrozenDict> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The elements, if this is a tuple or list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The value at a path of keys through nested dictionaries (the value itself for an empty
    /// path), e.g. `["params", "Dense_0", "kernel"]` in a state dict.
    pub fn get_path<S: AsRef<str>>(&self, path: &[S]) -> Option<&Value> {
        match path.split_first() {
            None => Some(self),
            Some((first, rest)) => self.as_dict()?.get(first.as_ref())?.get_path(rest),
        }
    }

    /// The tensor at a path of keys, if there is one.
    pub fn tensor<S: AsRef<str>>(&self, path: &[S]) -> Option<&Tensor> {
        self.get_path(path).and_then(Value::as_tensor)
    }

    /// A one-line summary for error messages: `Array(shape=(3, 5), dtype=float32)`, `a dict`,
    /// `a list of 2`, or the scalar itself (never the values of an array).
    pub fn describe(&self) -> String {
        match self {
            Value::Tensor(t) => {
                format!("Array(shape={}, dtype={})", shape_repr(&t.size()), dtype_name(t.kind()))
            }
            Value::Dict(_) => "a dict".to_owned(),
            Value::List(items) => format!("a list of {}", items.len()),
            Value::Boxed(b) => format!("{}({})", b.type_name(), b.unbox().describe()),
            Value::Scalar(Scalar::UintArray(a)) => {
                format!("Array(shape={}, dtype={})", shape_repr(a.shape()), a.dtype())
            }
            scalar => format!("{scalar:?}"),
        }
    }

    fn write_repr(&self, out: &mut String, indent: usize, num_spaces: usize) {
        match self {
            Value::Tensor(t) => write_indented(out, &crate::core::array_repr::array_repr(t), indent),
            Value::Dict(d) => d.write_body(out, indent, num_spaces),
            Value::Boxed(b) => {
                let _ = write!(out, "{}(value=", b.type_name());
                b.unbox().write_repr(out, indent, num_spaces);
                out.push_str(&b.fields_repr());
                out.push(')');
            }
            Value::List(items) => {
                out.push('(');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_repr(out, indent, num_spaces);
                }
                if items.len() == 1 {
                    out.push(',');
                }
                out.push(')');
            }
            Value::Scalar(s) => {
                let _ = match s {
                    Scalar::None => write!(out, "None"),
                    Scalar::Bool(b) => write!(out, "{}", if *b { "True" } else { "False" }),
                    Scalar::Int(i) => write!(out, "{i}"),
                    Scalar::Float(x) => write!(out, "{x:?}"),
                    Scalar::Str(s) => write!(out, "'{s}'"),
                    Scalar::Bytes(b) => write!(out, "b{b:?}"),
                    Scalar::Complex(re, im) => write!(out, "({re:?}+{im:?}j)"),
                    Scalar::UintArray(a) => {
                        write_indented(out, &crate::core::array_repr::uint_array_repr(a), indent);
                        Ok(())
                    }
                };
            }
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.write_repr(&mut s, 0, 4);
        f.write_str(&s)
    }
}

/// Writes an array's repr with its continuation lines (a wrapped array) kept under `indent`.
fn write_indented(out: &mut String, repr: &str, indent: usize) {
    out.push_str(&repr.replace('\n', &format!("\n{:indent$}", "")));
}

/// A shape as Python prints a tuple: `(3,)`, `(2, 3)`, `()`.
pub fn shape_repr(shape: &[i64]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => format!("({})", shape.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// numpy's name for a libtorch dtype (`float32`, `int64`, `bfloat16`, …).
pub fn dtype_name(kind: tch::Kind) -> &'static str {
    use tch::Kind::*;
    match kind {
        Uint8 => "uint8",
        Int8 => "int8",
        Int16 => "int16",
        Int => "int32",
        Int64 => "int64",
        Half => "float16",
        Float => "float32",
        Double => "float64",
        ComplexHalf => "complex32",
        ComplexFloat => "complex64",
        ComplexDouble => "complex128",
        Bool => "bool",
        BFloat16 => "bfloat16",
        // ml_dtypes' names, which numpy (and so Flax's msgpack format) uses for them.
        Float8e5m2 => "float8_e5m2",
        Float8e4m3fn => "float8_e4m3fn",
        Float8e5m2fnuz => "float8_e5m2fnuz",
        Float8e4m3fnuz => "float8_e4m3fnuz",
        // tch 0.26 has no unsigned kinds wider than 8 bits; quantized kinds have no numpy name.
        QInt8 | QUInt8 | QInt32 => "unsupported",
    }
}

/// An immutable, insertion-ordered dictionary of [`Value`]s (Flax's `FrozenDict`); tree
/// operations see its keys sorted, as JAX's (see the module docs).
#[derive(Clone, Default)]
pub struct FrozenDict {
    entries: DictMap,
}

impl FrozenDict {
    /// An empty dictionary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Freezes a map (Flax's `freeze`).
    pub fn freeze(entries: DictMap) -> Self {
        Self { entries }
    }

    /// A mutable copy of the entries (Flax's `unfreeze`); tensors are shared, not copied.
    pub fn unfreeze(&self) -> DictMap {
        self.entries.clone()
    }

    /// Consumes the dictionary into its entries without copying.
    pub fn into_inner(self) -> DictMap {
        self.entries
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.get(key)
    }

    /// The nested dictionary under `key`, if `key` holds one.
    pub fn get_dict(&self, key: &str) -> Option<&FrozenDict> {
        self.get(key).and_then(Value::as_dict)
    }

    /// The value at a path of keys through nested dictionaries, e.g.
    /// `["params", "Dense_0", "kernel"]`.
    pub fn get_path<S: AsRef<str>>(&self, path: &[S]) -> Option<&Value> {
        let (last, init) = path.split_last()?;
        let mut dict = self;
        for key in init {
            dict = dict.get_dict(key.as_ref())?;
        }
        dict.get(last.as_ref())
    }

    /// The tensor at a path of keys, if there is one.
    pub fn tensor<S: AsRef<str>>(&self, path: &[S]) -> Option<&Tensor> {
        self.get_path(path).and_then(Value::as_tensor)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The entries, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The entries mutably, for in-place tensor updates through `Tree::visit_leaves_mut`
    /// (keys and structure stay fixed).
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Value)> {
        self.entries.iter_mut().map(|(k, v)| (k.as_str(), v))
    }

    /// The entries as a slice, for visits in sorted key order without copying the keys.
    pub(crate) fn as_slice(&self) -> &indexmap::map::Slice<String, Value> {
        self.entries.as_slice()
    }

    /// Puts the keys in sorted order, as JAX rebuilds a dict that a tree operation updated
    /// (see `tree::impls::dict`); a no-op when they are already, as after the first update.
    pub(crate) fn sort_keys(&mut self) {
        if !self.entries.keys().is_sorted() {
            self.entries.sort_keys();
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A new dictionary with `add_or_replace` merged in (Flax's `copy`).
    pub fn copy<K: Into<String>>(&self, add_or_replace: impl IntoIterator<Item = (K, Value)>) -> Self {
        let mut entries = self.entries.clone();
        for (k, v) in add_or_replace {
            entries.insert(k.into(), v);
        }
        Self { entries }
    }

    /// Splits off `key`: `(rest, removed)`, as Flax's `pop`
    /// (`let (state, params) = variables.pop("params")?`).
    pub fn pop(&self, key: &str) -> Result<(Self, Value)> {
        let mut entries = self.entries.clone();
        let value = entries
            .shift_remove(key)
            .ok_or_else(|| Error::Value(format!("FrozenDict has no key \"{key}\"")))?;
        Ok((Self { entries }, value))
    }

    /// The indented representation of Flax's `pretty_repr`, with arrays shown by shape and dtype.
    pub fn pretty_repr(&self) -> String {
        self.pretty_repr_with(4)
    }

    /// [`pretty_repr`](Self::pretty_repr) with a chosen indent width.
    pub fn pretty_repr_with(&self, num_spaces: usize) -> String {
        let mut out = String::from("FrozenDict(");
        self.write_body(&mut out, 0, num_spaces);
        out.push(')');
        out
    }

    fn write_body(&self, out: &mut String, indent: usize, num_spaces: usize) {
        if self.entries.is_empty() {
            out.push_str("{}");
            return;
        }
        out.push_str("{\n");
        let inner = indent + num_spaces;
        for (k, v) in &self.entries {
            let _ = write!(out, "{:inner$}{k}: ", "");
            v.write_repr(out, inner, num_spaces);
            out.push_str(",\n");
        }
        let _ = write!(out, "{:indent$}}}", "");
    }

    // Mutation is for the runtime's private working copies only.

    /// The nested dictionary under `key`, created empty when missing or not a dictionary.
    pub(crate) fn dict_mut(&mut self, key: &str) -> &mut FrozenDict {
        if !matches!(self.entries.get(key), Some(Value::Dict(_))) {
            self.entries.insert(key.to_owned(), Value::Dict(FrozenDict::new()));
        }
        match self.entries.get_mut(key) {
            Some(Value::Dict(d)) => d,
            _ => unreachable!("inserted just above"),
        }
    }

    /// The value under `key`, mutably (to mask a working copy's leaf, say).
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.entries.get_mut(key)
    }

    pub(crate) fn insert(&mut self, key: impl Into<String>, value: Value) {
        self.entries.insert(key.into(), value);
    }
}

impl FromIterator<(String, Value)> for FrozenDict {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Self { entries: iter.into_iter().collect() }
    }
}

impl<'a> IntoIterator for &'a FrozenDict {
    type Item = (&'a String, &'a Value);
    type IntoIter = indexmap::map::Iter<'a, String, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

impl fmt::Debug for FrozenDict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pretty_repr())
    }
}

impl fmt::Display for FrozenDict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pretty_repr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FrozenDict {
        let dense: FrozenDict = [
            ("kernel".to_owned(), Value::Tensor(Tensor::zeros([4, 3], (tch::Kind::Float, tch::Device::Cpu)))),
            ("bias".to_owned(), Value::Tensor(Tensor::zeros([3], (tch::Kind::Float, tch::Device::Cpu)))),
        ]
        .into_iter()
        .collect();
        let params: FrozenDict = [("Dense_0".to_owned(), Value::Dict(dense))].into_iter().collect();
        [("params".to_owned(), Value::Dict(params))].into_iter().collect()
    }

    #[test]
    fn pretty_repr_matches_flax_layout() {
        let expected = "FrozenDict({\n    params: {\n        Dense_0: {\n            kernel: Array([[0., 0., 0.],\n                   [0., 0., 0.],\n                   [0., 0., 0.],\n                   [0., 0., 0.]], dtype=float32),\n            bias: Array([0., 0., 0.], dtype=float32),\n        },\n    },\n})";
        assert_eq!(sample().pretty_repr(), expected);
        assert_eq!(FrozenDict::new().pretty_repr(), "FrozenDict({})");
    }

    #[test]
    fn pop_and_copy_leave_the_original_untouched() {
        let v = sample();
        let (rest, params) = v.pop("params").unwrap();
        assert!(rest.is_empty());
        assert!(params.as_dict().unwrap().contains_key("Dense_0"));
        assert!(v.contains_key("params"));
        assert!(v.pop("batch_stats").is_err());
        let more = v.copy([("batch_stats", Value::Dict(FrozenDict::new()))]);
        assert_eq!(more.keys().collect::<Vec<_>>(), ["params", "batch_stats"]);
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn clone_shares_tensors() {
        let v = sample();
        let c = v.clone();
        let a = v.tensor(&["params", "Dense_0", "kernel"]).unwrap();
        let b = c.tensor(&["params", "Dense_0", "kernel"]).unwrap();
        assert_eq!(a.data_ptr(), b.data_ptr());
    }
}
