//! The sharded mode's train step (issue 13): an MLP of several `Dense` layers on 2 processes
//! x 1 thread, unsharded data parallel (`pmean`) against `Fsdp` gathering the whole model and
//! gathering unit by unit (`fully_shard`, `Gathering::PerUnit`), without and with prefetch of
//! the next unit's parameters (`Fsdp::prefetch`): wall time and CPU time per
//! step, bytes communicated per step (all-gather + reduce-scatter, or all-reduce), the share
//! of the step spent waiting on communication, and the peak bytes of gathered parameters.
//!
//! Configurations, each a fresh pair of processes running `--iters` Adam steps after 3
//! warm-up steps (rounds alternate the configurations; the table gives medians over
//! `--rounds`). The model: `--layers` layers of `Dense(--width)` with `tanh`, each a
//! `fully_shard` unit (a plain module outside per-unit steps), global batch 64.
//!
//! `cargo bench -p flax-runtime --bench fsdp_train_step [-- --rounds 5 --iters 20 --layers 8 --width 512]`

mod cli;

use cli::{arg, median};
use flax::distributed::{fully_shard, spawn_local, Fsdp, Gathering, ProcessGroup, ShardingSpec};
use flax::optax::{self, Adam};
use flax::prelude::*;
use flax::training::TrainState;
use std::time::{Duration, Instant};

const GLOBAL_BATCH: i64 = 64;
const WARMUP: usize = 3;

/// `layers` units of `Dense(width)` and `tanh`.
#[module]
struct Deep {
    layers: usize,
    width: i64,
}

#[module]
impl Deep {
    #[compact]
    fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let mut x = x.shallow_clone();
        for _ in 0..self.layers {
            let dense = nn::Dense::new(self.width);
            x = fully_shard(dense).call(cx, &x, |dense, cx, x: Tensor| Ok(dense.call(cx, &x)?.tanh()))?;
        }
        Ok(x)
    }
}

/// What a worker runs: how gradients are made.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Pmean,
    Whole,
    PerUnit,
    Prefetch,
}

impl Mode {
    fn parse(s: &str) -> Mode {
        match s {
            "whole" => Mode::Whole,
            "perunit" => Mode::PerUnit,
            "prefetch" => Mode::Prefetch,
            _ => Mode::Pmean,
        }
    }
}

/// This process's CPU time (all its threads: Gloo's included).
fn cpu_time() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes the clock into `t`.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A worker: `iters` timed steps; rank 0 prints
/// `ms_per_step cpu_ms_per_step bytes_per_step wait_share peak_gathered_bytes`.
fn worker(mode: Mode, iters: usize, layers: usize, width: i64) -> Result<()> {
    let group = ProcessGroup::initialize()?;
    let model = Deep::new(layers, width);
    tch::manual_seed(0);
    let x = Tensor::randn([GLOBAL_BATCH, width], (Kind::Float, Device::Cpu));
    let target = Tensor::randn([GLOBAL_BATCH, width], (Kind::Float, Device::Cpu));
    let params = model.init(PRNGKey::new(0), &x)?.get_dict("params").cloned().unwrap_or_default();
    let (x, target) = group.shard(&(x, target))?;
    let loss = |p: &FrozenDict| -> Result<Tensor> {
        let variables = flax::frozen_dict! { "params": p };
        Ok((model.apply(&variables, &x)? - &target).square().mean(Kind::Float))
    };
    let per_unit = matches!(mode, Mode::PerUnit | Mode::Prefetch);
    let gathering = if per_unit { Gathering::PerUnit } else { Gathering::WholeModel };
    let fsdp = Fsdp::new(&group, ShardingSpec::largest_divisible_axis(&params, group.world_size())?)?
        .gathering(gathering)
        .prefetch(mode == Mode::Prefetch);
    let mut state = match mode {
        Mode::Pmean => group.replicate(&TrainState::create((), params, optax::adam(1e-3))?)?,
        _ => fsdp.train_state((), &params, optax::adam(1e-3))?,
    };
    let step = |state: TrainState<(), FrozenDict, Adam>| -> Result<_> {
        let grads = match mode {
            Mode::Pmean => group.pmean(&flax::grad(&state.params, loss)?)?,
            _ => fsdp.value_and_grad(&state.params, loss)?.1,
        };
        state.apply_gradients(grads)
    };
    for _ in 0..WARMUP {
        state = step(state)?;
    }
    group.barrier()?;
    let (start, cpu, before) = (Instant::now(), cpu_time(), group.comm_stats());
    for _ in 0..iters {
        state = step(state)?;
    }
    let (elapsed, cpu) = (start.elapsed(), cpu_time() - cpu);
    let comm = group.comm_stats() - before;
    if group.rank() == 0 {
        let per_step = elapsed.as_secs_f64() * 1e3 / iters as f64;
        let cpu_per_step = cpu.as_secs_f64() * 1e3 / iters as f64;
        let share = comm.wait.as_secs_f64() / elapsed.as_secs_f64();
        let peak = if mode == Mode::Pmean { 0 } else { fsdp.peak_gathered_bytes() };
        println!("RESULT {per_step} {cpu_per_step} {} {share} {peak}", comm.bytes / iters as u64);
    }
    Ok(())
}

/// One configuration: its name and mode.
struct Config(&'static str, Mode);

const CONFIGS: [Config; 4] = [
    Config("data parallel (pmean)", Mode::Pmean),
    Config("FSDP, whole model", Mode::Whole),
    Config("FSDP, per unit", Mode::PerUnit),
    Config("FSDP, per unit, prefetch", Mode::Prefetch),
];

/// One run's figures: ms/step, CPU ms/step, bytes/step, wait share, peak gathered bytes.
type Figures = (f64, f64, u64, f64, u64);

/// Runs one configuration as a fresh pair of processes and reads rank 0's result line.
fn measure(config: &Config, iters: usize, layers: usize, width: i64) -> Figures {
    let exe = std::env::current_exe().expect("the bench's path");
    let output = std::process::Command::new(exe)
        .env("FLAX_BENCH_WORKER", format!("{:?}", config.1).to_lowercase())
        .env("FLAX_BENCH_ITERS", iters.to_string())
        .env("FLAX_BENCH_SHAPE", format!("{layers} {width}"))
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("running a configuration");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("RESULT ")).unwrap_or_else(|| {
        panic!("{} printed no result: {text}{}", config.0, String::from_utf8_lossy(&output.stderr))
    });
    let f: Vec<&str> = line.split(' ').collect();
    (
        f[0].parse().unwrap(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
        f[4].parse().unwrap(),
    )
}

fn main() {
    if let Ok(mode) = std::env::var("FLAX_BENCH_WORKER") {
        tch::set_num_threads(1);
        if std::env::var_os("WORLD_SIZE").is_none() {
            let statuses = spawn_local(2, Vec::<String>::new()).unwrap();
            assert!(statuses.iter().all(|s| s.success()), "a worker failed: {statuses:?}");
            return;
        }
        let iters: usize = std::env::var("FLAX_BENCH_ITERS").unwrap().parse().unwrap();
        let shape = std::env::var("FLAX_BENCH_SHAPE").unwrap();
        let (layers, width) = shape.split_once(' ').unwrap();
        worker(Mode::parse(&mode), iters, layers.parse().unwrap(), width.parse().unwrap()).unwrap();
        return;
    }
    let (rounds, iters) = (arg("--rounds", 5), arg("--iters", 20));
    let (layers, width) = (arg("--layers", 8), arg("--width", 512) as i64);
    let mut results: Vec<Vec<Figures>> = vec![Vec::new(); CONFIGS.len()];
    for round in 0..rounds {
        for (i, config) in CONFIGS.iter().enumerate() {
            let result = measure(config, iters, layers, width);
            eprintln!("round {round}: {}: {:.1} ms/step", config.0, result.0);
            results[i].push(result);
        }
    }
    let params = layers as u64 * 4 * (width * width + width) as u64;
    println!("{layers} x Dense({width}): {params} bytes of float32 parameters; 2 procs x 1 thread, global batch {GLOBAL_BATCH}");
    println!("| configuration | ms/step (median) | CPU ms/step, rank 0 | bytes/step (rank 0) | comm wait share | peak gathered bytes |");
    println!("|---|---|---|---|---|---|");
    for (config, runs) in CONFIGS.iter().zip(&results) {
        let ms = median(runs.iter().map(|r| r.0).collect());
        let cpu = median(runs.iter().map(|r| r.1).collect());
        let share = median(runs.iter().map(|r| r.3).collect());
        println!(
            "| {} | {ms:.1} | {cpu:.1} | {} | {:.0}% | {} |",
            config.0,
            runs[0].2,
            share * 100.0,
            runs[0].4
        );
    }
}
