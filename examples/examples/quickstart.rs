//! The spec's quickstart (L153-868): a CNN trained on MNIST-format images with SGD and
//! momentum, clu-style metrics in an extended `TrainState`, a state file per epoch that
//! `--resume` continues from, and the loss and accuracy curves as a PNG.
//!
//! `cargo run --release -p flax-examples --example quickstart -- --help`
//!
//! Data parallel on several processes: `--nproc 2` starts two local workers (or launch it with
//! `torchrun --nproc-per-node 2 --no-python target/release/examples/quickstart`). Every rank
//! reads the same global batches of `--batch-size` examples and trains on its slice; the
//! quickstart's `train_step` gains one line, `let grads = group.pmean(&grads)?`; the metrics
//! are summed over the ranks before they are computed, the test set is split over the ranks
//! and its metrics gathered alike; rank 0 alone prints, plots and writes the checkpoints,
//! which every rank restores with `--resume` (also after a change of `--nproc`).
//!
//! Differences from the spec, each for a reason: the data is Fashion-MNIST from Debian's
//! `dataset-fashion-mnist` by default (MNIST or any MNIST-format directory with `--data`),
//! read without TensorFlow; the training order is a new `jax.random.permutation` each epoch
//! (resumable) instead of a 1024-example shuffle buffer over repeated data; and the test set
//! is evaluated whole, its last batch padded and masked (spec L2293-2480), instead of
//! dropping its last 16 examples.

use clap::Parser;
use flax::data::{Batches, ImageClassification, Remainder};
use flax::distributed::ProcessGroup;
use flax::optax::{self, Sgd};
use flax::prelude::*;
use flax::tch;
use flax::training::checkpoints::{
    latest_checkpoint, restore_checkpoint, save_checkpoint, RestoreCheckpointOptions, SaveCheckpointOptions,
};
use flax::training::metrics::{Accuracy, Average, Collection, Loss};
use flax::training::TrainState;
use flax::tree::{self, Tree};
use flax_examples::{
    computed_value, device, exit_on_error, mnist_datasets, plot_history, progress_bar, spawn_workers,
    work_dir, History,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// A simple CNN model.
#[allow(clippy::upper_case_acronyms)]
#[module]
pub struct CNN;

#[module]
impl CNN {
    #[compact]
    #[shape(x: [B, 28, 28, 1] -> [B, 10])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Conv::new(32, vec![3, 3]).call(cx, x)?.relu();
        let x = nn::avg_pool_with(&x, [2, 2], nn::PoolOptions::new().strides([2, 2]))?;
        let x = nn::Conv::new(64, vec![3, 3]).call(cx, &x)?.relu();
        let x = nn::avg_pool_with(&x, [2, 2], nn::PoolOptions::new().strides([2, 2]))?;
        let x = x.flatten(1, -1); // flatten
        let x = nn::Dense::new(256).call(cx, &x)?.relu();
        nn::Dense::new(10).call(cx, &x)
    }
}

/// clu: `class Metrics(metrics.Collection): accuracy: metrics.Accuracy;
/// loss: metrics.Average.from_output('loss')`.
#[derive(Tree, Collection)]
struct Metrics {
    accuracy: Accuracy,
    loss: Average<Loss>,
}

/// The fields the spec's `TrainState` subclass adds: `metrics: Metrics`.
#[derive(Tree)]
struct Extra {
    metrics: Metrics,
}

type State = TrainState<CNN, FrozenDict, Sgd, Extra>;

/// The number of epochs of a full run.
const DEFAULT_EPOCHS: i64 = 10;

#[derive(Parser)]
#[command(about = "The Flax quickstart: train a CNN on (Fashion-)MNIST and plot its metrics")]
struct Args {
    /// A directory of MNIST-format IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]).
    #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
    data: PathBuf,
    /// Where the per-epoch state, the metrics history and the plot go
    /// [default: <temp dir>/flax-quickstart].
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Continue from the state saved in the work directory after the last finished epoch.
    #[arg(long)]
    resume: bool,
    /// Epochs to train [default: 10, or 1 with --quick].
    #[arg(long)]
    num_epochs: Option<i64>,
    #[arg(long, default_value_t = 32)]
    batch_size: i64,
    #[arg(long, default_value_t = 0.01)]
    learning_rate: f64,
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Seed of the parameter initialisation and of the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run on CUDA when available.
    #[arg(long)]
    cuda: bool,
    /// A fast run for the test suite: 2,048 training and 512 test examples, one epoch by default.
    #[arg(long)]
    quick: bool,
    /// Train data parallel on this many local processes (each `--batch-size / nproc` examples
    /// of every batch).
    #[arg(long)]
    nproc: Option<i64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.nproc {
        Some(nproc) => exit_on_error(spawn_workers(nproc)),
        None => exit_on_error(run(args)),
    }
}

fn run(args: Args) -> Result<()> {
    // torchrun's group, or this process alone.
    let group = ProcessGroup::initialize()?;
    let primary = group.rank() == 0;
    if args.batch_size % group.world_size() != 0 {
        return Err(flax::Error::Value(format!(
            "--batch-size {} is not a multiple of the {} processes",
            args.batch_size,
            group.world_size()
        )));
    }
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
    let workdir = work_dir(args.workdir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(if args.quick { "flax-quickstart-quick" } else { "flax-quickstart" })
    }))?;
    let (ckpt_dir, history_path) = (workdir.join("checkpoints"), workdir.join("metrics_history.csv"));

    let cnn = CNN::new();
    let template = Tensor::ones([1, 28, 28, 1], (Kind::Float, device));
    if primary {
        println!("{}", cnn.tabulate(PRNGKey::new(args.seed), &template)?);
    }
    // Every rank starts from rank 0's parameters.
    let mut state = group.replicate(&create_train_state(&cnn, PRNGKey::new(args.seed), &template, &args)?)?;
    let mut history = History::default();
    if args.resume && latest_checkpoint(&ckpt_dir, "checkpoint_")?.is_some() {
        state = restore_checkpoint(&ckpt_dir, state, &RestoreCheckpointOptions::default())?;
        {
            history = History::load(&history_path)?;
            history.truncate((state.step / steps_per_epoch) as usize);
            if primary {
                println!("resumed at step {} (epoch {})", state.step, history.epochs());
            }
        }
    }

    let start = Instant::now();
    for epoch in history.epochs() as i64 + 1..=num_epochs {
        state = train_epoch(&group, state, &train_ds, epoch, &args)?;
        let train = compute(&group.psum(&state.extra.metrics)?)?;
        state = TrainState { extra: Extra { metrics: Metrics::empty() }, ..state };
        let test = evaluate(&group, &state, &test_ds, args.batch_size)?;
        history.push(train, test);
        if primary {
            println!("train epoch: {epoch}, loss: {}, accuracy: {}", train.0, train.1 * 100.0);
            println!("test epoch: {epoch}, loss: {}, accuracy: {}", test.0, test.1 * 100.0);
            // A run that does not resume replaces the checkpoints of an earlier one (overwrite).
            let options = SaveCheckpointOptions::default().keep(3).overwrite(!args.resume);
            save_checkpoint(&ckpt_dir, &state, state.step, &options)?;
            history.save(&history_path)?;
        }
        // The other ranks wait for the checkpoint, so that a later --resume finds it whole.
        group.barrier()?;
    }
    if !primary {
        return Ok(());
    }
    println!("trained in {:.1} s; checkpoints in {}", start.elapsed().as_secs_f64(), ckpt_dir.display());
    let plot = workdir.join("metrics.png");
    plot_history(&plot, &history)
        .map_err(|e| flax::Error::Value(format!("could not plot {}: {e}", plot.display())))?;
    println!("curves in {}", plot.display());
    Ok(())
}

/// `create_train_state`: the parameters from a template image, SGD with momentum, empty
/// metrics.
fn create_train_state(cnn: &CNN, rng: PRNGKey, template: &Tensor, args: &Args) -> Result<State> {
    let variables = cnn.init(rng, template)?;
    let params = variables.get_dict("params").cloned().unwrap_or_default();
    let tx = optax::sgd(args.learning_rate).momentum(args.momentum);
    TrainState::create_with(cnn.clone(), params, tx, Extra { metrics: Metrics::empty() })
}

/// One epoch of the spec's loop: `train_step` then `compute_metrics` on every batch (this
/// rank's slice of it).
fn train_epoch(
    group: &ProcessGroup,
    mut state: State,
    train_ds: &ImageClassification,
    epoch: i64,
    args: &Args,
) -> Result<State> {
    let key = PRNGKey::new(args.seed).fold_in(epoch as u32);
    let batches = Batches::new(train_ds, args.batch_size)?.shuffle(key)?;
    let bar = progress_bar(batches.len() as u64, format!("epoch {epoch}"));
    if group.rank() != 0 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    for batch in batches {
        let batch = group.shard(&batch?.data)?;
        state = train_step(group, state, &batch)?;
        state = compute_metrics(state, &batch, None)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(state)
}

/// `train_step`: the gradient of the mean cross-entropy, averaged over the ranks, applied by
/// the optimizer.
fn train_step(group: &ProcessGroup, state: State, batch: &ImageClassification) -> Result<State> {
    let grads = flax::grad(&state.params, |params| {
        let logits = state.apply_fn.apply(&frozen_dict! { "params": params }, &batch.image)?;
        Ok(optax::losses::softmax_cross_entropy_with_integer_labels(&logits, &batch.label)?.mean(Kind::Float))
    })?;
    let grads = group.pmean(&grads)?; // the one line data parallelism adds (`lax.pmean`)
    state.apply_gradients(grads)
}

/// `compute_metrics`: the batch's loss and accuracy merged into the state's metrics. With a
/// mask (a padded batch), the loss is per example so that padding is left out.
fn compute_metrics(state: State, batch: &ImageClassification, mask: Option<&Tensor>) -> Result<State> {
    let logits =
        tch::no_grad(|| state.apply_fn.apply(&frozen_dict! { "params": &state.params }, &batch.image))?;
    let losses = optax::losses::softmax_cross_entropy_with_integer_labels(&logits, &batch.label)?;
    let loss = if mask.is_some() { losses } else { losses.mean(Kind::Float) };
    let mut outputs = vec![("logits", &logits), ("labels", &batch.label), ("loss", &loss)];
    outputs.extend(mask.map(|mask| ("mask", mask)));
    let metric_updates = Metrics::single_from_model_output(&outputs)?;
    let metrics = state.extra.metrics.merge(&metric_updates)?;
    Ok(TrainState { extra: Extra { metrics }, ..state })
}

/// The metrics on the whole test set with the current parameters, as `(loss, accuracy)`:
/// each rank evaluates its slice of every (padded, masked) batch, and the metrics are summed
/// over the ranks.
fn evaluate(
    group: &ProcessGroup,
    state: &State,
    test_ds: &ImageClassification,
    batch_size: i64,
) -> Result<(f64, f64)> {
    let test_state = tree::shallow_clone(state)?;
    let mut test_state = TrainState { extra: Extra { metrics: Metrics::empty() }, ..test_state };
    for batch in Batches::new(test_ds, batch_size)?.remainder(Remainder::Pad) {
        let batch = group.shard_batch(&batch?)?;
        test_state = compute_metrics(test_state, &batch.data, batch.mask.as_ref())?;
    }
    compute(&group.psum(&test_state.extra.metrics)?)
}

/// `metrics.compute()` as `(loss, accuracy)`.
fn compute(metrics: &Metrics) -> Result<(f64, f64)> {
    let computed = metrics.compute()?;
    Ok((computed_value(&computed, "loss")?, computed_value(&computed, "accuracy")?))
}
