//! Restoring a checkpoint the size of the quickstart's train state (the CNN's parameters and
//! SGD momentum, 6.6 MB), from a file in the page cache: the raw state dict, and into a
//! target. What integrity costs on top of reading is the checksum and the object budget's
//! pass over the headers; run this before and after a change to the reader to compare.
//!
//! Run: `cargo bench -p flax-runtime --bench checkpoint_restore`.

use criterion::{criterion_group, criterion_main, Criterion};
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
    // What verification adds: the checksum of the file's bytes (the object budget's pass
    // over a few dozen headers is negligible next to it).
    let bytes = std::fs::read(dir.join("checkpoint_1")).unwrap();
    c.bench_function("crc32 of the checkpoint's bytes", |b| b.iter(|| black_box(crc32fast::hash(&bytes))));
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, restore);
criterion_main!(benches);
