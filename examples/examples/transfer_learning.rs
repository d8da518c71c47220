//! The spec's transfer-learning guide (L3591-3901) on Fashion-MNIST: a CNN backbone is
//! pretrained on classes 0-4 and saved as an Orbax checkpoint; a new `Classifier` gets the
//! restored backbone and a fresh head, and `optax.multi_transform` trains the head on classes
//! 5-9 with Adam while `set_to_zero` freezes the backbone.
//!
//! `cargo run --release -p flax-examples --example transfer_learning -- --help`
//!
//! The guide's steps, in order:
//! - its `Classifier` (a `backbone` submodule, a `head` Dense with `kernel_init=nn.zeros`);
//! - a pretrained backbone: here the quickstart's CNN features, trained on the first five
//!   classes with SGD and momentum, saved with Orbax (`StandardCheckpointer().save`) and
//!   restored strictly into a fresh model's variables (where the guide loads CLIP from
//!   HuggingFace);
//! - "transferring the parameters": `params['backbone'] = pretrained['params']['backbone']`;
//! - `multi_transform({'trainable': adam(5e-3), 'frozen': set_to_zero()}, labels)` with the
//!   labels of `path_aware_map(lambda path, v: 'frozen' if 'backbone' in path else 'trainable',
//!   params)`, and a `TrainState` whose training step is the usual one.
//!
//! The log shows the head's test accuracy on the new classes before and after each epoch,
//! that the backbone did not move (the largest change of any of its parameters is 0), and
//! that Adam's moments, kept in Optax's layout, exist for the head only.

use clap::Parser;
use flax::data::{Batches, ImageClassification, Remainder};
use flax::optax::{self, GradientTransformation, MultiTransform, ScaleByAdamState};
use flax::prelude::*;
use flax::tch;
use flax::training::orbax::{self, SaveOptions};
use flax::training::TrainState;
use flax::tree::{self, Key, RestoreOptions};
use flax::Value;
use flax_examples::{device, exit_on_error, mnist_datasets, progress_bar, work_dir};
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// The quickstart CNN's features: its layers up to the last hidden Dense (the backbone).
#[allow(clippy::upper_case_acronyms)]
#[module]
pub struct CNNFeatures;

#[module]
impl CNNFeatures {
    #[compact]
    #[shape(x: [B, 28, 28, 1] -> [B, 256])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Conv::new(32, [3, 3]).call(cx, x)?.relu();
        let x = nn::avg_pool_with(&x, [2, 2], nn::PoolOptions::new().strides([2, 2]))?;
        let x = nn::Conv::new(64, [3, 3]).call(cx, &x)?.relu();
        let x = nn::avg_pool_with(&x, [2, 2], nn::PoolOptions::new().strides([2, 2]))?;
        let x = x.flatten(1, -1); // flatten
        Ok(nn::Dense::new(256).call(cx, &x)?.relu())
    }
}

/// The guide's `Classifier`: `num_classes: int`, `backbone: nn.Module`, and a head.
#[module]
pub struct Classifier {
    pub num_classes: i64,
    #[submodule]
    pub backbone: CNNFeatures,
}

#[module]
impl Classifier {
    #[compact]
    #[shape(x: [B, 28, 28, 1] -> [B, self.num_classes])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = self.backbone.call(cx, x)?;
        nn::Dense::new(self.num_classes).name("head").kernel_init(nn::initializers::zeros()).call(cx, &x)
    }
}

/// The classes the backbone is pretrained on, and those the new head learns.
const PRETRAIN_CLASSES: Range<i64> = 0..5;
const NEW_CLASSES: Range<i64> = 5..10;

#[derive(Parser)]
#[command(about = "The Flax transfer-learning guide: pretrain a CNN on Fashion-MNIST classes 0-4, \
                   save it with Orbax, freeze it and train a new head on classes 5-9")]
struct Args {
    /// A directory of MNIST-format IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]).
    #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
    data: PathBuf,
    /// Where the pretrained backbone's Orbax checkpoint goes [default: <temp dir>/flax-transfer-learning].
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Epochs of pretraining on classes 0-4 [default: 2, or 1 with --quick].
    #[arg(long)]
    pretrain_epochs: Option<i64>,
    /// Epochs of training the new head on classes 5-9 [default: 2, or 1 with --quick].
    #[arg(long)]
    num_epochs: Option<i64>,
    #[arg(long, default_value_t = 32)]
    batch_size: i64,
    /// The pretraining's SGD learning rate (with momentum 0.9, as in the quickstart).
    #[arg(long, default_value_t = 0.01)]
    pretrain_learning_rate: f64,
    /// The head's Adam learning rate (the guide's `optax.adam(5e-3)`).
    #[arg(long, default_value_t = 5e-3)]
    learning_rate: f64,
    /// Seed of the parameter initialisations and of the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run on CUDA when available.
    #[arg(long)]
    cuda: bool,
    /// A fast run for the test suite: the first 2,048 training and 512 test examples, one epoch
    /// of each phase by default.
    #[arg(long)]
    quick: bool,
}

fn main() -> ExitCode {
    exit_on_error(run(Args::parse()))
}

fn run(args: Args) -> Result<()> {
    if args.batch_size < 1 {
        return Err(flax::Error::Value(format!("--batch-size must be at least 1, got {}", args.batch_size)));
    }
    let device = device(args.cuda);
    let (train_ds, test_ds) = mnist_datasets(&args.data, args.quick, device)?;
    let epochs = |given: Option<i64>| given.unwrap_or(if args.quick { 1 } else { 2 });
    let workdir = work_dir(args.workdir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(if args.quick {
            "flax-transfer-learning-quick"
        } else {
            "flax-transfer-learning"
        })
    }))?;
    let checkpoint = workdir.join("pretrained");
    let (init_rng, shuffle_rng) = PRNGKey::new(args.seed).split2();
    let (pretrain_rng, head_rng) = init_rng.split2();
    let template = Tensor::ones([1, 28, 28, 1], (Kind::Float, device));
    let start = Instant::now();

    // The pretrained model: the backbone and a head for classes 0-4, saved with Orbax.
    let (train_old, test_old) = (classes(&train_ds, PRETRAIN_CLASSES)?, classes(&test_ds, PRETRAIN_CLASSES)?);
    let model = Classifier::new(PRETRAIN_CLASSES.end - PRETRAIN_CLASSES.start, CNNFeatures::new());
    let tx = optax::sgd(args.pretrain_learning_rate).momentum(0.9);
    let mut state = TrainState::create(model.clone(), params_of(&model.init(pretrain_rng, &template)?), tx)?;
    println!("pretraining on classes 0-4: {} training and {} test images", train_old.len(), test_old.len());
    for epoch in 1..=epochs(args.pretrain_epochs) {
        let rng = shuffle_rng.fold_in(epoch as u32);
        let (next, train_loss) =
            train_epoch(state, &train_old, args.batch_size, rng, &format!("pretrain {epoch}"))?;
        state = next;
        let accuracy = evaluate(&state, &test_old)?;
        println!(
            "pretrain epoch: {epoch}, train loss: {train_loss:.4}, test accuracy: {:.2}",
            accuracy * 100.0
        );
    }
    orbax::save(&checkpoint, &frozen_dict! { "params": &state.params }, &SaveOptions::default().force(true))?;
    println!("saved the pretrained model as an Orbax checkpoint in {}", checkpoint.display());

    // The guide: a new Classifier, its backbone's parameters transferred from the checkpoint.
    let target = frozen_dict! { "params": params_of(&model.init(pretrain_rng, &template)?) };
    let pretrained = orbax::restore(&checkpoint, &target, RestoreOptions::default())?;
    let backbone = pretrained.get_path(&["params", "backbone"]).cloned().ok_or_else(|| {
        flax::Error::Value(format!("the checkpoint in {} has no params/backbone", checkpoint.display()))
    })?;
    let model = Classifier::new(NEW_CLASSES.end - NEW_CLASSES.start, CNNFeatures::new());
    let params = params_of(&model.init(head_rng, &template)?).copy([("backbone", backbone)]);
    let frozen_before =
        tree::tree_map(params.get_dict("backbone").unwrap_or(&FrozenDict::new()), |p| Ok(p.copy()))?;
    let tx = optax::multi_transform(
        [("trainable", optax::adam(args.learning_rate).boxed()), ("frozen", optax::set_to_zero().boxed())],
        |path, _| if path.keys().contains(&Key::Name("backbone")) { "frozen" } else { "trainable" },
    );
    let mut state = TrainState::create(model, params, tx)?;

    let (train_new, test_new) = (classes(&train_ds, NEW_CLASSES)?, classes(&test_ds, NEW_CLASSES)?);
    println!(
        "training a new head on classes 5-9 ({} training and {} test images), the backbone frozen",
        train_new.len(),
        test_new.len()
    );
    println!("head epoch: 0, test accuracy: {:.2}", evaluate(&state, &test_new)? * 100.0);
    for epoch in 1..=epochs(args.num_epochs) {
        let rng = shuffle_rng.fold_in(1000 + epoch as u32);
        let (next, train_loss) =
            train_epoch(state, &train_new, args.batch_size, rng, &format!("head {epoch}"))?;
        state = next;
        let accuracy = evaluate(&state, &test_new)?;
        println!("head epoch: {epoch}, train loss: {train_loss:.4}, test accuracy: {:.2}", accuracy * 100.0);
    }
    report_frozen(&state, &frozen_before)?;
    println!("done in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// The largest change of any backbone parameter (0: frozen), and where Adam's moments are.
fn report_frozen(
    state: &TrainState<Classifier, FrozenDict, MultiTransform>,
    before: &FrozenDict,
) -> Result<()> {
    let after = state.params.get_dict("backbone").cloned().unwrap_or_default();
    let mut max_change = 0.0f64;
    for (a, b) in tree::leaves(&after).into_iter().zip(tree::leaves(before)) {
        max_change = max_change.max((a - b).abs().max().f_double_value(&[])?);
    }
    println!(
        "backbone: {} parameter arrays, max |Δ| since the restore = {max_change}",
        tree::num_leaves(before)
    );
    let adam =
        state.opt_state.inner_states["trainable"].inner_state.downcast_ref::<(ScaleByAdamState<Value>, ())>();
    if let Some((adam, ())) = adam {
        let kernel_mu = adam.mu.tensor(&["head", "kernel"]).map(|mu| mu.abs().max().double_value(&[]));
        println!(
            "Adam's moments (Optax's layout, the backbone's leaves masked): {} arrays, max |mu| of head/kernel = {:.3e}",
            tree::num_leaves(&adam.mu),
            kernel_mu.unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

/// The examples of `classes`, labelled from 0 (`label - classes.start`).
fn classes(ds: &ImageClassification, classes: Range<i64>) -> Result<ImageClassification> {
    let selected = ds.label.try_ge(classes.start)?.f_logical_and(&ds.label.try_lt(classes.end)?)?;
    let index = selected.f_nonzero()?.f_squeeze_dim(1)?;
    Ok(ImageClassification {
        image: ds.image.f_index_select(0, &index)?,
        label: ds.label.f_index_select(0, &index)?.try_sub_scalar(classes.start)?,
    })
}

/// The `params` collection of `variables`.
fn params_of(variables: &Variables) -> FrozenDict {
    variables.get_dict("params").cloned().unwrap_or_default()
}

/// The mean cross-entropy of the model's logits, and the logits.
fn loss_fn(model: &Classifier, params: &FrozenDict, batch: &ImageClassification) -> Result<(Tensor, Tensor)> {
    let logits = model.apply(&frozen_dict! { "params": params }, &batch.image)?;
    let loss =
        optax::losses::softmax_cross_entropy_with_integer_labels(&logits, &batch.label)?.mean(Kind::Float);
    Ok((loss, logits))
}

/// One pass over `ds` in a random order, the guide's unchanged training step on each batch;
/// the state and the mean training loss.
fn train_epoch<T: GradientTransformation<FrozenDict>>(
    mut state: TrainState<Classifier, FrozenDict, T>,
    ds: &ImageClassification,
    batch_size: i64,
    rng: PRNGKey,
    name: &str,
) -> Result<(TrainState<Classifier, FrozenDict, T>, f64)> {
    let batches = Batches::new(ds, batch_size)?.shuffle(rng)?;
    let bar = progress_bar(batches.len() as u64, name.to_owned());
    let (mut loss_sum, mut steps) = (0.0, 0);
    for batch in batches {
        let batch = batch?.data;
        let (grads, loss) = flax::grad_with_aux(&state.params, |params| {
            let (loss, _) = loss_fn(&state.apply_fn, params, &batch)?;
            Ok((loss.shallow_clone(), loss.detach()))
        })?;
        state = state.apply_gradients(grads)?;
        loss_sum += loss.f_double_value(&[])?;
        steps += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((state, loss_sum / steps.max(1) as f64))
}

/// The accuracy on `ds`.
fn evaluate<T: GradientTransformation<FrozenDict>>(
    state: &TrainState<Classifier, FrozenDict, T>,
    ds: &ImageClassification,
) -> Result<f64> {
    let mut correct = 0.0;
    tch::no_grad(|| -> Result<()> {
        for batch in Batches::new(ds, 1000.min(ds.len()).max(1))?.remainder(Remainder::Keep) {
            let batch = batch?.data;
            let (_, logits) = loss_fn(&state.apply_fn, &state.params, &batch)?;
            correct +=
                logits.argmax(-1, false).eq_tensor(&batch.label).sum(Kind::Float).f_double_value(&[])?;
        }
        Ok(())
    })?;
    Ok(correct / ds.len().max(1) as f64)
}
