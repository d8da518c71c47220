//! `Dropout` against Flax 0.12.8 (`scripts/golden/layers_stochastic.py`): the same keys give
//! the same masks.

mod layers_golden;

use flax::nn::{Dense, Dropout};
use flax::prelude::*;
use flax::Error;
use layers_golden::{assert_close, assert_same_tree, key, Golden};

fn dropout_rngs(stream: &str) -> Rngs {
    Rngs::new().with("params", key()).with(stream.to_owned(), PRNGKey::new(1))
}

#[module]
pub struct Mlp;

#[module]
impl Mlp {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = Dense::new(4).call(cx, x)?;
        let x = Dropout::new(0.5).deterministic(Some(!train)).call(cx, &x, None)?;
        let drop = Dropout::new(0.25);
        let x = drop.call(cx, &x, Some(!train))?;
        drop.call(cx, &x, Some(!train))
    }
}

#[test]
fn dropout_masks_match_flax() {
    let g = Golden::load("stochastic");
    let cases = [
        ("dropout", Dropout::new(0.5).deterministic(Some(false)), "dropout"),
        ("dropout_broadcast", Dropout::new(0.3).broadcast_dims(vec![0, -1]), "dropout"),
        ("dropout_collection", Dropout::new(0.9).rng_collection("noise").deterministic(Some(false)), "noise"),
    ];
    for (name, m, stream) in cases {
        let c = g.case(name);
        let x = c.input("x");
        let flag = m.deterministic.is_none().then_some(false);
        let (_, v) = m.init_with(ApplyOptions::new().rngs(dropout_rngs(stream)), &x, flag).unwrap();
        assert_same_tree(name, &v, &c.variables());
        let y =
            m.apply_with(&c.variables(), ApplyOptions::new().rngs(dropout_rngs(stream)), &x, flag).unwrap().0;
        assert_close(name, &y, &c.output());
    }
    let c = g.case("mlp");
    let x = c.input("x");
    let v = Mlp::new().init(key(), &x, false).unwrap();
    assert_same_tree("mlp", &v, &c.variables());
    let y = Mlp::new().apply_with(&v, ApplyOptions::new().rngs(dropout_rngs("dropout")), &x, true).unwrap().0;
    assert_close("mlp", &y, &c.output());
    g.assert_all_seen();
}

#[test]
fn no_key_is_drawn_when_nothing_is_dropped() {
    let x = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
    let v = Variables::new();
    // Without a `dropout` stream, drawing a key would fail: these draw none.
    for m in [Dropout::new(0.0).deterministic(Some(false)), Dropout::new(0.5).deterministic(Some(true))] {
        assert!(m.apply(&v, &x, None).unwrap().equal(&x));
    }
    let zeros = Dropout::new(1.0).apply(&v, &x, Some(false)).unwrap();
    assert_eq!(zeros.abs().sum(Kind::Float).double_value(&[]), 0.0);
    match Dropout::new(0.5).apply(&v, &x, Some(false)) {
        Err(Error::InvalidRng { stream, .. }) => assert_eq!(stream, "dropout"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn deterministic_is_given_exactly_once() {
    let x = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
    let v = Variables::new();
    assert!(matches!(
        Dropout::new(0.5).apply(&v, &x, None),
        Err(Error::MergeParam { given_twice: false, .. })
    ));
    assert!(matches!(
        Dropout::new(0.5).deterministic(Some(true)).apply(&v, &x, Some(true)),
        Err(Error::MergeParam { given_twice: true, .. })
    ));
    let bad = Dropout::new(1.5).deterministic(Some(false)).apply(&v, &x, None).unwrap_err();
    assert!(bad.to_string().contains("rate must be in [0, 1]"), "{bad}");
}
