//! JAX's array repr and Flax's `pretty_repr`, against strings printed by jax 0.10.2
//! (`scripts/golden/array_repr_vectors.py`).

use flax::core::array_repr::{array_repr, uint_array_repr};
use flax::serialization::msgpack_restore;
use flax::tch::{Device, Kind, Tensor};
use flax::{FrozenDict, Scalar, Value};

fn vectors() -> FrozenDict {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/array_repr.msgpack")).unwrap();
    match msgpack_restore(&bytes).unwrap() {
        Value::Dict(d) => d,
        other => panic!("not a dict: {other:?}"),
    }
}

fn text(case: &FrozenDict) -> &str {
    match case.get("repr") {
        Some(Value::Scalar(Scalar::Str(s))) => s,
        other => panic!("no repr: {other:?}"),
    }
}

#[test]
fn arrays_print_as_jax_prints_them() {
    let v = vectors();
    let mut failures = Vec::new();
    for (name, case) in v.iter() {
        let Some(case) = case.as_dict() else { continue };
        let got = match case.get("array") {
            Some(Value::Tensor(t)) => array_repr(t),
            Some(Value::Scalar(Scalar::UintArray(a))) => uint_array_repr(a),
            _ => continue,
        };
        if got != text(case) {
            failures.push(format!("{name}:\n  want {}\n  got  {got}", text(case)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pretty_repr_matches_flax() {
    let v = vectors();
    let want = text(v.get_dict("__pretty_repr__").unwrap());
    let mean = Tensor::full([1, 5], 0.01, (Kind::Float, Device::Cpu));
    let stats = FrozenDict::new().copy([("mean", Value::Tensor(mean))]);
    let params =
        FrozenDict::new().copy([("bias", Value::Tensor(Tensor::zeros([5], (Kind::Float, Device::Cpu))))]);
    let tree = FrozenDict::new().copy([("batch_stats", Value::Dict(stats)), ("params", Value::Dict(params))]);
    assert_eq!(tree.pretty_repr(), want);
}
