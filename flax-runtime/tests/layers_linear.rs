//! `Dense`, `DenseGeneral` and `Embed` against Flax 0.12.8 (`scripts/golden/layers_linear.py`).

mod layers_golden;

use flax::nn::{Dense, DenseGeneral, Embed};
use flax::prelude::*;
use flax::Error;
use layers_golden::{assert_close, key, Golden};

#[test]
fn linear_layers_match_flax() {
    let g = Golden::load("linear");
    for (name, m) in [("dense", Dense::new(3)), ("dense_batched_no_bias", Dense::new(5).use_bias(false))] {
        let c = g.case(name);
        let x = c.input("x");
        c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
    }
    let general = [
        ("general_int", DenseGeneral::new(4)),
        ("general_tuple_features", DenseGeneral::new([4, 5])),
        ("general_axes", DenseGeneral::new([4, 5]).axis([1, -1])),
        ("general_last_two", DenseGeneral::new(3).axis([-2, -1])),
        ("general_middle_axis", DenseGeneral::new(5).axis(1)),
        ("general_batch_dims", DenseGeneral::new([2, 3]).batch_dims(vec![0])),
        ("general_two_batch_dims", DenseGeneral::new(3).axis(2).batch_dims(vec![0, 1]).use_bias(false)),
    ];
    for (name, m) in general {
        let c = g.case(name);
        let x = c.input("x");
        c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
    }
    let embeds = [
        ("embed_docstring", Embed::new(5, 3)),
        ("embed_ids", Embed::new(10, 4)),
        ("embed_out_of_range", Embed::new(5, 3)),
        ("embed_single", Embed::new(1, 3)),
    ];
    for (name, m) in embeds {
        let c = g.case(name);
        let x = c.input("x");
        c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
    }
    let c = g.case("embed_attend");
    let (x, q) = (c.input("x"), c.input("query"));
    let m = Embed::new(6, 4);
    c.check(
        || m.init(key(), &x),
        |v| m.apply_method(v, ApplyOptions::new(), |m, cx| m.attend(cx, &q)).map(|(y, _)| y),
    );
    g.assert_all_seen();
}

#[test]
fn attend_alone_declares_the_table() {
    let m = Embed::new(6, 4);
    let q = Tensor::ones([2, 4], (Kind::Float, Device::Cpu));
    let (y, variables) = m.init_method(key(), |m, cx| m.attend(cx, &q)).unwrap();
    assert_eq!(y.size(), [2, 6]);
    assert_eq!(variables.tensor(&["params", "embedding"]).unwrap().size(), [6, 4]);
    let ids = Tensor::from_slice(&[3i64, 0]);
    let looked_up = m.apply(&variables, &ids).unwrap();
    assert_close("row 3", &looked_up.get(0), &variables.tensor(&["params", "embedding"]).unwrap().get(3));
}

#[test]
fn bad_inputs_are_typed_errors() {
    let m = Embed::new(5, 3);
    let v = m.init(key(), &Tensor::from_slice(&[0i64])).unwrap();
    match m.apply(&v, &Tensor::ones([2], (Kind::Float, Device::Cpu))) {
        Err(Error::Shape { message, .. }) => {
            assert!(
                message.starts_with("Input type must be an integer or unsigned integer; got float32(2,)"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    let q = Tensor::ones([2, 4], (Kind::Float, Device::Cpu));
    let err = m.apply_method(&v, ApplyOptions::new(), |m, cx| m.attend(cx, &q)).unwrap_err();
    assert!(err.to_string().contains("attend needs queries of shape (..., 3), got (2, 4)"), "{err}");
    let x = Tensor::ones([2, 3, 4], (Kind::Float, Device::Cpu));
    let err = DenseGeneral::new(3).batch_dims(vec![1]).init(key(), &x).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidAttribute { scope, message } if scope == "/"
        && message == "batch_dims (1,) must be consecutive leading dimensions starting from 0."),
        "{err}"
    );
    let err = DenseGeneral::new(3).axis(3).init(key(), &x).unwrap_err();
    assert!(err.to_string().contains("axis 3 is out of range for inputs of shape (2, 3, 4)"), "{err}");
    let err = DenseGeneral::new(3).axis(0).batch_dims(vec![0]).init(key(), &x).unwrap_err();
    assert!(err.to_string().contains("must name distinct axes outside batch_dims"), "{err}");
    let err = Dense::new(3).init(key(), &Tensor::from(1.0f32)).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
}
