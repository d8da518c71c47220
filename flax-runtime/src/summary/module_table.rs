//! Which recorded calls become rows, and which variables each row shows and counts (Flax's
//! `_get_module_table`, `_get_module_variables` and `_get_path_variables`).

use crate::core::frozen_dict::{FrozenDict, Value, Variables};
use crate::core::scope::CallRecord;
use crate::summary::size::Size;
use std::collections::HashSet;

/// One row: a module method call with its variables.
pub(crate) struct Row<'a> {
    pub call: &'a CallRecord,
    /// Per collection of the table: the module's own variables as a dictionary (its
    /// submodules' subtrees left out), or `None` where the collection has nothing at the
    /// module's path.
    pub own: Vec<Option<Value>>,
    /// Per collection: what this row counts (with `depth`, submodules folded into it).
    pub counted: Vec<Size>,
}

/// The rows of the summary and the variable collections that make its last columns.
pub(crate) struct ModuleTable<'a> {
    pub collections: Vec<&'a str>,
    pub rows: Vec<Row<'a>>,
}

/// The table of `calls` (in call order) over the `variables` they created.
///
/// A module called again is shown again only with `show_repeated`, then without variables.
/// Modules deeper than `depth` are left out, and a module at exactly `depth` counts the
/// variables of its whole subtree, so that the rows always add up to the total.
///
/// The collections are in the order of `variables` (the order they were created in); Flax
/// takes them from a Python `set`, whose order changes from one process to the next.
pub(crate) fn module_table<'a>(
    calls: &'a [CallRecord],
    variables: &'a Variables,
    depth: Option<usize>,
    show_repeated: bool,
) -> ModuleTable<'a> {
    let collections: Vec<&str> = variables.keys().collect();
    let all_paths: HashSet<&[String]> = calls.iter().map(|c| c.path.as_slice()).collect();
    let mut visited: HashSet<&[String]> = HashSet::new();
    let mut rows = Vec::new();
    for call in calls {
        let path = call.path.as_slice();
        let (own, counted) = if visited.contains(path) {
            if !show_repeated {
                continue;
            }
            (vec![None; collections.len()], vec![Size::default(); collections.len()])
        } else if depth.is_some_and(|d| path.len() > d) {
            continue;
        } else {
            first_call_variables(path, variables, &all_paths, depth)
        };
        visited.insert(path);
        rows.push(Row { call, own, counted });
    }
    ModuleTable { collections, rows }
}

/// The own variables and the counts of the first row of the module at `path`.
fn first_call_variables(
    path: &[String],
    variables: &Variables,
    all_paths: &HashSet<&[String]>,
    depth: Option<usize>,
) -> (Vec<Option<Value>>, Vec<Size>) {
    let own = module_variables(path, variables, all_paths);
    let counted = if depth == Some(path.len()) {
        path_variables(path, variables).iter().map(|d| d.map_or_else(Size::default, Size::of_dict)).collect()
    } else {
        own.iter().map(|v| v.as_ref().map_or_else(Size::default, Size::of)).collect()
    };
    (own, counted)
}

/// Per collection, the subtree at `path`, if the collection has one.
fn path_variables<'v>(path: &[String], variables: &'v Variables) -> Vec<Option<&'v FrozenDict>> {
    variables
        .iter()
        .map(|(_, collection)| {
            path.iter().try_fold(collection.as_dict()?, |dict, name| dict.get(name).and_then(Value::as_dict))
        })
        .collect()
}

/// Per collection, the subtree at `path` without the entries that are submodules called in
/// this run.
fn module_variables(
    path: &[String],
    variables: &Variables,
    all_paths: &HashSet<&[String]>,
) -> Vec<Option<Value>> {
    let is_submodule = |key: &str| {
        let child: Vec<String> = path.iter().cloned().chain([key.to_owned()]).collect();
        all_paths.contains(child.as_slice())
    };
    path_variables(path, variables)
        .into_iter()
        .map(|dict| {
            dict.map(|d| {
                Value::Dict(
                    d.iter()
                        .filter(|(k, _)| !is_submodule(k))
                        .map(|(k, v)| (k.to_owned(), v.clone()))
                        .collect(),
                )
            })
        })
        .collect()
}
