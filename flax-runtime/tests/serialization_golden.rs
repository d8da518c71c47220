//! `flax::serialization` against bytes written by Python Flax 0.12.8.
//!
//! `scripts/golden/serialization_vectors.py` wrote `tests/data/serialization/<case>.msgpack`
//! and `expected.json`, which holds, per case, the API that wrote it and the tree Flax's own
//! `msgpack_restore` reads back. Each case is restored here and compared with that tree, then
//! re-serialized and compared byte for byte with Flax's file.
//!
//! The bytes Rust writes are also saved (to `$FLAX_RS_SERIALIZATION_OUT`, by default
//! `target/tmp/serialization-rust-bytes`) for `scripts/golden/check_rust_bytes.py`, which
//! loads them with Python Flax.

use flax::core::frozen_dict::dtype_name;
use flax::core::uint_array::{UintArray, UintDtype};
use flax::optax;
use flax::serialization::{
    from_bytes, from_bytes_with, msgpack_restore, msgpack_serialize, to_bytes, RestoreOptions,
};
use flax::tch::{Device, Kind, Tensor};
use flax::training::TrainState;
use flax::tree::{self, Tree};
use flax::{Error, FrozenDict, PRNGKey, Scalar, Value};
use serde_json::Value as Json;
use std::path::PathBuf;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/serialization");

fn expected() -> Json {
    let text = std::fs::read_to_string(format!("{DATA}/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn flax_bytes(case: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}/{case}.msgpack")).unwrap()
}

/// Saves bytes written by Rust for `check_rust_bytes.py`.
fn save_for_python(name: &str, bytes: &[u8]) {
    let dir = std::env::var_os("FLAX_RS_SERIALIZATION_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serialization-rust-bytes"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.msgpack")), bytes).unwrap();
}

fn dict(entries: Vec<(&str, Value)>) -> Value {
    Value::Dict(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn int(n: i64) -> Value {
    Value::Scalar(Scalar::Int(n))
}

/// A JSON number, or the string JSON uses for a non-finite float.
fn json_f64(json: &Json) -> f64 {
    match json {
        Json::String(s) => s.parse().unwrap(),
        number => number.as_f64().unwrap(),
    }
}

fn assert_same_f64(path: &str, actual: f64, expected: f64) {
    let same = actual.to_bits() == expected.to_bits() || (actual.is_nan() && expected.is_nan());
    assert!(same, "{path}: {actual:?} != {expected:?}");
}

/// Asserts that `value` is the tree `json` describes, with keys in the same order.
fn assert_tree(path: &str, value: &Value, json: &Json) {
    let (tag, body) = json.as_object().unwrap().iter().next().unwrap();
    match (tag.as_str(), value) {
        ("dict", Value::Dict(d)) => {
            let pairs = body.as_array().unwrap();
            let keys: Vec<&str> = pairs.iter().map(|p| p[0].as_str().unwrap()).collect();
            assert_eq!(d.keys().collect::<Vec<_>>(), keys, "{path}: keys");
            for pair in pairs {
                let key = pair[0].as_str().unwrap();
                assert_tree(&format!("{path}/{key}"), d.get(key).unwrap(), &pair[1]);
            }
        }
        ("list", Value::List(items)) => {
            let expected = body.as_array().unwrap();
            assert_eq!(items.len(), expected.len(), "{path}: length");
            for (i, (item, json)) in items.iter().zip(expected).enumerate() {
                assert_tree(&format!("{path}/{i}"), item, json);
            }
        }
        ("array", Value::Tensor(t)) => assert_array(path, t, body),
        ("array", Value::Scalar(Scalar::UintArray(a))) => assert_uint_array(path, a, body),
        ("int", Value::Scalar(Scalar::Int(n))) => assert_eq!(Some(*n), body.as_i64(), "{path}"),
        ("float", Value::Scalar(Scalar::Float(x))) => assert_same_f64(path, *x, json_f64(body)),
        ("bool", Value::Scalar(Scalar::Bool(b))) => assert_eq!(Some(*b), body.as_bool(), "{path}"),
        ("str", Value::Scalar(Scalar::Str(s))) => assert_eq!(Some(s.as_str()), body.as_str(), "{path}"),
        ("none", Value::Scalar(Scalar::None)) => {}
        ("bytes", Value::Scalar(Scalar::Bytes(b))) => {
            let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
            assert_eq!(Some(hex.as_str()), body.as_str(), "{path}");
        }
        ("complex", Value::Scalar(Scalar::Complex(re, im))) => {
            assert_same_f64(path, *re, json_f64(&body[0]));
            assert_same_f64(path, *im, json_f64(&body[1]));
        }
        (tag, value) => panic!("{path}: expected a {tag}, restored {value:?}"),
    }
}

/// Compares dtype, shape and every element (exactly: all these dtypes widen to f64 or i64
/// without rounding, in numpy as in libtorch).
fn assert_array(path: &str, t: &Tensor, json: &Json) {
    assert_eq!(dtype_name(t.kind()), json["dtype"].as_str().unwrap(), "{path}: dtype");
    let shape: Vec<i64> = json["shape"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect();
    assert_eq!(t.size(), shape, "{path}: shape");
    let values = json["values"].as_array().unwrap();
    match t.kind() {
        Kind::Bool | Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64 => {
            let actual = Vec::<i64>::try_from(t.to_kind(Kind::Int64).flatten(0, -1)).unwrap();
            let expected: Vec<i64> = values
                .iter()
                .map(|v| v.as_i64().unwrap_or_else(|| i64::from(v.as_bool().unwrap())))
                .collect();
            assert_eq!(actual, expected, "{path}");
        }
        kind => {
            let real = if matches!(kind, Kind::ComplexFloat | Kind::ComplexDouble) {
                t.view_as_real()
            } else {
                t.shallow_clone()
            };
            let actual = Vec::<f64>::try_from(real.to_kind(Kind::Double).flatten(0, -1)).unwrap();
            let expected: Vec<f64> = values
                .iter()
                .flat_map(|v| match v {
                    Json::Array(pair) => pair.iter().map(json_f64).collect(),
                    v => vec![json_f64(v)],
                })
                .collect();
            assert_eq!(actual.len(), expected.len(), "{path}: element count");
            for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
                assert_same_f64(&format!("{path}[{i}]"), *a, *e);
            }
        }
    }
}

/// Compares an unsigned array's dtype, shape and elements (exactly, as `u64`).
fn assert_uint_array(path: &str, a: &UintArray, json: &Json) {
    assert_eq!(a.dtype().name(), json["dtype"].as_str().unwrap(), "{path}: dtype");
    let shape: Vec<i64> = json["shape"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect();
    assert_eq!(a.shape(), shape, "{path}: shape");
    let values: Vec<u64> = json["values"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(a.values(), values, "{path}");
}

fn reserialize(api: &str, value: &Value) -> Vec<u8> {
    match api {
        "msgpack_serialize" => msgpack_serialize(value).unwrap(),
        "to_bytes" => to_bytes(value.as_dict().unwrap()).unwrap(),
        other => panic!("unknown api {other}"),
    }
}

#[test]
fn every_case_restores_to_the_tree_flax_restored() {
    let expected = expected();
    for (case, entry) in expected["cases"].as_object().unwrap() {
        let value = msgpack_restore(&flax_bytes(case)).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_tree(case, &value, &entry["tree"]);
    }
}

#[test]
fn reserializing_gives_flax_bytes() {
    let expected = expected();
    for (case, entry) in expected["cases"].as_object().unwrap() {
        let api = entry["api"].as_str().unwrap();
        let value = msgpack_restore(&flax_bytes(case)).unwrap();
        let bytes = reserialize(api, &value);
        // Numpy scalars come back as 0-d arrays, and the default chunk size leaves the small
        // chunked arrays whole; the script wrote Flax's bytes for those trees too.
        let twin = entry.get("rewritten_as").or(entry.get("unchunked_as")).and_then(Json::as_str);
        assert!(bytes == flax_bytes(twin.unwrap_or(case)), "{case}: bytes differ from Flax's");
        save_for_python(case, &bytes);
    }
}

/// uint16/32/64 (which tch has no kind for) restore as host-side arrays; JAX's keys are
/// `uint32[2]` arrays holding exactly the data of the Rust keys.
#[test]
fn unsigned_arrays_restore_host_side_and_hold_jax_keys() {
    let Value::Dict(root) = msgpack_restore(&flax_bytes("unsigned")).unwrap() else { panic!("not a dict") };
    let key_data = |value: Option<&Value>| match value {
        Some(Value::Scalar(Scalar::UintArray(a))) => (a.dtype(), a.shape().to_vec(), a.values()),
        other => panic!("not an unsigned array: {other:?}"),
    };
    let uint32_pair = |key: PRNGKey| (UintDtype::Uint32, vec![2], key.raw().map(u64::from).to_vec());
    assert_eq!(key_data(root.get("key")), uint32_pair(PRNGKey::new(42)));
    assert_eq!(key_data(root.get("key_fold_in")), uint32_pair(PRNGKey::new(42).fold_in(7)));
    let listed = root.get("listed").and_then(Value::as_list).unwrap();
    assert_eq!(key_data(listed[1].as_dict().unwrap().get("k")), uint32_pair(PRNGKey::new(0)));
    assert!(tree::leaves(&Value::Dict(root.clone())).is_empty(), "no tensor leaves");
    assert_eq!(format!("{:?}", root.get("uint32_scalar").unwrap()), "Array(4294967294, dtype=uint32)");
    assert_eq!(format!("{:?}", root.get("key").unwrap()), "Array([ 0, 42], dtype=uint32)");
    assert_eq!(format!("{:?}", root.get("uint16_empty").unwrap()), "Array([], shape=(0, 3), dtype=uint16)");
}

/// The dropout guide's `TrainState` subclass (`key: jax.Array`) as a Rust `TrainState` whose
/// extra field is a `PRNGKey`, saved like any other field.
#[derive(Tree)]
struct WithKey {
    key: PRNGKey,
}

fn train_state_with_key_template() -> TrainState<(), FrozenDict, optax::Sgd<f64>, WithKey> {
    let stored = msgpack_restore(&flax_bytes("train_state_with_key")).unwrap();
    let params = stored.as_dict().unwrap().get_dict("params").unwrap();
    let zeros = tree::tree_map(params, |t| Ok(t.zeros_like())).unwrap();
    let tx = optax::sgd(0.1).momentum(0.9);
    TrainState::create_with((), zeros, tx, WithKey { key: PRNGKey::new(0) }).unwrap()
}

#[test]
fn train_state_with_a_key_restores_from_flax_and_writes_flax_bytes() {
    let bytes = flax_bytes("train_state_with_key");
    let restored = from_bytes(&train_state_with_key_template(), &bytes).unwrap();
    assert_eq!((restored.step, restored.extra.key), (2, PRNGKey::new(42)));
    let rewritten = to_bytes(&restored).unwrap();
    assert!(rewritten == bytes);
    save_for_python("native_train_state_with_key", &rewritten);
}

#[test]
fn a_key_of_another_dtype_or_shape_is_a_mismatch() {
    let Value::Dict(stored) = msgpack_restore(&flax_bytes("train_state_with_key")).unwrap() else {
        panic!("not a dict")
    };
    let wrong = [
        (Value::Tensor(Tensor::from_slice(&[0i32, 42])), "Array(shape=(2,), dtype=int32)"),
        (
            Value::Scalar(Scalar::UintArray(UintArray::from_u32(&[0, 0, 42]))),
            "Array(shape=(3,), dtype=uint32)",
        ),
        (Value::Scalar(Scalar::Int(42)), "42"),
    ];
    for (key, found) in wrong {
        let bytes = to_bytes(&stored.copy([("key", key)])).unwrap();
        let Err(Error::StateDictMismatch { missing, unexpected, mismatched }) =
            from_bytes(&train_state_with_key_template(), &bytes)
        else {
            panic!("expected a StateDictMismatch for {found}");
        };
        assert!(missing.is_empty() && unexpected.is_empty());
        assert_eq!(mismatched, [format!("key: expected Array(shape=(2,), dtype=uint32), found {found}")]);
    }
}

/// The views of `views_tree()`, built with libtorch: strides and the lazy conjugate bit must
/// not show in the bytes.
#[test]
fn native_views_write_flax_bytes() {
    let opts = (Kind::Float, Device::Cpu);
    let c = Tensor::complex(&Tensor::arange(3, opts), &Tensor::arange(3, opts));
    let tree = dict(vec![
        ("transposed", Value::Tensor(Tensor::arange(6, opts).reshape([2, 3]).tr())),
        ("strided", Value::Tensor(Tensor::arange(10, (Kind::Int64, Device::Cpu)).slice(0, 0, 10, 2))),
        ("conj", Value::Tensor(c.conj())),
    ]);
    assert!(c.conj().is_conj() && !tree.as_dict().unwrap().tensor(&["transposed"]).unwrap().is_contiguous());
    let bytes = msgpack_serialize(&tree).unwrap();
    assert!(bytes == flax_bytes("views"));
    save_for_python("native_views", &bytes);
}

/// `nested_tree()` in Python's insertion order: msgpack_serialize sorts keys at every depth,
/// to_bytes keeps them and turns lists into dicts keyed "0", "1", ….
#[test]
fn native_key_order_and_lists() {
    let s = |x: &str| Value::Scalar(Scalar::Str(x.to_owned()));
    let tree = dict(vec![
        (
            "zeta",
            Value::List(vec![
                Value::Tensor(Tensor::arange(3, (Kind::Float, Device::Cpu))),
                Value::List(vec![int(1), Value::Scalar(Scalar::Float(2.5)), s("x")]),
                dict(vec![("b", Value::Scalar(Scalar::Bool(true))), ("a", Value::Scalar(Scalar::None))]),
            ]),
        ),
        ("alpha", dict(vec![("y", int(1)), ("x", Value::List(vec![])), ("w", dict(vec![]))])),
        ("mid", Value::List(vec![Value::List(vec![Value::List(vec![])])])),
    ]);
    let sorted = msgpack_serialize(&tree).unwrap();
    assert!(sorted == flax_bytes("nested"));
    save_for_python("native_nested", &sorted);
    let state_dict = to_bytes(tree.as_dict().unwrap()).unwrap();
    assert!(state_dict == flax_bytes("nested_to_bytes"));
    save_for_python("native_nested_to_bytes", &state_dict);
}

fn zeros(shape: &[i64]) -> Value {
    Value::Tensor(Tensor::zeros(shape, (Kind::Float, Device::Cpu)))
}

/// Dense layers in the order a trained Flax TrainState holds them: optax rebuilds the params
/// with `tree_map`, which sorts keys (`bias` before `kernel`).
fn mlp_params(layers: &[(&str, i64, i64)]) -> Value {
    dict(
        layers
            .iter()
            .map(|&(name, fan_in, fan_out)| {
                (name, dict(vec![("bias", zeros(&[fan_out])), ("kernel", zeros(&[fan_in, fan_out]))]))
            })
            .collect(),
    )
}

/// The structure of `TrainState.create(…, tx=optax.adam(…))` for the script's Mlp: `opt_state`
/// is the tuple `(ScaleByAdamState(count, mu, nu), EmptyState())`, here a list.
fn train_state_target(layers: &[(&str, i64, i64)]) -> FrozenDict {
    let adam = dict(vec![
        ("count", Value::Tensor(Tensor::zeros([], (Kind::Int, Device::Cpu)))),
        ("mu", mlp_params(layers)),
        ("nu", mlp_params(layers)),
    ]);
    let tree = dict(vec![
        ("step", int(0)),
        ("params", mlp_params(layers)),
        ("opt_state", Value::List(vec![adam, dict(vec![])])),
    ]);
    tree.as_dict().unwrap().clone()
}

const MLP: [(&str, i64, i64); 2] = [("Dense_0", 3, 4), ("Dense_1", 4, 2)];

#[test]
fn train_state_restores_into_a_target_and_writes_flax_bytes() {
    let bytes = flax_bytes("train_state");
    let restored = from_bytes(&train_state_target(&MLP), &bytes).unwrap();
    assert!(matches!(restored.get("opt_state"), Some(Value::List(items)) if items.len() == 2));
    let case = &expected()["cases"]["train_state"]["tree"];
    // The expected tree has the opt_state tuple as Flax stores it, a dict keyed "0", "1".
    let as_stored = flax::serialization::to_state_dict(&restored);
    assert_tree("train_state", &Value::Dict(as_stored), case);
    let rewritten = to_bytes(&restored).unwrap();
    assert!(rewritten == bytes);
    save_for_python("native_train_state", &rewritten);
}

/// The same bytes through a typed `TrainState` with `optax::adam`: Adam's step count, a host
/// integer in Rust, is saved as Optax's 0-d int32 array, so the bytes are Flax's.
#[test]
fn a_typed_adam_train_state_writes_flax_bytes() {
    let bytes = flax_bytes("train_state");
    let Value::Dict(params) = mlp_params(&MLP) else { panic!("not a dict") };
    let template = TrainState::create((), params, optax::adam(1e-2)).unwrap();
    let restored = from_bytes(&template, &bytes).unwrap();
    assert_eq!((restored.step, restored.opt_state.0.count), (2, optax::Count(2)));
    assert!(to_bytes(&restored).unwrap() == bytes);
}

/// A state trained under `jax.jit` (Flax's `step` a 0-d int32 array, not an int) writes
/// Flax's bytes back too, and keeps the array layout through further steps.
#[test]
fn a_jitted_train_state_writes_its_step_back_as_an_array() {
    let bytes = flax_bytes("train_state_jit");
    let Value::Dict(params) = mlp_params(&MLP) else { panic!("not a dict") };
    let template = TrainState::create((), params, optax::adam(1e-2)).unwrap();
    assert_eq!(template.step_dtype, None);
    let restored = from_bytes(&template, &bytes).unwrap();
    assert_eq!((restored.step, restored.step_dtype), (2, Some(Kind::Int)));
    assert!(to_bytes(&restored).unwrap() == bytes);
    let grads = restored.params.clone();
    let stepped = restored.apply_gradients(grads).unwrap();
    let Value::Dict(saved) = msgpack_restore(&to_bytes(&stepped).unwrap()).unwrap() else {
        panic!("not a dict")
    };
    let Some(Value::Tensor(step)) = saved.get("step") else { panic!("step is not an array") };
    assert_eq!((step.kind(), step.size(), step.int64_value(&[])), (Kind::Int, vec![], 3));
}

#[test]
fn every_difference_is_reported_at_once() {
    let bytes = flax_bytes("train_state");
    let mut target = train_state_target(&[("Dense_0", 3, 5), ("Dense_2", 4, 2)]).unfreeze();
    target.insert("step".to_owned(), Value::Scalar(Scalar::Float(0.0)));
    target.insert("rng".to_owned(), Value::Tensor(Tensor::zeros([2], (Kind::Uint8, Device::Cpu))));
    let target = FrozenDict::freeze(target);
    let Err(Error::StateDictMismatch { missing, unexpected, mismatched }) = from_bytes(&target, &bytes)
    else {
        panic!("expected a StateDictMismatch");
    };
    // Each list is sorted by path.
    let in_each_tree =
        |leaf: &str| ["opt_state/0/mu", "opt_state/0/nu", "params"].map(|t| format!("{t}/{leaf}"));
    assert_eq!(missing, [in_each_tree("Dense_2").as_slice(), &["rng".to_owned()]].concat());
    assert_eq!(unexpected, in_each_tree("Dense_1"));
    let mismatched_paths: Vec<&str> = mismatched.iter().map(|m| m.split(':').next().unwrap()).collect();
    let dense_0 = in_each_tree("Dense_0").map(|p| [format!("{p}/bias"), format!("{p}/kernel")]).concat();
    assert_eq!(mismatched_paths, [dense_0.as_slice(), &["step".to_owned()]].concat());
    assert_eq!(mismatched[6], "step: expected 0.0, found 2");
    assert_eq!(
        mismatched[5],
        "params/Dense_0/kernel: expected Array(shape=(3, 5), dtype=float32), found Array(shape=(3, 4), dtype=float32)"
    );
}

#[test]
fn partial_restores_are_opt_in() {
    let bytes = flax_bytes("train_state");
    // A new head (Dense_2) on the pretrained Dense_0; the stored Dense_1 has no place.
    let target = train_state_target(&[("Dense_0", 3, 4), ("Dense_2", 4, 7)]);
    let partial = RestoreOptions { allow_partial: true, ..Default::default() };
    let Err(Error::StateDictMismatch { missing, unexpected, mismatched }) =
        from_bytes_with(&target, &bytes, partial)
    else {
        panic!("unexpected entries must still be refused");
    };
    assert!(missing.is_empty() && mismatched.is_empty() && unexpected.len() == 3);
    let options = RestoreOptions { allow_partial: true, allow_unexpected: true };
    let restored = from_bytes_with(&target, &bytes, options).unwrap();
    let stored = msgpack_restore(&bytes).unwrap();
    let kernel = ["params", "Dense_0", "kernel"];
    assert!(restored.tensor(&kernel).unwrap().equal(stored.as_dict().unwrap().tensor(&kernel).unwrap()));
    let head = restored.tensor(&["params", "Dense_2", "kernel"]).unwrap();
    assert!(head.size() == [4, 7] && head.abs().sum(Kind::Float).double_value(&[]) == 0.0);
    assert!(matches!(restored.get("step"), Some(Value::Scalar(Scalar::Int(2)))));
}

#[test]
fn a_non_dict_top_level_does_not_fit_a_dict_target() {
    let bytes = msgpack_serialize(&Value::List(vec![int(1)])).unwrap();
    let Err(Error::StateDictMismatch { mismatched, .. }) = from_bytes(&FrozenDict::new(), &bytes) else {
        panic!("expected a StateDictMismatch");
    };
    assert_eq!(mismatched, [".: expected a dict, found a list of 1"]);
}
