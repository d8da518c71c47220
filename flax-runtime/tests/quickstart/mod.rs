//! The spec's quickstart (L232-249, L380-500) as the tests use it: the CNN, the clu metrics
//! in an extended `TrainState`, `train_step` and `compute_metrics`. The example
//! `examples/examples/quickstart.rs` spells the same out for readers; the tests share this one.

use flax::nn;
use flax::optax::losses::softmax_cross_entropy_with_integer_labels;
use flax::optax::Sgd;
use flax::prelude::*;
use flax::training::metrics::{Accuracy, Average, Collection, Loss};
use flax::training::TrainState;
use flax::tree::Tree;

/// A simple CNN model.
#[allow(clippy::upper_case_acronyms)]
#[module]
pub struct CNN;

#[module]
impl CNN {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Conv::new(32, vec![3, 3]).call(cx, x)?.relu();
        let x = nn::avg_pool_with(&x, [2, 2], nn::PoolOptions::new().strides([2, 2]))?;
        let x = nn::Conv::new(64, vec![3, 3]).call(cx, &x)?.relu();
        let x = nn::avg_pool_with(&x, [2, 2], nn::PoolOptions::new().strides([2, 2]))?;
        let x = x.flatten(1, -1);
        let x = nn::Dense::new(256).call(cx, &x)?.relu();
        nn::Dense::new(10).call(cx, &x)
    }
}

/// clu's `Metrics` of the quickstart.
#[derive(Tree, Collection)]
pub struct Metrics {
    pub accuracy: Accuracy,
    pub loss: Average<Loss>,
}

/// The quickstart's `TrainState` subclass: `metrics: Metrics`.
#[derive(Tree)]
pub struct Extra {
    pub metrics: Metrics,
}

/// The quickstart's training state.
pub type State = TrainState<CNN, FrozenDict, Sgd, Extra>;

/// `{"params": params}`, what `apply` takes.
pub fn variables(params: &FrozenDict) -> Variables {
    flax::frozen_dict! { "params": params }
}

/// The mean cross-entropy of `cnn` with `params` on a batch, and the logits.
pub fn loss_and_logits(
    cnn: &CNN,
    params: &FrozenDict,
    image: &Tensor,
    label: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let logits = cnn.apply(&variables(params), image)?;
    let loss = softmax_cross_entropy_with_integer_labels(&logits, label)?.mean(Kind::Float);
    Ok((loss, logits))
}

/// The spec's `train_step`.
pub fn train_step(state: State, image: &Tensor, label: &Tensor) -> Result<State> {
    let grads =
        flax::grad(&state.params, |params| Ok(loss_and_logits(&state.apply_fn, params, image, label)?.0))?;
    state.apply_gradients(grads)
}

/// The spec's `compute_metrics`.
pub fn compute_metrics(state: State, image: &Tensor, label: &Tensor) -> Result<State> {
    let (loss, logits) = tch::no_grad(|| loss_and_logits(&state.apply_fn, &state.params, image, label))?;
    let updates =
        Metrics::single_from_model_output(&[("logits", &logits), ("labels", label), ("loss", &loss)])?;
    let metrics = state.extra.metrics.merge(&updates)?;
    Ok(TrainState { extra: Extra { metrics }, ..state })
}
