//! The activation functions and `PReLU` against jax 0.10.2 / Flax 0.12.8
//! (`scripts/golden/layers_activation.py`).

mod layers_golden;

use flax::nn::{self, PReLU};
use flax::prelude::*;
use flax::Error;
use layers_golden::{assert_close, key, Golden};

type Activation = fn(&Tensor) -> flax::Result<Tensor>;

#[test]
fn elementwise_functions_match_jax() {
    let g = Golden::load("activation");
    let cases: [(&str, Activation); 28] = [
        ("relu", nn::relu),
        ("relu6", nn::relu6),
        ("sigmoid", nn::sigmoid),
        ("tanh", nn::tanh),
        ("silu", nn::silu),
        ("swish", nn::swish),
        ("hard_sigmoid", nn::hard_sigmoid),
        ("hard_silu", nn::hard_silu),
        ("hard_swish", nn::hard_swish),
        ("hard_tanh", nn::hard_tanh),
        ("softplus", nn::softplus),
        ("log_sigmoid", nn::log_sigmoid),
        ("soft_sign", nn::soft_sign),
        ("selu", nn::selu),
        ("elu", |x| nn::elu(x)),
        ("elu_alpha", |x| nn::elu_with(x, 0.5)),
        ("celu", |x| nn::celu(x)),
        ("celu_alpha", |x| nn::celu_with(x, 2.0)),
        ("leaky_relu", |x| nn::leaky_relu(x)),
        ("leaky_relu_slope", |x| nn::leaky_relu_with(x, 0.2)),
        ("gelu", |x| nn::gelu(x)),
        ("gelu_exact", |x| nn::gelu_with(x, false)),
        ("glu", |x| nn::glu(x)),
        ("glu_axis0", |x| nn::glu_with(x, 0)),
        ("softmax", |x| nn::softmax(x)),
        ("softmax_axes", |x| nn::softmax_with(x, nn::SoftmaxOptions::new().axis([0, 1]))),
        ("log_softmax", |x| nn::log_softmax(x)),
        ("log_softmax_axis0", |x| nn::log_softmax_with(x, nn::SoftmaxOptions::new().axis(0))),
    ];
    for (name, f) in cases {
        let c = g.case(name);
        assert_close(name, &f(&c.input("x")).unwrap(), &c.output());
    }
    let reductions: [(&str, Activation); 4] = [
        ("logsumexp", |x| nn::logsumexp(x)),
        ("logsumexp_axis_keepdims", |x| {
            nn::logsumexp_with(x, nn::LogsumexpOptions::new().axis(1).keepdims(true))
        }),
        ("standardize", |x| nn::standardize(x)),
        ("standardize_axes", |x| {
            nn::standardize_with(x, nn::StandardizeOptions::new().axis([0, 1]).epsilon(1e-3))
        }),
    ];
    for (name, f) in reductions {
        let c = g.case(name);
        assert_close(name, &f(&c.input("x")).unwrap(), &c.output());
    }
    let c = g.case("softmax_where");
    let (x, mask) = (c.input("x"), c.input("mask"));
    assert_close(
        "softmax_where",
        &nn::softmax_with(&x, nn::SoftmaxOptions::new().where_(&mask)).unwrap(),
        &c.output(),
    );
    let c = g.case("log_softmax_where");
    assert_close(
        "log_softmax_where",
        &nn::log_softmax_with(&x, nn::SoftmaxOptions::new().where_(&mask)).unwrap(),
        &c.output(),
    );
    let c = g.case("standardize_where");
    let where_ = mask.logical_or(&Tensor::arange(6, (Kind::Int64, Device::Cpu)).lt(2));
    assert_close(
        "standardize_where",
        &nn::standardize_with(&x, nn::StandardizeOptions::new().where_(&where_)).unwrap(),
        &c.output(),
    );
    let c = g.case("standardize_given");
    let (mean, var) = (c.input("mean"), c.input("variance"));
    assert_close(
        "standardize_given",
        &nn::standardize_with(&x, nn::StandardizeOptions::new().mean(&mean).variance(&var)).unwrap(),
        &c.output(),
    );
    let c = g.case("logsumexp_b");
    let b = c.input("b");
    assert_close(
        "logsumexp_b",
        &nn::logsumexp_with(&x, nn::LogsumexpOptions::new().axis(0).b(&b)).unwrap(),
        &c.output(),
    );
    let c = g.case("logsumexp_sign");
    let (out, sign) = nn::logsumexp_with_sign(&x, nn::LogsumexpOptions::new().axis([0, 1]).b(&b)).unwrap();
    assert_close("logsumexp_sign value", &out, &c.output_at(&["0"]));
    assert_close("logsumexp_sign sign", &sign, &c.output_at(&["1"]));
    let c = g.case("one_hot");
    let labels = c.input("labels");
    let y = nn::one_hot(&labels, 3).unwrap();
    assert_eq!(y.kind(), Kind::Float);
    assert_close("one_hot", &y, &c.output());
    let c = g.case("one_hot_axis0_int");
    let y = nn::one_hot_with(&labels, 4, nn::OneHotOptions::new().kind(Kind::Int).axis(0)).unwrap();
    assert_eq!(y.kind(), Kind::Int);
    assert!(y.equal(&c.output()), "one_hot_axis0_int");
    for (name, m) in [("prelu", PReLU::new()), ("prelu_init", PReLU::new().negative_slope_init(0.25))] {
        let c = g.case(name);
        let x = c.input("x");
        c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
    }
    g.assert_all_seen();
}

#[test]
fn bad_arguments_are_errors() {
    let x = Tensor::ones([3, 5], (Kind::Float, Device::Cpu));
    assert!(matches!(nn::glu(&x), Err(Error::Value(m)) if m.contains("divisible by 2")));
    assert!(
        matches!(nn::softmax_with(&x, nn::SoftmaxOptions::new().axis(2)), Err(Error::Value(m)) if m.contains("axis 2 is out of bounds"))
    );
    assert!(matches!(nn::one_hot_with(&x, 3, nn::OneHotOptions::new().axis(3)), Err(Error::Value(_))));
}

#[test]
fn integer_inputs_are_promoted_to_float() {
    let x = Tensor::from_slice(&[1i64, 2, 3]);
    let y = nn::softmax(&x).unwrap();
    assert_eq!(y.kind(), Kind::Float);
    assert!((y.sum(Kind::Double).double_value(&[]) - 1.0).abs() < 1e-6);
}
