//! The spec's module examples, reproduced in Rust with their trees and values.

use flax::prelude::*;
use flax::{CollectionFilter, Error, Value};

fn cpu() -> (Kind, Device) {
    (Kind::Float, Device::Cpu)
}

fn tree_shapes(v: &FrozenDict) -> Vec<(String, Vec<i64>)> {
    fn walk(prefix: &str, d: &FrozenDict, out: &mut Vec<(String, Vec<i64>)>) {
        for (k, v) in d.iter() {
            let path = if prefix.is_empty() { k.to_owned() } else { format!("{prefix}/{k}") };
            match v {
                Value::Dict(d) => walk(&path, d, out),
                Value::Tensor(t) => out.push((path, t.size())),
                other => out.push((path, vec![other.as_list().map_or(-1, |l| l.len() as i64)])),
            }
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out.sort();
    out
}

fn expected(entries: &[(&str, &[i64])]) -> Vec<(String, Vec<i64>)> {
    let mut v: Vec<_> = entries.iter().map(|(p, s)| ((*p).to_owned(), s.to_vec())).collect();
    v.sort();
    v
}

// spec L1417–1470: submodules held in a Vec field are named layers_0, layers_1, …
#[module]
pub struct ExplicitMlp {
    #[submodule]
    pub layers: Vec<nn::Dense>,
}

impl ExplicitMlp {
    fn from_features(features: &[i64]) -> Self {
        Self::new(features.iter().map(|f| nn::Dense::new(*f)).collect())
    }
}

#[module]
impl ExplicitMlp {
    pub fn call(&self, cx: &mut Scope, inputs: &Tensor) -> Result<Tensor> {
        let mut x = inputs.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.call(cx, &x)?;
            if i != self.layers.len() - 1 {
                x = x.relu();
            }
        }
        Ok(x)
    }
}

// spec L1500–1553: the same tree from inline submodules with explicit names.
#[module]
pub struct SimpleMlp {
    pub features: Vec<i64>,
}

#[module]
impl SimpleMlp {
    #[compact]
    pub fn call(&self, cx: &mut Scope, inputs: &Tensor) -> Result<Tensor> {
        let mut x = inputs.shallow_clone();
        for (i, feat) in self.features.iter().enumerate() {
            x = nn::Dense::new(*feat).name(format!("layers_{i}")).call(cx, &x)?;
            if i != self.features.len() - 1 {
                x = x.relu();
            }
        }
        Ok(x)
    }
}

const MLP_TREE: &[(&str, &[i64])] = &[
    ("params/layers_0/bias", &[3]),
    ("params/layers_0/kernel", &[4, 3]),
    ("params/layers_1/bias", &[4]),
    ("params/layers_1/kernel", &[3, 4]),
    ("params/layers_2/bias", &[5]),
    ("params/layers_2/kernel", &[4, 5]),
];

#[test]
fn explicit_and_simple_mlp_have_the_same_tree() {
    let x = Tensor::ones([4, 4], cpu());
    let explicit = ExplicitMlp::from_features(&[3, 4, 5]);
    let v1 = explicit.init(PRNGKey::new(0), &x).unwrap();
    assert_eq!(tree_shapes(&v1), expected(MLP_TREE));
    assert_eq!(explicit.apply(&v1, &x).unwrap().size(), [4, 5]);
    let simple = SimpleMlp::new(vec![3, 4, 5]);
    let v2 = simple.init(PRNGKey::new(0), &x).unwrap();
    assert_eq!(tree_shapes(&v2), expected(MLP_TREE));
    // Same names and the same key derivation give the same values.
    let k1 = v1.tensor(&["params", "layers_1", "kernel"]).unwrap();
    let k2 = v2.tensor(&["params", "layers_1", "kernel"]).unwrap();
    assert!(k1.equal(k2));
}

// spec L1586–1657: a custom param with a user initializer.
#[module]
pub struct SimpleDense {
    pub features: i64,
}

#[module]
impl SimpleDense {
    #[compact]
    pub fn call(&self, cx: &mut Scope, inputs: &Tensor) -> Result<Tensor> {
        let shape = [*inputs.size().last().unwrap_or(&0), self.features];
        let kernel = cx.param("kernel", nn::initializers::lecun_normal(), &shape)?;
        let y = inputs.matmul(&kernel);
        let bias = cx.param("bias", nn::initializers::zeros(), &[self.features])?;
        Ok(y + bias)
    }
}

#[test]
fn simple_dense_declares_kernel_then_bias() {
    let x = Tensor::ones([4, 4], cpu());
    let model = SimpleDense::new(3);
    let (y, v) = model.init_with_output(PRNGKey::new(0), &x).unwrap();
    assert_eq!(tree_shapes(&v), expected(&[("params/bias", &[3]), ("params/kernel", &[4, 3])]));
    assert_eq!(v.get_dict("params").unwrap().keys().collect::<Vec<_>>(), ["kernel", "bias"]);
    assert!(y.equal(&model.apply(&v, &x).unwrap()));
}

// spec L1680–1783: a running mean in the batch_stats collection.
#[module]
pub struct BiasAdderWithRunningMean {
    #[module(default = 0.99)]
    pub decay: f64,
}

#[module]
impl BiasAdderWithRunningMean {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let is_initialized = cx.has_variable("batch_stats", "mean");
        let shape = x.size()[1..].to_vec();
        let ra_mean = cx.variable("batch_stats", "mean", |_| Ok(Tensor::zeros(&shape[..], cpu())))?;
        let bias = cx.param_fn("bias", |_| Ok(Tensor::zeros(&shape[..], cpu())))?;
        if is_initialized {
            let mean = ra_mean.value(cx)?;
            let batch_mean = x.mean_dim(0, true, Kind::Float);
            ra_mean.set_value(cx, mean * self.decay + batch_mean * (1.0 - self.decay))?;
        }
        Ok(x - ra_mean.value(cx)? + bias)
    }
}

#[test]
fn bias_adder_running_mean_follows_the_spec() {
    let model = BiasAdderWithRunningMean::new();
    let x = Tensor::ones([10, 5], cpu());
    let mut variables = model.init(PRNGKey::new(0), &x).unwrap();
    assert_eq!(tree_shapes(&variables), expected(&[("batch_stats/mean", &[5]), ("params/bias", &[5])]));
    let mut means = Vec::new();
    for val in [1.0, 2.0, 3.0] {
        let x = Tensor::ones([10, 5], cpu()) * val;
        let (_, updated) =
            model.apply_with(&variables, ApplyOptions::new().mutable(["batch_stats"]), &x).unwrap();
        assert_eq!(updated.keys().collect::<Vec<_>>(), ["batch_stats"]);
        let (_, params) = variables.pop("params").unwrap();
        variables = updated.copy([("params", params)]);
        let mean = variables.tensor(&["batch_stats", "mean"]).unwrap();
        assert_eq!(mean.size(), [1, 5]);
        means.push(mean.double_value(&[0, 0]));
    }
    for (got, want) in means.iter().zip([0.01, 0.0299, 0.059601]) {
        assert!((got - want).abs() < 1e-6, "{means:?}");
    }
    // Without `mutable`, writing the running mean is Flax's ModifyScopeVariableError.
    match model.apply(&variables, &x) {
        Err(Error::ModifyScopeVariable { collection, name, scope }) => {
            assert_eq!((collection.as_str(), name.as_str(), scope.as_str()), ("batch_stats", "mean", "/"));
        }
        other => panic!("expected ModifyScopeVariable, got {other:?}"),
    }
}

// spec L14532–14572: sow with the default tuple, and with custom init/reduce functions.
#[module]
pub struct SowFoo {}

#[module]
impl SowFoo {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = nn::Dense::new(4).call(cx, x)?;
        cx.sow("intermediates", "h", &h)?;
        nn::Dense::new(2).call(cx, &h)
    }
}

#[module]
pub struct SowFoo2 {}

fn add(a: Value, b: Value) -> Result<Value> {
    match (a, b) {
        (Value::Tensor(a), Value::Tensor(b)) => Ok(Value::Tensor(a + b)),
        (Value::Scalar(flax::Scalar::Int(0)), b) => Ok(b),
        (a, _) => Err(Error::Value(format!("cannot add to {a:?}"))),
    }
}

#[module]
impl SowFoo2 {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let zero = || Value::Scalar(flax::Scalar::Int(0));
        cx.sow_with("intermediates", "h", Value::Tensor(x.shallow_clone()), zero, add)?;
        cx.sow_with("intermediates", "h", Value::Tensor(x * 2), zero, add)?;
        Ok(x.shallow_clone())
    }
}

#[test]
fn sow_appends_to_a_tuple_or_reduces() {
    let x = Tensor::ones([16, 9], cpu());
    let model = SowFoo::new();
    let variables = model.init(PRNGKey::new(0), &x).unwrap();
    assert!(!variables.contains_key("intermediates"), "init does not make intermediates mutable");
    let (_, state) =
        model.apply_with(&variables, ApplyOptions::new().mutable(["intermediates"]), &x).unwrap();
    let h = state.get_path(&["intermediates", "h"]).unwrap().as_list().unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].as_tensor().unwrap().size(), [16, 4]);
    // Not mutable: sow stores nothing and reports it.
    let (_, state) = model.apply_with(&variables, ApplyOptions::new(), &x).unwrap();
    assert!(state.is_empty());

    let model = SowFoo2::new();
    let variables = model.init(PRNGKey::new(0), &x).unwrap();
    let one = Tensor::ones([1, 1], cpu());
    let (_, state) =
        model.apply_with(&variables, ApplyOptions::new().mutable(["intermediates"]), &one).unwrap();
    let h = state.tensor(&["intermediates", "h"]).unwrap();
    assert_eq!(h.size(), [1, 1]);
    assert_eq!(h.double_value(&[0, 0]), 3.0);
}

// spec L14404–14443: perturb adds a zero variable whose gradient is the intermediate's.
#[module]
pub struct PerturbFoo {}

#[module]
impl PerturbFoo {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Dense::new(3).call(cx, x)?;
        let x = cx.perturb("dense3", &x)?;
        nn::Dense::new(2).call(cx, &x)
    }
}

#[test]
fn perturb_creates_zero_perturbations_and_passes_gradients() {
    let x = Tensor::ones([2, 9], cpu());
    let model = PerturbFoo::new();
    let variables = model.init(PRNGKey::new(0), &x).unwrap();
    assert_eq!(
        tree_shapes(&variables),
        expected(&[
            ("params/Dense_0/bias", &[3]),
            ("params/Dense_0/kernel", &[9, 3]),
            ("params/Dense_1/bias", &[2]),
            ("params/Dense_1/kernel", &[3, 2]),
            ("perturbations/dense3", &[2, 3]),
        ])
    );
    let perturbation = variables.tensor(&["perturbations", "dense3"]).unwrap().set_requires_grad(true);
    let given = variables.copy([(
        "perturbations",
        Value::Dict(FrozenDict::new().copy([("dense3", Value::Tensor(perturbation.shallow_clone()))])),
    )]);
    let preds = model.apply(&given, &x).unwrap();
    let loss = (preds - Tensor::ones([2, 2], cpu())).square().mean(Kind::Float);
    let grads = Tensor::run_backward(&[loss], &[&perturbation], false, false);
    assert_eq!(grads[0].size(), [2, 3]);
    // Without the collection, perturb is the identity.
    let (rest, _) = variables.pop("perturbations").unwrap();
    assert_eq!(model.apply(&rest, &x).unwrap().size(), [2, 2]);
}

// spec L10355–10407: construction order, not call order, decides auto-names.
#[module]
pub struct CorrectModule {}

#[module]
impl CorrectModule {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, mode: &str) -> Result<Tensor> {
        let encoder = nn::Dense::new(8);
        let decoder = nn::Dense::new(4);
        match mode {
            "encode" => encoder.call(cx, x),
            _ => decoder.call(cx, x),
        }
    }
}

#[test]
fn construction_order_decides_names() {
    let x = Tensor::ones([2, 3], cpu());
    let model = CorrectModule::new();
    let v = model.init(PRNGKey::new(0), &x, "decode").unwrap();
    assert_eq!(
        tree_shapes(&v),
        expected(&[("params/Dense_1/bias", &[4]), ("params/Dense_1/kernel", &[3, 4])])
    );
}

// A submodule instance called twice shares its params; two instances cannot share a name.
#[module]
pub struct Shared {
    pub clash: bool,
}

#[module]
impl Shared {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let dense = nn::Dense::new(3);
        let y = dense.call(cx, x)?;
        let y = dense.call(cx, &y)?;
        if self.clash {
            let name = String::from("Dense_0");
            return nn::Dense::new(3).name(name).call(cx, &y);
        }
        Ok(y)
    }
}

#[test]
fn shared_instances_share_params_and_names_cannot_clash() {
    let x = Tensor::ones([2, 3], cpu());
    let v = Shared::new(false).init(PRNGKey::new(0), &x).unwrap();
    assert_eq!(
        tree_shapes(&v),
        expected(&[("params/Dense_0/bias", &[3]), ("params/Dense_0/kernel", &[3, 3])])
    );
    match Shared::new(true).init(PRNGKey::new(0), &x) {
        Err(Error::NameInUse { kind, name, module }) => {
            assert_eq!(
                (kind.to_string().as_str(), name.as_str(), module.as_str()),
                ("submodule", "Dense_0", "Shared")
            );
        }
        other => panic!("expected NameInUse, got {other:?}"),
    }
}

#[test]
fn mutable_accepts_every_flax_spelling() {
    let model = BiasAdderWithRunningMean::new();
    let x = Tensor::ones([10, 5], cpu());
    let variables = model.init(PRNGKey::new(0), &x).unwrap();
    let run = |m: CollectionFilter| {
        let (_, s) = model.apply_with(&variables, ApplyOptions::new().mutable(m), &x).unwrap();
        let mut keys: Vec<String> = s.keys().map(str::to_owned).collect();
        keys.sort();
        keys
    };
    assert_eq!(run(true.into()), ["batch_stats", "params"]);
    assert_eq!(run("batch_stats".into()), ["batch_stats"]);
    assert_eq!(run(CollectionFilter::deny("params")), ["batch_stats"]);
    assert!(model.apply_with(&variables, ApplyOptions::new().mutable(false), &x).is_err());
}
