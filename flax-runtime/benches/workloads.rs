//! The workload suite of issue 17, in this library as a user writes it: a pre-LayerNorm
//! transformer encoder training step, a small ResNet training step with BatchNorm, batch-1
//! inference latency of the transformer, and the spec's quickstart training step. The same
//! models are in `scripts/bench/workloads_torch.py` (PyTorch eager) and
//! `scripts/bench/workloads_jax.py` (Flax/JAX-jit); `scripts/bench/workloads.py` runs all
//! three in one run, alternating, and computes the ratios (see
//! `scripts/bench/README-workloads.md`).
//!
//! - `transformer_train`: tokens `(16, 64)` from a vocabulary of 1024, a learned token and
//!   position `Embed` (d 256), two pre-LayerNorm blocks (LayerNorm, 4-head
//!   `MultiHeadDotProductAttention`, residual; LayerNorm, Dense 1024, tanh-GELU, Dense 256,
//!   residual), a final LayerNorm and a Dense to the vocabulary; the mean integer-label
//!   softmax cross-entropy, `flax::grad`, and Adam(1e-3) through `TrainState`.
//! - `transformer_infer_b1`: the same encoder's `apply` on one sequence of 64 tokens.
//! - `resnet_train`: NHWC images `(64, 32, 32, 3)`, a 3x3 conv (16) with BatchNorm, three
//!   stages (16, 32, 64 features) of two basic blocks each (Flax's `ResNetBlock`: conv,
//!   BatchNorm, ReLU, conv, BatchNorm, a 1x1 strided conv with BatchNorm on the shortcut
//!   where the shape changes), fifteen BatchNorms (momentum 0.9), the spatial mean and a
//!   Dense to 10 classes; the cross-entropy, `flax::value_and_grad_with_aux` with
//!   `batch_stats` mutable, and SGD(0.1, momentum 0.9).
//! - `quickstart_train_b32`: the quickstart example's `train_step` at batch 32.
//!
//! Protocol (`--serve`, what the driver uses): after building every workload and running
//! `--warmup` untimed steps of each, prints `{"ready": [names]}`; then for each line `run
//! NAME SAMPLES STEPS` on stdin prints `{"name", "samples_s"}`, the seconds per step of
//! each sample of `STEPS` consecutive steps. Without `--serve` it prints its own medians:
//! `cargo bench -p flax-runtime --bench workloads [-- --threads 1 --samples 10]`.

#[allow(dead_code)]
#[path = "../tests/quickstart/mod.rs"]
mod quickstart;

use flax::optax::{self, Adam, Sgd};
use flax::prelude::*;
use flax::training::TrainState;
use flax::Value;
use serde_json::json;
use std::io::BufRead;
use std::time::Instant;

const VOCAB: i64 = 1024;
const D_MODEL: i64 = 256;
const HEADS: i64 = 4;
const MLP_DIM: i64 = 1024;
const LAYERS: usize = 2;
const SEQ_LEN: i64 = 64;
const TRANSFORMER_BATCH: i64 = 16;
const RESNET_BATCH: i64 = 64;

/// A pre-LayerNorm transformer encoder block.
#[module]
pub struct EncoderBlock {
    pub num_heads: i64,
    pub mlp_dim: i64,
}

#[module]
impl EncoderBlock {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let features = *x.size().last().unwrap_or(&1);
        let h = nn::LayerNorm::new().call(cx, x)?;
        let h = nn::MultiHeadDotProductAttention::new(self.num_heads).call(cx, &h, &h, None, None)?;
        let x = x + h;
        let h = nn::LayerNorm::new().call(cx, &x)?;
        let h = nn::Dense::new(self.mlp_dim).call(cx, &h)?;
        let h = nn::gelu(&h)?;
        let h = nn::Dense::new(features).call(cx, &h)?;
        Ok(x + h)
    }
}

/// Token and position embeddings, the blocks, a final LayerNorm and the vocabulary logits.
#[module]
pub struct Encoder;

#[module]
impl Encoder {
    #[compact]
    pub fn call(&self, cx: &mut Scope, tokens: &Tensor) -> Result<Tensor> {
        let positions = Tensor::arange(tokens.size()[1], (Kind::Int64, tokens.device()));
        let mut x = nn::Embed::new(VOCAB, D_MODEL).call(cx, tokens)?
            + nn::Embed::new(SEQ_LEN, D_MODEL).call(cx, &positions)?;
        for _ in 0..LAYERS {
            x = EncoderBlock::new(HEADS, MLP_DIM).call(cx, &x)?;
        }
        let x = nn::LayerNorm::new().call(cx, &x)?;
        nn::Dense::new(VOCAB).call(cx, &x)
    }
}

/// Flax's `ResNetBlock` (the ImageNet example's, without the zero scale init).
#[module]
pub struct ResNetBlock {
    pub features: i64,
    pub strides: i64,
}

#[module]
impl ResNetBlock {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = conv(self.features, 3, self.strides).call(cx, x)?;
        let y = norm().call(cx, &y, Some(!train))?.relu();
        let y = conv(self.features, 3, 1).call(cx, &y)?;
        let y = norm().call(cx, &y, Some(!train))?;
        let residual = if x.size() != y.size() {
            let r = conv(self.features, 1, self.strides).call(cx, x)?;
            norm().call(cx, &r, Some(!train))?
        } else {
            x.shallow_clone()
        };
        Ok((residual + y).relu())
    }
}

/// A convolution without bias, `SAME` padding.
fn conv(features: i64, size: i64, strides: i64) -> nn::Conv {
    nn::Conv::new(features, vec![size, size]).strides(strides).use_bias(false)
}

/// The ImageNet example's BatchNorm.
fn norm() -> nn::BatchNorm {
    nn::BatchNorm::new().momentum(0.9)
}

/// A ResNet for 32x32 images: stem, three stages of two blocks, mean, Dense.
#[module]
pub struct ResNet;

#[module]
impl ResNet {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = conv(16, 3, 1).call(cx, x)?;
        let mut x = norm().call(cx, &x, Some(!train))?.relu();
        for (stage, features) in [16, 32, 64].into_iter().enumerate() {
            for block in 0..2 {
                let strides = if stage > 0 && block == 0 { 2 } else { 1 };
                x = ResNetBlock::new(features, strides).call(cx, &x, train)?;
            }
        }
        let x = x.f_mean_dim(&[1i64, 2][..], false, Kind::Float)?;
        nn::Dense::new(10).call(cx, &x)
    }
}

/// `{name: tree}` as `apply` takes it.
fn variables(collections: &[(&str, &FrozenDict)]) -> Variables {
    collections.iter().map(|(name, tree)| (name.to_string(), Value::Dict((*tree).clone()))).collect()
}

fn collection(vars: &Variables, name: &str) -> FrozenDict {
    vars.get_dict(name).cloned().unwrap_or_default()
}

/// Deterministic integer data in `[0, n)` without libtorch's global generator.
fn ints(shape: &[i64], n: i64, seed: i64) -> Tensor {
    let count: i64 = shape.iter().product();
    ((Tensor::arange(count, (Kind::Int64, Device::Cpu)) * 7919 + seed * 104_729).remainder(n)).reshape(shape)
}

type EncoderState = TrainState<Encoder, FrozenDict, Adam>;

/// The transformer's training step as a user writes it.
fn transformer_step(state: EncoderState, tokens: &Tensor, labels: &Tensor) -> Result<EncoderState> {
    let grads = flax::grad(&state.params, |params| {
        let logits = state.apply_fn.apply(&variables(&[("params", params)]), tokens)?;
        Ok(optax::losses::softmax_cross_entropy_with_integer_labels(&logits, labels)?.mean(Kind::Float))
    })?;
    state.apply_gradients(grads)
}

type ResNetState = TrainState<ResNet, FrozenDict, Sgd, FrozenDict>;

/// The ResNet's training step as the guides write it: new `batch_stats` as auxiliary output.
fn resnet_step(state: ResNetState, images: &Tensor, labels: &Tensor) -> Result<ResNetState> {
    let (_, updates, grads) = flax::value_and_grad_with_aux(&state.params, |params| {
        let vars = variables(&[("params", params), ("batch_stats", &state.extra)]);
        let options = ApplyOptions::new().mutable(["batch_stats"]);
        let (logits, updates) = state.apply_fn.apply_with(&vars, options, images, true)?;
        let loss =
            optax::losses::softmax_cross_entropy_with_integer_labels(&logits, labels)?.mean(Kind::Float);
        Ok((loss, updates))
    })?;
    let state = state.apply_gradients(grads)?;
    Ok(TrainState { extra: collection(&updates, "batch_stats"), ..state })
}

/// A named workload: one step per call.
struct Workload {
    name: &'static str,
    step: Box<dyn FnMut() -> Result<()>>,
}

/// A step function over a state that each step consumes and returns.
fn stateful<S: 'static>(
    name: &'static str,
    state: S,
    mut step: impl FnMut(S) -> Result<S> + 'static,
) -> Workload {
    let mut state = Some(state);
    Workload {
        name,
        step: Box::new(move || {
            let s = state.take().ok_or_else(|| flax::Error::Value("a previous step failed".into()))?;
            state = Some(step(s)?);
            Ok(())
        }),
    }
}

fn workloads() -> Result<Vec<Workload>> {
    let encoder_vars = Encoder::new().init(PRNGKey::new(0), &ints(&[1, SEQ_LEN], VOCAB, 0))?;
    let encoder_params = collection(&encoder_vars, "params");
    let tokens = ints(&[TRANSFORMER_BATCH, SEQ_LEN], VOCAB, 1);
    let targets = ints(&[TRANSFORMER_BATCH, SEQ_LEN], VOCAB, 2);
    let state = TrainState::create(Encoder::new(), encoder_params.clone(), optax::adam(1e-3))?;
    let transformer = stateful("transformer_train", state, move |s| transformer_step(s, &tokens, &targets));

    let one = ints(&[1, SEQ_LEN], VOCAB, 3);
    let infer_vars = variables(&[("params", &encoder_params)]);
    let infer = Workload {
        name: "transformer_infer_b1",
        step: Box::new(move || Encoder::new().apply(&infer_vars, &one).map(drop)),
    };

    let images = (Tensor::arange(RESNET_BATCH * 32 * 32 * 3, (Kind::Float, Device::Cpu)) * 0.37)
        .sin()
        .reshape([RESNET_BATCH, 32, 32, 3]);
    let classes = ints(&[RESNET_BATCH], 10, 4);
    let resnet_vars = ResNet::new().init(PRNGKey::new(0), &images.narrow(0, 0, 1), false)?;
    let tx = optax::sgd(0.1).momentum(0.9);
    let state = TrainState::create_with(
        ResNet::new(),
        collection(&resnet_vars, "params"),
        tx,
        collection(&resnet_vars, "batch_stats"),
    )?;
    let resnet = stateful("resnet_train", state, move |s| resnet_step(s, &images, &classes));

    let template = Tensor::ones([1, 28, 28, 1], (Kind::Float, Device::Cpu));
    let cnn_params = collection(&quickstart::CNN::new().init(PRNGKey::new(0), &template)?, "params");
    let tx = optax::sgd(0.01).momentum(0.9);
    let extra = quickstart::Extra { metrics: flax::training::metrics::Collection::empty() };
    let state: quickstart::State = TrainState::create_with(quickstart::CNN::new(), cnn_params, tx, extra)?;
    let x = (Tensor::arange(32 * 28 * 28, (Kind::Float, Device::Cpu)) * 0.37).sin().reshape([32, 28, 28, 1]);
    let y = ints(&[32], 10, 5);
    let quick = stateful("quickstart_train_b32", state, move |s| quickstart::train_step(s, &x, &y));
    Ok(vec![transformer, resnet, infer, quick])
}

/// Seconds per step of each of `samples` samples of `steps` steps.
fn time(w: &mut Workload, samples: usize, steps: usize) -> Result<Vec<f64>> {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        for _ in 0..steps {
            (w.step)()?;
        }
        times.push(start.elapsed().as_secs_f64() / steps as f64);
    }
    Ok(times)
}

/// Command-line options (after cargo's own `--bench`).
struct Options {
    threads: i32,
    warmup: usize,
    samples: usize,
    serve: bool,
}

fn options() -> Result<Options> {
    let mut o = Options { threads: 1, warmup: 3, samples: 10, serve: false };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || -> Result<usize> {
            let value = args.next().ok_or_else(|| flax::Error::Value(format!("{arg} needs a value")))?;
            value.parse().map_err(|_| flax::Error::Value(format!("{arg} takes a number, not {value}")))
        };
        match arg.as_str() {
            "--threads" => o.threads = number()? as i32,
            "--warmup" => o.warmup = number()?,
            "--samples" => o.samples = number()?,
            "--serve" => o.serve = true,
            "--bench" => {}
            other => {
                return Err(flax::Error::Value(format!("unknown argument {other}; see this bench's doc")))
            }
        }
    }
    Ok(o)
}

/// Answers `run NAME SAMPLES STEPS` lines until stdin closes.
fn serve(all: &mut [Workload]) -> Result<()> {
    let names: Vec<_> = all.iter().map(|w| w.name).collect();
    println!("{}", json!({ "ready": names }));
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| flax::Error::Value(e.to_string()))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let [_, name, samples, steps] = words[..] else {
            return Err(flax::Error::Value(format!("expected `run NAME SAMPLES STEPS`, got {line:?}")));
        };
        let parse = |s: &str| s.parse::<usize>().map_err(|_| flax::Error::Value(format!("bad number {s}")));
        let w = all
            .iter_mut()
            .find(|w| w.name == name)
            .ok_or_else(|| flax::Error::Value(format!("no workload {name}")))?;
        let samples = time(w, parse(samples)?, parse(steps)?)?;
        println!("{}", json!({ "name": name, "samples_s": samples }));
    }
    Ok(())
}

fn main() -> Result<()> {
    let o = options()?;
    tch::set_num_threads(o.threads);
    let mut all = workloads()?;
    for w in &mut all {
        time(w, 1, o.warmup)?;
    }
    if o.serve {
        return serve(&mut all);
    }
    println!("workloads, {} thread(s), median of {} samples", o.threads, o.samples);
    for w in &mut all {
        let steps = if w.name.contains("infer") || w.name.contains("quickstart") { 20 } else { 2 };
        let mut t = time(w, o.samples, steps)?;
        t.sort_by(f64::total_cmp);
        println!("{:<24} {:>9.3} ms", w.name, t[t.len() / 2] * 1e3);
    }
    Ok(())
}
