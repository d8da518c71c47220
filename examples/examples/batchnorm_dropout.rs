//! The spec's training techniques (L2486-3590) in one classifier: BatchNorm trained with
//! `mutable=["batch_stats"]` and evaluated with the running averages, Dropout with a
//! `dropout` key folded with the step, a warmup + cosine learning-rate schedule, and early
//! stopping on the test loss.
//!
//! `cargo run --release -p flax-examples --example batchnorm_dropout -- --help`

use clap::Parser;
use flax::data::{Batches, ImageClassification, Remainder};
use flax::optax::{self, Adam, Schedule};
use flax::prelude::*;
use flax::training::metrics::{Accuracy, Average, Collection, Loss};
use flax::training::{EarlyStopping, TrainState};
use flax::tree::Tree;
use flax_examples::{computed_value, device, exit_on_error, mnist_datasets, progress_bar};
use std::path::PathBuf;
use std::process::ExitCode;

/// An MLP classifier with BatchNorm and Dropout after its hidden layer.
#[module]
pub struct Classifier {
    /// Width of the hidden layer.
    pub hidden: i64,
    /// Dropout rate of the hidden layer.
    pub dropout_rate: f64,
}

#[module]
impl Classifier {
    #[compact]
    #[shape(x: [B, 28, 28, 1] -> [B, 10])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = x.flatten(1, -1);
        let x = nn::Dense::new(self.hidden).call(cx, &x)?;
        let x = nn::BatchNorm::new().call(cx, &x, Some(!train))?.relu();
        let x = nn::Dropout::new(self.dropout_rate).call(cx, &x, Some(!train))?;
        nn::Dense::new(10).call(cx, &x)
    }
}

#[derive(Tree, Collection)]
struct Metrics {
    accuracy: Accuracy,
    loss: Average<Loss>,
}

/// The guides' `TrainState` subclass: `batch_stats: Any` and `key: jax.random.KeyArray`.
#[derive(Tree)]
struct Extra {
    batch_stats: FrozenDict,
    /// The dropout key: a leaf saved with the state (as Flax's `uint32[2]` key data), not a
    /// tensor, so the optimizer leaves it alone.
    key: PRNGKey,
}

type State = TrainState<Classifier, FrozenDict, Adam<Schedule>, Extra>;

/// The number of epochs of a full run.
const DEFAULT_EPOCHS: i64 = 8;

#[derive(Parser)]
#[command(about = "BatchNorm, Dropout, a warmup-cosine schedule and early stopping on (Fashion-)MNIST")]
struct Args {
    /// A directory of MNIST-format IDX files.
    #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
    data: PathBuf,
    /// Epochs to train [default: 8, or 1 with --quick].
    #[arg(long)]
    num_epochs: Option<i64>,
    #[arg(long, default_value_t = 1)]
    warmup_epochs: i64,
    #[arg(long, default_value_t = 128)]
    batch_size: i64,
    /// The peak learning rate of Adam, reached after the warmup.
    #[arg(long, default_value_t = 3e-3)]
    learning_rate: f64,
    #[arg(long, default_value_t = 512)]
    hidden: i64,
    #[arg(long, default_value_t = 0.3)]
    dropout_rate: f64,
    /// Epochs without a test-loss improvement before stopping.
    #[arg(long, default_value_t = 2)]
    patience: i64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run on CUDA when available.
    #[arg(long)]
    cuda: bool,
    /// A fast run for the test suite: 2,048 training and 512 test examples, one epoch by default.
    #[arg(long)]
    quick: bool,
}

fn main() -> ExitCode {
    exit_on_error(run(Args::parse()))
}

fn run(args: Args) -> Result<()> {
    let device = device(args.cuda);
    let (train_ds, test_ds) = mnist_datasets(&args.data, args.quick, device)?;
    let num_epochs = args.num_epochs.unwrap_or(if args.quick { 1 } else { DEFAULT_EPOCHS });
    let steps_per_epoch = train_ds.len() / args.batch_size;
    if steps_per_epoch == 0 {
        return Err(flax::Error::Value(format!(
            "--batch-size {} is larger than the data set",
            args.batch_size
        )));
    }
    let schedule = create_learning_rate_fn(&args, num_epochs, steps_per_epoch)?;
    let mut state = create_train_state(&args, schedule.clone(), device)?;
    let mut early_stop = EarlyStopping::new(1e-3, args.patience);
    for epoch in 1..=num_epochs {
        let mut metrics = Metrics::empty();
        let batches = Batches::new(&train_ds, args.batch_size)?
            .shuffle(PRNGKey::new(args.seed).fold_in(epoch as u32))?;
        let bar = progress_bar(batches.len() as u64, format!("epoch {epoch}"));
        for batch in batches {
            let update;
            (state, update) = train_step(state, &batch?.data)?;
            metrics = metrics.merge(&update)?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        let (train_loss, train_accuracy) = loss_and_accuracy(&metrics)?;
        let (test_loss, test_accuracy) = evaluate(&state, &test_ds, args.batch_size)?;
        println!(
            "epoch {epoch}: learning rate {:.6}, train loss {train_loss:.4}, accuracy {:.2}; test loss {test_loss:.4}, accuracy {:.2}",
            schedule.value(state.step),
            train_accuracy * 100.0,
            test_accuracy * 100.0
        );
        (_, early_stop) = early_stop.update(test_loss);
        if early_stop.should_stop {
            println!("Met early stopping criteria, breaking at epoch {epoch}");
            break;
        }
    }
    Ok(())
}

/// The spec's `create_learning_rate_fn`: a linear warmup to the peak, then a cosine decay
/// over the remaining epochs (at least one).
fn create_learning_rate_fn(args: &Args, num_epochs: i64, steps_per_epoch: i64) -> Result<Schedule> {
    let warmup_epochs = args.warmup_epochs.min(num_epochs);
    let warmup_fn = optax::linear_schedule(0.0, args.learning_rate, warmup_epochs * steps_per_epoch, 0);
    let cosine_epochs = (num_epochs - warmup_epochs).max(1);
    let cosine_fn =
        optax::cosine_decay_schedule(args.learning_rate, cosine_epochs * steps_per_epoch, 0.0, 1.0)?;
    optax::join_schedules(vec![warmup_fn, cosine_fn], vec![warmup_epochs * steps_per_epoch])
}

/// Params and batch_stats from `init` (with `train = false`, as the guides do), Adam on the
/// schedule, and the dropout key.
fn create_train_state(args: &Args, schedule: Schedule, device: Device) -> Result<State> {
    let model = Classifier::new(args.hidden, args.dropout_rate);
    let (params_key, dropout_key) = PRNGKey::new(args.seed).split2();
    let template = Tensor::ones([1, 28, 28, 1], (Kind::Float, device));
    let variables = model.init(params_key, &template, false)?;
    let collection = |name: &str| variables.get_dict(name).cloned().unwrap_or_default();
    let extra = Extra { batch_stats: collection("batch_stats"), key: dropout_key };
    TrainState::create_with(model, collection("params"), optax::adam(schedule), extra)
}

/// The guides' `train_step` with BatchNorm and Dropout: the updated batch statistics come
/// out of the loss function as auxiliary output, and the dropout key is folded with the
/// step. Returns the batch's metrics too.
fn train_step(state: State, batch: &ImageClassification) -> Result<(State, Metrics)> {
    let dropout_train_key = state.extra.key.fold_in(state.step as u32);
    let options =
        || ApplyOptions::new().mutable(["batch_stats"]).rngs(Rngs::new().with("dropout", dropout_train_key));
    let (loss, (logits, updates), grads) = flax::value_and_grad_with_aux(&state.params, |params| {
        let vars = frozen_dict! { "params": params, "batch_stats": &state.extra.batch_stats };
        let (logits, updates) = state.apply_fn.apply_with(&vars, options(), &batch.image, true)?;
        let loss = optax::losses::softmax_cross_entropy_with_integer_labels(&logits, &batch.label)?
            .mean(Kind::Float);
        Ok((loss, (logits, updates)))
    })?;
    let metrics =
        Metrics::single_from_model_output(&[("logits", &logits), ("labels", &batch.label), ("loss", &loss)])?;
    let state = state.apply_gradients(grads)?;
    let batch_stats = updates.get_dict("batch_stats").cloned().unwrap_or_default();
    Ok((TrainState { extra: Extra { batch_stats, ..state.extra }, ..state }, metrics))
}

/// The guides' `eval_step` over the whole test set: running averages, no dropout, the last
/// batch padded and masked.
fn evaluate(state: &State, test_ds: &ImageClassification, batch_size: i64) -> Result<(f64, f64)> {
    let vars = frozen_dict! { "params": &state.params, "batch_stats": &state.extra.batch_stats };
    let mut metrics = Metrics::empty();
    for batch in Batches::new(test_ds, batch_size)?.remainder(Remainder::Pad) {
        let batch = batch?;
        let mask =
            batch.mask.as_ref().ok_or_else(|| flax::Error::Value("padded batches carry a mask".into()))?;
        let logits = flax::tch::no_grad(|| state.apply_fn.apply(&vars, &batch.data.image, false))?;
        let loss = optax::losses::softmax_cross_entropy_with_integer_labels(&logits, &batch.data.label)?;
        let outputs = [("logits", &logits), ("labels", &batch.data.label), ("loss", &loss), ("mask", mask)];
        metrics = metrics.merge(&Metrics::single_from_model_output(&outputs)?)?;
    }
    loss_and_accuracy(&metrics)
}

/// `metrics.compute()` as `(loss, accuracy)`.
fn loss_and_accuracy(metrics: &Metrics) -> Result<(f64, f64)> {
    let computed = metrics.compute()?;
    Ok((computed_value(&computed, "loss")?, computed_value(&computed, "accuracy")?))
}
