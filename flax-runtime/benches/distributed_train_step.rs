//! The quickstart train step at global batch 64, data parallel over processes against one
//! process (issue 13): throughput, bytes communicated per step, and the share of the step
//! spent waiting on communication, with the gradients' all-reduce after backward (`pmean`)
//! and overlapping it (`value_and_grad_pmean`).
//!
//! Configurations, each a fresh set of processes running `--iters` steps after 3 warm-up
//! steps (rounds alternate the configurations; the table gives medians over `--rounds`):
//! - `1 proc x 1 thread`, `1 proc x 2 threads`: plain `flax::grad`, batch 64;
//! - `2 procs x 1 thread, pmean`: each rank 32 examples, `group.pmean(&grads)` after backward;
//! - `2 procs x 1 thread, overlap`: each rank 32 examples, `group.value_and_grad_pmean`.
//!
//! `cargo bench -p flax-runtime --bench distributed_train_step [-- --rounds 5 --iters 20]`

// The tests' quickstart: its CNN and loss (the metrics and train step go unused here).
#[allow(dead_code)]
#[path = "../tests/quickstart/mod.rs"]
mod quickstart;

mod cli;

use cli::{arg, median};
use flax::distributed::{spawn_local, ProcessGroup};
use flax::optax::{self, Sgd};
use flax::prelude::*;
use flax::training::TrainState;
use quickstart::{loss_and_logits, CNN};
use std::time::Instant;

type State = TrainState<CNN, FrozenDict, Sgd>;

const GLOBAL_BATCH: i64 = 64;
const WARMUP: usize = 3;

/// What a worker runs: how gradients are made.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Local,
    Pmean,
    Overlap,
}

impl Mode {
    fn parse(s: &str) -> Mode {
        match s {
            "pmean" => Mode::Pmean,
            "overlap" => Mode::Overlap,
            _ => Mode::Local,
        }
    }
}

fn loss(state: &State, params: &FrozenDict, image: &Tensor, label: &Tensor) -> Result<Tensor> {
    Ok(loss_and_logits(&state.apply_fn, params, image, label)?.0)
}

fn step(group: &ProcessGroup, mode: Mode, state: State, image: &Tensor, label: &Tensor) -> Result<State> {
    let grads = match mode {
        Mode::Local => flax::grad(&state.params, |p| loss(&state, p, image, label))?,
        Mode::Pmean => group.pmean(&flax::grad(&state.params, |p| loss(&state, p, image, label))?)?,
        Mode::Overlap => group.value_and_grad_pmean(&state.params, |p| loss(&state, p, image, label))?.1,
    };
    state.apply_gradients(grads)
}

/// A worker: `iters` timed steps; rank 0 prints `ms_per_step bytes_per_step wait_share`.
fn worker(mode: Mode, iters: usize) -> Result<()> {
    let group = ProcessGroup::initialize()?;
    let cnn = CNN::new();
    let params = cnn.init(PRNGKey::new(0), &Tensor::ones([1, 28, 28, 1], (Kind::Float, Device::Cpu)))?;
    let params = params.get_dict("params").cloned().unwrap_or_default();
    let mut state = group.replicate(&TrainState::create(cnn, params, optax::sgd(0.01).momentum(0.9))?)?;
    tch::manual_seed(0);
    let image = Tensor::randn([GLOBAL_BATCH, 28, 28, 1], (Kind::Float, Device::Cpu));
    let label = Tensor::randint(10, [GLOBAL_BATCH], (Kind::Int64, Device::Cpu));
    let (image, label) = group.shard(&(image, label))?;
    for _ in 0..WARMUP {
        state = step(&group, mode, state, &image, &label)?;
    }
    group.barrier()?;
    let (start, before) = (Instant::now(), group.comm_stats());
    for _ in 0..iters {
        state = step(&group, mode, state, &image, &label)?;
    }
    let elapsed = start.elapsed();
    let comm = group.comm_stats() - before;
    if group.rank() == 0 {
        let per_step = elapsed.as_secs_f64() * 1e3 / iters as f64;
        let share = comm.wait.as_secs_f64() / elapsed.as_secs_f64();
        println!("RESULT {per_step} {} {share}", comm.bytes / iters as u64);
    }
    Ok(())
}

/// One configuration: its name, processes, threads per process, mode.
struct Config(&'static str, i64, i64, Mode);

const CONFIGS: [Config; 4] = [
    Config("1 proc x 1 thread", 1, 1, Mode::Local),
    Config("1 proc x 2 threads", 1, 2, Mode::Local),
    Config("2 procs x 1 thread, pmean", 2, 1, Mode::Pmean),
    Config("2 procs x 1 thread, overlap", 2, 1, Mode::Overlap),
];

/// Runs one configuration as fresh processes and reads rank 0's result line.
fn measure(config: &Config, iters: usize) -> (f64, u64, f64) {
    let exe = std::env::current_exe().expect("the bench's path");
    let output = std::process::Command::new(exe)
        .env("FLAX_BENCH_WORKER", format!("{:?}", config.3).to_lowercase())
        .env("FLAX_BENCH_NPROC", config.1.to_string())
        .env("FLAX_BENCH_ITERS", iters.to_string())
        .env("OMP_NUM_THREADS", config.2.to_string())
        .output()
        .expect("running a configuration");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("RESULT ")).unwrap_or_else(|| {
        panic!("{} printed no result: {text}{}", config.0, String::from_utf8_lossy(&output.stderr))
    });
    let fields: Vec<&str> = line.split(' ').collect();
    (fields[0].parse().unwrap(), fields[1].parse().unwrap(), fields[2].parse().unwrap())
}

fn main() {
    if let Ok(mode) = std::env::var("FLAX_BENCH_WORKER") {
        let iters: usize = std::env::var("FLAX_BENCH_ITERS").unwrap().parse().unwrap();
        let threads: i32 = std::env::var("OMP_NUM_THREADS").unwrap().parse().unwrap();
        tch::set_num_threads(threads);
        if std::env::var_os("WORLD_SIZE").is_none() {
            let nproc: i64 = std::env::var("FLAX_BENCH_NPROC").unwrap().parse().unwrap();
            if nproc > 1 {
                let statuses = spawn_local(nproc, Vec::<String>::new()).unwrap();
                assert!(statuses.iter().all(|s| s.success()), "a worker failed: {statuses:?}");
                return;
            }
        }
        worker(Mode::parse(&mode), iters).unwrap();
        return;
    }
    let (rounds, iters) = (arg("--rounds", 5), arg("--iters", 20));
    let mut results: Vec<Vec<(f64, u64, f64)>> = vec![Vec::new(); CONFIGS.len()];
    for round in 0..rounds {
        for (i, config) in CONFIGS.iter().enumerate() {
            let result = measure(config, iters);
            eprintln!("round {round}: {}: {:.1} ms/step", config.0, result.0);
            results[i].push(result);
        }
    }
    let base = median(results[0].iter().map(|r| r.0).collect());
    println!(
        "| configuration | ms/step (median) | examples/s | vs 1x1 | bytes/step (rank 0) | comm wait share |"
    );
    println!("|---|---|---|---|---|---|");
    for (config, runs) in CONFIGS.iter().zip(&results) {
        let ms = median(runs.iter().map(|r| r.0).collect());
        let share = median(runs.iter().map(|r| r.2).collect());
        let throughput = GLOBAL_BATCH as f64 / ms * 1e3;
        println!(
            "| {} | {ms:.1} | {throughput:.0} | {:.2}x | {} | {:.0}% |",
            config.0,
            base / ms,
            runs[0].1,
            share * 100.0
        );
    }
}
