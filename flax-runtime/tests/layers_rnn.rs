//! `RNN`, `Bidirectional` and `flip_sequences` against Flax 0.12.8
//! (`scripts/golden/layers_rnn.py`).

mod layers_golden;

use flax::nn::{self, Bidirectional, ConvLSTMCell, GRUCell, LSTMCell, OptimizedLSTMCell, RNNCellBase, RNN};
use flax::prelude::*;
use flax::tree;
use layers_golden::{assert_close, assert_same_tree, key, Case, Golden};

/// Checks `init` and `(carry, outputs)`; `carry_names` are the golden carry's leaves in the
/// order of the Rust carry's leaves.
fn check<C: RNNCellBase>(
    c: &Case<'_>,
    m: &RNN<C>,
    initial: Option<&C::Carry>,
    seq_lengths: Option<&Tensor>,
    carry_names: &[&str],
) {
    let x = c.input("x");
    assert_same_tree(
        &format!("{}: init", c.name),
        &m.init(key(), &x, initial, seq_lengths).unwrap(),
        &c.variables(),
    );
    let (carry, y) = m.apply(&c.variables(), &x, initial, seq_lengths).unwrap();
    assert_close(&format!("{}: outputs", c.name), &y, &c.output());
    let leaves = tree::leaves(&carry);
    assert_eq!(leaves.len(), carry_names.len());
    for (leaf, name) in leaves.iter().zip(carry_names) {
        assert_close(&format!("{}: carry {name}", c.name), leaf, &c.tensor(&["carry", name]));
    }
}

#[test]
fn rnn_matches_flax() {
    let g = Golden::load("rnn");
    let lstm = || RNN::new(LSTMCell::new(), 4.into());
    check(&g.case("lstm"), &lstm(), None, None, &["c", "h"]);
    check(
        &g.case("gru_time_major"),
        &RNN::new(GRUCell::new(), 3.into()).time_major(true),
        None,
        None,
        &["h"],
    );
    check(&g.case("lstm_reverse"), &lstm().reverse(true), None, None, &["c", "h"]);
    check(
        &g.case("lstm_reverse_keep_order"),
        &lstm().reverse(true).keep_order(true),
        None,
        None,
        &["c", "h"],
    );
    let c = g.case("lstm_seq_lengths");
    check(&c, &lstm(), None, Some(&c.input("seq_lengths")), &["c", "h"]);
    let c = g.case("lstm_reverse_seq_lengths");
    let m = RNN::new(OptimizedLSTMCell::new(), 4.into()).reverse(true).keep_order(true);
    check(&c, &m, None, Some(&c.input("seq_lengths")), &["c", "h"]);
    let c = g.case("gru_initial_carry");
    check(&c, &RNN::new(GRUCell::new(), 3.into()), Some(&c.input("initial_carry")), None, &["h"]);
    check(&g.case("gru_multi_batch"), &RNN::new(GRUCell::new(), 3.into()), None, None, &["h"]);
    let conv = RNN::new(ConvLSTMCell::new(3, vec![3, 3]), [5, 5, 3].into());
    check(&g.case("conv_lstm"), &conv, None, None, &["c", "h"]);

    let c = g.case("bidirectional");
    let x = c.input("x");
    let m = Bidirectional::new(RNN::new(GRUCell::new(), 4.into()), RNN::new(LSTMCell::new(), 3.into()));
    assert_same_tree("bidirectional: init", &m.init(key(), &x, None, None).unwrap(), &c.variables());
    let ((forward, (bc, bh)), y) = m.apply(&c.variables(), &x, None, None).unwrap();
    assert_close("bidirectional: outputs", &y, &c.output());
    assert_close("bidirectional: forward h", &forward, &c.tensor(&["carry", "forward", "h"]));
    assert_close("bidirectional: backward c", &bc, &c.tensor(&["carry", "backward", "c"]));
    assert_close("bidirectional: backward h", &bh, &c.tensor(&["carry", "backward", "h"]));

    let c = g.case("bidirectional_seq_lengths");
    let lengths = c.input("seq_lengths");
    let m = Bidirectional::new(RNN::new(LSTMCell::new(), 2.into()), RNN::new(LSTMCell::new(), 2.into()));
    assert_same_tree(
        "bidirectional_seq_lengths: init",
        &m.init(key(), &x, None, Some(&lengths)).unwrap(),
        &c.variables(),
    );
    let (((fc, fh), (bc, bh)), y) = m.apply(&c.variables(), &x, None, Some(&lengths)).unwrap();
    assert_close("bidirectional_seq_lengths: outputs", &y, &c.output());
    for (t, path) in
        [(&fc, ["forward", "c"]), (&fh, ["forward", "h"]), (&bc, ["backward", "c"]), (&bh, ["backward", "h"])]
    {
        assert_close(
            &format!("bidirectional_seq_lengths: {path:?}"),
            t,
            &c.tensor(&["carry", path[0], path[1]]),
        );
    }

    let c = g.case("flip_sequences");
    let flipped = nn::flip_sequences(&c.input("x"), Some(&c.input("seq_lengths")), 1, false).unwrap();
    assert_close("flip_sequences", &flipped, &c.output());
    g.assert_all_seen();
}

#[test]
fn cell_params_live_under_cell() {
    let x = Tensor::ones([2, 3, 5], (Kind::Float, Device::Cpu));
    let v = RNN::new(GRUCell::new(), 4.into()).init(key(), &x, None, None).unwrap();
    assert!(v.tensor(&["params", "cell", "hn", "bias"]).is_some());
    let err = RNN::new(GRUCell::new(), [2, 2].into()).init(key(), &x, None, None).unwrap_err();
    assert!(err.to_string().contains("cell_size must be an int"), "{err}");
    let err = RNN::new(GRUCell::new(), 4.into()).init(
        key(),
        &Tensor::ones([3], (Kind::Float, Device::Cpu)),
        None,
        None,
    );
    assert!(err.unwrap_err().to_string().contains("RNN needs inputs with a time axis"));
}
