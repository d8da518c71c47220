//! Typed views of params: `Mlp::params(&variables)?.dense_0.kernel`.
//!
//! `#[module]` generates, for each module, a struct of references into its `params` subtree
//! (`DenseParams<'a> { kernel: &'a Tensor, bias: Option<&'a Tensor>, tree }`), with one field per
//! param and submodule it can name from the code: params declared with a literal name, inline
//! submodules (a field named after Flax's name in snake case: `Dense_0` → `dense_0`; an
//! `Option` when declared under a condition; a `Vec` named `dense_from_2` for the `Dense_2`,
//! `Dense_3`, … made in a loop), and `#[submodule]` fields
//! (reached through `Deref`, so `params.encoder` works). Names computed at run time
//! (`.name(format!(…))`) have no field; every view keeps the raw subtree in `tree` for those.
//! Building a view copies no tensor.

use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::FrozenDict;
use crate::core::naming::auto_name;
use tch::Tensor;

/// Modules with a generated typed view of their params.
pub trait ParamsView {
    /// The view (`DenseParams<'a>`).
    type Params<'a>;

    /// The view over this module's subtree of `params` (`None` when it has none); `path` is
    /// the module path for error messages.
    fn view<'a>(tree: Option<&'a FrozenDict>, path: &str) -> Result<Self::Params<'a>>;
}

/// The param `name`, which must exist (`ScopeParamNotFoundError` otherwise).
#[doc(hidden)]
pub fn leaf<'a>(tree: Option<&'a FrozenDict>, name: &str, path: &str) -> Result<&'a Tensor> {
    optional_leaf(tree, name)
        .ok_or_else(|| Error::ScopeParamNotFound { name: name.to_owned(), scope: path.to_owned() })
}

/// The param `name`, if it exists (declared under a condition).
#[doc(hidden)]
pub fn optional_leaf<'a>(tree: Option<&'a FrozenDict>, name: &str) -> Option<&'a Tensor> {
    tree?.get(name)?.as_tensor()
}

/// The subtree of child `name`.
#[doc(hidden)]
pub fn child<'a>(tree: Option<&'a FrozenDict>, name: &str) -> Option<&'a FrozenDict> {
    tree?.get_dict(name)
}

/// The module path of child `name` under `path`.
#[doc(hidden)]
pub fn child_path(path: &str, name: &str) -> String {
    if path == "/" {
        format!("/{name}")
    } else {
        format!("{path}/{name}")
    }
}

/// Views of the children `{type_name}_{start}`, `{type_name}_{start+1}`, … that exist
/// (submodules constructed in a loop).
#[doc(hidden)]
pub fn numbered<'a, M: ParamsView>(
    tree: Option<&'a FrozenDict>,
    type_name: &'static str,
    start: u32,
    path: &str,
) -> Result<Vec<M::Params<'a>>> {
    let mut out = Vec::new();
    for index in start.. {
        let name = auto_name(type_name, index);
        match child(tree, name) {
            Some(sub) => out.push(M::view(Some(sub), &child_path(path, name))?),
            None => return Ok(out),
        }
    }
    Ok(out)
}

/// Views of the children `{field}_0`, `{field}_1`, … (a `Vec` of submodules in a field), up to
/// the last one the tree holds: the view at index `i` is the field's element `i`, so an element
/// without params (a function in a `Sequential`'s layers) gets the view of an empty subtree.
#[doc(hidden)]
pub fn field_list<'a, M: ParamsView>(
    tree: Option<&'a FrozenDict>,
    field: &str,
    path: &str,
) -> Result<Vec<M::Params<'a>>> {
    let index_of = |key: &str| key.strip_prefix(field)?.strip_prefix('_')?.parse::<usize>().ok();
    let Some(last) = tree.and_then(|t| t.keys().filter_map(index_of).max()) else {
        return Ok(Vec::new());
    };
    (0..=last)
        .map(|index| {
            let name = format!("{field}_{index}");
            M::view(child(tree, &name), &child_path(path, &name))
        })
        .collect()
}
