//! `pool`, `max_pool`, `min_pool` and `avg_pool` against Flax 0.12.8
//! (`scripts/golden/layers_pooling.py`).

mod layers_golden;

use flax::nn::{self, Padding};
use flax::prelude::*;
use flax::Error;
use layers_golden::{assert_close, Golden};

type Pooling = fn(&Tensor) -> flax::Result<Tensor>;

#[test]
fn pooling_matches_flax() {
    let g = Golden::load("pooling");
    let cases: [(&str, Pooling); 18] = [
        ("max_2x2_valid", |x| nn::max_pool_with(x, [2, 2], nn::PoolOptions::new().strides([2, 2]))),
        ("max_3x3_same_stride2", |x| {
            nn::max_pool_with(x, [3, 3], nn::PoolOptions::new().strides([2, 2]).padding(Padding::Same))
        }),
        ("max_pairs", |x| {
            nn::max_pool_with(x, [3, 2], nn::PoolOptions::new().strides([2, 1]).padding(vec![(1, 2), (0, 1)]))
        }),
        ("max_1d_same", |x| {
            nn::max_pool_with(x, [3], nn::PoolOptions::new().strides([2]).padding(Padding::Same))
        }),
        ("max_3d", |x| nn::max_pool_with(x, [2, 2, 2], nn::PoolOptions::new().strides([2, 1, 2]))),
        ("max_4d", |x| nn::max_pool_with(x, [2, 2, 2, 2], nn::PoolOptions::new().padding(Padding::Same))),
        ("max_unbatched", |x| nn::max_pool(x, [2, 2])),
        ("max_multi_batch", |x| nn::max_pool_with(x, [2, 2], nn::PoolOptions::new().padding(Padding::Same))),
        ("avg_2x2", |x| nn::avg_pool_with(x, [2, 2], nn::PoolOptions::new().strides([2, 2]))),
        ("avg_same", |x| nn::avg_pool_with(x, [3, 3], nn::PoolOptions::new().padding(Padding::Same))),
        ("avg_same_exclude_pad", |x| {
            nn::avg_pool_with(
                x,
                [3, 3],
                nn::PoolOptions::new().padding(Padding::Same).count_include_pad(false),
            )
        }),
        ("avg_wide_pairs_exclude_pad", |x| {
            nn::avg_pool_with(
                x,
                [3, 2],
                nn::PoolOptions::new().strides([2, 2]).padding(vec![(2, 2), (0, 3)]).count_include_pad(false),
            )
        }),
        ("avg_1d_same_stride2", |x| {
            nn::avg_pool_with(x, [4], nn::PoolOptions::new().strides([2]).padding(Padding::Same))
        }),
        ("avg_3d", |x| nn::avg_pool_with(x, [2, 3, 2], nn::PoolOptions::new().padding(Padding::Same))),
        ("avg_multi_batch_exclude_pad", |x| {
            nn::avg_pool_with(x, [2], nn::PoolOptions::new().padding(Padding::Same).count_include_pad(false))
        }),
        ("min_same_stride2", |x| {
            nn::min_pool_with(x, [3, 3], nn::PoolOptions::new().strides([2, 2]).padding(Padding::Same))
        }),
        ("pool_mul", |x| {
            nn::pool(
                x,
                1.0,
                |a, b| Ok(a * b),
                [2, 2],
                nn::PoolOptions::new().strides([1, 2]).padding(Padding::Same),
            )
        }),
        ("pool_add_pairs", |x| {
            nn::pool(x, 0.0, |a, b| Ok(a + b), [2], nn::PoolOptions::new().padding(vec![(1, 0)]))
        }),
    ];
    for (name, f) in cases {
        let c = g.case(name);
        let y = f(&c.input("x")).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_close(name, &y, &c.output());
    }
    // Checked by tests/quickstart_cnn.rs.
    g.case("cnn");
    g.assert_all_seen();
}

#[test]
fn max_pool_ignores_padding_and_avg_pool_counts_it_by_default() {
    let x = -Tensor::ones([1, 2, 2, 1], (Kind::Float, Device::Cpu));
    let max = nn::max_pool_with(&x, [2, 2], nn::PoolOptions::new().padding(Padding::Same)).unwrap();
    assert_eq!(max.sum(Kind::Float).double_value(&[]), -4.0);
    let avg = nn::avg_pool_with(&x, [2, 2], nn::PoolOptions::new().padding(Padding::Same)).unwrap();
    assert_eq!(avg.double_value(&[0, 1, 1, 0]), -0.25);
    let avg =
        nn::avg_pool_with(&x, [2, 2], nn::PoolOptions::new().padding(Padding::Same).count_include_pad(false))
            .unwrap();
    assert_eq!(avg.double_value(&[0, 1, 1, 0]), -1.0);
}

#[test]
fn bad_windows_and_paddings_are_errors() {
    let x = Tensor::zeros([2, 5, 5, 3], (Kind::Float, Device::Cpu));
    let err = |r: flax::Result<Tensor>| match r {
        Err(Error::Value(message)) => message,
        other => panic!("expected a ValueError, got {other:?}"),
    };
    assert!(err(nn::max_pool_with(&x, [2, 2], nn::PoolOptions::new().strides([2])))
        .contains("len((2, 2)) must equal len((2,))"));
    assert!(err(nn::max_pool_with(&x, [2, 2], nn::PoolOptions::new().padding(Padding::Circular)))
        .contains("got 'CIRCULAR'"));
    assert!(
        err(nn::max_pool_with(&x, [2, 2], nn::PoolOptions::new().padding(Padding::Int(1)))).contains("got 1")
    );
    assert!(err(nn::avg_pool_with(&x, [2, 2], nn::PoolOptions::new().padding(vec![(1, 1)])))
        .contains("must specify pads for same number"));
    assert!(err(nn::max_pool(&x, [2, 2, 2, 2])).contains("got (2, 5, 5, 3)"));
    let multi = Tensor::zeros([2, 2, 5, 5, 3], (Kind::Float, Device::Cpu));
    assert!(err(nn::max_pool_with(&multi, [2, 2], nn::PoolOptions::new().padding(vec![(1, 1), (1, 1)])))
        .contains("one batch dimension"));
}
