//! The sharded mode trains a model whose parameters and Adam state do not fit in one process.
//!
//! Four workers on loopback Gloo, each limited by `RLIMIT_DATA` (the kernel's limit on a
//! process's private writable memory, where libtorch's tensors live) to its own baseline
//! after libtorch and the group are up, plus 2.5 times the model's parameter bytes. The
//! parameters with Adam's two moments are 3 times them: in such a process the unsharded
//! `TrainState::create` fails with libtorch's allocation error, surfaced as a `flax::Error`.
//! The sharded mode (shapes from `eval_shape`, pieces from `Fsdp::init`, per-unit gathering)
//! trains in the same process, with the per-step losses of one process without a limit.
//!
//! Large tensors are `mmap`ed by glibc and given back when freed, so the limit bounds the
//! tensors alive at once; the workers fix glibc's mmap threshold (which otherwise rises to
//! the size of the last freed block, serving later tensors from a heap that is not given
//! back) so that this holds throughout. Its own test binary, as the workers' memory is
//! measured process-wide.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

// This test uses only some of the helpers.
#[allow(dead_code)]
mod workers;

use flax::distributed::{eval_shape, fully_shard, Fsdp, Gathering, ShardingSpec};
use flax::optax;
use flax::prelude::*;
use flax::training::TrainState;
use flax::tree::{self, Tree};
use std::time::Duration;
use workers::{join, spawn, WORKER};

const WIDTH: i64 = 2048;
const UNITS: i64 = 8;
const WORLD: i64 = 4;
const STEPS: usize = 3;
const BATCH: i64 = 8;
/// Small enough that Adam's first steps (each parameter moving by about the rate) keep the
/// deep tanh tower in its stable range, where summation order changes the losses by ulps.
const LEARNING_RATE: f64 = 1e-5;
const MIB: f64 = 1024.0 * 1024.0;
const TEST: &str = "a_model_that_does_not_fit_in_one_process_trains_sharded";

/// The bytes of the tower's parameters: 16 × (2048 × 2048 + 2048) floats, 256 MiB.
const PARAM_BYTES: i64 = UNITS * (WIDTH * WIDTH + WIDTH) * 4;
/// Each worker's limit over its baseline: the parameters and one Adam moment fit, the
/// second moment does not; a rank's quarter of everything (0.75 × the parameters, 1.75 at
/// the peak of an Adam step, which builds the new state beside the old) and one unit's full
/// parameters (1/16) do, with a margin of half the parameters each way.
const LIMIT_BYTES: i64 = PARAM_BYTES * 9 / 4;

/// A stand-in for `lecun_normal` that libtorch computes: this crate's Threefry is Rust code,
/// unoptimised in test builds (tens of seconds for these 67 million values per process).
/// Still a pure function of the key, so each unit draws other values, with
/// `lecun_normal`'s scale: a sine wave whose phase is the key's.
fn kernel_init(key: PRNGKey, shape: &[i64], options: (Kind, Device)) -> Result<Tensor> {
    let phase = f64::from(key.raw()[0]) / f64::from(u32::MAX) * std::f64::consts::TAU;
    let scale = (3.0 / shape[0] as f64).sqrt();
    // In place: one buffer of the kernel's size, as an initializer's output.
    let mut wave = Tensor::try_arange(shape.iter().product::<i64>(), options)?;
    let _ = wave.try_mul_scalar_(0.754_877_666)?.try_add_scalar_(phase)?.f_sin_()?.try_mul_scalar_(scale)?;
    Ok(wave.f_reshape(shape)?)
}

/// 16 layers of 2048 features, each a `fully_shard` unit.
#[module]
struct Tower {}

#[module]
impl Tower {
    #[compact]
    fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let mut x = x.shallow_clone();
        for _ in 0..UNITS {
            let unit =
                fully_shard(nn::Dense::new(WIDTH).kernel_init(nn::initializers::Init::custom(kernel_init)));
            x = unit.call(cx, &x, |dense, cx, x: Tensor| Ok(dense.call(cx, &x)?.tanh()))?;
        }
        Ok(x)
    }
}

fn init() -> Result<Variables> {
    Tower::new().init(PRNGKey::new(0), &Tensor::zeros([1, WIDTH], (Kind::Float, Device::Cpu)))
}

fn params(variables: &Variables) -> FrozenDict {
    variables.get_dict("params").cloned().expect("init creates params")
}

/// The global batches (inputs and regression targets), the same in every process.
fn batches() -> Vec<(Tensor, Tensor)> {
    tch::manual_seed(7);
    let batch = || Tensor::randn([BATCH, WIDTH], (Kind::Float, Device::Cpu));
    (0..STEPS).map(|_| (batch(), batch())).collect()
}

fn loss(params: &FrozenDict, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let variables = flax::frozen_dict! { "params": params };
    Ok((Tower::new().apply(&variables, x)? - y).square().mean(Kind::Float))
}

/// A field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let line = status.lines().find(|l| l.starts_with(field)).expect("the field is in /proc/self/status");
    let kib: i64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().expect("a size in kB");
    kib * 1024
}

/// Starts a new peak of the resident set (`VmHWM`) from the current one; returns the current.
fn restart_peak_rss() -> i64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS");
    status_bytes("VmRSS:")
}

/// Limits this process's data (private writable memory) to what it uses now plus `extra`.
fn limit_data(extra: i64) -> i64 {
    // SAFETY: plain libc calls on this process's own allocator and limits.
    unsafe {
        assert_eq!(libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20), 1, "fixing glibc's mmap threshold");
        let limit = (status_bytes("VmData:") + extra) as libc::rlim_t;
        let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
        assert_eq!(libc::setrlimit(libc::RLIMIT_DATA, &rlimit), 0, "setting RLIMIT_DATA");
    }
    status_bytes("VmData:")
}

fn owned_bytes<T: Tree>(tree: &T) -> i64 {
    tree::leaves(tree).iter().map(|t| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64).sum()
}

/// One worker: under the limit, the unsharded state fails to allocate (rank 0 shows it),
/// and the sharded mode trains; rank 0 prints the losses, every rank its memory.
fn worker() -> Result<()> {
    let group = join(Duration::from_secs(120));
    let rank = group.rank();
    let baseline = limit_data(LIMIT_BYTES);
    if rank == 0 {
        let unsharded = init().and_then(|v| TrainState::create((), params(&v), optax::adam(LEARNING_RATE)));
        match unsharded {
            Ok(_) => panic!("the unsharded train state fits under the limit"),
            Err(error) => println!("unsharded: {error}"),
        }
    }
    let shapes = params(&eval_shape(init)?);
    let spec = ShardingSpec::largest_divisible_axis(&shapes, group.world_size())?;
    let fsdp = Fsdp::new(&group, spec)?.gathering(Gathering::PerUnit);

    let before = restart_peak_rss();
    let pieces = params(&fsdp.init(init)?);
    let init_peak = status_bytes("VmHWM:") - before;
    let mut state = fsdp.train_state_from_pieces((), pieces, optax::adam(LEARNING_RATE))?;
    let state_bytes = owned_bytes(&state.params) + owned_bytes(&state.opt_state);

    let before = restart_peak_rss();
    let mut losses = Vec::new();
    for (x, y) in batches() {
        let (x, y) = group.shard(&(x, y))?;
        let (value, grads) = fsdp.value_and_grad(&state.params, |p| loss(p, &x, &y))?;
        losses.push(group.pmean(&value)?.double_value(&[]));
        state = state.apply_gradients(grads)?;
    }
    let train_peak = status_bytes("VmHWM:") - before;
    println!(
        "rank {rank}: data limit {:.0} MiB over a baseline of {:.0} MiB; owns {:.1} MiB of parameters and \
         Adam state (unsharded: {:.1}); peak RSS growth {:.1} MiB in Fsdp::init, {:.1} MiB in training; \
         peak gathered {:.1} MiB",
        LIMIT_BYTES as f64 / MIB,
        baseline as f64 / MIB,
        state_bytes as f64 / MIB,
        3.0 * PARAM_BYTES as f64 / MIB,
        init_peak as f64 / MIB,
        train_peak as f64 / MIB,
        fsdp.peak_gathered_bytes() as f64 / MIB,
    );
    if rank == 0 {
        println!("losses: {}", losses.iter().map(f64::to_string).collect::<Vec<_>>().join(" "));
    }
    Ok(())
}

/// One process without a limit: the per-step losses.
fn one_process() -> Result<Vec<f64>> {
    let mut state = TrainState::create((), params(&init()?), optax::adam(LEARNING_RATE))?;
    let mut losses = Vec::new();
    for (x, y) in batches() {
        let (value, grads) = flax::value_and_grad(&state.params, |p| loss(p, &x, &y))?;
        losses.push(value.double_value(&[]));
        state = state.apply_gradients(grads)?;
    }
    Ok(losses)
}

#[test]
fn a_model_that_does_not_fit_in_one_process_trains_sharded() -> Result<()> {
    if std::env::var(WORKER).as_deref() == Ok(TEST) {
        return worker();
    }
    let children = spawn(TEST, WORLD);
    let expected = one_process()?;
    let outputs: Vec<_> =
        children.into_iter().map(|c| c.wait_with_output().expect("a worker's output")).collect();
    let stdout: Vec<String> =
        outputs.iter().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).collect();
    for (rank, (output, text)) in outputs.iter().zip(&stdout).enumerate() {
        let marked = ["unsharded: ", "rank ", "losses: "];
        for line in text.lines() {
            if let Some(at) = marked.iter().filter_map(|m| line.find(m)).min() {
                println!("{}", &line[at..]);
            }
        }
        assert!(output.status.success(), "worker {rank} failed: {:?}\n{text}", output.status);
    }
    // A worker's lines follow the test harness's `test … ... ` on the first line.
    let after = |text: &str, marker: &str| {
        text.lines().find_map(|l| l.split_once(marker).map(|(_, rest)| rest.to_owned()))
    };
    let unsharded = after(&stdout[0], "unsharded: ").expect("rank 0 tried unsharded");
    assert!(
        unsharded.contains("DefaultCPUAllocator: can't allocate memory"),
        "not an allocation error: {unsharded}"
    );
    let losses: Vec<f64> = after(&stdout[0], "losses: ")
        .expect("rank 0 printed its losses")
        .split(' ')
        .map(|l| l.parse().expect("a loss"))
        .collect();
    assert_eq!(losses.len(), expected.len());
    let largest = losses.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    println!("one process: {expected:?}; largest difference {largest:e}");
    for (step, (got, want)) in losses.iter().zip(&expected).enumerate() {
        assert!((got - want).abs() < 1e-5, "step {step}: loss {got}, one process {want}");
    }
    Ok(())
}
