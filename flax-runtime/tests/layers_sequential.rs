//! `nn::Sequential` against Flax (`scripts/golden/layers_sequential.py`): the variable trees
//! (which module owns each layer's params) and the outputs, with tuple and dict outputs passed
//! on as positional and keyword arguments; and its typed errors.

mod layers_golden;

use flax::nn::{self, Args, Sequential};
use flax::prelude::*;
use flax::{sequential, Error, Value};
use layers_golden::{assert_close, key, Golden};

/// A `Sequential` written inline: its `Dense` layers are this module's `Dense_0`, `Dense_1`.
#[module]
pub struct InCompact;

#[module]
impl InCompact {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let y = sequential![nn::Dense::new(4), nn::relu, nn::Dense::new(3)].call(cx, x)?;
        nn::Dense::new(2).call(cx, &y)
    }
}

/// A `Sequential` in a field (Flax's `setup`): its layers are `seq/layers_{i}`.
#[module]
pub struct Holder {
    #[submodule]
    pub seq: Sequential,
}

#[module]
impl Holder {
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        self.seq.call(cx, x)
    }
}

/// Two positional arguments in, a dict out.
#[module]
pub struct Pair;

#[module]
impl Pair {
    #[compact]
    pub fn call(&self, cx: &mut Scope, a: &Tensor, b: &Tensor) -> Result<FrozenDict> {
        let left = nn::Dense::new(3).call(cx, a)?;
        Ok([("left".to_owned(), Value::from(left)), ("right".to_owned(), Value::from(b.shallow_clone()))]
            .into_iter()
            .collect())
    }
}

/// Called with keyword arguments, declared in another order than the dict's.
#[module]
pub struct Merge;

#[module]
impl Merge {
    #[compact]
    pub fn call(&self, cx: &mut Scope, right: &Tensor, left: &Tensor) -> Result<Tensor> {
        nn::Dense::new(2).call(cx, &Tensor::cat(&[left, right], -1))
    }
}

fn dense_relu_dense() -> Sequential {
    sequential![nn::Dense::new(4), nn::relu, nn::Dense::new(2)]
}

#[test]
fn trees_and_outputs_match_flax() {
    let g = Golden::load("sequential");
    let check = |name: &str, model: Sequential| {
        let c = g.case(name);
        let x = c.input("x");
        c.check(|| model.init(key(), &x), |v| model.apply(v, &x));
    };
    check("dense_relu_dense", dense_relu_dense());
    check("nested", sequential![sequential![nn::Dense::new(4), nn::relu], nn::Dense::new(2)]);
    check(
        "tuple_and_dict",
        sequential![nn::Dense::new(4), |y: &Tensor| (y.shallow_clone(), y.tanh()), Pair::new(), Merge::new()],
    );
    check(
        "shape_inference",
        sequential![
            nn::Dense::new(4),
            |cx: &mut Scope, y: &Tensor| nn::Dense::new(y.size()[1] * 2).call(cx, y),
            nn::relu
        ],
    );

    check(
        "cnn",
        sequential![
            nn::Conv::new(4, [3, 3]),
            nn::relu,
            nn::ConvTranspose::new(3, [2, 2]).strides([2, 2]),
            nn::ConvLocal::new(2, [3, 3]).padding(nn::Padding::Valid),
        ],
    );

    let c = g.case("in_compact");
    let x = c.input("x");
    c.check(|| InCompact::new().init(key(), &x), |v| InCompact::new().apply(v, &x));
    // The typed view counts the layers' auto-names: the `Dense` after the `Sequential` is `Dense_2`.
    let v = InCompact::new().init(key(), &x).unwrap();
    assert_eq!(InCompact::params(&v).unwrap().dense_2.kernel.size(), [3, 2]);

    let c = g.case("setup_field");
    let x = c.input("x");
    let holder = Holder::new(dense_relu_dense());
    c.check(|| holder.init(key(), &x), |v| holder.apply(v, &x));
    g.assert_all_seen();
}

#[test]
fn layers_view_and_slices_keep_flax_s_names() {
    let model = dense_relu_dense();
    let x = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
    let v = model.init(key(), &x).unwrap();
    let layers: Vec<Option<Vec<&str>>> =
        Sequential::params(&v).unwrap().layers.iter().map(|l| l.map(|tree| tree.keys().collect())).collect();
    assert_eq!(layers, [Some(vec!["kernel", "bias"]), None, Some(vec!["kernel", "bias"])]);

    // Flax's model surgery: the first two layers, with the whole model's params.
    let features = Sequential::new(model.layers[..2].to_vec());
    let kernel = v.tensor(&["params", "layers_0", "kernel"]).unwrap();
    let bias = v.tensor(&["params", "layers_0", "bias"]).unwrap();
    assert_close("features", &features.apply(&v, &x).unwrap(), &(x.matmul(kernel) + bias).relu());
}

#[test]
fn models_can_be_shared_by_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    send_sync(&dense_relu_dense());
}

#[test]
fn repr_lists_modules_and_functions() {
    let text = format!("{:?}", sequential![nn::Dense::new(4), nn::relu, |y: &Tensor| y.tanh()]);
    assert!(text.starts_with("Sequential(\n    # attributes\n    layers = [Dense(\n"), "{text}");
    assert!(text.contains("), <function relu>, <function <lambda>>]\n"), "{text}");
}

#[test]
fn call_with_passes_positional_and_keyword_arguments() {
    let model = sequential![nn::Dropout::new(0.5), nn::Dense::new(2)];
    let x = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
    let args = || Args::new().arg(x.shallow_clone()).kwarg("deterministic", true);
    let (_, v) = model.init_method(key(), |m, cx| m.call_with(cx, args())).unwrap();
    // Dropout is skipped, so the output is the Dense layer's.
    let (y, _) = model.apply_method(&v, ApplyOptions::new(), |m, cx| m.call_with(cx, args())).unwrap();
    let kernel = v.tensor(&["params", "layers_1", "kernel"]).unwrap();
    let bias = v.tensor(&["params", "layers_1", "bias"]).unwrap();
    assert_close("dense", y.as_tensor().unwrap(), &(x.matmul(kernel) + bias));
}

#[test]
fn bad_layers_and_arguments_are_typed_errors() {
    let x = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
    let message = |model: Sequential| match model.init(key(), &x) {
        Err(Error::CallArguments { message, .. }) => message,
        other => panic!("expected CallArguments, got {other:?}"),
    };
    assert_eq!(
        message(sequential![|y: &Tensor| (y.shallow_clone(), y.shallow_clone()), nn::Dense::new(2)]),
        "Dense takes 1 positional argument but 2 were given"
    );
    assert_eq!(
        message(sequential![|y: &Tensor| (y.shallow_clone(), y.shallow_clone())]),
        "the last layer returned a list of 2, not an array"
    );
    let pair = |y: &Tensor| (y.shallow_clone(), y.shallow_clone());
    assert_eq!(
        message(sequential![pair, Pair::new(), nn::Dense::new(2)]),
        "Dense got an unexpected keyword argument 'left'"
    );
    let only_right = |y: &Tensor| -> FrozenDict {
        [("right".to_owned(), Value::from(y.shallow_clone()))].into_iter().collect()
    };
    assert_eq!(message(sequential![only_right, Merge::new()]), "Merge missing 1 required argument: 'left'");
    let not_an_array = |y: &Tensor| vec![Value::from(FrozenDict::new()), Value::from(y.shallow_clone())];
    assert_eq!(
        message(sequential![not_an_array, Merge::new()]),
        "Merge argument 'right' must be an array, got a dict"
    );
    // The error names the `Sequential` that made the call.
    match Holder::new(sequential![pair, nn::Dense::new(2)]).init(key(), &x) {
        Err(Error::CallArguments { scope, .. }) => assert_eq!(scope, "/seq"),
        other => panic!("expected CallArguments, got {other:?}"),
    }
    match Sequential::new(Vec::new()).init(key(), &x) {
        Err(Error::Value(message)) => assert_eq!(message, "Empty Sequential module None."),
        other => panic!("expected a ValueError, got {other:?}"),
    }
}
