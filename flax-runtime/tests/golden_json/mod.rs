//! The tagged JSON of `scripts/golden/tree.py`, to and from `Value`s: `{"int": 1}`,
//! `{"float": 0.5}`, `{"str": "a"}`, `{"none": null}`, `{"empty_node": null}`,
//! `{"array": {"shape", "dtype", "data"}}`, `{"dict": [[key, value], ...]}` (ordered) and
//! `{"list": [...]}` (lists and tuples, in `traversals.py`).

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use flax::tch::{Kind, Tensor};
use flax::{FrozenDict, Scalar, Value};
use serde_json::{json, Value as Json};

/// The vectors of one data file.
pub fn load(name: &str) -> Json {
    let path = format!("{}/tests/data/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The tag and body of a tagged value.
pub fn tag(json: &Json) -> (&str, &Json) {
    let object = json.as_object().unwrap_or_else(|| panic!("not a tagged value: {json}"));
    assert_eq!(object.len(), 1, "not a tagged value: {json}");
    let (tag, body) = object.iter().next().unwrap();
    (tag.as_str(), body)
}

/// Decodes a tagged value (`empty_node` is for flat dicts only and decoded by their tests).
pub fn value(json: &Json) -> Value {
    match tag(json) {
        ("int", v) => Value::Scalar(Scalar::Int(v.as_i64().unwrap())),
        ("float", v) => Value::Scalar(Scalar::Float(v.as_f64().unwrap())),
        ("str", v) => Value::Scalar(Scalar::Str(v.as_str().unwrap().to_owned())),
        ("none", _) => Value::Scalar(Scalar::None),
        ("dict", _) => Value::Dict(dict(json)),
        ("list", items) => Value::List(items.as_array().unwrap().iter().map(value).collect()),
        ("array", a) => {
            assert_eq!(a["dtype"], "float32", "only float32 arrays are used");
            let data: Vec<f32> =
                a["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            let shape: Vec<i64> =
                a["shape"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect();
            Value::Tensor(Tensor::from_slice(&data).reshape(shape))
        }
        (other, _) => panic!("unexpected tag {other}"),
    }
}

/// Decodes a tagged dict.
pub fn dict(json: &Json) -> FrozenDict {
    let ("dict", entries) = tag(json) else { panic!("not a dict: {json}") };
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry[0].as_str().unwrap().to_owned(), value(&entry[1])))
        .collect()
}

/// Encodes a value in the same tagged form, for comparing with the vectors.
pub fn encode(value: &Value) -> Json {
    match value {
        Value::Scalar(Scalar::Int(i)) => json!({ "int": i }),
        Value::Scalar(Scalar::Float(x)) => json!({ "float": x }),
        Value::Scalar(Scalar::Str(s)) => json!({ "str": s }),
        Value::Scalar(Scalar::None) => json!({ "none": null }),
        Value::Scalar(other) => panic!("not used by the vectors: {other:?}"),
        Value::Boxed(b) => panic!("not used by the vectors: {:?}", b.unbox()),
        Value::Dict(d) => encode_dict(d),
        Value::List(items) => json!({ "list": items.iter().map(encode).collect::<Vec<_>>() }),
        Value::Tensor(t) => {
            assert_eq!(t.kind(), Kind::Float, "only float32 arrays are used");
            let data: Vec<f32> = Vec::try_from(t.flatten(0, -1)).unwrap();
            json!({ "array": { "shape": t.size(), "dtype": "float32", "data": data } })
        }
    }
}

/// Encodes a dict.
pub fn encode_dict(dict: &FrozenDict) -> Json {
    json!({ "dict": dict.iter().map(|(k, v)| json!([k, encode(v)])).collect::<Vec<_>>() })
}
