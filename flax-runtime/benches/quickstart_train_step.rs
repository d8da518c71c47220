//! The spec's quickstart training step (L232-249 and its `train_step`: the CNN's forward
//! pass, the mean softmax cross-entropy with integer labels, the gradients, and an
//! SGD(0.01, momentum 0.9) update) at batch 32 and 128, in this library against the same
//! step hand-written in `tch`, in one run and from the same weights.
//!
//! - `flax`: exactly `train_step` of `examples/examples/quickstart.rs`, what a user writes:
//!   `flax::grad` of the mean `optax::losses::softmax_cross_entropy_with_integer_labels`,
//!   then `TrainState::apply_gradients` (one `_fused_sgd_` kernel for every parameter).
//! - `tch_channels_last`: what a `tch` expert writes for the layout the library hands
//!   libtorch (NHWC data viewed as NCHW, kernels in channels-last memory format): the
//!   forward pass on the weights directly, `cross_entropy_for_logits`, `run_backward` on the
//!   leaves, and libtorch's SGD with momentum in place under `no_grad`, parameter by
//!   parameter (`buf = momentum * buf + g; p -= lr * buf`, three kernels per parameter, as
//!   `torch::optim::SGD` on CPU). The momentum buffers start at zero, so the first step's
//!   buffer is `g`, as libtorch's and Optax's.
//! - `tch_nchw`: the same, channels-first (NCHW data, OIHW kernels), as a PyTorch user
//!   writes it.
//!
//! Before timing, two steps of each version from the same weights are checked to give the
//! same parameters and the same loss.
//!
//! Timing: the versions run interleaved, round by round (the order rotating), each sample
//! being `--steps` consecutive steps after a warm-up; the table gives each version's median
//! step time and the median of its paired per-round ratio to `flax`, which a change in the
//! machine's load during the run cannot skew. Threads: `--threads N` (default 1,
//! `tch::set_num_threads`).
//!
//! Run: `cargo bench -p flax-runtime --bench quickstart_train_step [-- --threads 1 --rounds 30
//! --steps 5 --batches 32,128 --breakdown --json]`. `--json` prints one JSON line instead of
//! the table (for `scripts/bench/quickstart_train_step.py`, which adds PyTorch eager and
//! Flax/JAX-jit); `--breakdown` also times the forward pass alone, the forward and backward
//! pass, and the optimizer update separately.

// The tests' quickstart: the CNN and `train_step` of the example (the metrics go unused here).
#[allow(dead_code)]
#[path = "../tests/quickstart/mod.rs"]
mod quickstart;

use flax::optax;
use flax::prelude::*;
use flax::training::metrics::Collection;
use flax::training::TrainState;
use quickstart::{loss_and_logits, train_step, variables, Extra, Metrics, State, CNN};
use serde_json::json;
use std::time::Instant;

const LEARNING_RATE: f64 = 0.01;
const MOMENTUM: f64 = 0.9;

/// The quickstart example's `create_train_state`, from given parameters (copied, so that
/// the in-place updates leave the caller's alone).
fn create_train_state(params: &FrozenDict) -> State {
    let params = flax::tree::tree_map(params, |p| Ok(p.copy())).expect("copy params");
    let tx = optax::sgd(LEARNING_RATE).momentum(MOMENTUM);
    TrainState::create_with(CNN::new(), params, tx, Extra { metrics: Metrics::empty() }).expect("train state")
}

/// The gradients of the quickstart example's `train_step`.
fn flax_grads(state: &State, x: &Tensor, labels: &Tensor) -> FrozenDict {
    flax::grad(&state.params, |params| Ok(loss_and_logits(&state.apply_fn, params, x, labels)?.0))
        .expect("grad")
}

/// The quickstart example's `train_step`, as is.
fn flax_train_step(state: State, x: &Tensor, labels: &Tensor) -> State {
    train_step(state, x, labels).expect("train_step")
}

/// The same network and optimizer hand-written in `tch`, weights held directly.
struct HandWritten {
    /// Whether activations stay channels-last (NHWC memory) throughout.
    channels_last: bool,
    /// conv0 w, b; conv1 w, b; dense0 w, b; dense1 w, b (leaves requiring gradients).
    params: [Tensor; 8],
    /// The momentum buffers, one per parameter.
    bufs: [Tensor; 8],
    /// `-lr` as a 0-dimensional tensor, for `p += -lr * buf` in one kernel (`addcmul_`:
    /// tch exposes no `add_` with `alpha`).
    neg_lr: Tensor,
}

impl HandWritten {
    /// Takes the library's params: kernels HWIO -> OIHW (in channels-last memory format
    /// when `channels_last`); for channels-first, `Dense_0`'s rows reordered from Flax's
    /// (h, w, c) flattening to (c, h, w).
    fn new(params: &FrozenDict, channels_last: bool) -> Self {
        let params = Self::layout(params, channels_last).map(|t| t.set_requires_grad(true));
        let bufs = params.each_ref().map(Tensor::zeros_like);
        let neg_lr = Tensor::from(-LEARNING_RATE);
        HandWritten { channels_last, params, bufs, neg_lr }
    }

    /// The library's params in this version's layout (copies).
    fn layout(params: &FrozenDict, channels_last: bool) -> [Tensor; 8] {
        let p = |layer: &str, name: &str| params.tensor(&[layer, name]).expect("param").detach().copy();
        let conv = |layer: &str| {
            let oihw = p(layer, "kernel").permute([3, 2, 0, 1]);
            if channels_last {
                // OHWI memory, viewed as OIHW: libtorch's channels-last weights.
                oihw.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
            } else {
                oihw.contiguous()
            }
        };
        let dense0 = if channels_last {
            p("Dense_0", "kernel")
        } else {
            p("Dense_0", "kernel").reshape([7, 7, 64, 256]).permute([2, 0, 1, 3]).reshape([3136, 256])
        };
        [
            conv("Conv_0"),
            p("Conv_0", "bias"),
            conv("Conv_1"),
            p("Conv_1", "bias"),
            dense0,
            p("Dense_0", "bias"),
            p("Dense_1", "kernel"),
            p("Dense_1", "bias"),
        ]
    }

    /// The logits for `x`, NCHW (contiguous, or channels-last memory).
    fn forward(&self, x: &Tensor) -> Tensor {
        let [c0w, c0b, c1w, c1b, d0w, d0b, d1w, d1b] = &self.params;
        let pool = |t: &Tensor| t.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
        let x = x.conv2d(c0w, Some(c0b), [1, 1], [1, 1], [1, 1], 1).relu();
        let x = pool(&x);
        let x = x.conv2d(c1w, Some(c1b), [1, 1], [1, 1], [1, 1], 1).relu();
        let x = pool(&x);
        // Channels-last memory is NHWC: viewed as such it flattens without a copy.
        let x = if self.channels_last { x.permute([0, 2, 3, 1]).flatten(1, -1) } else { x.flatten(1, -1) };
        let x = d0b.addmm(&x, d0w).relu();
        d1b.addmm(&x, d1w)
    }

    /// The mean cross-entropy and the gradient of every weight (`run_backward` on the
    /// leaves: nothing accumulates in `.grad`, so there is nothing to zero).
    fn grads(&self, x: &Tensor, labels: &Tensor) -> Vec<Tensor> {
        let loss = self.forward(x).cross_entropy_for_logits(labels);
        Tensor::run_backward(&[&loss], &self.params, false, false)
    }

    /// libtorch's SGD with momentum, in place: `buf = momentum * buf + g; p -= lr * buf`.
    fn update(&mut self, grads: &[Tensor]) {
        tch::no_grad(|| {
            for ((p, buf), g) in self.params.iter_mut().zip(&mut self.bufs).zip(grads) {
                *buf *= MOMENTUM;
                *buf += g;
                let _ = p.addcmul_(buf, &self.neg_lr);
            }
        });
    }

    fn train_step(&mut self, x: &Tensor, labels: &Tensor) {
        let grads = self.grads(x, labels);
        self.update(&grads);
    }

    /// The input as this version takes it: NHWC data viewed as NCHW, channels-last in memory
    /// or copied to contiguous NCHW (what a channels-first data pipeline hands over).
    fn input(&self, nhwc: &Tensor) -> Tensor {
        let nchw = nhwc.permute([0, 3, 1, 2]);
        if self.channels_last {
            nchw
        } else {
            nchw.contiguous()
        }
    }
}

/// A deterministic batch without libtorch's global generator: NHWC images and int64 labels.
fn batch(size: i64, seed: f64) -> (Tensor, Tensor) {
    let x = (Tensor::arange(size * 28 * 28, (Kind::Float, Device::Cpu)) * 0.37 + seed)
        .sin()
        .reshape([size, 28, 28, 1]);
    let labels = (Tensor::arange(size, (Kind::Int64, Device::Cpu)) * 7 + seed as i64).remainder(10);
    (x, labels)
}

/// Two steps of the library and of each hand-written version from the same weights, on two
/// batches: the updated parameters and the loss they give agree.
fn check_agreement(init: &FrozenDict, size: i64) {
    let batches = [batch(size, 0.0), batch(size, 1.0)];
    let mut state = create_train_state(init);
    for (x, y) in &batches {
        state = flax_train_step(state, x, y);
    }
    let logits = state.apply_fn.apply(&variables(&state.params), &batches[0].0).expect("apply");
    let loss = optax::losses::softmax_cross_entropy_with_integer_labels(&logits, &batches[0].1)
        .expect("loss")
        .mean(Kind::Float);
    for channels_last in [true, false] {
        let mut hand = HandWritten::new(init, channels_last);
        for (x, y) in &batches {
            hand.train_step(&hand.input(x), y);
        }
        let hand_loss =
            tch::no_grad(|| hand.forward(&hand.input(&batches[0].0)).cross_entropy_for_logits(&batches[0].1));
        assert!(loss.allclose(&hand_loss, 1e-5, 1e-6, false), "losses differ: {loss} vs {hand_loss}");
        let expected = HandWritten::layout(&state.params, channels_last);
        for (i, (a, b)) in expected.iter().zip(&hand.params).enumerate() {
            assert!(a.allclose(b, 1e-4, 1e-6, false), "parameter {i} differs after two steps");
        }
    }
}

/// Command-line options (after cargo's own `--bench`).
struct Options {
    threads: i32,
    rounds: usize,
    steps: usize,
    warmup: usize,
    batches: Vec<i64>,
    breakdown: bool,
    json: bool,
}

impl Options {
    fn parse() -> Self {
        let mut o = Options {
            threads: 1,
            rounds: 30,
            steps: 5,
            warmup: 5,
            batches: vec![32, 128],
            breakdown: false,
            json: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
            match arg.as_str() {
                "--threads" => o.threads = value().parse().expect("--threads N"),
                "--rounds" => o.rounds = value().parse().expect("--rounds N"),
                "--steps" => o.steps = value().parse().expect("--steps N"),
                "--warmup" => o.warmup = value().parse().expect("--warmup N"),
                "--batches" => {
                    o.batches = value().split(',').map(|b| b.parse().expect("--batches 32,128")).collect()
                }
                "--breakdown" => o.breakdown = true,
                "--json" => o.json = true,
                "--bench" => {} // cargo bench passes it to every bench binary
                other => panic!("unknown argument {other}; see the doc comment at the top of this bench"),
            }
        }
        o
    }
}

/// A timed version: one step on its own state.
struct Version<'a> {
    name: &'static str,
    /// The index of the library's version this one is compared with.
    base: usize,
    step: Box<dyn FnMut() + 'a>,
}

/// Runs the versions interleaved (`warmup` steps each first), `rounds` samples of `steps`
/// steps each, the order rotating every round; each version's per-step times in seconds.
fn interleaved(versions: &mut [Version<'_>], o: &Options) -> Vec<Vec<f64>> {
    for v in versions.iter_mut() {
        (0..o.warmup).for_each(|_| (v.step)());
    }
    let mut times = vec![Vec::with_capacity(o.rounds); versions.len()];
    for round in 0..o.rounds {
        for k in 0..versions.len() {
            let i = (k + round) % versions.len();
            let start = Instant::now();
            (0..o.steps).for_each(|_| (versions[i].step)());
            times[i].push(start.elapsed().as_secs_f64() / o.steps as f64);
        }
    }
    times
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median of `times[i] / base[i]`, round by round.
fn paired_ratio(times: &[f64], base: &[f64]) -> f64 {
    median(times.iter().zip(base).map(|(t, b)| t / b).collect())
}

/// The full-step versions at one batch size, each on its own state from `init`.
fn full_steps<'a>(init: &FrozenDict, x: &'a Tensor, labels: &'a Tensor) -> Vec<Version<'a>> {
    let mut state = Some(create_train_state(init));
    let mut versions = vec![Version {
        name: "flax",
        base: 0,
        step: Box::new(move || state = Some(flax_train_step(state.take().expect("state"), x, labels))),
    }];
    for (name, channels_last) in [("tch_channels_last", true), ("tch_nchw", false)] {
        let mut hand = HandWritten::new(init, channels_last);
        let input = hand.input(x);
        versions.push(Version { name, base: 0, step: Box::new(move || hand.train_step(&input, labels)) });
    }
    versions
}

/// Parts of a step timed apart, for the library and the channels-last `tch`: the forward
/// pass alone (no gradients recorded), the gradients alone (forward and backward pass), and
/// the update alone (on fixed gradients, each step still updating the parameters and
/// momentum in place).
fn breakdown<'a>(init: &FrozenDict, x: &'a Tensor, labels: &'a Tensor) -> Vec<Version<'a>> {
    let forward_state = create_train_state(init);
    let forward_hand = HandWritten::new(init, true);
    let forward_input = forward_hand.input(x);
    let state = create_train_state(init);
    let grads = flax_grads(&state, x, labels);
    let mut update_state = Some(create_train_state(init));
    let hand = HandWritten::new(init, true);
    let input = hand.input(x);
    let hand_grads = hand.grads(&input, labels);
    let mut hand_update = HandWritten::new(init, true);
    vec![
        Version {
            name: "flax_forward",
            base: 0,
            step: Box::new(move || {
                let variables = variables(&forward_state.params);
                drop(tch::no_grad(|| forward_state.apply_fn.apply(&variables, x)).expect("apply"))
            }),
        },
        Version {
            name: "tch_channels_last_forward",
            base: 0,
            step: Box::new(move || drop(tch::no_grad(|| forward_hand.forward(&forward_input)))),
        },
        Version { name: "flax_grad", base: 2, step: Box::new(move || drop(flax_grads(&state, x, labels))) },
        Version {
            name: "tch_channels_last_grad",
            base: 2,
            step: Box::new(move || drop(hand.grads(&input, labels))),
        },
        Version {
            name: "flax_apply_gradients",
            base: 4,
            step: Box::new(move || {
                let grads = flax::tree::tree_map(&grads, |g| Ok(g.shallow_clone())).expect("grads");
                update_state =
                    Some(update_state.take().expect("state").apply_gradients(grads).expect("update"));
            }),
        },
        Version {
            name: "tch_channels_last_update",
            base: 4,
            step: Box::new(move || hand_update.update(&hand_grads)),
        },
    ]
}

/// Times `versions` and returns one JSON row per version: median step time, steps per
/// second, the median paired ratio of its time to its base's, and the samples.
fn measure(mut versions: Vec<Version<'_>>, o: &Options, batch: i64) -> Vec<serde_json::Value> {
    let times = interleaved(&mut versions, o);
    let rows = versions.iter().zip(&times).map(|(v, t)| {
        let seconds = median(t.clone());
        json!({"name": v.name, "batch": batch, "median_s": seconds, "steps_per_s": 1.0 / seconds,
               "flax_time_over_this": 1.0 / paired_ratio(t, &times[v.base]), "samples_s": t})
    });
    rows.collect()
}

fn main() {
    let o = Options::parse();
    tch::set_num_threads(o.threads);
    let template = Tensor::ones([1, 28, 28, 1], (Kind::Float, Device::Cpu));
    let init = CNN::new().init(PRNGKey::new(0), &template).expect("init");
    let init = init.get_dict("params").cloned().expect("params");
    let mut rows = Vec::new();
    for &size in &o.batches {
        check_agreement(&init, size);
        let (x, labels) = batch(size, 0.0);
        rows.extend(measure(full_steps(&init, &x, &labels), &o, size));
        if o.breakdown {
            rows.extend(measure(breakdown(&init, &x, &labels), &o, size));
        }
    }
    if o.json {
        println!("{}", json!({"threads": o.threads, "steps": o.steps, "rounds": o.rounds, "rows": rows}));
    } else {
        print_table(&rows, &o);
    }
}

/// The readable table: per version, its median step time, steps per second, and the median
/// paired ratio of the library's speed to its own.
fn print_table(rows: &[serde_json::Value], o: &Options) {
    println!("quickstart train step, {} thread(s), {} rounds of {} steps", o.threads, o.rounds, o.steps);
    println!(
        "{:<26} {:>5} {:>11} {:>9} {:>16}",
        "version", "batch", "median ms", "steps/s", "flax time / this"
    );
    for r in rows {
        println!(
            "{:<26} {:>5} {:>11.3} {:>9.1} {:>16.3}",
            r["name"].as_str().unwrap_or(""),
            r["batch"],
            r["median_s"].as_f64().unwrap_or(f64::NAN) * 1e3,
            r["steps_per_s"].as_f64().unwrap_or(f64::NAN),
            r["flax_time_over_this"].as_f64().unwrap_or(f64::NAN),
        );
    }
}
