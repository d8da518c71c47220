//! Windows larger than their input against Flax 0.12.8 (`scripts/golden/layers_empty_windows.py`):
//! pooling and convolutions give XLA's zero-size results (shape and dtype), `init` creates
//! Flax's parameters, gradients through the empty result are zeros, and the configurations
//! Flax refuses are typed errors.

mod layers_golden;

use flax::nn::{self, Conv, ConvLocal, ConvTranspose, Padding};
use flax::prelude::*;
use flax::{Error, Variables};
use layers_golden::{assert_close, assert_same_tree, key, Case, Golden};

type Pooling = fn(&Tensor) -> flax::Result<Tensor>;

/// The output (shape, dtype, values) and, for float inputs, the gradient of its sum.
fn check_pooling(c: &Case<'_>, f: Pooling) {
    let name = &c.name;
    let x = c.input("x");
    let y = f(&x).unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected = c.output();
    assert_eq!(y.kind(), expected.kind(), "{name}: dtype");
    assert_close(name, &y, &expected);
    if let Some(grad_x) = c.get(&["grad_x"]) {
        let x = x.copy().set_requires_grad(true);
        f(&x).unwrap().to_kind(Kind::Float).sum(Kind::Float).backward();
        assert_close(&format!("{name}: grad_x"), &x.grad(), &grad_x);
    }
}

#[test]
fn pooling_gives_flax_zero_size_results() {
    let g = Golden::load("empty_windows");
    let cases: [(&str, Pooling); 15] = [
        ("max_valid", |x| nn::max_pool(x, [3, 3])),
        ("max_valid_strided", |x| nn::max_pool_with(x, [3, 3], nn::PoolOptions::new().strides([2, 2]))),
        ("min_valid", |x| nn::min_pool(x, [3, 3])),
        ("avg_valid", |x| nn::avg_pool(x, [3, 3])),
        ("avg_valid_exclude_pad", |x| {
            nn::avg_pool_with(x, [3, 3], nn::PoolOptions::new().count_include_pad(false))
        }),
        ("max_one_dim_empty", |x| nn::max_pool(x, [3, 3])),
        ("avg_3d_one_dim_empty", |x| nn::avg_pool(x, [3, 1, 1])),
        ("max_1d", |x| nn::max_pool(x, [3])),
        ("max_4d", |x| nn::max_pool(x, [3, 2, 2, 2])),
        ("max_negative_pad", |x| {
            nn::max_pool_with(x, [2, 2], nn::PoolOptions::new().padding(vec![(-1, 0), (0, 0)]))
        }),
        ("avg_over_cropped", |x| {
            nn::avg_pool_with(x, [1, 1], nn::PoolOptions::new().padding(vec![(-2, -1), (0, 0)]))
        }),
        ("max_multi_batch", |x| nn::max_pool(x, [3, 3])),
        ("max_int", |x| nn::max_pool(x, [3, 3])),
        ("avg_int", |x| nn::avg_pool(x, [3, 3])),
        ("pool_add", |x| nn::pool(x, 0.0, |a, b| Ok(a + b), [3, 3], nn::PoolOptions::new().strides([1, 1]))),
    ];
    for (name, f) in cases {
        check_pooling(&g.case(name), f);
    }
    // Modules: the other test.
    for name in [
        "conv_valid",
        "conv_valid_strided",
        "conv_kernel_dilation",
        "conv_negative_pad",
        "conv_groups",
        "conv_no_bias",
        "conv_1d_multi_batch",
        "conv_3d_one_dim_empty",
        "conv_input_dilation",
        "conv_local_zeros_init",
        "conv_transpose_cropped",
    ] {
        g.case(name);
    }
    g.assert_all_seen();
}

/// `init` (variables) and `apply` (output shape, dtype) of module `$m` as Flax's, then the
/// gradient of the output's sum with respect to the variables: zeros of the parameters' shapes.
/// (A macro: `Conv`, `ConvLocal` and `ConvTranspose` share no trait with `init`/`apply`.)
macro_rules! check_module {
    ($g:expr, $name:expr, $m:expr) => {{
        let (c, m) = ($g.case($name), $m);
        let x = c.input("x");
        c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
        assert_eq!(m.apply(&c.variables(), &x).unwrap().kind(), c.output().kind(), "{}: dtype", $name);
        let grads = flax::grad(&c.variables(), |v: &Variables| Ok(m.apply(v, &x)?.sum(Kind::Float)))
            .unwrap_or_else(|e| panic!("{}: grad failed: {e}", $name));
        assert_same_tree(&format!("{}: grads", $name), &grads, &c.dict("grads"));
    }};
}

#[test]
fn convolutions_give_flax_zero_size_results() {
    let g = Golden::load("empty_windows");
    let valid = |features, kernel: &[i64]| Conv::new(features, kernel.to_vec()).padding(Padding::Valid);
    check_module!(g, "conv_valid", valid(5, &[3, 3]));
    check_module!(g, "conv_valid_strided", valid(5, &[3, 3]).strides(2));
    check_module!(g, "conv_kernel_dilation", valid(5, &[2, 2]).kernel_dilation(2));
    check_module!(g, "conv_negative_pad", Conv::new(5, vec![2, 2]).padding([(-1, 0), (0, 0)]));
    check_module!(g, "conv_groups", valid(6, &[3, 3]).feature_group_count(2));
    check_module!(g, "conv_no_bias", valid(5, &[3, 3]).use_bias(false));
    check_module!(g, "conv_1d_multi_batch", valid(5, &[3]));
    check_module!(g, "conv_3d_one_dim_empty", valid(2, &[3, 3, 3]));
    check_module!(
        g,
        "conv_input_dilation",
        Conv::new(5, vec![4, 4]).padding([(-1, 0), (0, 0)]).input_dilation(2)
    );
    check_module!(
        g,
        "conv_local_zeros_init",
        ConvLocal::new(5, vec![3, 3]).padding(Padding::Valid).kernel_init(nn::initializers::zeros())
    );
    check_module!(
        g,
        "conv_transpose_cropped",
        ConvTranspose::new(5, vec![3, 3]).padding([(-1, -1), (-1, -1)])
    );
}

/// What Flax refuses (checked by the script against Flax): typed errors here.
#[test]
fn what_flax_refuses_is_a_typed_error() {
    let x = Tensor::zeros([2, 2, 2, 4], (Kind::Float, Device::Cpu));
    let value_error = |r: flax::Result<Variables>| match r {
        Err(Error::Value(message)) => message,
        other => panic!("expected a ValueError, got {other:?}"),
    };
    // lecun_normal over ConvLocal's empty output grid: a zero fan (Python's ZeroDivisionError).
    let local = ConvLocal::new(5, vec![3, 3]).padding(Padding::Valid);
    assert!(value_error(local.init(key(), &x)).contains("division by zero"));
    // Negative pads cropping more than the whole input.
    let transpose = ConvTranspose::new(5, vec![3, 3]).padding([(-2, -2), (0, 0)]);
    assert!(value_error(transpose.init(key(), &x)).contains("Negative padding is larger than the size"));
    let conv = Conv::new(5, vec![1, 1]).padding([(-2, -1), (0, 0)]);
    assert!(value_error(conv.init(key(), &x)).contains("Negative padding is larger than the size"));
}

#[test]
fn empty_pooling_keeps_half_precision() {
    for kind in [Kind::Half, Kind::BFloat16, Kind::Double] {
        let x = Tensor::zeros([2, 2, 2, 4], (kind, Device::Cpu));
        for y in [nn::max_pool(&x, [3, 3]).unwrap(), nn::avg_pool(&x, [3, 3]).unwrap()] {
            assert_eq!((y.size(), y.kind()), (vec![2, 0, 0, 4], kind));
        }
    }
}
