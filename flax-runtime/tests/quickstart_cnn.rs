//! The spec's quickstart CNN (spec L232-249): its variable tree, its parameter count, its
//! `tabulate` table (spec L279-313, character for character) and its output, which equals
//! Flax's for the same seed (`scripts/golden/layers_pooling.py`, case `cnn`).

mod layers_golden;

use flax::nn::{self, Padding};
use flax::prelude::*;
use flax::Value;
use layers_golden::{assert_close, key, Golden};

/// A simple CNN model.
#[allow(clippy::upper_case_acronyms)]
#[module]
pub struct CNN;

#[module]
impl CNN {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Conv::new(32, vec![3, 3]).call(cx, x)?.relu();
        let x = nn::avg_pool(&x, &[2, 2], Some(&[2, 2]), &Padding::Valid, true)?;
        let x = nn::Conv::new(64, vec![3, 3]).call(cx, &x)?.relu();
        let x = nn::avg_pool(&x, &[2, 2], Some(&[2, 2]), &Padding::Valid, true)?;
        let x = x.flatten(1, -1);
        let x = nn::Dense::new(256).call(cx, &x)?.relu();
        nn::Dense::new(10).call(cx, &x)
    }
}

fn template() -> Tensor {
    Tensor::ones([1, 28, 28, 1], (Kind::Float, Device::Cpu))
}

#[test]
fn tree_and_parameter_count() {
    let variables = CNN::new().init(key(), &template()).unwrap();
    let params = variables.get_dict("params").unwrap();
    let mut shapes = Vec::new();
    for (layer, value) in params.iter() {
        let Value::Dict(leaves) = value else { panic!("{layer} is not a dict") };
        for (name, leaf) in leaves.iter() {
            shapes.push((format!("{layer}/{name}"), leaf.as_tensor().unwrap().size()));
        }
    }
    shapes.sort();
    let expected: Vec<(String, Vec<i64>)> = [
        ("Conv_0/bias", vec![32]),
        ("Conv_0/kernel", vec![3, 3, 1, 32]),
        ("Conv_1/bias", vec![64]),
        ("Conv_1/kernel", vec![3, 3, 32, 64]),
        ("Dense_0/bias", vec![256]),
        ("Dense_0/kernel", vec![3136, 256]),
        ("Dense_1/bias", vec![10]),
        ("Dense_1/kernel", vec![256, 10]),
    ]
    .into_iter()
    .map(|(p, s)| (p.to_owned(), s))
    .collect();
    assert_eq!(shapes, expected);
    let count: i64 = shapes.iter().map(|(_, s)| s.iter().product::<i64>()).sum();
    assert_eq!(count, 824_458);
}

#[test]
fn tabulate_is_the_spec_table() {
    let spec = include_str!("data/tabulate/spec_cnn.txt");
    let table = CNN::new().tabulate(key(), &template()).unwrap();
    assert_eq!(table, format!("\n{spec}\n"));
}

#[test]
fn output_matches_flax_for_the_same_seed() {
    let g = Golden::load("pooling");
    let c = g.case("cnn");
    let x = c.input("x");
    let model = CNN::new();
    let variables = model.init(key(), &x).unwrap();
    assert_close("cnn output", &model.apply(&variables, &x).unwrap(), &c.output());
}
