//! Flax's `Traversal` classes (`flax::traverse_util::traversal`) against vectors from Flax
//! 0.12.8 (`scripts/golden/traversals.py`): each case builds the traversal Flax built and
//! compares what `iterate`, `update` and `set` return, or that both fail.

mod golden_json;

use flax::traverse_util::{t_identity, ItemKey, Traversal, TraverseMerge};
use flax::{Result, Scalar, Value};
use golden_json::{encode, load, tag, value};

fn int(v: &Value) -> i64 {
    match v {
        Value::Scalar(Scalar::Int(i)) => *i,
        other => panic!("not an int: {other:?}"),
    }
}

fn double(v: &Value) -> Result<Value> {
    Ok(Value::from(int(v) * 2))
}

fn slice(start: Option<i64>, stop: Option<i64>, step: Option<i64>) -> ItemKey {
    ItemKey::Slice { start, stop, step }
}

/// The record's `foo` is above 1 (the Python case's `lambda r: r["foo"] > 1`).
fn foo_above_one(v: &Value) -> bool {
    v.as_dict().and_then(|d| d.get("foo")).is_some_and(|v| int(v) > 1)
}

#[test]
fn traversals_match_flax() {
    let vectors = load("traversals");
    let input = |name: &str| value(&vectors["inputs"][name]);
    let (records, nested, tree, seq) = (input("records"), input("nested"), input("tree"), input("seq"));
    let list = Value::List;
    let merged = || {
        t_identity().merge(vec![
            Box::new(t_identity().item(0).item("foo")),
            Box::new(t_identity().item(1).item("bar")),
        ])
    };
    let cases: Vec<(&str, Result<Value>)> = vec![
        ("each_item_iterate", t_identity().each().item("foo").iterate(&records).map(list)),
        ("each_item_update", t_identity().each().item("foo").update(&mut double, &records)),
        ("each_item_set", t_identity().each().item("bar").set(vec![10.into(), 20.into()], &records)),
        ("set_too_few", t_identity().each().item("bar").set(vec![10.into()], &records)),
        (
            "set_too_many",
            t_identity().each().item("bar").set(vec![10.into(), 20.into(), 30.into()], &records),
        ),
        ("item_item_update", t_identity().item("foo").item("bar").update(&mut double, &nested)),
        ("missing_key", t_identity().item("nope").iterate(&nested).map(list)),
        ("index_negative", t_identity().item("baz").item(-1).iterate(&nested).map(list)),
        ("index_out_of_range", t_identity().item("baz").item(3).iterate(&nested).map(list)),
        ("each_dict_iterate", t_identity().each().iterate(&records.as_list().unwrap()[0]).map(list)),
        ("each_dict_update", t_identity().each().update(&mut double, &records.as_list().unwrap()[0])),
        ("merge_iterate", merged().iterate(&records).map(list)),
        ("merge_update", merged().update(&mut double, &records)),
        ("slice_iterate", t_identity().item(1..4).iterate(&seq).map(list)),
        ("slice_step_iterate", t_identity().item(slice(None, None, Some(2))).iterate(&seq).map(list)),
        ("slice_reverse_iterate", t_identity().item(slice(None, None, Some(-2))).iterate(&seq).map(list)),
        ("slice_negative_bounds", t_identity().item(-4..-1).iterate(&seq).map(list)),
        ("slice_update_tuple", t_identity().item(1..4).update(&mut double, &seq)),
        ("tree_iterate", t_identity().tree().iterate(&tree).map(list)),
        ("tree_update", t_identity().tree().update(&mut double, &tree)),
        ("filter_iterate", t_identity().each().filter(foo_above_one).item("bar").iterate(&records).map(list)),
        (
            "filter_update",
            t_identity().each().filter(foo_above_one).item("bar").update(&mut double, &records),
        ),
    ];
    let expected = vectors["cases"].as_object().unwrap();
    assert_eq!(cases.len(), expected.len(), "every Flax case is checked");
    for (name, got) in cases {
        let want = &expected[name];
        match (tag(want), got) {
            (("ok", want), Ok(got)) => assert_eq!(&encode(&got), want, "{name}"),
            (("error", _), Err(flax::Error::Value(_))) => {}
            (want, got) => panic!("{name}: Flax gave {want:?}, here {got:?}"),
        }
    }
}

#[test]
fn a_merge_is_also_a_traversal_of_its_own() {
    let records = Value::List(vec![Value::from(1), Value::from(2)]);
    let merge = TraverseMerge::new(vec![Box::new(t_identity().item(1)), Box::new(t_identity().item(0))]);
    let got: Vec<i64> = merge.iterate(&records).unwrap().iter().map(int).collect();
    assert_eq!(got, [2, 1]);
}

#[test]
fn attributes_are_dict_entries_and_bad_selections_are_typed_errors() {
    let point = Value::Dict(
        [("x".to_owned(), Value::from(1)), ("y".to_owned(), Value::from(2))].into_iter().collect(),
    );
    assert_eq!(int(&t_identity().attr("y").iterate(&point).unwrap()[0]), 2);
    let err = t_identity().attr("z").iterate(&point).unwrap_err();
    assert!(err.to_string().contains("no attribute \"z\""), "{err}");
    assert!(t_identity().each().iterate(&Value::from(3)).is_err());
    assert!(t_identity().item(slice(None, None, Some(0))).iterate(&Value::List(vec![])).is_err());
    assert!(t_identity().item("x").iterate(&Value::List(vec![])).is_err());
}
