//! Flax's VAE example (`examples/vae` upstream, listed in the spec at L8932): a variational
//! auto-encoder trained on binarized Fashion-MNIST; the reparameterisation trick with a
//! `make_rng` stream, the negative ELBO (binary cross-entropy plus KL divergence) in the log,
//! a checkpoint per epoch that `--resume` continues from, and PNGs of the curves, of test
//! images next to their reconstructions and of samples from the prior.
//!
//! `cargo run --release -p flax-examples --example vae -- --help`
//!
//! The model is upstream's line for line: an MLP encoder 784-500-(mean, log-variance) with 20
//! latents and an MLP decoder 20-500-784 giving logits, held by the `VAE` as its `encoder` and
//! `decoder` fields (upstream assigns them in `setup`), with a second method, `generate`, that
//! decodes latents to pixel probabilities.
//!
//! Differences from upstream, each for a reason (`scripts/reference/vae.py` runs the same
//! protocol in real Flax):
//! - the data is Fashion-MNIST from Debian's `dataset-fashion-mnist` (`--data` for any
//!   MNIST-format directory) binarized at 0.5, 60,000 training and 10,000 test images
//!   (upstream: tfds' `binarized_mnist`, which needs TensorFlow and a download);
//! - the reparameterisation key comes from the `reparam` RNG stream (`make_rng`) instead of an
//!   argument of `__call__`;
//! - the training order is `jax.random.permutation(fold_in(shuffle_rng, epoch), 60000)` and the
//!   key of step `s` is `fold_in(train_rng, s)` (upstream: a shuffle buffer, and one key split
//!   off per step), so a resumed run is the same as an uninterrupted one;
//! - 10 epochs by default (upstream 30) so that a run takes minutes on a CPU.
//! - the reconstructions are drawn as pixel probabilities (the sigmoid of the decoder's logits;
//!   upstream's image shows the logits clipped to `[0, 1]`).

use clap::Parser;
use flax::data::Batches;
use flax::optax::{self, Adam};
use flax::prelude::*;
use flax::tch;
use flax::training::checkpoints::{
    latest_checkpoint, restore_checkpoint, save_checkpoint, RestoreCheckpointOptions, SaveCheckpointOptions,
};
use flax::training::TrainState;
use flax_examples::{
    device, exit_on_error, mnist_datasets, plot_curves, progress_bar, save_image, work_dir, Curves,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// VAE encoder: the mean and log-variance of the latents given an image.
#[module]
pub struct Encoder {
    pub latents: i64,
}

#[module]
impl Encoder {
    #[compact]
    #[shape(x: [B, 784])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let x = nn::Dense::new(500).name("fc1").call(cx, x)?;
        let x = x.relu();
        let mean_x = nn::Dense::new(self.latents).name("fc2_mean").call(cx, &x)?;
        let logvar_x = nn::Dense::new(self.latents).name("fc2_logvar").call(cx, &x)?;
        Ok((mean_x, logvar_x))
    }
}

/// VAE decoder: the pixels' logits given the latents.
#[module]
pub struct Decoder;

#[module]
impl Decoder {
    #[compact]
    #[shape(z: [B, L] -> [B, 784])]
    pub fn call(&self, cx: &mut Scope, z: &Tensor) -> Result<Tensor> {
        let z = nn::Dense::new(500).name("fc1").call(cx, z)?;
        let z = z.relu();
        nn::Dense::new(784).name("fc2").call(cx, &z)
    }
}

/// Full VAE model.
#[module]
pub struct VAE {
    #[submodule]
    pub encoder: Encoder,
    #[submodule]
    pub decoder: Decoder,
}

#[module]
impl VAE {
    /// `(recon_x, mean, logvar)`: the reconstruction's logits from latents drawn with a key of
    /// the `reparam` stream.
    #[shape(x: [B, 784])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (mean, logvar) = self.encoder.call(cx, x)?;
        let z = reparameterize(cx.make_rng("reparam")?, &mean, &logvar)?;
        let recon_x = self.decoder.call(cx, &z)?;
        Ok((recon_x, mean, logvar))
    }

    /// The pixel probabilities of latents `z`.
    #[shape(z: [B, L] -> [B, 784])]
    pub fn generate(&self, cx: &mut Scope, z: &Tensor) -> Result<Tensor> {
        nn::sigmoid(&self.decoder.call(cx, z)?)
    }
}

/// `VAE(latents=latents)`: upstream's `setup` builds the encoder from `latents`.
fn model(latents: i64) -> VAE {
    VAE::new(Encoder::new(latents), Decoder::new())
}

/// `mean + eps * std` with `eps ~ N(0, 1)` drawn from `rng` (`jax.random.normal`).
fn reparameterize(rng: PRNGKey, mean: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let std = (logvar * 0.5).exp();
    let eps = flax::random::normal(rng, &logvar.size(), (logvar.kind(), logvar.device()))?;
    Ok(mean + eps * std)
}

/// The KL divergence of `N(mean, exp(logvar))` from `N(0, 1)`, per example.
fn kl_divergence(mean: &Tensor, logvar: &Tensor) -> Tensor {
    (logvar + 1.0 - mean.square() - logvar.exp()).sum_dim_intlist(-1, false, Kind::Float) * -0.5
}

/// The binary cross-entropy of pixel logits against binary labels, per example.
fn binary_cross_entropy_with_logits(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let logits = nn::log_sigmoid(logits)?;
    let log_one_minus = (-logits.expm1()).log(); // log(1 - sigmoid)
    Ok(-(labels * &logits + (-labels + 1.0) * log_one_minus).sum_dim_intlist(-1, false, Kind::Float))
}

/// The mean BCE, KLD and their sum (the negative ELBO) over a batch.
struct Metrics {
    bce: Tensor,
    kld: Tensor,
    loss: Tensor,
}

fn compute_metrics(recon_x: &Tensor, x: &Tensor, mean: &Tensor, logvar: &Tensor) -> Result<Metrics> {
    let bce = binary_cross_entropy_with_logits(recon_x, x)?.mean(Kind::Float);
    let kld = kl_divergence(mean, logvar).mean(Kind::Float);
    let loss = &bce + &kld;
    Ok(Metrics { bce, kld, loss })
}

type State = TrainState<VAE, FrozenDict, Adam>;

/// The log's columns.
const COLUMNS: [&str; 5] = ["epoch", "train_loss", "test_loss", "test_bce", "test_kld"];

#[derive(Parser)]
#[command(about = "Flax's VAE example: a variational auto-encoder on binarized (Fashion-)MNIST")]
struct Args {
    /// A directory of MNIST-format IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]).
    #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
    data: PathBuf,
    /// Where the checkpoints, the log and the PNGs go [default: <temp dir>/flax-vae].
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Continue from the checkpoint saved after the last finished epoch.
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    #[arg(long, default_value_t = 128)]
    batch_size: i64,
    /// Epochs to train [default: 10, or 1 with --quick] (upstream: 30).
    #[arg(long)]
    num_epochs: Option<i64>,
    /// The number of latent variables.
    #[arg(long, default_value_t = 20)]
    latents: i64,
    /// Seed of the initialisation, the shuffling and every random draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run on CUDA when available.
    #[arg(long)]
    cuda: bool,
    /// A fast run for the test suite: 2,048 training and 512 test images, one epoch by default.
    #[arg(long)]
    quick: bool,
}

fn main() -> ExitCode {
    exit_on_error(run(Args::parse()))
}

fn run(args: Args) -> Result<()> {
    if args.latents < 1 {
        return Err(flax::Error::Value(format!("--latents must be at least 1, got {}", args.latents)));
    }
    let device = device(args.cuda);
    let (train_ds, test_ds) = mnist_datasets(&args.data, args.quick, device)?;
    // Binarized at 0.5 and flattened: `(n, 784)` of zeros and ones.
    let binarize = |images: &Tensor| images.gt(0.5).to_kind(Kind::Float).flatten(1, -1);
    let (train_ds, test_ds) = (binarize(&train_ds.image), binarize(&test_ds.image));
    let num_epochs = args.num_epochs.unwrap_or(if args.quick { 1 } else { 10 });
    let steps_per_epoch = train_ds.size()[0] / args.batch_size.max(1);
    if args.batch_size < 1 || steps_per_epoch == 0 {
        return Err(flax::Error::Value(format!(
            "--batch-size {} must be between 1 and the number of training images ({})",
            args.batch_size,
            train_ds.size()[0]
        )));
    }
    let workdir = work_dir(args.workdir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(if args.quick { "flax-vae-quick" } else { "flax-vae" })
    }))?;
    let (ckpt_dir, log_path) = (workdir.join("checkpoints"), workdir.join("log.csv"));

    let keys = PRNGKey::new(args.seed).split(6);
    let (init_rng, reparam_init_rng, train_rng, shuffle_rng, z_rng, eval_rng) =
        (keys[0], keys[1], keys[2], keys[3], keys[4], keys[5]);
    let vae = model(args.latents);
    let init_data = Tensor::ones([args.batch_size, 784], (Kind::Float, device));
    let rngs = Rngs::new().with("params", init_rng).with("reparam", reparam_init_rng);
    let params = vae.init(rngs, &init_data)?.get_dict("params").cloned().unwrap_or_default();
    let mut state = TrainState::create(vae, params, optax::adam(args.learning_rate))?;
    let mut log = Curves::new(&COLUMNS);
    if args.resume && latest_checkpoint(&ckpt_dir, "checkpoint_")?.is_some() {
        state = restore_checkpoint(&ckpt_dir, state, &RestoreCheckpointOptions::default())?;
        log = Curves::load(&log_path, &COLUMNS)?;
        log.truncate_after((state.step / steps_per_epoch) as f64);
        println!("resumed at step {} (epoch {})", state.step, log.rows().len());
    }
    let z = flax::random::normal(z_rng, &[64, args.latents], (Kind::Float, device))?;

    let start = Instant::now();
    for epoch in log.rows().len() as i64 + 1..=num_epochs {
        let (next, train_loss) =
            train_epoch(state, &train_ds, args.batch_size, (train_rng, shuffle_rng), epoch)?;
        state = next;
        let (metrics, comparison, sample) = eval(&state, &test_ds, &z, eval_rng)?;
        println!(
            "eval epoch: {epoch}, train_loss: {train_loss:.4}, loss: {:.4}, BCE: {:.4}, KLD: {:.4}",
            metrics[0], metrics[1], metrics[2]
        );
        log.push(&[epoch as f64, train_loss, metrics[0], metrics[1], metrics[2]])?;
        // A run that does not resume replaces the checkpoints of an earlier one (overwrite).
        let options = SaveCheckpointOptions::default().keep(2).overwrite(!args.resume);
        save_checkpoint(&ckpt_dir, &state, state.step, &options)?;
        log.save(&log_path)?;
        let image_error =
            |path: &PathBuf, e| flax::Error::Value(format!("could not write {}: {e}", path.display()));
        let (recon_path, sample_path) = (workdir.join("reconstruction.png"), workdir.join("sample.png"));
        save_image(&recon_path, &comparison, 8).map_err(|e| image_error(&recon_path, e))?;
        save_image(&sample_path, &sample, 8).map_err(|e| image_error(&sample_path, e))?;
    }
    println!("trained in {:.1} s; checkpoints in {}", start.elapsed().as_secs_f64(), ckpt_dir.display());
    let plot = workdir.join("vae_curves.png");
    let panels: [(&str, &[&str]); 2] = [
        ("Negative ELBO (nats per image)", &["train_loss", "test_loss"]),
        ("Test terms", &["test_bce", "test_kld"]),
    ];
    plot_curves(&plot, &log, &panels)
        .map_err(|e| flax::Error::Value(format!("could not plot {}: {e}", plot.display())))?;
    println!("curves in {}; reconstructions and samples in {}", plot.display(), workdir.display());
    Ok(())
}

/// `train_step`: the gradient of the mean negative ELBO, applied by Adam; the batch's loss.
fn train_step(state: State, batch: &Tensor, z_rng: PRNGKey) -> Result<(State, Tensor)> {
    let (loss, grads) = flax::value_and_grad(&state.params, |params| {
        let options = ApplyOptions::new().rngs(Rngs::new().with("reparam", z_rng));
        let ((recon_x, mean, logvar), _) =
            state.apply_fn.apply_with(&frozen_dict! { "params": params }, options, batch)?;
        let bce_loss = binary_cross_entropy_with_logits(&recon_x, batch)?.mean(Kind::Float);
        let kld_loss = kl_divergence(&mean, &logvar).mean(Kind::Float);
        Ok(bce_loss + kld_loss)
    })?;
    Ok((state.apply_gradients(grads)?, loss))
}

/// One epoch in the order of `permutation(fold_in(shuffle_rng, epoch))`, the key of step `s`
/// `fold_in(train_rng, s)`; the mean training loss.
fn train_epoch(
    mut state: State,
    train_ds: &Tensor,
    batch_size: i64,
    (train_rng, shuffle_rng): (PRNGKey, PRNGKey),
    epoch: i64,
) -> Result<(State, f64)> {
    let batches = Batches::new(train_ds, batch_size)?.shuffle(shuffle_rng.fold_in(epoch as u32))?;
    let bar = progress_bar(batches.len() as u64, format!("epoch {epoch}"));
    let mut loss_sum = Tensor::zeros([], (Kind::Float, train_ds.device()));
    let steps = batches.len() as f64;
    for batch in batches {
        let z_rng = train_rng.fold_in(state.step as u32 + 1);
        let (next, loss) = train_step(state, &batch?.data, z_rng)?;
        state = next;
        loss_sum += loss.detach();
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((state, loss_sum.f_double_value(&[])? / steps))
}

/// The test set's `[loss, bce, kld]`, its first 8 images above their reconstructions' pixel
/// probabilities, and the samples decoded from `z`, as `(n, 28, 28)` images.
fn eval(state: &State, images: &Tensor, z: &Tensor, z_rng: PRNGKey) -> Result<([f64; 3], Tensor, Tensor)> {
    tch::no_grad(|| {
        let variables = frozen_dict! { "params": &state.params };
        let options = ApplyOptions::new().rngs(Rngs::new().with("reparam", z_rng));
        let ((recon_images, mean, logvar), _) = state.apply_fn.apply_with(&variables, options, images)?;
        let m = compute_metrics(&recon_images, images, &mean, &logvar)?;
        let comparison = Tensor::cat(&[images.narrow(0, 0, 8), recon_images.narrow(0, 0, 8).sigmoid()], 0);
        let (sample, _) =
            state.apply_fn.apply_method(&variables, ApplyOptions::new(), |vae, cx| vae.generate(cx, z))?;
        let metrics = [m.loss.f_double_value(&[])?, m.bce.f_double_value(&[])?, m.kld.f_double_value(&[])?];
        Ok((metrics, comparison.reshape([-1, 28, 28]), sample.reshape([-1, 28, 28])))
    })
}
