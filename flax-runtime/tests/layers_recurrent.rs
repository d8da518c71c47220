//! Recurrent cells against Flax 0.12.8 (`scripts/golden/layers_recurrent.py`): carries from
//! `initialize_carry`, `init` variables, and several steps with the same params.

mod layers_golden;

use flax::nn::initializers::normal;
use flax::nn::{ConvLSTMCell, GRUCell, LSTMCell, OptimizedLSTMCell};
use flax::prelude::*;
use layers_golden::{assert_close, assert_same_tree, key, Case, Golden};

const CPU: Device = Device::Cpu;

fn carry_key() -> PRNGKey {
    PRNGKey::new(1)
}

/// Checks the initial carry, `init`, and every step of a cell whose carry is `(c, h)`.
fn check_lstm_like(
    c: &Case<'_>,
    carry: (Tensor, Tensor),
    init: impl Fn(&(Tensor, Tensor), &Tensor) -> flax::Result<Variables>,
    step: impl Fn(&Variables, &(Tensor, Tensor), &Tensor) -> flax::Result<((Tensor, Tensor), Tensor)>,
) {
    let name = &c.name;
    assert_close(&format!("{name}: carry c"), &carry.0, &c.input("carry_c"));
    assert_close(&format!("{name}: carry h"), &carry.1, &c.input("carry_h"));
    let xs = c.input("xs");
    assert_same_tree(&format!("{name}: init"), &init(&carry, &xs.get(0)).unwrap(), &c.variables());
    let variables = c.variables();
    let mut carry = carry;
    for t in 0..xs.size()[0] {
        let (next, y) = step(&variables, &carry, &xs.get(t)).unwrap();
        assert_close(&format!("{name}: step {t}"), &y, &c.output_at(&[&t.to_string()]));
        carry = next;
    }
    assert_close(&format!("{name}: final c"), &carry.0, &c.tensor(&["final", "c"]));
    assert_close(&format!("{name}: final h"), &carry.1, &c.tensor(&["final", "h"]));
}

#[test]
fn cells_match_flax() {
    let g = Golden::load("recurrent");
    let init_fn = normal(1.0);
    let c = g.case("lstm");
    let carry = LSTMCell::initialize_carry(carry_key(), &[2], 4, &init_fn, CPU).unwrap();
    let m = LSTMCell::new();
    check_lstm_like(&c, carry, |carry, x| m.init(key(), carry, x), |v, carry, x| m.apply(v, carry, x));

    let c = g.case("optimized_lstm");
    let carry = OptimizedLSTMCell::initialize_carry(carry_key(), &[2], 4, &init_fn, CPU).unwrap();
    let m = OptimizedLSTMCell::new();
    check_lstm_like(&c, carry, |carry, x| m.init(key(), carry, x), |v, carry, x| m.apply(v, carry, x));
    // Same params as LSTMCell.
    assert_same_tree("optimized = lstm params", &c.variables(), &g.case("lstm").variables());

    let c = g.case("lstm_batch_dims");
    let carry = LSTMCell::initialize_carry(carry_key(), &[2, 3], 2, &init_fn, CPU).unwrap();
    let m = LSTMCell::new();
    check_lstm_like(&c, carry, |carry, x| m.init(key(), carry, x), |v, carry, x| m.apply(v, carry, x));

    let c = g.case("conv_lstm");
    let carry = ConvLSTMCell::initialize_carry(carry_key(), &[2], &[5, 5, 3], &init_fn, CPU).unwrap();
    let m = ConvLSTMCell::new(3, vec![3, 3]);
    check_lstm_like(&c, carry, |carry, x| m.init(key(), carry, x), |v, carry, x| m.apply(v, carry, x));

    let c = g.case("gru");
    let mut carry = GRUCell::initialize_carry(carry_key(), &[2], 5, &init_fn, CPU).unwrap();
    assert_close("gru: carry", &carry, &c.input("carry"));
    let xs = c.input("xs");
    let m = GRUCell::new();
    assert_same_tree("gru: init", &m.init(key(), &carry, &xs.get(0)).unwrap(), &c.variables());
    for t in 0..xs.size()[0] {
        let (next, y) = m.apply(&c.variables(), &carry, &xs.get(t)).unwrap();
        assert_close(&format!("gru: step {t}"), &y, &c.output_at(&[&t.to_string()]));
        carry = next;
    }
    assert_close("gru: final", &carry, &c.tensor(&["final", "h"]));
    g.assert_all_seen();
}

#[test]
fn zero_carries_and_typed_errors() {
    let (c, h) = LSTMCell::initialize_carry(key(), &[3], 4, &flax::nn::initializers::zeros(), CPU).unwrap();
    assert_eq!((c.size(), h.size()), (vec![3, 4], vec![3, 4]));
    assert_eq!(c.abs().sum(Kind::Float).double_value(&[]), 0.0);
    let scalar = Tensor::from(1.0f32);
    let err = GRUCell::new().init(key(), &scalar, &Tensor::ones([3], (Kind::Float, CPU))).unwrap_err();
    assert!(err.to_string().contains("GRUCell needs a carry of shape (..., hidden)"), "{err}");
}
