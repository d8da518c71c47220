//! The module system end to end on small modules: naming, trees, options and errors.

use flax::prelude::*;
use flax::{CaptureIntermediates, Error, Value};

#[module]
pub struct Mlp {
    pub out_dims: i64,
}

#[module]
impl Mlp {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = x.flatten(1, -1);
        let x = nn::Dense::new(128).call(cx, &x)?.relu();
        nn::Dense::new(self.out_dims).call(cx, &x)
    }
}

fn shapes(v: &Variables, path: &[&str]) -> Vec<i64> {
    v.tensor(path).unwrap_or_else(|| panic!("missing {path:?} in {v}")).size()
}

#[test]
fn basic_usage_mlp_has_flax_tree_and_output_shape() {
    let model = Mlp::new(10);
    let x = Tensor::zeros([4, 28, 28, 1], (Kind::Float, Device::Cpu));
    let variables = model.init(PRNGKey::new(42), &x).unwrap();
    assert_eq!(variables.keys().collect::<Vec<_>>(), ["params"]);
    let params = variables.get_dict("params").unwrap();
    assert_eq!(params.keys().collect::<Vec<_>>(), ["Dense_0", "Dense_1"]);
    assert_eq!(shapes(&variables, &["params", "Dense_0", "kernel"]), [784, 128]);
    assert_eq!(shapes(&variables, &["params", "Dense_0", "bias"]), [128]);
    assert_eq!(shapes(&variables, &["params", "Dense_1", "kernel"]), [128, 10]);
    let y = model.apply(&variables, &x).unwrap();
    assert_eq!(y.size(), [4, 10]);
}

#[test]
fn debug_prints_flax_repr() {
    let text = format!("{:?}", nn::Dense::new(3));
    assert_eq!(
        text,
        "Dense(\n    # attributes\n    features = 3\n    use_bias = True\n    dtype = None\n    param_dtype = float32\n    precision = None\n    kernel_init = init\n    bias_init = zeros\n)"
    );
}

#[test]
fn apply_checks_param_shapes_and_structure() {
    let model = Mlp::new(10);
    let x = Tensor::zeros([2, 4], (Kind::Float, Device::Cpu));
    let variables = model.init(PRNGKey::new(0), &x).unwrap();
    let wider = Tensor::zeros([2, 5], (Kind::Float, Device::Cpu));
    match model.apply(&variables, &wider) {
        Err(Error::ScopeParamShape { name, scope, value_shape, init_shape }) => {
            assert_eq!((name.as_str(), scope.as_str()), ("kernel", "/Dense_0"));
            assert_eq!((value_shape, init_shape), (vec![4, 128], vec![5, 128]));
        }
        other => panic!("expected ScopeParamShape, got {other:?}"),
    }
    let nested = FrozenDict::new().copy([("params", Value::Dict(variables.clone()))]);
    assert!(matches!(model.apply(&nested, &x), Err(Error::ApplyScopeInvalidVariablesStructure)));
    match model.apply(&FrozenDict::new(), &x) {
        Err(Error::ScopeCollectionNotFound { collection, name, scope }) => {
            assert_eq!(
                (collection.as_str(), name.as_str(), scope.as_str()),
                ("params", "kernel", "/Dense_0")
            );
        }
        other => panic!("expected ScopeCollectionNotFound, got {other:?}"),
    }
}

#[test]
fn capture_intermediates_records_every_call() {
    let model = Mlp::new(3);
    let x = Tensor::ones([2, 4], (Kind::Float, Device::Cpu));
    let variables = model.init(PRNGKey::new(0), &x).unwrap();
    let (y, state) =
        model.apply_with(&variables, ApplyOptions::new().capture_intermediates(true), &x).unwrap();
    let inter = state.get_dict("intermediates").unwrap();
    assert_eq!(inter.keys().collect::<Vec<_>>(), ["Dense_0", "Dense_1", "__call__"]);
    let top = inter.get("__call__").unwrap().as_list().unwrap();
    assert_eq!(top.len(), 1);
    assert!(top[0].as_tensor().unwrap().equal(&y));
    let only_dense_1 = CaptureIntermediates::filter(|call| call.name == Some("Dense_1"));
    let (_, state) =
        model.apply_with(&variables, ApplyOptions::new().capture_intermediates(only_dense_1), &x).unwrap();
    assert_eq!(state.get_dict("intermediates").unwrap().keys().collect::<Vec<_>>(), ["Dense_1"]);
}

/// One set of variables serving inference on several threads: each thread gets a cheap clone
/// (tensors are shared, not copied; a tch `Tensor` is `Send` but not `Sync`).
#[test]
fn per_thread_clones_serve_parallel_inference() {
    let model = Mlp::new(3);
    let x = Tensor::ones([2, 4], (Kind::Float, Device::Cpu));
    let variables = model.init(PRNGKey::new(0), &x).unwrap();
    let expected = model.apply(&variables, &x).unwrap();
    let kernel_ptr = variables.tensor(&["params", "Dense_0", "kernel"]).unwrap().data_ptr() as usize;
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (model, variables) = (model.clone(), variables.clone());
            std::thread::spawn(move || {
                let x = Tensor::ones([2, 4], (Kind::Float, Device::Cpu));
                let shared = variables.tensor(&["params", "Dense_0", "kernel"]).unwrap().data_ptr() as usize;
                let mut y = model.apply(&variables, &x).unwrap();
                for _ in 0..10 {
                    y = model.apply(&variables, &x).unwrap();
                }
                (i, shared, Vec::<f32>::try_from(y.flatten(0, -1)).unwrap())
            })
        })
        .collect();
    let expected = Vec::<f32>::try_from(expected.flatten(0, -1)).unwrap();
    for h in handles {
        let (_, ptr, y) = h.join().unwrap();
        assert_eq!(ptr, kernel_ptr, "clones share storage");
        assert_eq!(y, expected);
    }
}

/// Flax's dtype policy in `Dense`: params in `param_dtype`, computation in the promoted dtype
/// of inputs and params, or in `dtype` when given.
#[test]
fn dense_follows_the_dtype_policy() {
    let x = Tensor::ones([2, 4], (Kind::Float, Device::Cpu));
    let dense = nn::Dense::new(3);
    let v = dense.init(PRNGKey::new(0), &x).unwrap();
    let y32 = dense.apply(&v, &x).unwrap();
    // bfloat16 inputs with float32 params promote to float32.
    let promoted = dense.apply(&v, &x.to_kind(Kind::BFloat16)).unwrap();
    assert_eq!(promoted.kind(), Kind::Float);
    assert!(promoted.allclose(&y32, 1e-2, 1e-2, false));
    // An explicit dtype casts everything to it.
    let half = dense.clone().dtype(Some(Kind::BFloat16)).apply(&v, &x).unwrap();
    assert_eq!(half.kind(), Kind::BFloat16);
    let wide = dense.clone().dtype(Some(Kind::Double)).apply(&v, &x).unwrap();
    assert_eq!(wide.kind(), Kind::Double);
    assert!(wide.to_kind(Kind::Float).allclose(&y32, 1e-6, 1e-6, false));
    // float64 params promote float32 inputs.
    let d64 = nn::Dense::new(3).param_dtype(Kind::Double);
    let v64 = d64.init(PRNGKey::new(0), &x).unwrap();
    assert_eq!(v64.tensor(&["params", "kernel"]).unwrap().kind(), Kind::Double);
    assert_eq!(d64.apply(&v64, &x).unwrap().kind(), Kind::Double);
}

/// Drops out only when the caller gave a `dropout` stream (Flax's `has_rng` idiom).
#[module]
pub struct MaybeDropout {}

#[module]
impl MaybeDropout {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let train = cx.has_rng("dropout");
        nn::Dropout::new(0.5).call(cx, x, Some(!train))
    }
}

#[test]
fn has_rng_tells_which_streams_were_given() {
    let x = Tensor::ones([64], (Kind::Float, Device::Cpu));
    let v = Variables::new();
    assert!(MaybeDropout::new().apply(&v, &x).unwrap().equal(&x), "no stream: deterministic");
    let given = flax::ApplyOptions::new().rngs([("dropout", PRNGKey::new(0))]);
    let (dropped, _) = MaybeDropout::new().apply_with(&v, given, &x).unwrap();
    assert!(!dropped.equal(&x), "a dropout stream: some entries dropped");
}

#[test]
fn values_convert_from_strings_and_lists() {
    assert_eq!(
        format!("{:?}", Value::from("adam")),
        format!("{:?}", Value::Scalar(flax::Scalar::Str("adam".into())))
    );
    let list = Value::from(vec![Value::from(1i64), Value::from("x")]);
    assert!(matches!(list, Value::List(ref l) if l.len() == 2));
}
