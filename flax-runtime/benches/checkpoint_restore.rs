//! Restoring a checkpoint the size of the quickstart's train state (the CNN's parameters and
//! SGD momentum, 6.6 MB), from a file in the page cache: the raw state dict, and into a
//! target. What integrity costs on top of reading is the checksum (computed on each piece of
//! the file as it is read) and the object budget's count; run this before and after a change
//! to the reader to compare.
//!
//! Run: `cargo bench -p flax-runtime --bench checkpoint_restore`.
//!
//! On a loaded machine wall-clock medians drift with the load; with
//! `FLAX_RESTORE_CPU_CALLS=N` the binary instead times `N` calls of each restore in the
//! thread's CPU time and prints their 10th, 50th and 90th percentiles, so that two builds
//! (this one and the commit before the integrity checks, 4df6dd9) can be alternated by
//! `scripts/bench/restore_vs_baseline.sh`.

use criterion::{criterion_group, Criterion};
use flax::tch::{Device, Kind, Tensor};
use flax::training::checkpoints::{
    restore_checkpoint, restore_checkpoint_raw, save_checkpoint, RestoreCheckpointOptions,
    SaveCheckpointOptions,
};
use flax::{FrozenDict, Value};
use std::hint::black_box;

/// `{params, momentum}`, each with the quickstart CNN's layers.
fn train_state() -> FrozenDict {
    let layer = |shapes: &[(&str, &[i64])]| {
        Value::Dict(
            shapes
                .iter()
                .map(|(name, shape)| {
                    ((*name).to_owned(), Value::Tensor(Tensor::randn(*shape, (Kind::Float, Device::Cpu))))
                })
                .collect(),
        )
    };
    let tree = || {
        Value::Dict(
            [
                ("Conv_0", layer(&[("kernel", &[3, 3, 1, 32]), ("bias", &[32])])),
                ("Conv_1", layer(&[("kernel", &[3, 3, 32, 64]), ("bias", &[64])])),
                ("Dense_0", layer(&[("kernel", &[3136, 256]), ("bias", &[256])])),
                ("Dense_1", layer(&[("kernel", &[256, 10]), ("bias", &[10])])),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
        )
    };
    [("params".to_owned(), tree()), ("momentum".to_owned(), tree())].into_iter().collect()
}

fn restore(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("flax-bench-restore-{}", std::process::id()));
    let state = train_state();
    save_checkpoint(&dir, &state, 1, &SaveCheckpointOptions::default()).unwrap();
    let options = RestoreCheckpointOptions::default();
    c.bench_function("restore_checkpoint_raw", |b| {
        b.iter(|| black_box(restore_checkpoint_raw(&dir, &options).unwrap()))
    });
    c.bench_function("restore_checkpoint into a target", |b| {
        b.iter(|| black_box(restore_checkpoint(&dir, state.clone(), &options).unwrap()))
    });
    // What verification adds: the checksum of the file's bytes (counting a few dozen objects
    // against the budget is negligible next to it).
    let bytes = std::fs::read(dir.join("checkpoint_1")).unwrap();
    c.bench_function("crc32 of the checkpoint's bytes", |b| b.iter(|| black_box(crc32fast::hash(&bytes))));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The calling thread's CPU time, in microseconds.
fn thread_cpu_us() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

/// Prints `name p10 p50 p90` of `calls` timed calls of `f`, in thread CPU microseconds.
fn cpu_percentiles(name: &str, calls: usize, mut f: impl FnMut()) {
    f();
    let mut times: Vec<f64> = (0..calls)
        .map(|_| {
            let start = thread_cpu_us();
            f();
            thread_cpu_us() - start
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!("{name} {:.0} {:.0} {:.0}", at(0.1), at(0.5), at(0.9));
}

/// The `FLAX_RESTORE_CPU_CALLS` mode: CPU-time percentiles of both restores.
fn cpu_times(calls: usize) {
    let dir = std::env::temp_dir().join(format!("flax-bench-restore-cpu-{}", std::process::id()));
    let state = train_state();
    save_checkpoint(&dir, &state, 1, &SaveCheckpointOptions::default()).unwrap();
    let options = RestoreCheckpointOptions::default();
    cpu_percentiles("raw", calls, || {
        black_box(restore_checkpoint_raw(&dir, &options).unwrap());
    });
    cpu_percentiles("target", calls, || {
        black_box(restore_checkpoint(&dir, state.clone(), &options).unwrap());
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, restore);

fn main() {
    if let Some(calls) = std::env::var("FLAX_RESTORE_CPU_CALLS").ok().and_then(|n| n.parse().ok()) {
        return cpu_times(calls);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
