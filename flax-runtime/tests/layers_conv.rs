//! `Conv`, `ConvLocal` and `ConvTranspose` against Flax 0.12.8 (`scripts/golden/layers_conv.py`):
//! the variable tree `init` creates (names, shapes, values) and the outputs of `apply`.

mod layers_golden;

use flax::nn::{Conv, ConvLocal, ConvTranspose, Mask, Padding};
use flax::prelude::*;
use flax::Error;
use layers_golden::{assert_close, key, Golden};

fn check_conv(g: &Golden, name: &str, m: Conv) {
    let c = g.case(name);
    let x = c.input("x");
    c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
}

fn check_local(g: &Golden, name: &str, m: ConvLocal) {
    let c = g.case(name);
    let x = c.input("x");
    c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
}

fn check_transpose(g: &Golden, name: &str, m: ConvTranspose) {
    let c = g.case(name);
    let x = c.input("x");
    c.check(|| m.init(key(), &x), |v| m.apply(v, &x));
}

#[test]
fn conv_matches_flax() {
    let g = Golden::load("conv");
    let mask = Mask::new(&g.case("conv1d_mask").input("mask")).unwrap();
    let cases = [
        ("conv2d_same", Conv::new(4, vec![3, 3])),
        ("conv2d_same_stride2", Conv::new(5, vec![3, 3]).strides(2)),
        ("conv2d_same_even_kernel", Conv::new(3, vec![4, 4])),
        ("conv1d_valid", Conv::new(4, vec![3]).padding(Padding::Valid)),
        ("conv1d_causal_dilated", Conv::new(4, vec![3]).padding(Padding::Causal).kernel_dilation(2)),
        ("conv2d_circular_stride2", Conv::new(4, vec![3, 3]).strides(2).padding(Padding::Circular)),
        ("conv2d_int_padding", Conv::new(4, vec![3, 3]).padding(2)),
        ("conv2d_int_per_dim", Conv::new(4, vec![3, 3]).padding([1, 0])),
        ("conv2d_pairs", Conv::new(4, vec![3, 2]).padding([(2, 0), (1, 3)])),
        ("conv2d_negative_pad", Conv::new(4, vec![3, 3]).padding([(1, -1), (0, 0)])),
        ("conv2d_kernel_dilation", Conv::new(4, vec![3, 3]).kernel_dilation([2, 1]).strides([1, 2])),
        ("conv2d_input_dilation", Conv::new(4, vec![3, 3]).input_dilation(2).padding([(1, 1), (1, 2)])),
        (
            "conv2d_input_dilation_strided",
            Conv::new(3, vec![2, 3])
                .input_dilation([2, 3])
                .strides(2)
                .kernel_dilation(2)
                .padding([(0, 0), (1, 1)]),
        ),
        ("conv2d_groups", Conv::new(4, vec![3, 3]).feature_group_count(2)),
        ("conv2d_depthwise", Conv::new(8, vec![3, 3]).feature_group_count(4).strides(2)),
        (
            "conv2d_groups_input_dilation",
            Conv::new(4, vec![2, 2]).feature_group_count(2).input_dilation(2).padding([(1, 0), (0, 1)]),
        ),
        ("conv2d_unbatched", Conv::new(4, vec![3, 3])),
        ("conv1d_multi_batch", Conv::new(4, vec![3])),
        ("conv3d", Conv::new(4, vec![2, 3, 3]).strides([1, 2, 2])),
        ("conv1d_mask", Conv::new(4, vec![3]).mask(mask).padding(Padding::Valid)),
        ("conv2d_no_bias", Conv::new(4, vec![3, 3]).use_bias(false)),
    ];
    for (name, m) in cases {
        check_conv(&g, name, m);
    }
    check_local(&g, "local1d_valid", ConvLocal::new(4, vec![3]).padding(Padding::Valid));
    check_local(
        &g,
        "local2d_circular_stride2",
        ConvLocal::new(4, vec![3, 3]).strides(2).padding(Padding::Circular),
    );
    check_local(&g, "local2d_same", ConvLocal::new(3, vec![3, 2]));
    check_local(
        &g,
        "local2d_dilated",
        ConvLocal::new(3, vec![2, 2]).kernel_dilation(2).strides([2, 1]).padding([(1, 0), (0, 1)]),
    );
    let mask = Mask::new(&g.case("transpose1d_mask").input("mask")).unwrap();
    let transposes = [
        ("transpose1d_valid", ConvTranspose::new(4, vec![3]).padding(Padding::Valid)),
        ("transpose2d_same_stride2", ConvTranspose::new(4, vec![3, 3]).strides([2, 2])),
        (
            "transpose2d_valid_stride2",
            ConvTranspose::new(3, vec![3, 2]).strides([2, 3]).padding(Padding::Valid),
        ),
        (
            "transpose2d_circular_transposed",
            ConvTranspose::new(4, vec![6, 6])
                .strides([2, 2])
                .padding(Padding::Circular)
                .transpose_kernel(true),
        ),
        ("transpose1d_circular", ConvTranspose::new(3, vec![4]).strides([3]).padding(Padding::Circular)),
        (
            "transpose2d_dilation_same",
            ConvTranspose::new(4, vec![3, 3]).strides([2, 1]).kernel_dilation([2, 2]),
        ),
        ("transpose2d_pairs", ConvTranspose::new(3, vec![3, 3]).strides([2, 2]).padding([(2, 1), (0, 3)])),
        (
            "transpose2d_same_transposed",
            ConvTranspose::new(4, vec![4, 4]).strides([2, 2]).transpose_kernel(true),
        ),
        ("transpose1d_unbatched", ConvTranspose::new(4, vec![3]).strides([2])),
        ("transpose1d_multi_batch", ConvTranspose::new(2, vec![2])),
        ("transpose3d", ConvTranspose::new(2, vec![2, 2, 3]).strides([2, 1, 2])),
        (
            "transpose1d_mask",
            ConvTranspose::new(4, vec![3]).mask(mask).padding(Padding::Valid).use_bias(false),
        ),
    ];
    for (name, m) in transposes {
        check_transpose(&g, name, m);
    }
    g.assert_all_seen();
}

/// NHWC inputs reach libtorch as views: the output of a convolution on a channels-last input
/// comes back channels-last (contiguous in NHWC), so no transposing copy was made around it.
#[test]
fn channels_last_in_channels_last_out() {
    let x = Tensor::randn([2, 8, 8, 3], (Kind::Float, Device::Cpu));
    let m = Conv::new(16, vec![3, 3]);
    let v = m.init(key(), &x).unwrap();
    let y = m.apply(&v, &x).unwrap();
    assert_eq!(y.size(), [2, 8, 8, 16]);
    assert!(y.is_contiguous(), "strides {:?}", y.stride());
}

#[test]
fn the_dtype_attribute_sets_the_computation_dtype() {
    let x = Tensor::randn([1, 5, 5, 2], (Kind::Float, Device::Cpu));
    let m = Conv::new(3, vec![3, 3]);
    let v = m.init(key(), &x).unwrap();
    let y32 = m.apply(&v, &x).unwrap();
    let y64 = m.clone().dtype(Some(Kind::Double)).apply(&v, &x).unwrap();
    assert_eq!(y64.kind(), Kind::Double);
    assert_close("float64 computation", &y64, &y32);
    // Params stored in float64 promote a float32 input.
    let v64 = m.clone().param_dtype(Kind::Double).init(key(), &x).unwrap();
    assert_eq!(v64.tensor(&["params", "kernel"]).unwrap().kind(), Kind::Double);
    assert_eq!(m.clone().param_dtype(Kind::Double).apply(&v64, &x).unwrap().kind(), Kind::Double);
}

fn expect_error(result: flax::Result<Variables>, needle: &str) -> Error {
    match result {
        Ok(_) => panic!("expected an error containing {needle:?}"),
        Err(e) => {
            assert!(e.to_string().contains(needle), "{e}");
            e
        }
    }
}

#[module]
pub struct Wrapper {
    #[submodule]
    pub conv: Conv,
}

#[module]
impl Wrapper {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        self.conv.call(cx, x)
    }
}

#[test]
fn bad_inputs_and_attributes_are_typed_errors_with_the_module_path() {
    let x = Tensor::zeros([2, 5, 5, 4], (Kind::Float, Device::Cpu));
    let rank = Wrapper::new(Conv::new(3, vec![3, 3]))
        .init(key(), &Tensor::zeros([5, 4], (Kind::Float, Device::Cpu)));
    match expect_error(rank, "got shape (5, 4)") {
        Error::Shape { scope, .. } => assert_eq!(scope, "/conv"),
        other => panic!("{other:?}"),
    }
    let padding = Wrapper::new(Conv::new(3, vec![3, 3]).padding([(1, 1)])).init(key(), &x);
    match expect_error(padding, "Invalid padding format: ((1, 1),)") {
        Error::InvalidAttribute { scope, .. } => assert_eq!(scope, "/conv"),
        other => panic!("{other:?}"),
    }
    expect_error(
        Conv::new(3, vec![3, 3]).padding(Padding::Causal).init(key(), &x),
        "only implemented for 1D",
    );
    expect_error(
        Conv::new(3, vec![3, 3]).input_dilation(2).init(key(), &x),
        "String padding is not implemented",
    );
    expect_error(
        Conv::new(3, vec![3, 3]).feature_group_count(3).init(key(), &x),
        "must divide the input features (4)",
    );
    expect_error(
        Conv::new(3, vec![3, 3]).strides([1, 1, 1]).init(key(), &x),
        "strides: expected an int or a sequence of 2 ints",
    );
    expect_error(
        ConvLocal::new(4, vec![3, 3]).feature_group_count(2).init(key(), &x),
        "does not support `feature_group_count != 1`",
    );
    let mask = Mask::new(&Tensor::ones([3, 3], (Kind::Float, Device::Cpu))).unwrap();
    expect_error(
        Conv::new(3, vec![3, 3]).mask(mask).init(key(), &x),
        "Mask needs to have the same shape as weights. Shapes are: (3, 3), (3, 3, 4, 3)",
    );
    expect_error(
        ConvTranspose::new(3, vec![3])
            .padding(Padding::Causal)
            .init(key(), &Tensor::zeros([1, 4, 2], (Kind::Float, Device::Cpu))),
        "does not support the padding 'CAUSAL'",
    );
    // A channel count that differs from the params' is Flax's ScopeParamShapeError.
    let v = Conv::new(3, vec![3, 3]).init(key(), &x).unwrap();
    let other = Tensor::zeros([2, 5, 5, 2], (Kind::Float, Device::Cpu));
    match Conv::new(3, vec![3, 3]).apply(&v, &other) {
        Err(Error::ScopeParamShape { value_shape, init_shape, .. }) => {
            assert_eq!((value_shape, init_shape), (vec![3, 3, 4, 3], vec![3, 3, 2, 3]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn repr_is_flax_s() {
    let text = format!("{:?}", Conv::new(4, vec![3, 3]).strides(2).padding(Padding::Valid));
    assert!(text.starts_with("Conv(\n    # attributes\n    features = 4\n    kernel_size = (3, 3)\n    strides = 2\n    padding = 'VALID'\n"), "{text}");
}
