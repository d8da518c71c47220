//! A small decoder-only transformer language model over characters, after Flax's `lm1b`
//! example (`examples/lm1b` upstream, listed in the spec at L8915) and nanoGPT's
//! character-level model: causal self-attention, learned position embeddings, pre-LayerNorm
//! blocks stacked with `scan`, AdamW with a linear warmup and a cosine decay, gradient
//! clipping by global norm. The log shows the training and validation loss and the
//! validation bits per character; a checkpoint at every log line that `--resume` continues
//! from; the curves as a PNG; text sampled with a temperature through the attention's decode
//! cache, timed against recomputing the whole prefix at every step.
//!
//! `cargo run --release -p flax-examples --example lm -- --help`
//!
//! The model is lm1b's `TransformerLM` decoder: an `Embed` of the characters plus a learned
//! `pos_embedding` (lm1b's `AddPositionEmbs`, with its `cache_index` in the `cache`
//! collection when decoding), `num_layers` blocks of LayerNorm → causal
//! `MultiHeadDotProductAttention` → residual, LayerNorm → MLP (4× wide, GELU) → residual, a
//! final LayerNorm and a `Dense` over the vocabulary. The blocks run under `nn::scan` with
//! `variable_axes = {params: 0, cache: 0}` (one stacked tree of parameters, and of decode
//! caches, for all the blocks) as Flax's guides recommend for deep stacks.
//!
//! Differences from upstream, each for a reason (`scripts/reference/lm.py` runs the same
//! protocol in real Flax):
//! - the corpus is Debian's `fortunes` (every fortune file in `/usr/share/games/fortunes`,
//!   2.6 million characters, 113 distinct) or `--data FILE`, split 90/10 into training and
//!   validation text (upstream: lm1b from tfds, with a SentencePiece vocabulary);
//! - characters, not subwords, and a small model (4 blocks, width 64, 4 heads, context 64,
//!   800 steps of 32 windows) so that a run takes minutes on a CPU;
//! - no dropout, so that the Flax reference computes the same function;
//! - the windows of step `s` start at `jax.random.randint(fold_in(train_rng, s))`, so the
//!   Flax reference sees the same batches and a resumed run the same as an uninterrupted one.

use clap::Parser;
use flax::optax::{self, AdamW, Chain, ClipByGlobalNorm, Schedule};
use flax::prelude::*;
use flax::tch;
use flax::training::checkpoints::{
    latest_checkpoint, restore_checkpoint, save_checkpoint, RestoreCheckpointOptions, SaveCheckpointOptions,
};
use flax::training::TrainState;
use flax::tree::Key;
use flax::ApplyOptions;
use flax_examples::{device, exit_on_error, plot_curves, progress_bar, work_dir, Curves};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// A pre-LayerNorm transformer block: causal self-attention and an MLP, each added to the
/// residual stream.
#[module]
pub struct Block {
    pub num_heads: i64,
    /// Whether attention feeds one position at a time through its `cache`.
    #[module(default = false)]
    pub decode: bool,
}

#[module]
impl Block {
    /// `x` `(batch, length, features)`; `mask` the causal mask (none when decoding: the
    /// cache masks the positions not fed yet).
    #[compact]
    #[shape(x: [B, T, F] -> [B, T, F])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let features = x.size()[2];
        let y = nn::LayerNorm::new().call(cx, x)?;
        let y = nn::MultiHeadDotProductAttention::new(self.num_heads)
            .decode(self.decode)
            .call(cx, &y, &y, mask, None)?;
        let x = x + y;
        let y = nn::LayerNorm::new().call(cx, &x)?;
        let y = nn::Dense::new(4 * features).call(cx, &y)?;
        let y = nn::gelu(&y)?;
        let y = nn::Dense::new(features).call(cx, &y)?;
        Ok(x + y)
    }
}

/// lm1b's `TransformerLM` decoder over character ids.
#[module]
pub struct TransformerLM {
    pub vocab_size: i64,
    /// The longest context, and the size of the position table and of the decode cache.
    pub block_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub emb_dim: i64,
    /// Whether to feed one position per call through the `cache` collection.
    #[module(default = false)]
    pub decode: bool,
}

#[module]
impl TransformerLM {
    /// `tokens` `(batch, length)` ids; the logits of the next character at every position,
    /// `(batch, length, vocab_size)`.
    #[compact]
    #[shape(tokens: [B, T] -> [B, T, self.vocab_size])]
    pub fn call(&self, cx: &mut Scope, tokens: &Tensor) -> Result<Tensor> {
        let length = tokens.size()[1];
        if length > self.block_size {
            return Err(flax::Error::Value(format!(
                "a context of {length} characters is longer than block_size {}",
                self.block_size
            )));
        }
        let embed =
            nn::Embed::new(self.vocab_size, self.emb_dim).embedding_init(nn::initializers::normal(1.0));
        let x = embed.call(cx, tokens)?;
        let pos_embedding =
            cx.param("pos_embedding", nn::initializers::normal(0.02), &[1, self.block_size, self.emb_dim])?;
        let (positions, mask) = if self.decode {
            (self.decode_positions(cx, &pos_embedding, length)?, None)
        } else {
            (pos_embedding.narrow(1, 0, length), Some(nn::make_causal_mask(tokens)?))
        };
        let x = x + positions;
        let blocks = nn::scan(Block::new(self.num_heads).decode(self.decode))
            .variable_axes([("params", 0), ("cache", 0)])
            .split_rngs([("params", true)])
            .length(self.num_layers)
            .name("blocks");
        let (x, ()) =
            blocks.call(cx, x, &(), |block, cx, x, ()| Ok((block.call(cx, &x, mask.as_ref())?, ())))?;
        let x = nn::LayerNorm::new().call(cx, &x)?;
        nn::Dense::new(self.vocab_size).call(cx, &x)
    }
}

impl TransformerLM {
    /// The position embeddings of a decoding call: all `length` of them while the cache is
    /// created, then the one at the cache index, which advances (lm1b's `AddPositionEmbs`
    /// with `decode`; the index is clamped as `lax.dynamic_slice` clamps it).
    fn decode_positions(&self, cx: &mut Scope, pos_embedding: &Tensor, length: i64) -> Result<Tensor> {
        let is_initialized = cx.has_variable("cache", "cache_index");
        let cache_index = cx.variable("cache", "cache_index", |cx| {
            Ok(Tensor::f_zeros([0i64; 0], (Kind::Int, cx.device()))?)
        })?;
        if !is_initialized {
            return Ok(pos_embedding.narrow(1, 0, length));
        }
        let index = cache_index.value(cx)?;
        cache_index.set_value(cx, index.try_add_scalar(1)?)?;
        let i = index.f_int64_value(&[])?.clamp(0, self.block_size - 1);
        Ok(pos_embedding.narrow(1, i, 1))
    }
}

/// The corpus as character ids, and the characters (sorted) that the ids stand for.
struct Corpus {
    chars: Vec<char>,
    ids: Tensor,
}

/// Where Debian's `fortunes` package puts its fortune files.
const FORTUNES: &str = "/usr/share/games/fortunes";

impl Corpus {
    /// The text of `path`, or Debian's fortune files (those that are neither `.dat` indexes
    /// nor links, in name order) when there is no path.
    fn read(path: Option<&Path>) -> Result<String> {
        let bytes = match path {
            Some(path) => std::fs::read(path).map_err(|e| flax::Error::io(path, e))?,
            None => Self::read_fortunes()?,
        };
        String::from_utf8(bytes).map_err(|e| flax::Error::Value(format!("the corpus is not UTF-8 text: {e}")))
    }

    fn read_fortunes() -> Result<Vec<u8>> {
        let missing = || {
            flax::Error::Value(format!(
                "no fortune files in {FORTUNES}: install Debian's fortunes (apt-get install fortunes, or make setup), or pass --data FILE"
            ))
        };
        let entries = std::fs::read_dir(FORTUNES).map_err(|_| missing())?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let is_link = p.symlink_metadata().map(|m| m.file_type().is_symlink()).unwrap_or(true);
                p.is_file() && !is_link && p.extension().is_none_or(|e| e != "dat")
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(missing());
        }
        let mut bytes = Vec::new();
        for file in files {
            bytes.extend(std::fs::read(&file).map_err(|e| flax::Error::io(&file, e))?);
        }
        Ok(bytes)
    }

    fn new(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        let ids: Vec<i64> =
            text.chars().map(|c| chars.binary_search(&c).expect("in the vocabulary") as i64).collect();
        Corpus { chars, ids: Tensor::from_slice(&ids) }
    }

    fn vocab_size(&self) -> i64 {
        self.chars.len() as i64
    }

    /// The text of the ids `ids`.
    fn decode(&self, ids: &[i64]) -> String {
        ids.iter().map(|&id| self.chars[id as usize]).collect()
    }

    /// The training split (the first 90%) and the validation split.
    fn split(&self) -> (Tensor, Tensor) {
        let n = self.ids.size()[0];
        let train = (0.9 * n as f64) as i64;
        (self.ids.narrow(0, 0, train), self.ids.narrow(0, train, n - train))
    }
}

/// `batch_size` windows of `block_size + 1` characters of `data` at offsets drawn from `key`
/// with `jax.random.randint`: the inputs and, one character on, the targets.
fn get_batch(
    data: &Tensor,
    key: PRNGKey,
    batch_size: i64,
    block_size: i64,
    device: Device,
) -> Result<(Tensor, Tensor)> {
    let high = data.size()[0] - block_size;
    if high < 1 {
        return Err(flax::Error::Value(format!(
            "the text ({} characters) is shorter than a window of {} characters: pass a longer --data file",
            data.size()[0],
            block_size + 1
        )));
    }
    // JAX's default integer is int32 (without `jax_enable_x64`): its bits, not int64's.
    let offsets =
        flax::random::randint(key, &[batch_size], 0, high, (Kind::Int, Device::Cpu))?.to_kind(Kind::Int64);
    let index =
        offsets.unsqueeze(1) + Tensor::arange(block_size + 1, (Kind::Int64, Device::Cpu)).unsqueeze(0);
    let windows = data.f_index_select(0, &index.flatten(0, -1))?.reshape([batch_size, block_size + 1]);
    let windows = windows.to_device(device);
    Ok((windows.narrow(1, 0, block_size), windows.narrow(1, 1, block_size)))
}

/// The mean cross-entropy of the next-character logits, in nats.
fn loss_fn(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    Ok(optax::losses::softmax_cross_entropy_with_integer_labels(logits, targets)?.mean(Kind::Float))
}

type Optimizer = Chain<(ClipByGlobalNorm, AdamW<Schedule, f64>)>;
type State = TrainState<TransformerLM, FrozenDict, Optimizer>;

/// One step: the gradient of the loss, clipped, applied by AdamW; the batch's loss.
fn train_step(state: State, x: &Tensor, y: &Tensor) -> Result<(State, f64)> {
    let (loss, grads) = flax::value_and_grad(&state.params, |params| {
        loss_fn(&state.apply_fn.apply(&frozen_dict! { "params": params }, x)?, y)
    })?;
    let loss = loss.f_double_value(&[])?;
    Ok((state.apply_gradients(grads)?, loss))
}

/// The mean loss over `batches`.
fn evaluate(state: &State, batches: &[(Tensor, Tensor)]) -> Result<f64> {
    tch::no_grad(|| {
        let mut total = 0.0;
        for (x, y) in batches {
            total += loss_fn(&state.apply_fn.apply(&frozen_dict! { "params": &state.params }, x)?, y)?
                .f_double_value(&[])?;
        }
        Ok(total / batches.len() as f64)
    })
}

/// The loss over the whole of `data` cut into consecutive windows of `block_size + 1`
/// characters (the last, shorter piece left out), in chunks of 256 windows.
fn evaluate_split(state: &State, data: &Tensor, block_size: i64, device: Device) -> Result<f64> {
    let windows = data.size()[0] / (block_size + 1);
    let data = data.narrow(0, 0, windows * (block_size + 1)).reshape([windows, block_size + 1]);
    let (mut total, mut start) = (0.0, 0);
    while start < windows {
        let chunk = data.narrow(0, start, (windows - start).min(256)).to_device(device);
        let n = chunk.size()[0];
        let batch = [(chunk.narrow(1, 0, block_size), chunk.narrow(1, 1, block_size))];
        total += evaluate(state, &batch)? * n as f64;
        start += n;
    }
    Ok(total / windows as f64)
}

/// The log's columns.
const COLUMNS: [&str; 5] = ["step", "train_loss", "val_loss", "val_bpc", "learning_rate"];

#[derive(Parser)]
#[command(about = "A small decoder-only transformer trained on characters (after Flax's lm1b example)")]
struct Args {
    /// A UTF-8 text file to train on [default: Debian's fortunes, /usr/share/games/fortunes].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where the checkpoints, the log, the plot and the sample go [default: <temp dir>/flax-lm].
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Continue from the latest checkpoint in the work directory.
    #[arg(long)]
    resume: bool,
    /// The peak learning rate, reached after the warmup; the cosine decay ends at a tenth of it.
    #[arg(long, default_value_t = 2e-3)]
    learning_rate: f64,
    #[arg(long, default_value_t = 100)]
    warmup_steps: i64,
    /// AdamW's weight decay (of kernels and embeddings, not of biases and LayerNorm scales).
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f64,
    #[arg(long, default_value_t = 32)]
    batch_size: i64,
    /// The context length.
    #[arg(long, default_value_t = 64)]
    block_size: i64,
    #[arg(long, default_value_t = 4)]
    num_layers: i64,
    #[arg(long, default_value_t = 4)]
    num_heads: i64,
    #[arg(long, default_value_t = 64)]
    emb_dim: i64,
    /// Training steps [default: 800, or 30 with --quick].
    #[arg(long)]
    num_train_steps: Option<i64>,
    /// Steps between log lines, validations and checkpoints [default: 100, or 15 with --quick].
    #[arg(long)]
    eval_interval: Option<i64>,
    /// The number of fixed validation batches of each log line.
    #[arg(long, default_value_t = 8)]
    eval_batches: i64,
    /// The sampling temperature (1: the model's distribution; towards 0: greedy).
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    /// The number of texts sampled at once (each `block_size` characters).
    #[arg(long, default_value_t = 8)]
    num_samples: i64,
    /// Seed of the parameter initialisation, the batches and the samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run on CUDA when available.
    #[arg(long)]
    cuda: bool,
    /// A fast run for the test suite: 30 steps of a 2-block model of width 32, context 32, on
    /// the first 100,000 characters.
    #[arg(long)]
    quick: bool,
}

/// The model's and the protocol's sizes, after `--quick`.
struct Config {
    block_size: i64,
    num_layers: i64,
    num_heads: i64,
    emb_dim: i64,
    batch_size: i64,
    num_train_steps: i64,
    eval_interval: i64,
    warmup_steps: i64,
}

impl Config {
    fn new(args: &Args) -> Result<Self> {
        let quick = args.quick;
        let config = Config {
            block_size: if quick { 32 } else { args.block_size },
            num_layers: if quick { 2 } else { args.num_layers },
            num_heads: if quick { 2 } else { args.num_heads },
            emb_dim: if quick { 32 } else { args.emb_dim },
            batch_size: if quick { 8 } else { args.batch_size },
            num_train_steps: args.num_train_steps.unwrap_or(if quick { 30 } else { 800 }),
            eval_interval: args.eval_interval.unwrap_or(if quick { 15 } else { 100 }),
            warmup_steps: if quick { 5 } else { args.warmup_steps },
        };
        for (flag, value) in [
            ("--block-size", config.block_size),
            ("--num-layers", config.num_layers),
            ("--num-heads", config.num_heads),
            ("--emb-dim", config.emb_dim),
            ("--batch-size", config.batch_size),
            ("--eval-interval", config.eval_interval),
            ("--eval-batches", args.eval_batches),
            ("--num-samples", args.num_samples),
        ] {
            if value < 1 {
                return Err(flax::Error::Value(format!("{flag} must be at least 1, got {value}")));
            }
        }
        if config.emb_dim % config.num_heads != 0 {
            return Err(flax::Error::Value(format!(
                "--emb-dim ({}) must be a multiple of --num-heads ({})",
                config.emb_dim, config.num_heads
            )));
        }
        if config.warmup_steps < 0 || config.num_train_steps <= config.warmup_steps {
            return Err(flax::Error::Value(format!(
                "--num-train-steps ({}) must be greater than --warmup-steps ({}), which must not be negative",
                config.num_train_steps, config.warmup_steps
            )));
        }
        if args.temperature <= 0.0 {
            return Err(flax::Error::Value(format!(
                "--temperature must be positive, got {}",
                args.temperature
            )));
        }
        Ok(config)
    }

    fn model(&self, vocab_size: i64, decode: bool) -> TransformerLM {
        TransformerLM::new(vocab_size, self.block_size, self.num_layers, self.num_heads, self.emb_dim)
            .decode(decode)
    }
}

fn main() -> ExitCode {
    exit_on_error(run(Args::parse()))
}

fn run(args: Args) -> Result<()> {
    let device = device(args.cuda);
    let config = Config::new(&args)?;
    let mut text = Corpus::read(args.data.as_deref())?;
    if args.quick {
        text = text.chars().take(100_000).collect();
    }
    let corpus = Corpus::new(&text);
    let (train, val) = corpus.split();
    println!(
        "corpus: {} characters, vocabulary {}, train {}, val {}",
        corpus.ids.size()[0],
        corpus.vocab_size(),
        train.size()[0],
        val.size()[0]
    );
    let workdir =
        work_dir(args.workdir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(if args.quick { "flax-lm-quick" } else { "flax-lm" })
        }))?;
    let (ckpt_dir, log_path) = (workdir.join("checkpoints"), workdir.join("log.csv"));

    let keys = PRNGKey::new(args.seed).split(4);
    let (init_rng, train_rng, val_rng, sample_rng) = (keys[0], keys[1], keys[2], keys[3]);
    let (mut state, schedule) = get_train_state(&args, &config, corpus.vocab_size(), init_rng, device)?;
    let mut log = Curves::new(&COLUMNS);
    if args.resume && latest_checkpoint(&ckpt_dir, "checkpoint_")?.is_some() {
        state = restore_checkpoint(&ckpt_dir, state, &RestoreCheckpointOptions::default())?;
        log = Curves::load(&log_path, &COLUMNS)?;
        log.truncate_after(state.step as f64);
        println!("resumed at step {}", state.step);
    }
    let val_batches: Vec<(Tensor, Tensor)> = (0..args.eval_batches)
        .map(|i| get_batch(&val, val_rng.fold_in(i as u32), config.batch_size, config.block_size, device))
        .collect::<Result<_>>()?;

    let start = Instant::now();
    let bar = progress_bar(config.num_train_steps as u64, "training".into());
    bar.set_position(state.step as u64);
    let mut loss_sum = 0.0;
    while state.step < config.num_train_steps {
        let step_rng = train_rng.fold_in(state.step as u32 + 1);
        let (x, y) = get_batch(&train, step_rng, config.batch_size, config.block_size, device)?;
        let (next, loss) = train_step(state, &x, &y)?;
        state = next;
        loss_sum += loss;
        bar.inc(1);
        if state.step % config.eval_interval == 0 || state.step == config.num_train_steps {
            let steps = (state.step - 1) % config.eval_interval + 1;
            let val_loss = evaluate(&state, &val_batches)?;
            let row = [
                state.step as f64,
                loss_sum / steps as f64,
                val_loss,
                val_loss / std::f64::consts::LN_2,
                schedule.value(state.step),
            ];
            bar.suspend(|| {
                println!(
                    "step: {}, train_loss: {:.4}, val_loss: {:.4}, val_bpc: {:.4}, lr: {:.6}",
                    state.step, row[1], row[2], row[3], row[4]
                )
            });
            loss_sum = 0.0;
            log.push(&row)?;
            // A run that does not resume replaces the checkpoints of an earlier one (overwrite).
            let options = SaveCheckpointOptions::default().keep(2).overwrite(!args.resume);
            save_checkpoint(&ckpt_dir, &state, state.step, &options)?;
            log.save(&log_path)?;
        }
    }
    bar.finish_and_clear();
    println!("trained in {:.1} s; checkpoints in {}", start.elapsed().as_secs_f64(), ckpt_dir.display());
    let val_loss = evaluate_split(&state, &val, config.block_size, device)?;
    println!(
        "validation (all {} characters): loss {val_loss:.4} nats, {:.4} bits per character",
        val.size()[0],
        val_loss / std::f64::consts::LN_2
    );

    let plot = workdir.join("lm_curves.png");
    plot_curves(
        &plot,
        &log,
        &[
            ("Loss (nats per character)", &["train_loss", "val_loss"]),
            ("Validation bits per character", &["val_bpc"]),
        ],
    )
    .map_err(|e| flax::Error::Value(format!("could not plot {}: {e}", plot.display())))?;
    println!("curves in {}", plot.display());

    sample_and_time(&state, &config, &corpus, &args, init_rng, sample_rng, &workdir, device)
}

/// The model, its parameters from `init`, and AdamW with the warmup-cosine schedule after
/// clipping the gradient's global norm to 1; the schedule too, for the log.
fn get_train_state(
    args: &Args,
    config: &Config,
    vocab_size: i64,
    rng: PRNGKey,
    device: Device,
) -> Result<(State, Schedule)> {
    let model = config.model(vocab_size, false);
    let tokens = Tensor::ones([1, config.block_size], (Kind::Int64, device));
    let params = model.init(rng, &tokens)?.get_dict("params").cloned().unwrap_or_default();
    let peak = args.learning_rate;
    let schedule = optax::warmup_cosine_decay_schedule(
        0.0,
        peak,
        config.warmup_steps,
        config.num_train_steps,
        peak / 10.0,
        1.0,
    )?;
    // Biases and LayerNorm scales are not decayed (nanoGPT decays only matrices).
    let decayed = |path: &flax::tree::KeyPath<'_>, _: &Tensor| {
        !matches!(path.keys().last(), Some(Key::Name("bias" | "scale")))
    };
    let adamw = optax::adamw(schedule.clone()).b1(0.9).b2(0.99).weight_decay(args.weight_decay).mask(decayed);
    let tx = optax::chain((optax::clip_by_global_norm(1.0), adamw));
    Ok((TrainState::create(model, params, tx)?, schedule))
}

/// Samples `num_samples` texts of `block_size` characters after a newline twice: through the
/// decode cache (one position per call), and by running the model on the whole prefix at
/// every step, with the same keys; prints both rates, writes the cached samples to
/// `sample.txt`.
#[allow(clippy::too_many_arguments)]
fn sample_and_time(
    state: &State,
    config: &Config,
    corpus: &Corpus,
    args: &Args,
    init_rng: PRNGKey,
    sample_rng: PRNGKey,
    workdir: &Path,
    device: Device,
) -> Result<()> {
    let newline = corpus.chars.binary_search(&'\n').map_or(0, |i| i as i64);
    let first = Tensor::full([args.num_samples, 1], newline, (Kind::Int64, device));
    let pick = |logits: &Tensor, i: i64| -> Result<Tensor> {
        let last = logits.select(1, logits.size()[1] - 1) / args.temperature;
        Ok(flax::random::categorical(sample_rng.fold_in(i as u32), &last.to_device(Device::Cpu), -1)?
            .to_device(device)
            .unsqueeze(1))
    };
    let steps = config.block_size;
    tch::no_grad(|| -> Result<()> {
        // Cached: the decode model's cache comes from init on a full-length input.
        let decoder = config.model(corpus.vocab_size(), true);
        let full = Tensor::ones([args.num_samples, config.block_size], (Kind::Int64, device));
        let cache = decoder
            .init(init_rng, &full)?
            .get("cache")
            .cloned()
            .ok_or_else(|| flax::Error::Value("the decode model made no cache".into()))?;
        let mut decoding = frozen_dict! { "params": &state.params }.copy([("cache", cache)]);
        let started = Instant::now();
        let mut token = first.shallow_clone();
        let mut cached = Vec::new();
        for i in 0..steps {
            let (logits, updated) =
                decoder.apply_with(&decoding, ApplyOptions::new().mutable(["cache"]), &token)?;
            if let Some(cache) = updated.get("cache") {
                decoding = decoding.copy([("cache", cache.clone())]);
            }
            token = pick(&logits, i)?;
            cached.push(token.shallow_clone());
        }
        let cached_seconds = started.elapsed().as_secs_f64();

        // Recomputed: the whole prefix at every step.
        let params = frozen_dict! { "params": &state.params };
        let started = Instant::now();
        let mut prefix = first.shallow_clone();
        for i in 0..steps {
            let logits = state.apply_fn.apply(&params, &prefix)?;
            let next = pick(&logits, i)?;
            prefix = if prefix.size()[1] < steps { Tensor::cat(&[&prefix, &next], 1) } else { prefix };
        }
        let recomputed_seconds = started.elapsed().as_secs_f64();

        let tokens = (args.num_samples * steps) as f64;
        let (cached_rate, recomputed_rate) = (tokens / cached_seconds, tokens / recomputed_seconds);
        println!(
            "sampling {} texts of {steps} characters: {cached_rate:.0} tokens/s with the decode cache, {recomputed_rate:.0} tokens/s recomputing the prefix ({:.2}x)",
            args.num_samples,
            cached_rate / recomputed_rate
        );
        let cached = Tensor::cat(&cached, 1).to_device(Device::Cpu);
        let rows = Vec::<Vec<i64>>::try_from(&cached)?;
        let texts: Vec<String> = rows.iter().map(|row| corpus.decode(row)).collect();
        let same = Vec::<Vec<i64>>::try_from(prefix.narrow(1, 1, steps - 1).to_device(Device::Cpu))?
            .iter()
            .zip(&rows)
            .filter(|(recomputed, cached)| recomputed[..] == cached[..(steps - 1) as usize])
            .count();
        println!("{same} of {} samples are the same both ways (same keys)", args.num_samples);
        println!("sample (temperature {}):\n{}", args.temperature, texts[0]);
        let path = workdir.join("sample.txt");
        std::fs::write(&path, texts.join("\n----\n")).map_err(|e| flax::Error::io(&path, e))?;
        println!("{} samples in {}", args.num_samples, path.display());
        Ok(())
    })
}
