//! The golden vectors of `scripts/golden/layers_*.py` (see `layers_common.py` for the file
//! format), read through the crate's own msgpack reader, and the comparisons the layer tests
//! make with them: same variable trees (collections, names, shapes, values) and outputs
//! within 1e-5, absolute and relative.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use flax::serialization::msgpack_restore;
use flax::tch::{Kind, Tensor};
use flax::{FrozenDict, PRNGKey, Value, Variables};
use std::cell::RefCell;
use std::collections::BTreeSet;

/// Absolute and relative tolerance of every comparison.
pub const TOL: f64 = 1e-5;

/// The key every golden `init` ran with (`jax.random.PRNGKey(SEED)`, `SEED = 0`).
pub fn key() -> PRNGKey {
    PRNGKey::new(0)
}

/// The cases of one file, remembering which ones a test looked at.
pub struct Golden {
    file: &'static str,
    cases: FrozenDict,
    seen: RefCell<BTreeSet<String>>,
}

impl Golden {
    /// Reads `tests/data/layers/<file>.msgpack`.
    pub fn load(file: &'static str) -> Self {
        let path = format!("{}/tests/data/layers/{file}.msgpack", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let cases = match msgpack_restore(&bytes).unwrap() {
            Value::Dict(dict) => dict,
            other => panic!("{path} is not a dict: {other:?}"),
        };
        Golden { file, cases, seen: RefCell::new(BTreeSet::new()) }
    }

    /// The case `name`.
    pub fn case(&self, name: &str) -> Case<'_> {
        self.seen.borrow_mut().insert(name.to_owned());
        match self.cases.get(name) {
            Some(Value::Dict(dict)) => Case { name: name.to_owned(), dict },
            _ => panic!("{}: no case {name}", self.file),
        }
    }

    /// Fails unless every case of the file was looked at: a case Python generates is a
    /// configuration the Rust side must be tested on.
    pub fn assert_all_seen(&self) {
        let seen = self.seen.borrow();
        let missing: Vec<&str> = self.cases.keys().filter(|k| !seen.contains(*k)).collect();
        assert!(missing.is_empty(), "{}: cases without a test: {missing:?}", self.file);
    }
}

/// One configuration: inputs, Flax's variables after `init`, and its outputs.
pub struct Case<'a> {
    pub name: String,
    dict: &'a FrozenDict,
}

impl Case<'_> {
    /// The tensor at `path` in the case (`["eval_output"]`, …).
    pub fn tensor(&self, path: &[&str]) -> Tensor {
        self.dict
            .tensor(path)
            .unwrap_or_else(|| panic!("{}: no tensor at {path:?}", self.name))
            .shallow_clone()
    }

    /// The tensor at `path`, if the case has one.
    pub fn get(&self, path: &[&str]) -> Option<Tensor> {
        self.dict.tensor(path).map(|t| t.shallow_clone())
    }

    /// The dictionary under `key` (`"variables"`, `"grads"`, …).
    pub fn dict(&self, key: &str) -> FrozenDict {
        match self.dict.get(key) {
            Some(Value::Dict(d)) => d.clone(),
            _ => panic!("{}: no dict {key}", self.name),
        }
    }

    /// The input `name`.
    pub fn input(&self, name: &str) -> Tensor {
        self.tensor(&["inputs", name])
    }

    /// The variables Flax's `init` returned.
    pub fn variables(&self) -> Variables {
        self.dict("variables")
    }

    /// The mutated collections Flax's `apply` returned.
    pub fn updated(&self) -> Variables {
        self.dict("updated")
    }

    /// The output (a single array).
    pub fn output(&self) -> Tensor {
        self.tensor(&["output"])
    }

    /// An element of a structured output (`["0"]`, `["carry", "1"]`, …).
    pub fn output_at(&self, path: &[&str]) -> Tensor {
        let mut full = vec!["output"];
        full.extend_from_slice(path);
        self.tensor(&full)
    }

    /// Checks `init`'s variables against Flax's, then `apply` with Flax's variables against
    /// Flax's output.
    pub fn check(
        &self,
        init: impl FnOnce() -> flax::Result<Variables>,
        apply: impl FnOnce(&Variables) -> flax::Result<Tensor>,
    ) {
        let ours = init().unwrap_or_else(|e| panic!("{}: init failed: {e}", self.name));
        assert_same_tree(&format!("{}: init", self.name), &ours, &self.variables());
        let y = apply(&self.variables()).unwrap_or_else(|e| panic!("{}: apply failed: {e}", self.name));
        assert_close(&format!("{}: output", self.name), &y, &self.output());
    }
}

/// Same shape and every element within [`TOL`] (absolute and relative); floats of any width.
/// NaN matches NaN only (Flax's NaNs, e.g. an average over a window of padding only, must be
/// reproduced).
pub fn assert_close(what: &str, actual: &Tensor, expected: &Tensor) {
    assert_eq!(actual.size(), expected.size(), "{what}: shape");
    let (a, e) = (actual.to_kind(Kind::Double), expected.to_kind(Kind::Double));
    let ok = a.allclose(&e, TOL, TOL, true);
    let diff = if a.numel() == 0 {
        0.0
    } else {
        (&a - &e).abs().nan_to_num(0.0, None, None).max().double_value(&[])
    };
    assert!(ok, "{what}: max abs difference {diff}");
}

/// Every `collection/…/name` path of a tree with its tensor.
fn leaves(tree: &FrozenDict) -> Vec<(String, Tensor)> {
    fn walk(prefix: &str, dict: &FrozenDict, out: &mut Vec<(String, Tensor)>) {
        for (k, v) in dict.iter() {
            let path = if prefix.is_empty() { k.to_owned() } else { format!("{prefix}/{k}") };
            match v {
                Value::Dict(d) => walk(&path, d, out),
                Value::Tensor(t) => out.push((path, t.shallow_clone())),
                other => panic!("{path}: not a tensor: {other:?}"),
            }
        }
    }
    let mut out = Vec::new();
    walk("", tree, &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The same collections and variable paths, with the same shapes, dtypes and values.
pub fn assert_same_tree(what: &str, actual: &FrozenDict, expected: &FrozenDict) {
    let (ours, theirs) = (leaves(actual), leaves(expected));
    let names =
        |l: &[(String, Tensor)]| l.iter().map(|(p, t)| format!("{p} {:?}", t.size())).collect::<Vec<_>>();
    assert_eq!(names(&ours), names(&theirs), "{what}: variable trees differ");
    for ((path, a), (_, e)) in ours.iter().zip(&theirs) {
        assert_eq!(a.kind(), e.kind(), "{what}: dtype of {path}");
        assert_close(&format!("{what}: {path}"), a, e);
    }
}
