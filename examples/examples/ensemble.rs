//! The spec's "Ensembling on multiple devices" (L5106-5398) with `nn::vmap` instead of
//! `jax.pmap`: several CNNs (the quickstart's) trained at once on Fashion-MNIST, each from
//! its own initialisation key, all on the same shuffled batches, with SGD and momentum; the
//! ensemble predicts with the mean of its members' probabilities (the guide's
//! `jax.lax.pmean(jax.nn.softmax(logits), axis_name='ensemble')`).
//!
//! `cargo run --release -p flax-examples --example ensemble -- --help`
//!
//! Where the guide maps over devices, one CNN per device, `nn::vmap` maps over a leading
//! "member" axis of the parameters (kernel `(members, 3, 3, 1, 32)`) on one device: every
//! layer runs once for all members, as one batched libtorch kernel. So:
//! - `create_train_state` is not mapped: `Ensemble::init` gives the stacked parameters, each
//!   member's from `split(key, num_members)[i]` (`split_rngs={'params': True}`, what the
//!   guide gets by pmapping `init` over `jax.random.split(init_rng, jax.device_count())`);
//! - the images are not replicated: the vmapped body captures them (Flax's `in_axes=None`);
//! - `apply_model` differentiates the sum of the members' mean losses, whose gradient with
//!   respect to member `i`'s parameters is the gradient of member `i`'s own loss; SGD with
//!   momentum is elementwise, so `update_model` needs no mapping either;
//! - `pmean` over devices is a mean over the member axis.
//!
//! Differences from the guide, each for a reason: the data is Fashion-MNIST from Debian's
//! `dataset-fashion-mnist` (`--data` for any MNIST-format directory); the log shows every
//! member's loss and accuracy besides the ensemble's (the guide logs device 0's loss and the
//! ensemble's accuracy), and the ensemble's loss is the cross-entropy of its mean
//! probabilities; the test set is evaluated in batches (the guide's whole-set `apply_model`
//! would hold every member's activations for 10,000 images at once); a state file per epoch
//! lets `--resume` continue a run, as in the quickstart example.
//!
//! `--nproc N` is the guide's own layout, members on separate workers (the guide's devices):
//! N local processes (or `torchrun --nproc-per-node N --no-python …`), each training
//! `num_members / N` of the members with the same vmapped code. Every rank initialises the
//! whole ensemble from the one key and keeps its own members' rows, so the members are those
//! of a one-process run; the ensemble's probabilities are the members' mean through a sum
//! all-reduce at every batch (the guide's `jax.lax.pmean(jax.nn.softmax(logits))`), the
//! members' metrics are gathered for the log, and rank 0 writes the whole ensemble's state,
//! which `--resume` restores under any `--nproc`.

use clap::Parser;
use flax::data::{Batches, ImageClassification, Remainder};
use flax::distributed::ProcessGroup;
use flax::optax::{self, Sgd};
use flax::prelude::*;
use flax::tch;
use flax::training::checkpoints::{
    latest_checkpoint, restore_checkpoint, save_checkpoint, RestoreCheckpointOptions, SaveCheckpointOptions,
};
use flax::training::TrainState;
use flax_examples::{
    device, exit_on_error, mnist_datasets, plot_history, progress_bar, spawn_workers, work_dir, History,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// A simple CNN model (the quickstart's).
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

/// `num_members` CNNs applied to the same images: logits `(members, batch, 10)`. The
/// parameters are stacked on axis 0 (`variable_axes={'params': 0}`), each member initialised
/// from its own key (`split_rngs={'params': True}`); the images are shared (`in_axes=None`:
/// the body captures them).
#[module]
pub struct Ensemble {
    pub num_members: i64,
}

#[module]
impl Ensemble {
    #[compact]
    pub fn call(&self, cx: &mut Scope, images: &Tensor) -> Result<Tensor> {
        nn::vmap(CNN::new())
            .variable_axes([("params", 0)])
            .split_rngs([("params", true)])
            .axis_size(self.num_members)
            .call(cx, &(), |cnn, cx, ()| cnn.call(cx, images))
    }
}

type State = TrainState<Ensemble, FrozenDict, Sgd>;

/// The number of epochs of a full run.
const DEFAULT_EPOCHS: i64 = 5;
/// Test images per forward pass (every member's activations for them are alive at once).
const EVAL_BATCH: i64 = 1000;

#[derive(Parser)]
#[command(about = "The Flax ensembling guide with nn.vmap: train several CNNs at once on (Fashion-)MNIST")]
struct Args {
    /// A directory of MNIST-format IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]).
    #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
    data: PathBuf,
    /// Where the per-epoch state, the ensemble's metrics history and its plot go
    /// [default: <temp dir>/flax-ensemble].
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Continue from the state saved in the work directory after the last finished epoch.
    #[arg(long)]
    resume: bool,
    /// The number of CNNs in the ensemble (the guide's `jax.device_count()`).
    #[arg(long, default_value_t = 4)]
    num_members: i64,
    /// Epochs to train [default: 5, or 1 with --quick].
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
    /// A fast run for the test suite: 512 training and 256 test examples, one epoch by default.
    #[arg(long)]
    quick: bool,
    /// Train the members on this many local processes, `--num-members / nproc` each (the
    /// guide's one member per device with `--nproc` equal to `--num-members`).
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
    if args.num_members < 1 || args.num_members % group.world_size() != 0 {
        return Err(flax::Error::Value(format!(
            "--num-members must be a positive multiple of the {} processes, got {}",
            group.world_size(),
            args.num_members
        )));
    }
    let local_members = args.num_members / group.world_size();
    let device = device(args.cuda);
    let (mut train_ds, mut test_ds) = mnist_datasets(&args.data, args.quick, device)?;
    if args.quick {
        (train_ds, test_ds) = (train_ds.take(512)?, test_ds.take(256)?);
    }
    let num_epochs = args.num_epochs.unwrap_or(if args.quick { 1 } else { DEFAULT_EPOCHS });
    let steps_per_epoch = train_ds.len() / args.batch_size.max(1);
    if args.batch_size < 1 || steps_per_epoch == 0 {
        return Err(flax::Error::Value(format!(
            "--batch-size {} must be between 1 and the number of training examples ({})",
            args.batch_size,
            train_ds.len()
        )));
    }
    let workdir = work_dir(args.workdir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(if args.quick { "flax-ensemble-quick" } else { "flax-ensemble" })
    }))?;
    let (ckpt_dir, history_path) = (workdir.join("checkpoints"), workdir.join("metrics_history.csv"));

    let rng = PRNGKey::new(args.seed);
    let (init_rng, shuffle_rng) = rng.split2();
    // The whole ensemble on every rank (the same key everywhere), then this rank's members.
    let mut ensemble = create_train_state(init_rng, args.num_members, &args, device)?;
    let mut history = History::default();
    if args.resume && latest_checkpoint(&ckpt_dir, "checkpoint_")?.is_some() {
        // Strict: a state saved with another --num-members is a shape error, not a silent reshape.
        ensemble = restore_checkpoint(&ckpt_dir, ensemble, &RestoreCheckpointOptions::default())?;
        history = History::load(&history_path)?;
        history.truncate((ensemble.step / steps_per_epoch) as usize);
        if primary {
            println!("resumed at step {} (epoch {})", ensemble.step, history.epochs());
        }
    }
    let mut state = members(&ensemble, group.rank() * local_members, local_members)?;
    if primary {
        println!(
            "{} CNNs, {} parameters each, trained at once with nn.vmap{}",
            args.num_members,
            member_parameter_count(&state.params),
            match group.world_size() {
                1 => String::new(),
                n => format!(", {local_members} on each of {n} processes"),
            }
        );
    }

    let start = Instant::now();
    for epoch in history.epochs() as i64 + 1..=num_epochs {
        let input_rng = shuffle_rng.fold_in(epoch as u32);
        let (next, train) = train_epoch(&group, state, &train_ds, args.batch_size, input_rng, epoch)?;
        state = next;
        let test = evaluate(&group, &state, &test_ds)?;
        let whole = gather_members(&group, &state)?;
        if !primary {
            // The others wait for rank 0's checkpoint, so that a later --resume finds it whole.
            group.barrier()?;
            continue;
        }
        for member in 0..args.num_members as usize {
            println!(
                "epoch:{epoch:3}, member {member}: train_loss: {:.4}, train_accuracy: {:.2}, test_loss: {:.4}, test_accuracy: {:.2}",
                train.member_loss[member],
                train.member_accuracy[member] * 100.0,
                test.member_loss[member],
                test.member_accuracy[member] * 100.0
            );
        }
        println!(
            "epoch:{epoch:3}, ensemble: train_loss: {:.4}, train_accuracy: {:.2}, test_loss: {:.4}, test_accuracy: {:.2}",
            train.ensemble_loss,
            train.ensemble_accuracy * 100.0,
            test.ensemble_loss,
            test.ensemble_accuracy * 100.0
        );
        history.push(
            (train.ensemble_loss, train.ensemble_accuracy),
            (test.ensemble_loss, test.ensemble_accuracy),
        );
        // A run that does not resume replaces the checkpoints of an earlier one (overwrite).
        let options = SaveCheckpointOptions::default().keep(2).overwrite(!args.resume);
        save_checkpoint(&ckpt_dir, &whole, whole.step, &options)?;
        history.save(&history_path)?;
        group.barrier()?;
    }
    if !primary {
        return Ok(());
    }
    println!("trained in {:.1} s; checkpoints in {}", start.elapsed().as_secs_f64(), ckpt_dir.display());
    let plot = workdir.join("ensemble_metrics.png");
    plot_history(&plot, &history)
        .map_err(|e| flax::Error::Value(format!("could not plot {}: {e}", plot.display())))?;
    println!("the ensemble's curves in {}", plot.display());
    Ok(())
}

/// `create_train_state`: every member's parameters from a template image (stacked, each
/// member from its own key), SGD with momentum.
fn create_train_state(rng: PRNGKey, num_members: i64, args: &Args, device: Device) -> Result<State> {
    let ensemble = Ensemble::new(num_members);
    let params = ensemble.init(rng, &Tensor::ones([1, 28, 28, 1], (Kind::Float, device)))?;
    let params = params.get_dict("params").cloned().unwrap_or_default();
    let tx = optax::sgd(args.learning_rate).momentum(args.momentum);
    TrainState::create(ensemble, params, tx)
}

/// The state of `count` members from `first` on: their rows of every parameter and of the
/// optimizer's state (both stacked on the member axis).
fn members(ensemble: &State, first: i64, count: i64) -> Result<State> {
    let rows = |t: &Tensor| Ok(t.f_narrow(0, first, count)?);
    Ok(TrainState {
        step: ensemble.step,
        step_dtype: ensemble.step_dtype,
        apply_fn: Ensemble::new(count),
        params: flax::tree::tree_map(&ensemble.params, rows)?,
        tx: ensemble.tx.clone(),
        opt_state: flax::tree::tree_map(&ensemble.opt_state, rows)?,
        extra: (),
    })
}

/// The whole ensemble's state from every rank's members (rank order is member order): what a
/// one-process run holds, so its checkpoint restores under any `--nproc`.
fn gather_members(group: &ProcessGroup, state: &State) -> Result<State> {
    let stack = |t: &Tensor| Ok(t.f_flatten(0, 1)?);
    let params = flax::tree::tree_map(&group.all_gather(&state.params)?, stack)?;
    Ok(TrainState {
        step: state.step,
        step_dtype: state.step_dtype,
        apply_fn: Ensemble::new(state.apply_fn.num_members * group.world_size()),
        params,
        tx: state.tx.clone(),
        opt_state: flax::tree::tree_map(&group.all_gather(&state.opt_state)?, stack)?,
        extra: (),
    })
}

/// The number of parameters of one member (each stacked array's size over its member axis).
fn member_parameter_count(params: &FrozenDict) -> i64 {
    flax::tree::leaves(params).iter().map(|p| p.size().iter().skip(1).product::<i64>()).sum()
}

/// Every member's mean cross-entropy, `(members,)`, from logits `(members, batch, 10)`.
fn member_losses(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let labels = labels.f_expand([logits.size()[0], labels.size()[0]], false)?;
    Ok(optax::losses::softmax_cross_entropy_with_integer_labels(logits, &labels)?.mean_dim(
        1,
        false,
        Kind::Float,
    ))
}

/// Sums over examples of what the log shows: every member's loss and correct predictions,
/// and the ensemble's (from the mean of the members' probabilities).
struct Sums {
    /// The whole ensemble's size (this rank's members are `member_loss.size()[0]` of them).
    num_members: i64,
    member_loss: Tensor,
    member_correct: Tensor,
    ensemble_loss: f64,
    ensemble_correct: f64,
    examples: f64,
}

impl Sums {
    fn new(group: &ProcessGroup, local_members: i64, device: Device) -> Self {
        let zeros = || Tensor::zeros([local_members], (Kind::Float, device));
        Sums {
            num_members: local_members * group.world_size(),
            member_loss: zeros(),
            member_correct: zeros(),
            ensemble_loss: 0.0,
            ensemble_correct: 0.0,
            examples: 0.0,
        }
    }

    /// Adds a batch: `logits (members, batch, 10)`, `member_losses (members,)` (batch means)
    /// of this rank's members.
    fn add(
        &mut self,
        group: &ProcessGroup,
        logits: &Tensor,
        member_losses: &Tensor,
        labels: &Tensor,
    ) -> Result<()> {
        let n = labels.size()[0] as f64;
        let member_correct = logits.argmax(-1, false).eq_tensor(labels).to_kind(Kind::Float).sum_dim_intlist(
            1,
            false,
            Kind::Float,
        );
        // The guide's `pmean(softmax(logits))`: the mean probabilities of every rank's members.
        let local_sum = logits.softmax(-1, Kind::Float).sum_dim_intlist(0, false, Kind::Float);
        let probs = group.psum(&local_sum)? / self.num_members as f64;
        let ensemble_correct =
            probs.argmax(-1, false).eq_tensor(labels).to_kind(Kind::Float).sum(Kind::Float);
        let nll = probs.gather(1, &labels.unsqueeze(1), false).clamp_min(1e-12).log().sum(Kind::Float);
        self.member_loss += member_losses.detach() * n;
        self.member_correct += member_correct;
        self.ensemble_correct += ensemble_correct.f_double_value(&[])?;
        self.ensemble_loss -= nll.f_double_value(&[])?;
        self.examples += n;
        Ok(())
    }

    /// The metrics of every rank's members (gathered in rank order) and of the ensemble.
    fn finish(self, group: &ProcessGroup) -> Result<EpochMetrics> {
        let per_example = |t: &Tensor| -> Result<Vec<f64>> {
            let all = group.all_gather(t)?.f_flatten(0, 1)?;
            Ok(Vec::<f64>::try_from(all.to_kind(Kind::Double) / self.examples)?)
        };
        Ok(EpochMetrics {
            member_loss: per_example(&self.member_loss)?,
            member_accuracy: per_example(&self.member_correct)?,
            ensemble_loss: self.ensemble_loss / self.examples,
            ensemble_accuracy: self.ensemble_correct / self.examples,
        })
    }
}

/// One epoch's (or the test set's) metrics, per member and for the ensemble.
struct EpochMetrics {
    member_loss: Vec<f64>,
    member_accuracy: Vec<f64>,
    ensemble_loss: f64,
    ensemble_accuracy: f64,
}

/// `apply_model`: every member's gradients on the same batch, and the batch's logits and
/// member losses. The loss differentiated is the sum of the members' mean losses, so member
/// `i`'s gradient is that of its own loss alone.
fn apply_model(state: &State, images: &Tensor, labels: &Tensor) -> Result<(FrozenDict, Tensor, Tensor)> {
    let (grads, (logits, losses)) = flax::grad_with_aux(&state.params, |params| {
        let logits = state.apply_fn.apply(&frozen_dict! { "params": params }, images)?;
        let losses = member_losses(&logits, labels)?;
        Ok((losses.sum(Kind::Float), (logits, losses)))
    })?;
    Ok((grads, logits, losses))
}

/// `train_epoch`: one pass over the training set in the order of
/// `jax.random.permutation(rng, n)`, every member on the same batches.
fn train_epoch(
    group: &ProcessGroup,
    mut state: State,
    train_ds: &ImageClassification,
    batch_size: i64,
    rng: PRNGKey,
    epoch: i64,
) -> Result<(State, EpochMetrics)> {
    let batches = Batches::new(train_ds, batch_size)?.shuffle(rng)?;
    let bar = progress_bar(batches.len() as u64, format!("epoch {epoch}"));
    if group.rank() != 0 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut sums = Sums::new(group, state.apply_fn.num_members, train_ds.image.device());
    for batch in batches {
        let batch = batch?.data;
        let (grads, logits, losses) = apply_model(&state, &batch.image, &batch.label)?;
        state = state.apply_gradients(grads)?; // update_model
        tch::no_grad(|| sums.add(group, &logits, &losses, &batch.label))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((state, sums.finish(group)?))
}

/// Every member's and the ensemble's metrics on the whole test set (each rank runs its own
/// members on all of it).
fn evaluate(group: &ProcessGroup, state: &State, test_ds: &ImageClassification) -> Result<EpochMetrics> {
    let mut sums = Sums::new(group, state.apply_fn.num_members, test_ds.image.device());
    tch::no_grad(|| -> Result<()> {
        for batch in Batches::new(test_ds, EVAL_BATCH.min(test_ds.len()).max(1))?.remainder(Remainder::Keep) {
            let batch = batch?.data;
            let logits = state.apply_fn.apply(&frozen_dict! { "params": &state.params }, &batch.image)?;
            let losses = member_losses(&logits, &batch.label)?;
            sums.add(group, &logits, &losses, &batch.label)?;
        }
        Ok(())
    })?;
    sums.finish(group)
}
