//! `PartitionSpec`, `Mesh` and axis names: the vocabulary of partitioning metadata (JAX's
//! `jax.sharding.PartitionSpec` and `Mesh`, Flax's `LogicalNames` and `LogicalRules`).
//!
//! These are descriptions only. On one process there is no device mesh: a spec says how a
//! tensor *would* be split across the named mesh axes; the sharded training mode in
//! [`crate::distributed`] is what acts on the annotations across processes.

use std::fmt;

/// The name of one array dimension: a (logical or mesh) axis name, or `None` for a
/// dimension that is not partitioned (Flax's `LogicalNames` element).
pub type AxisName = Option<String>;

/// One name per array dimension (Flax's `LogicalNames`).
pub type LogicalNames = Vec<AxisName>;

/// Logical-to-mesh axis rules, in precedence order (Flax's `LogicalRules`): `("batch",
/// Some("data"))` maps the logical axis `batch` to the mesh axis `data`; a `None` mesh axis
/// leaves it unpartitioned.
pub type LogicalRules = Vec<(String, AxisName)>;

/// How an array is split across the axes of a device mesh, one entry per array dimension
/// (JAX's `PartitionSpec`): `PartitionSpec(None, 'model')` keeps dimension 0 whole and splits
/// dimension 1 across the mesh axis `model`. An empty spec (`PartitionSpec()`) is a fully
/// replicated array.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct PartitionSpec(pub LogicalNames);

impl PartitionSpec {
    /// A spec from axis names: `PartitionSpec::new(("data", None))`.
    pub fn new(names: impl IntoLogicalNames) -> Self {
        PartitionSpec(names.into_names())
    }

    /// The entries, one per array dimension.
    pub fn names(&self) -> &[AxisName] {
        &self.0
    }
}

/// The repr of JAX 0.4 that the pjit guide prints: `PartitionSpec(None, 'data')`,
/// `PartitionSpec()`. (JAX ≥ 0.4.36 prints the same object as `P(None, 'data')`.)
impl fmt::Debug for PartitionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartitionSpec({})", names_repr(&self.0))
    }
}

impl fmt::Display for PartitionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Names as Python prints a tuple's elements: `None, 'data'`, and `'data',` for one (JAX's
/// `PartitionSpec` repr is its tuple's).
pub(crate) fn names_repr(names: &[AxisName]) -> String {
    let items: Vec<String> =
        names.iter().map(|n| n.as_ref().map_or("None".into(), |s| format!("'{s}'"))).collect();
    let joined = items.join(", ");
    if items.len() == 1 {
        format!("{joined},")
    } else {
        joined
    }
}

/// A description of a device mesh: its axis names and sizes (JAX's `Mesh`, without devices,
/// which one process does not have). Boxes carry it as Flax's `mesh` field does.
#[derive(Clone, PartialEq, Eq)]
pub struct Mesh {
    /// The axis names, `("data", "model")`.
    pub axis_names: Vec<String>,
    /// The size of each axis.
    pub shape: Vec<i64>,
}

impl Mesh {
    /// A mesh from `(name, size)` pairs: `Mesh::new([("data", 2), ("model", 4)])`.
    pub fn new<'a>(axes: impl IntoIterator<Item = (&'a str, i64)>) -> Self {
        let (axis_names, shape) = axes.into_iter().map(|(n, s)| (n.to_owned(), s)).unzip();
        Mesh { axis_names, shape }
    }
}

/// JAX 0.10's repr without the devices and axis types it does not have:
/// `Mesh(axis_sizes=(2, 4), axis_names=('data', 'model'))`.
impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes: Vec<String> = self.shape.iter().map(i64::to_string).collect();
        let sizes = if sizes.len() == 1 { format!("{},", sizes[0]) } else { sizes.join(", ") };
        let names: Vec<AxisName> = self.axis_names.iter().cloned().map(Some).collect();
        write!(f, "Mesh(axis_sizes=({sizes}), axis_names=({}))", names_repr(&names))
    }
}

/// What can name one dimension: `"data"`, `String`, or `None` / `Some("data")`.
pub trait IntoAxisName {
    /// The name.
    fn into_axis_name(self) -> AxisName;
}

impl IntoAxisName for &str {
    fn into_axis_name(self) -> AxisName {
        Some(self.to_owned())
    }
}

impl IntoAxisName for String {
    fn into_axis_name(self) -> AxisName {
        Some(self)
    }
}

/// `None` in a tuple of names (`(None, "data")`) is an `Option<&str>`: the one `Option` impl
/// lets Rust infer it.
impl IntoAxisName for Option<&str> {
    fn into_axis_name(self) -> AxisName {
        self.map(str::to_owned)
    }
}

/// What can name every dimension of an array: a tuple mixing `"name"` and `None` as Flax writes
/// it (`(None, "data")`), `()` for a scalar, or a `Vec`/slice/array of names.
pub trait IntoLogicalNames {
    /// The names.
    fn into_names(self) -> LogicalNames;
}

impl IntoLogicalNames for () {
    fn into_names(self) -> LogicalNames {
        Vec::new()
    }
}

impl IntoLogicalNames for LogicalNames {
    fn into_names(self) -> LogicalNames {
        self
    }
}

impl<T: IntoAxisName + Clone> IntoLogicalNames for &[T] {
    fn into_names(self) -> LogicalNames {
        self.iter().cloned().map(IntoAxisName::into_axis_name).collect()
    }
}

impl<T: IntoAxisName, const N: usize> IntoLogicalNames for [T; N] {
    fn into_names(self) -> LogicalNames {
        self.into_iter().map(IntoAxisName::into_axis_name).collect()
    }
}

macro_rules! tuple_names {
    ($($t:ident $v:ident),+) => {
        impl<$($t: IntoAxisName),+> IntoLogicalNames for ($($t,)+) {
            fn into_names(self) -> LogicalNames {
                let ($($v,)+) = self;
                vec![$($v.into_axis_name()),+]
            }
        }
    };
}
tuple_names!(A a);
tuple_names!(A a, B b);
tuple_names!(A a, B b, C c);
tuple_names!(A a, B b, C c, D d);
tuple_names!(A a, B b, C c, D d, E e);
tuple_names!(A a, B b, C c, D d, E e, F f);

/// The mesh side of a logical axis rule: `"data"`, `String`, `Some("data")`, `None`, or an
/// `Option<String>` (so stored rules, [`LogicalRules`], convert too). A rule list holding only
/// `None`s names the type: `[("embed", None::<&str>)]`.
pub trait IntoMeshAxis {
    /// The mesh axis.
    fn into_mesh_axis(self) -> AxisName;
}

impl<T: IntoAxisName> IntoMeshAxis for T {
    fn into_mesh_axis(self) -> AxisName {
        self.into_axis_name()
    }
}

impl IntoMeshAxis for Option<String> {
    fn into_mesh_axis(self) -> AxisName {
        self
    }
}

/// What can give logical axis rules: pairs `(logical, mesh)` where the mesh axis is a name or
/// `None` (`[("batch", "data"), ("hidden", "model")]`, a [`LogicalRules`]).
pub trait IntoLogicalRules {
    /// The rules, in precedence order.
    fn into_rules(self) -> LogicalRules;
}

impl<I, L, M> IntoLogicalRules for I
where
    I: IntoIterator<Item = (L, M)>,
    L: Into<String>,
    M: IntoMeshAxis,
{
    fn into_rules(self) -> LogicalRules {
        self.into_iter().map(|(l, m)| (l.into(), m.into_mesh_axis())).collect()
    }
}

/// A tree of partition specs with the shape of a variables tree (what
/// `get_partition_spec` returns, and `logical_to_mesh` maps).
#[derive(Clone, PartialEq)]
pub enum SpecTree {
    /// The spec of an array leaf.
    Spec(PartitionSpec),
    /// A non-array leaf (Python's `None` in Flax's result).
    None,
    /// A dictionary, in the variables' key order.
    Dict(indexmap::IndexMap<String, SpecTree>),
    /// A tuple or list.
    List(Vec<SpecTree>),
}

impl SpecTree {
    /// The node at a path of dictionary keys.
    pub fn get_path<S: AsRef<str>>(&self, path: &[S]) -> Option<&SpecTree> {
        match (self, path.split_first()) {
            (_, None) => Some(self),
            (SpecTree::Dict(d), Some((first, rest))) => d.get(first.as_ref())?.get_path(rest),
            _ => None,
        }
    }

    /// The same tree with `f` applied to each spec.
    pub fn try_map<E>(
        &self,
        f: &mut impl FnMut(&PartitionSpec) -> Result<PartitionSpec, E>,
    ) -> Result<SpecTree, E> {
        Ok(match self {
            SpecTree::Spec(s) => SpecTree::Spec(f(s)?),
            SpecTree::None => SpecTree::None,
            SpecTree::Dict(d) => SpecTree::Dict(
                d.iter().map(|(k, v)| Ok((k.clone(), v.try_map(f)?))).collect::<Result<_, E>>()?,
            ),
            SpecTree::List(l) => SpecTree::List(l.iter().map(|v| v.try_map(f)).collect::<Result<_, E>>()?),
        })
    }

    fn write(&self, out: &mut String, indent: usize) {
        match self {
            SpecTree::Spec(s) => out.push_str(&format!("{s:?}")),
            SpecTree::None => out.push_str("None"),
            SpecTree::List(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| {
                        let mut s = String::new();
                        i.write(&mut s, indent);
                        s
                    })
                    .collect();
                out.push_str(&format!("({}{})", parts.join(", "), if parts.len() == 1 { "," } else { "" }));
            }
            SpecTree::Dict(d) if d.is_empty() => out.push_str("{}"),
            SpecTree::Dict(d) => {
                out.push_str("{\n");
                for (k, v) in d {
                    out.push_str(&format!("{:w$}{k}: ", "", w = indent + 4));
                    v.write(out, indent + 4);
                    out.push_str(",\n");
                }
                out.push_str(&format!("{:indent$}}}", ""));
            }
        }
    }
}

/// The layout the pjit guide prints a spec tree in (Flax's `FrozenDict` pretty repr):
/// `FrozenDict({\n    Dense_0: {\n        kernel: PartitionSpec(None, 'model'),` …; a leaf
/// prints as its spec.
impl fmt::Debug for SpecTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write(&mut out, 0);
        match self {
            SpecTree::Dict(_) => write!(f, "FrozenDict({out})"),
            _ => f.write_str(&out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_is_the_guides() {
        assert_eq!(format!("{:?}", PartitionSpec::new((None, "data"))), "PartitionSpec(None, 'data')");
        assert_eq!(format!("{:?}", PartitionSpec::new(("data",))), "PartitionSpec('data',)");
        assert_eq!(format!("{:?}", PartitionSpec::default()), "PartitionSpec()");
        assert_eq!(
            format!("{:?}", Mesh::new([("data", 2), ("model", 4)])),
            "Mesh(axis_sizes=(2, 4), axis_names=('data', 'model'))"
        );
    }

    #[test]
    fn names_from_tuples_arrays_and_slices() {
        let expect = vec![None, Some("model".to_owned())];
        assert_eq!((None, "model").into_names(), expect);
        assert_eq!([None, Some("model")].into_names(), expect);
        assert_eq!((&[None, Some("model")][..]).into_names(), expect);
        assert_eq!(().into_names(), LogicalNames::new());
    }
}
