//! `flax::traverse_util` against vectors from Flax 0.12.8 (`scripts/golden/tree.py`),
//! including the spec's examples: flatten_dict (L26083), unflatten_dict (L26146) and
//! path_aware_map (L26199).

mod golden_json;

use flax::traverse_util::{
    flatten_dict, flatten_dict_sep, flatten_dict_sep_with, flatten_dict_with, path_aware_map, unflatten_dict,
    unflatten_dict_sep, FlatValue, FlattenOptions, ModelParamTraversal,
};
use flax::{Error, FrozenDict, Scalar, Value};
use golden_json::{dict, encode, encode_dict, load, tag, value};
use indexmap::IndexMap;
use serde_json::{json, Value as Json};

fn vectors() -> Json {
    load("traverse_util")
}

/// A value of a flattened dict: `{"empty_node": null}` or a tagged value.
fn flat_value(json: &Json) -> FlatValue {
    match tag(json) {
        ("empty_node", _) => FlatValue::EmptyNode,
        _ => FlatValue::Leaf(value(json)),
    }
}

fn encode_flat(value: &FlatValue) -> Json {
    match value {
        FlatValue::Leaf(leaf) => encode(leaf),
        FlatValue::EmptyNode => json!({ "empty_node": null }),
    }
}

fn encode_flat_tuples(flat: &IndexMap<Vec<String>, FlatValue>) -> Json {
    Json::Array(flat.iter().map(|(k, v)| json!([k, encode_flat(v)])).collect())
}

fn encode_flat_strings(flat: &IndexMap<String, FlatValue>) -> Json {
    Json::Array(flat.iter().map(|(k, v)| json!([k, encode_flat(v)])).collect())
}

fn decode_flat_tuples(json: &Json) -> Vec<(Vec<String>, FlatValue)> {
    json.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[0].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_owned()).collect(),
                flat_value(&e[1]),
            )
        })
        .collect()
}

fn decode_flat_strings(json: &Json) -> Vec<(String, FlatValue)> {
    json.as_array().unwrap().iter().map(|e| (e[0].as_str().unwrap().to_owned(), flat_value(&e[1]))).collect()
}

fn int(value: &Value) -> i64 {
    match value {
        Value::Scalar(Scalar::Int(i)) => *i,
        other => panic!("not an int: {other:?}"),
    }
}

/// Flax's `keep_empty_nodes=True`.
fn keep_empty() -> FlattenOptions<'static> {
    FlattenOptions::new().keep_empty_nodes(true)
}

#[test]
fn flatten_dict_matches_flax() {
    let v = vectors();
    let xs = dict(&v["xs"]);
    assert_eq!(encode_flat_tuples(&flatten_dict(&xs)), v["flatten"]);
    assert_eq!(encode_flat_tuples(&flatten_dict_with(&xs, keep_empty())), v["flatten_keep_empty"]);
    assert_eq!(encode_flat_strings(&flatten_dict_sep(&xs, "/")), v["flatten_sep"]);
    assert_eq!(
        encode_flat_strings(&flatten_dict_sep_with(&xs, ".", keep_empty())),
        v["flatten_keep_empty_sep"]
    );
    assert_eq!(
        encode_flat_tuples(&flatten_dict_with(&FrozenDict::new(), keep_empty())),
        v["flatten_empty_keep_empty"]
    );
}

#[test]
fn flatten_dict_is_leaf_and_sep_match_flax() {
    let v = vectors();
    let deep = dict(&v["deep"]);
    let depth1 = |path: &[String], _: &FrozenDict| path.len() == 1;
    assert_eq!(
        encode_flat_tuples(&flatten_dict_with(&deep, FlattenOptions::new().is_leaf(&depth1))),
        v["flatten_is_leaf_depth1"]
    );
    let root = |path: &[String], _: &FrozenDict| path.is_empty();
    assert_eq!(
        encode_flat_tuples(&flatten_dict_with(&deep, FlattenOptions::new().is_leaf(&root))),
        v["flatten_is_leaf_root"]
    );
    assert_eq!(encode_flat_strings(&flatten_dict_sep(&deep, "/")), v["flatten_deep_sep"]);
}

#[test]
fn unflatten_dict_matches_flax() {
    let v = vectors();
    let flat = vec![
        (vec!["foo".to_owned()], FlatValue::Leaf(Value::Scalar(Scalar::Int(1)))),
        (vec!["bar".to_owned(), "a".to_owned()], FlatValue::Leaf(Value::Scalar(Scalar::Int(2)))),
    ];
    assert_eq!(encode_dict(&unflatten_dict(flat).unwrap()), v["unflatten"]);
    let keep_empty = decode_flat_tuples(&v["flatten_keep_empty"]);
    assert_eq!(encode_dict(&unflatten_dict(keep_empty).unwrap()), v["unflatten_keep_empty"]);
    let deep_sep = decode_flat_strings(&v["flatten_deep_sep"]);
    assert_eq!(encode_dict(&unflatten_dict_sep(deep_sep, "/").unwrap()), v["unflatten_deep_sep"]);
}

#[test]
fn unflatten_dict_rejects_paths_through_leaves_and_empty_keys() {
    let leaf = |i| FlatValue::Leaf(Value::Scalar(Scalar::Int(i)));
    let through_leaf = vec![(vec!["a".to_owned()], leaf(1)), (vec!["a".to_owned(), "b".to_owned()], leaf(2))];
    assert!(matches!(unflatten_dict(through_leaf), Err(Error::Value(_))));
    assert!(matches!(unflatten_dict(vec![(Vec::new(), leaf(1))]), Err(Error::Value(_))));
}

#[test]
fn path_aware_map_matches_flax() {
    let v = vectors();
    let params = dict(&v["path_aware_map_input"]);
    let f = |path: &[String], x: &Value| {
        let x = int(x);
        Ok(Value::Scalar(Scalar::Int(if path.iter().any(|k| k == "x") { x + 5 } else { -x })))
    };
    assert_eq!(encode_dict(&path_aware_map(f, &params).unwrap()), v["path_aware_map"]);

    let with_empty = dict(&v["path_aware_map_empty_input"]);
    let scale = |path: &[String], x: &Value| Ok(Value::Scalar(Scalar::Int(int(x) * path.len() as i64)));
    assert_eq!(encode_dict(&path_aware_map(scale, &with_empty).unwrap()), v["path_aware_map_empty"]);
}

#[test]
fn path_aware_map_propagates_errors() {
    let params = dict(&vectors()["path_aware_map_input"]);
    let failed = path_aware_map(|_, _| Err(Error::Value("no".to_owned())), &params);
    assert!(matches!(failed, Err(Error::Value(m)) if m == "no"));
}

#[test]
fn model_param_traversal_matches_flax() {
    let v = vectors();
    let model = dict(&v["model_params"]);
    let biases = ModelParamTraversal::new(|path: &str, _: &Value| path.ends_with("/bias"));
    let iterated: Vec<Json> = biases.iterate(&model).map(|x| encode(&x)).collect();
    assert_eq!(Json::Array(iterated), v["traversal_bias_iterate"]);
    let times_ten = |x: &Value| Ok(Value::Scalar(Scalar::Int(int(x) * 10)));
    assert_eq!(encode_dict(&biases.update(times_ten, &model).unwrap()), v["traversal_bias_update"]);

    let dense0 = ModelParamTraversal::new(|path: &str, _: &Value| path.contains("Dense_0"));
    let iterated: Vec<Json> = dense0.iterate(&model).map(|x| encode(&x)).collect();
    assert_eq!(Json::Array(iterated), v["traversal_dense0_iterate"]);
    let negate = |x: &Value| Ok(Value::Scalar(Scalar::Int(-int(x))));
    assert_eq!(encode_dict(&dense0.update(negate, &model).unwrap()), v["traversal_dense0_update"]);
}

#[test]
fn model_param_traversal_names_start_with_a_slash() {
    let model = dict(&vectors()["model_params"]);
    let names = std::cell::RefCell::new(Vec::new());
    let all = ModelParamTraversal::new(|path: &str, _: &Value| {
        names.borrow_mut().push(path.to_owned());
        true
    });
    assert_eq!(all.iterate(&model).count(), 6);
    assert_eq!(
        names.into_inner(),
        [
            "/Dense_0/bias",
            "/Dense_0/kernel",
            "/Dense_1/bias",
            "/Dense_1/kernel",
            "/LayerNorm_0/bias",
            "/LayerNorm_0/scale"
        ]
    );
}
