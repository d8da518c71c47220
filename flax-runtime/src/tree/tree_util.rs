//! JAX's `jax.tree_util` over any [`Tree`]: maps, zips, leaves, rebuilding from leaves.
//!
//! The functions without `_with_path` build no key paths at all beyond the borrowed-key stack
//! every traversal keeps (no strings, no per-leaf allocation): they are the ones optimizers
//! call every step. More than two trees in lock step: call [`Tree::map_leaves`] or
//! [`Tree::visit_leaves_mut`] with `N` others directly.

use crate::core::errors::{Error, Result};
use crate::tree::key_path::KeyPath;
use crate::tree::pytree::Tree;
use tch::{Device, Tensor};

/// A tree of the same type whose leaves are `f` of `tree`'s leaves (JAX's `tree_map`).
pub fn tree_map<T: Tree>(tree: &T, mut f: impl FnMut(&Tensor) -> Result<Tensor>) -> Result<T> {
    tree.map_leaves([], &mut KeyPath::new(), &mut |_, leaf, []| f(leaf))
}

/// [`tree_map`] with each leaf's key path (JAX's `tree_map_with_path`); the path converts to
/// Flax's string keys with [`KeyPath::to_strings`] only if `f` asks.
pub fn tree_map_with_path<T: Tree>(
    tree: &T,
    mut f: impl FnMut(&KeyPath<'_>, &Tensor) -> Result<Tensor>,
) -> Result<T> {
    tree.map_leaves([], &mut KeyPath::new(), &mut |path, leaf, []| f(path, leaf))
}

/// A tree whose leaves are `f` of the matching leaves of `a` and `b` (JAX's
/// `tree_map(f, a, b)`).
///
/// # Errors
/// [`Error::TreeStructureMismatch`] when `a` and `b` differ in structure, or `f`'s error.
pub fn tree_zip_map<T: Tree>(
    a: &T,
    b: &T,
    mut f: impl FnMut(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<T> {
    a.map_leaves([b], &mut KeyPath::new(), &mut |_, x, [y]| f(x, y))
}

/// [`tree_zip_map`] with each leaf's key path.
pub fn tree_zip_map_with_path<T: Tree>(
    a: &T,
    b: &T,
    mut f: impl FnMut(&KeyPath<'_>, &Tensor, &Tensor) -> Result<Tensor>,
) -> Result<T> {
    a.map_leaves([b], &mut KeyPath::new(), &mut |path, x, [y]| f(path, x, y))
}

/// Calls `f` on every leaf mutably, for in-place updates of a tree the caller owns.
pub fn tree_for_each_mut<T: Tree>(tree: &mut T, mut f: impl FnMut(&mut Tensor) -> Result<()>) -> Result<()> {
    tree.visit_leaves_mut([], &mut KeyPath::new(), &mut |_, leaf, []| f(leaf))
}

/// Calls `f` on every leaf of `tree` mutably with the matching leaf of `other` (an in-place
/// `params -= lr * grads`).
///
/// # Errors
/// [`Error::TreeStructureMismatch`] when the trees differ in structure, or `f`'s error.
pub fn tree_zip_for_each_mut<T: Tree>(
    tree: &mut T,
    other: &T,
    mut f: impl FnMut(&mut Tensor, &Tensor) -> Result<()>,
) -> Result<()> {
    tree.visit_leaves_mut([other], &mut KeyPath::new(), &mut |_, x, [y]| f(x, y))
}

/// `tree` with every dict in sorted key order, as JAX's `tree_map` returns its result: for
/// updates that write the leaves through shared tensors (the fused optimizer kernels) rather
/// than through a `Tree` traversal, which sorts on its own. Tensors are untouched; once the
/// dicts are sorted (after the first step) it costs one key comparison per entry.
pub(crate) fn with_sorted_keys<T: Tree>(mut tree: T) -> T {
    let sorted = tree.visit_leaves_mut([], &mut KeyPath::new(), &mut |_, _, []| Ok(()));
    debug_assert!(sorted.is_ok(), "a visit that does nothing failed: {sorted:?}");
    tree
}

/// Visits every leaf of one tree. Visiting a single tree with an infallible callback cannot
/// fail (the trait's contract), so there is no error to return.
fn for_each_leaf<'t, T: Tree>(tree: &'t T, mut f: impl FnMut(&KeyPath<'t>, &'t Tensor)) {
    let visited = tree.visit_leaves([], &mut KeyPath::new(), &mut |path, leaf, []| {
        f(path, leaf);
        Ok(())
    });
    debug_assert!(visited.is_ok(), "a single-tree visit failed: {visited:?}");
}

/// The leaves in traversal order (JAX's `tree_leaves`).
pub fn leaves<T: Tree>(tree: &T) -> Vec<&Tensor> {
    let mut out = Vec::new();
    for_each_leaf(tree, |_, leaf| out.push(leaf));
    out
}

/// The leaves with Flax's string key paths, e.g. `(["params", "Dense_0", "kernel"], &kernel)`
/// (JAX's `tree_flatten_with_path`).
pub fn leaves_with_path<T: Tree>(tree: &T) -> Vec<(Vec<String>, &Tensor)> {
    let mut out = Vec::new();
    for_each_leaf(tree, |path, leaf| out.push((path.to_strings(), leaf)));
    out
}

/// The number of leaves.
pub fn num_leaves<T: Tree>(tree: &T) -> usize {
    let mut count = 0;
    for_each_leaf(tree, |_, _| count += 1);
    count
}

/// A tree shaped like `template` whose leaves are `leaves`, in traversal order (JAX's
/// `tree_unflatten`; e.g. gradients that libtorch returns as a list).
///
/// # Errors
/// [`Error::TreeStructureMismatch`] when there are fewer or more leaves than `template` has.
pub fn tree_unflatten<T: Tree>(template: &T, leaves: impl IntoIterator<Item = Tensor>) -> Result<T> {
    let mut leaves = leaves.into_iter();
    let tree = template.map_leaves([], &mut KeyPath::new(), &mut |path, _, []| {
        leaves.next().ok_or_else(|| Error::TreeStructureMismatch {
            path: path.to_string(),
            message: "fewer leaves were given than the tree has".to_owned(),
        })
    })?;
    match leaves.count() {
        0 => Ok(tree),
        extra => Err(Error::TreeStructureMismatch {
            path: KeyPath::new().to_string(),
            message: format!("{extra} more leaves were given than the tree has"),
        }),
    }
}

/// One tree whose leaves are the `trees`' leaves stacked along a new `axis` (JAX's
/// `tree.map(lambda *xs: jnp.stack(xs, axis), *trees)`): per-member params made into an
/// ensemble's, as a vmapped `init` makes them.
///
/// # Errors
/// [`Error::Value`] for no trees; [`Error::TreeStructureMismatch`] when two trees differ in
/// structure; libtorch's when leaves differ in shape or `axis` is out of range.
pub fn tree_stack<T: Tree>(trees: &[T], axis: i64) -> Result<T> {
    let Some(first) = trees.first() else {
        return Err(Error::Value("tree_stack needs at least one tree".to_owned()));
    };
    for other in &trees[1..] {
        tree_zip_map(first, other, |a, _| Ok(a.shallow_clone()))?;
    }
    let per_tree: Vec<Vec<&Tensor>> = trees.iter().map(leaves).collect();
    let stacked = (0..per_tree[0].len())
        .map(|i| Ok(Tensor::f_stack(&per_tree.iter().map(|l| l[i]).collect::<Vec<_>>(), axis)?))
        .collect::<Result<Vec<_>>>()?;
    tree_unflatten(first, stacked)
}

/// The tree with every leaf moved to `device` (JAX's `device_put`).
pub fn to_device<T: Tree>(tree: &T, device: Device) -> Result<T> {
    tree_map(tree, |leaf| Ok(leaf.f_to_device(device)?))
}

/// The tree with every leaf shared, not copied: how one set of parameters serves several
/// threads (a tch `Tensor` is `Send` but not `Sync`, so each thread takes its own clone).
pub fn shallow_clone<T: Tree>(tree: &T) -> Result<T> {
    tree_map(tree, |leaf| Ok(leaf.shallow_clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frozen_dict::{FrozenDict, Scalar, Value};
    use crate::core::scalar_ops::ScalarOps;
    use std::collections::BTreeMap;
    use tch::Kind;

    fn t(values: &[f32]) -> Tensor {
        Tensor::from_slice(values)
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::try_from(t).unwrap()
    }

    type Nested = (Vec<Tensor>, BTreeMap<String, Option<Tensor>>, Box<Tensor>);

    fn nested(scale: f32) -> Nested {
        let map = BTreeMap::from([("b".to_owned(), None), ("a".to_owned(), Some(t(&[3.0 * scale])))]);
        (vec![t(&[scale]), t(&[2.0 * scale])], map, Box::new(t(&[4.0 * scale, 5.0 * scale])))
    }

    fn variables() -> FrozenDict {
        let dense: FrozenDict = [
            ("kernel".to_owned(), Value::Tensor(t(&[1.0, 2.0]))),
            ("bias".to_owned(), Value::Tensor(t(&[3.0]))),
        ]
        .into_iter()
        .collect();
        let params: FrozenDict = [("Dense_0".to_owned(), Value::Dict(dense))].into_iter().collect();
        let intermediates =
            Value::List(vec![Value::Tensor(t(&[5.0])), Value::Scalar(Scalar::Str("tag".into()))]);
        [
            ("params".to_owned(), Value::Dict(params)),
            ("intermediates".to_owned(), intermediates),
            ("step".to_owned(), Value::Scalar(Scalar::Int(7))),
        ]
        .into_iter()
        .collect()
    }

    fn paths<T: Tree>(tree: &T) -> Vec<String> {
        leaves_with_path(tree).into_iter().map(|(path, _)| path.join("/")).collect()
    }

    #[test]
    fn leaves_follow_declaration_index_and_sorted_key_order() {
        let tree = nested(1.0);
        assert_eq!(paths(&tree), ["0/0", "0/1", "1/a", "2"]);
        assert_eq!(
            leaves(&tree).iter().map(|x| values(x)).collect::<Vec<_>>(),
            [vec![1.0], vec![2.0], vec![3.0], vec![4.0, 5.0]]
        );
        assert_eq!(num_leaves(&tree), 4);
        // JAX flattens a dict in sorted key order, whatever order it was built in.
        assert_eq!(paths(&variables()), ["intermediates/0", "params/Dense_0/bias", "params/Dense_0/kernel"]);
        assert_eq!(
            leaves_with_path(&variables())[1].0,
            ["params", "Dense_0", "bias"].map(String::from).to_vec()
        );
    }

    fn keys(dict: &FrozenDict, path: &[&str]) -> Vec<String> {
        let dict = if path.is_empty() { dict } else { dict.get_path(path).and_then(Value::as_dict).unwrap() };
        dict.keys().map(str::to_owned).collect()
    }

    #[test]
    fn maps_and_in_place_updates_sort_dicts_as_jax_rebuilds_them() {
        let built = variables();
        assert_eq!(keys(&built, &["params", "Dense_0"]), ["kernel", "bias"]);
        let mapped = tree_map(&built, |x| Ok(x.shallow_clone())).unwrap();
        assert_eq!(keys(&mapped, &[]), ["intermediates", "params", "step"]);
        assert_eq!(keys(&mapped, &["params", "Dense_0"]), ["bias", "kernel"]);
        // The state dict (what `to_bytes` writes) keeps the dict's own order.
        let state = built.state_dict();
        assert_eq!(keys(state.as_dict().unwrap(), &["params", "Dense_0"]), ["kernel", "bias"]);
        let mut updated = variables();
        tree_for_each_mut(&mut updated, |x| {
            let _ = x.try_add_scalar_(1.0)?;
            Ok(())
        })
        .unwrap();
        assert_eq!(keys(&updated, &["params", "Dense_0"]), ["bias", "kernel"]);
        assert_eq!(values(updated.tensor(&["params", "Dense_0", "kernel"]).unwrap()), [2.0, 3.0]);
    }

    #[test]
    fn tree_map_keeps_structure_and_non_tensor_parts() {
        let doubled = tree_map(&nested(1.0), |x| Ok(x * 2)).unwrap();
        assert_eq!(
            leaves(&doubled).iter().map(|x| values(x)).collect::<Vec<_>>(),
            [vec![2.0], vec![4.0], vec![6.0], vec![8.0, 10.0]]
        );
        assert!(doubled.1["b"].is_none());

        let mapped = tree_map_with_path(&variables(), |path, x| Ok(x + path.len() as f64)).unwrap();
        assert_eq!(values(mapped.tensor(&["params", "Dense_0", "bias"]).unwrap()), [6.0]);
        assert!(matches!(mapped.get("step"), Some(Value::Scalar(Scalar::Int(7)))));
        let list = mapped.get("intermediates").and_then(Value::as_list).unwrap();
        assert_eq!(values(list[0].as_tensor().unwrap()), [7.0]);
        assert!(matches!(&list[1], Value::Scalar(Scalar::Str(s)) if s == "tag"));
    }

    #[test]
    fn tree_map_propagates_the_callbacks_error() {
        let failed =
            tree_map(&nested(1.0), |x| Ok(x.f_matmul(&Tensor::ones([3, 3], (Kind::Float, Device::Cpu)))?));
        assert!(matches!(failed, Err(Error::Torch(_))));
    }

    #[test]
    fn tree_zip_map_combines_matching_leaves() {
        let sum = tree_zip_map(&nested(1.0), &nested(10.0), |a, b| Ok(a + b)).unwrap();
        assert_eq!(values(&sum.2), [44.0, 55.0]);
        let with_path = tree_zip_map_with_path(&variables(), &variables(), |path, a, b| {
            assert!(!path.is_empty());
            Ok(a * b)
        })
        .unwrap();
        assert_eq!(values(with_path.tensor(&["params", "Dense_0", "kernel"]).unwrap()), [1.0, 4.0]);
    }

    fn mismatch_path<T>(result: Result<T>) -> String {
        match result {
            Err(Error::TreeStructureMismatch { path, .. }) => path,
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("structures that differ were zipped"),
        }
    }

    #[test]
    fn tree_zip_map_reports_where_structures_differ() {
        let add = |a: &Tensor, b: &Tensor| Ok(a + b);
        let mut shorter = nested(1.0);
        shorter.0.pop();
        assert_eq!(mismatch_path(tree_zip_map(&nested(1.0), &shorter, add)), "0");
        assert_eq!(mismatch_path(tree_zip_map(&shorter, &nested(1.0), add)), "0");

        let mut none = nested(1.0);
        none.1.insert("a".into(), None);
        assert_eq!(mismatch_path(tree_zip_map(&nested(1.0), &none, add)), "1/a");
        assert_eq!(mismatch_path(tree_zip_map(&none, &nested(1.0), add)), "1/a");

        let mut renamed = nested(1.0);
        let moved = renamed.1.remove("a").unwrap();
        renamed.1.insert("c".into(), moved);
        assert_eq!(mismatch_path(tree_zip_map(&nested(1.0), &renamed, add)), "1");

        let vars = variables();
        let scalar_params = vars.copy([("params", Value::Scalar(Scalar::Int(0)))]);
        assert_eq!(mismatch_path(tree_zip_map(&vars, &scalar_params, add)), "params");
        assert_eq!(mismatch_path(tree_zip_map(&scalar_params, &vars, add)), "params");
    }

    #[test]
    fn map_leaves_zips_any_number_of_trees() {
        let (a, b, c) = (nested(1.0), nested(2.0), nested(3.0));
        let combined =
            a.map_leaves([&b, &c], &mut KeyPath::new(), &mut |_, x, [y, z]| Ok(x + y * z)).unwrap();
        assert_eq!(values(&combined.0[1]), [2.0 + 4.0 * 6.0]);
    }

    #[test]
    fn for_each_mut_updates_leaves_in_place() {
        let mut tree = variables();
        let kernel_ptr = tree.tensor(&["params", "Dense_0", "kernel"]).unwrap().data_ptr();
        tree_for_each_mut(&mut tree, |x| {
            let _ = x.try_mul_scalar_(3.0)?;
            Ok(())
        })
        .unwrap();
        let kernel = tree.tensor(&["params", "Dense_0", "kernel"]).unwrap();
        assert_eq!(kernel.data_ptr(), kernel_ptr);
        assert_eq!(values(kernel), [3.0, 6.0]);

        let mut params = nested(1.0);
        tree_zip_for_each_mut(&mut params, &nested(1.0), |p, g| {
            let _ = p.f_sub_(g)?;
            Ok(())
        })
        .unwrap();
        assert!(leaves(&params).iter().all(|x| values(x).iter().all(|v| *v == 0.0)));
        let mut shorter = nested(1.0);
        shorter.0.pop();
        assert!(tree_zip_for_each_mut(&mut shorter, &nested(1.0), |_, _| Ok(())).is_err());
    }

    #[test]
    fn tree_unflatten_rebuilds_from_leaves_and_checks_the_count() {
        let tree = nested(1.0);
        let new_leaves: Vec<Tensor> = leaves(&tree).iter().map(|x| x.neg()).collect();
        let rebuilt = tree_unflatten(&tree, new_leaves).unwrap();
        assert_eq!(values(&rebuilt.1["a"].as_ref().unwrap().shallow_clone()), [-3.0]);
        assert_eq!(mismatch_path(tree_unflatten(&tree, vec![t(&[1.0])])), "0/1");
        let too_many: Vec<Tensor> = (0..5).map(|i| t(&[i as f32])).collect();
        assert_eq!(mismatch_path(tree_unflatten(&tree, too_many)), ".");
    }

    #[test]
    fn shallow_clone_shares_and_to_device_copies_values() {
        let tree = variables();
        let clone = shallow_clone(&tree).unwrap();
        let ptr = |v: &FrozenDict| v.tensor(&["params", "Dense_0", "kernel"]).unwrap().data_ptr();
        assert_eq!(ptr(&clone), ptr(&tree));
        let moved = to_device(&tree, Device::Cpu).unwrap();
        assert_eq!(values(moved.tensor(&["params", "Dense_0", "bias"]).unwrap()), [3.0]);
    }

    #[test]
    fn shallow_clones_serve_other_threads() {
        let tree = variables();
        let clone = shallow_clone(&tree).unwrap();
        let sum = std::thread::spawn(move || {
            leaves(&clone).iter().map(|x| x.sum(Kind::Float).double_value(&[])).sum::<f64>()
        })
        .join()
        .unwrap();
        assert_eq!(sum, 11.0);
    }
}
