//! An LSTM sequence classifier's training step (issue 16's benchmark): token ids `(32, 50)`
//! from a vocabulary of 1000, `Embed` to 128 features, `RNN(LSTMCell)` of 256 units over the 50
//! steps, a `Dense` head on the last hidden state to 10 classes, the mean softmax
//! cross-entropy with integer labels, the gradients, and an Adam(1e-3) update — what a user
//! writes with this library (`flax::grad`, `TrainState::apply_gradients`).
//!
//! Versions, in one process, from the same initial params:
//! - `flax`: the RNN as is, which runs the LSTM as libtorch's fused `lstm` operator at
//!   `apply` (oneDNN on CPU);
//! - `flax_per_step`: the same with `fused(false)`, the cell scanned step by step (Flax's
//!   formulation, as before the fused path);
//! - `flax_optimized_per_step`: `OptimizedLSTMCell` (one matrix product per step for the
//!   input and one for `h`, its kernels concatenated once per sequence) scanned step by step.
//!
//! Before timing, one step of each from the same params is checked to give the same loss.
//! The versions run interleaved, round by round; a sample is `--steps` consecutive steps after
//! a warm-up, timed by the wall clock and by the process's CPU time (the robust measure on a
//! shared machine). Threads: `--threads N` (default 1, `tch::set_num_threads`).
//!
//! Run: `cargo bench -p flax-runtime --bench lstm_train_step [-- --rounds 5 --steps 3
//! --json]`. `--json` prints one JSON line (for `scripts/bench/lstm_train_step.py`, which adds
//! PyTorch's `nn.LSTM` and Flax/JAX-jit, each process pinned to one core).

use flax::nn::initializers::Initializer;
use flax::optax;
use flax::optax::losses::softmax_cross_entropy_with_integer_labels;
use flax::prelude::*;
use flax::training::TrainState;
use serde_json::json;
use std::time::Instant;

const VOCAB: i64 = 1000;
const EMBED: i64 = 128;
const HIDDEN: i64 = 256;
const STEPS: i64 = 50;
const BATCH: i64 = 32;
const CLASSES: i64 = 10;
const LEARNING_RATE: f64 = 1e-3;

/// Embed → LSTM → Dense on the last hidden state.
#[module]
pub struct LstmClassifier {
    /// Whether the RNN may take the fused path.
    pub fused: bool,
    /// Whether the cell is `OptimizedLSTMCell` (same params as `LSTMCell`).
    pub optimized: bool,
}

#[module]
impl LstmClassifier {
    #[compact]
    pub fn call(&self, cx: &mut Scope, tokens: &Tensor) -> Result<Tensor> {
        let x = nn::Embed::new(VOCAB, EMBED).call(cx, tokens)?;
        // One name for both cells, so that they share one param tree.
        let ((_, h), _) = if self.optimized {
            let cell = nn::OptimizedLSTMCell::new().name("cell");
            nn::RNN::new(cell, HIDDEN).fused(self.fused).call(cx, &x, None, None)?
        } else {
            let cell = nn::LSTMCell::new().name("cell");
            nn::RNN::new(cell, HIDDEN).fused(self.fused).call(cx, &x, None, None)?
        };
        nn::Dense::new(CLASSES).call(cx, &h)
    }
}

type State = TrainState<LstmClassifier, FrozenDict, optax::Adam>;

fn variables(params: &FrozenDict) -> Variables {
    flax::frozen_dict! { "params": params }
}

fn loss(model: &LstmClassifier, params: &FrozenDict, tokens: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let logits = model.apply(&variables(params), tokens)?;
    Ok(softmax_cross_entropy_with_integer_labels(&logits, labels)?.mean(Kind::Float))
}

/// The training step, as a user writes it.
fn train_step(state: State, tokens: &Tensor, labels: &Tensor) -> Result<(State, Tensor)> {
    let (value, grads) = flax::value_and_grad(&state.params, |p| loss(&state.apply_fn, p, tokens, labels))?;
    Ok((state.apply_gradients(grads)?, value))
}

fn create(fused: bool, optimized: bool, params: &FrozenDict) -> State {
    let params = flax::tree::tree_map(params, |p| Ok(p.copy())).expect("copy params");
    TrainState::create(LstmClassifier::new(fused, optimized), params, optax::adam(LEARNING_RATE))
        .expect("train state")
}

/// The versions compared: name, fused, optimized cell.
const VERSIONS: [(&str, bool, bool); 3] =
    [("flax", true, false), ("flax_per_step", false, false), ("flax_optimized_per_step", false, true)];

struct Args {
    threads: i32,
    rounds: usize,
    steps: usize,
    warmup: usize,
    json: bool,
    breakdown: bool,
}

fn parse_args() -> Args {
    let mut args = Args { threads: 1, rounds: 5, steps: 3, warmup: 2, json: false, breakdown: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse::<usize>().ok()).expect("a number after the flag");
        match arg.as_str() {
            "--threads" => args.threads = value() as i32,
            "--rounds" => args.rounds = value(),
            "--steps" => args.steps = value(),
            "--warmup" => args.warmup = value(),
            "--json" => args.json = true,
            "--breakdown" => args.breakdown = true,
            // cargo bench passes `--bench`.
            _ => {}
        }
    }
    args
}

/// CPU time of this process, in ms (all threads): on a shared machine, the work done,
/// whatever the waits for a core.
fn cpu_ms() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes the clock's value into `t`.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// CPU ms per call of `f`, median of 5 samples of `n` calls.
fn time_cpu(n: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut samples = Vec::new();
    for _ in 0..5 {
        let start = cpu_ms();
        for _ in 0..n {
            f();
        }
        samples.push((cpu_ms() - start) / n as f64);
    }
    median(&samples)
}

/// The step's parts, in CPU time: the forward pass (with autograd recording), the forward and
/// backward pass (`value_and_grad`), the update.
fn breakdown(params: &FrozenDict, tokens: &Tensor, labels: &Tensor, n: usize) {
    let state = create(true, false, params);
    let forward = time_cpu(n, || {
        let _ = loss(&state.apply_fn, &state.params, tokens, labels).expect("loss");
    });
    let grads = || flax::grad(&state.params, |p| loss(&state.apply_fn, p, tokens, labels)).expect("grad");
    let backward = time_cpu(n, || {
        grads();
    });
    let g = grads();
    let mut state = Some(state);
    let update = time_cpu(n, || {
        let s = state.take().expect("state");
        state = Some(s.apply_gradients(flax::tree::shallow_clone(&g).expect("grads")).expect("update"));
    });
    let contiguous = flax::tree::tree_map(&g, |t| Ok(t.contiguous())).expect("grads");
    let update_contiguous = time_cpu(n, || {
        let s = state.take().expect("state");
        state =
            Some(s.apply_gradients(flax::tree::shallow_clone(&contiguous).expect("grads")).expect("update"));
    });
    println!(
        "CPU ms: forward {forward:.2}, forward+backward {backward:.2}, update {update:.2} \
         (with contiguous gradients {update_contiguous:.2})"
    );
}

fn main() {
    let args = parse_args();
    tch::set_num_threads(args.threads);
    let gen = PRNGKey::new(0).split(2);
    let tokens = flax::nn::initializers::uniform(VOCAB as f64).init(
        gen[0],
        &[BATCH, STEPS],
        (Kind::Float, Device::Cpu),
    );
    let tokens = tokens.expect("tokens").to_kind(Kind::Int64);
    let labels = flax::nn::initializers::uniform(CLASSES as f64)
        .init(gen[1], &[BATCH], (Kind::Float, Device::Cpu))
        .expect("labels")
        .to_kind(Kind::Int64);
    let init = LstmClassifier::new(true, false).init(PRNGKey::new(42), &tokens).expect("init");
    let params = init.get_dict("params").expect("params").clone();

    // Same loss and same update from the same params.
    let (_, fused_loss) = train_step(create(true, false, &params), &tokens, &labels).expect("step");
    for (name, fused, optimized) in &VERSIONS[1..] {
        let (_, step_loss) = train_step(create(*fused, *optimized, &params), &tokens, &labels).expect("step");
        let (a, b) = (fused_loss.double_value(&[]), step_loss.double_value(&[]));
        assert!((a - b).abs() < 1e-5, "fused loss {a} vs {name} loss {b}");
    }

    if args.breakdown {
        breakdown(&params, &tokens, &labels, args.steps.max(5));
        return;
    }
    let names = VERSIONS.map(|(name, _, _)| name);
    let mut states: Vec<Option<State>> =
        VERSIONS.iter().map(|(_, fused, optimized)| Some(create(*fused, *optimized, &params))).collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for state in states.iter_mut() {
        for _ in 0..args.warmup {
            let s = state.take().expect("state");
            *state = Some(train_step(s, &tokens, &labels).expect("step").0);
        }
    }
    for round in 0..args.rounds {
        for k in 0..names.len() {
            let i = (k + round) % names.len();
            let mut state = states[i].take().expect("state");
            let (start, start_cpu) = (Instant::now(), cpu_ms());
            for _ in 0..args.steps {
                state = train_step(state, &tokens, &labels).expect("step").0;
            }
            samples[i].push(start.elapsed().as_secs_f64() * 1e3 / args.steps as f64);
            cpu[i].push((cpu_ms() - start_cpu) / args.steps as f64);
            states[i] = Some(state);
        }
    }
    if args.json {
        let out: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .zip(samples.iter().zip(&cpu))
            .map(|(n, (wall, cpu))| (n.to_string(), json!({ "wall": wall, "cpu": cpu })))
            .collect();
        println!("{}", serde_json::Value::Object(out));
    } else {
        println!(
            "LSTM train step (batch {BATCH}, {STEPS} steps, {HIDDEN} units), {} thread(s)",
            args.threads
        );
        let (base, base_cpu) = (median(&samples[0]), median(&cpu[0]));
        for (name, (s, c)) in names.iter().zip(samples.iter().zip(&cpu)) {
            let (m, mc) = (median(s), median(c));
            println!(
                "{name:>23}: {m:8.2} ms/step wall ({:.2}x flax's), {mc:8.2} ms/step CPU ({:.2}x flax's)",
                m / base,
                mc / base_cpu
            );
        }
    }
}
