//! `flax::value_and_grad` on a Flax model: a two-layer MLP's loss and gradients against
//! `jax.value_and_grad` (the `mlp` section of `tests/data/optax.msgpack`, written by
//! `scripts/golden/optax_vectors.py`), and a model whose `batch_stats` collection is mutated
//! during the loss and returned as the auxiliary value.

use flax::optax::{self, GradientTransformation};
use flax::prelude::*;
use flax::serialization::msgpack_restore;
use flax::{tree, Value};

const TOLERANCE: f64 = 1e-6;

#[module]
pub struct Mlp {}

#[module]
impl Mlp {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = nn::Dense::new(5).call(cx, x)?.relu();
        nn::Dense::new(3).call(cx, &h)
    }
}

fn mlp_vectors() -> FrozenDict {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/optax.msgpack")).unwrap();
    let Value::Dict(all) = msgpack_restore(&bytes).unwrap() else { panic!("optax.msgpack is not a dict") };
    all.get_dict("mlp").expect("no mlp section").clone()
}

fn assert_close(name: &str, actual: &Tensor, expected: &Tensor) {
    assert_eq!(actual.size(), expected.size(), "{name}: shape");
    let difference = (actual.to_kind(Kind::Double) - expected.to_kind(Kind::Double)).abs().max();
    assert!(difference.double_value(&[]) <= TOLERANCE, "{name}: differs from JAX's by {difference:?}");
}

fn variables(params: &FrozenDict) -> Variables {
    [("params".to_owned(), Value::Dict(params.clone()))].into_iter().collect()
}

#[test]
fn mlp_gradients_match_jax() {
    let v = mlp_vectors();
    let params = v.get_dict("params").unwrap().clone();
    let (x, labels) = (v.tensor(&["x"]).unwrap(), v.tensor(&["labels"]).unwrap());
    let model = Mlp::new();
    let (loss, logits, grads) = flax::value_and_grad_with_aux(&params, |p| {
        let logits = model.apply(&variables(p), x)?;
        let loss = optax::losses::softmax_cross_entropy_with_integer_labels(&logits, labels)?;
        Ok((loss.mean(Kind::Float), logits))
    })
    .unwrap();
    assert_close("loss", &loss, v.tensor(&["loss"]).unwrap());
    assert_close("logits", &logits, v.tensor(&["logits"]).unwrap());
    let expected = v.get_dict("grads").unwrap();
    let leaves = tree::leaves_with_path(&grads);
    assert_eq!(leaves.len(), 4);
    for (path, grad) in leaves {
        assert_close(&path.join("/"), grad, expected.tensor(&path).unwrap());
    }
}

/// The spec's running-mean module (L1680–1783): `batch_stats` is written during the call.
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
        let options = (x.kind(), x.device());
        let ra_mean = cx.variable("batch_stats", "mean", |_| Ok(Tensor::zeros(&shape[..], options)))?;
        let bias = cx.param_fn("bias", |_| Ok(Tensor::zeros(&shape[..], options)))?;
        if is_initialized {
            let mean = ra_mean.value(cx)?;
            let batch_mean = x.mean_dim(0, true, Kind::Float);
            ra_mean.set_value(cx, mean * self.decay + batch_mean * (1.0 - self.decay))?;
        }
        Ok(x - ra_mean.value(cx)? + bias)
    }
}

#[test]
fn mutable_collections_come_back_as_aux() {
    let model = BiasAdderWithRunningMean::new();
    let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 5.0]).reshape([2, 2]);
    let variables = model.init(PRNGKey::new(0), &x).unwrap();
    let (params, batch_stats) =
        (variables.get_dict("params").unwrap(), variables.get("batch_stats").unwrap());
    let (loss, updated, grads) = flax::value_and_grad_with_aux(params, |p| {
        let vars =
            [("params".to_owned(), Value::Dict(p.clone())), ("batch_stats".to_owned(), batch_stats.clone())];
        let (y, updated) = model.apply_with(
            &vars.into_iter().collect(),
            ApplyOptions::new().mutable(["batch_stats"]),
            &x,
        )?;
        Ok((y.square().sum(Kind::Float), updated))
    })
    .unwrap();
    // The running mean after one batch: 0.01 * the batch mean [2, 3.5]; y = x - mean + 0.
    let mean = updated.tensor(&["batch_stats", "mean"]).unwrap();
    assert!(!mean.requires_grad());
    assert_close("running mean", mean, &Tensor::from_slice(&[0.02f32, 0.035]).reshape([1, 2]));
    let y = &x - mean;
    assert_close("loss", &loss, &y.square().sum(Kind::Float));
    // d/d bias sum(y^2) = 2 * sum over the batch of y.
    assert_close(
        "bias grad",
        grads.tensor(&["bias"]).unwrap(),
        &(y.sum_dim_intlist(0, false, Kind::Float) * 2.0),
    );
}

#[test]
fn gradients_train_the_mlp() {
    let v = mlp_vectors();
    let (x, labels) = (v.tensor(&["x"]).unwrap(), v.tensor(&["labels"]).unwrap());
    let model = Mlp::new();
    let loss_fn = |p: &FrozenDict| -> Result<Tensor> {
        let logits = model.apply(&variables(p), x)?;
        Ok(optax::losses::softmax_cross_entropy_with_integer_labels(&logits, labels)?.mean(Kind::Float))
    };
    let mut params = tree::tree_map(v.get_dict("params").unwrap(), |t| Ok(t.copy())).unwrap();
    let tx = optax::sgd(0.5).momentum(0.9);
    let mut state = tx.init(&params).unwrap();
    let initial = loss_fn(&params).unwrap().double_value(&[]);
    for _ in 0..50 {
        let grads = flax::grad(&params, loss_fn).unwrap();
        let (updates, new_state) = tx.update(grads, state, Some(&params)).unwrap();
        params = optax::apply_updates(params, &updates).unwrap();
        state = new_state;
    }
    let trained = loss_fn(&params).unwrap().double_value(&[]);
    assert!(trained < initial / 10.0, "loss went from {initial} to {trained}");
}
