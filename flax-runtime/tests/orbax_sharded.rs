//! Sharded Orbax checkpoints on loopback Gloo: 4 ranks each write only their pieces into their
//! own `ocdbt.process_<rank>/` database; the checkpoint restores on 4, 2 and 1 ranks (each
//! reading its pieces under its own world size), whole on one process, and in Python with
//! Orbax (`scripts/golden/orbax_check_restore.py` reads what the 4 ranks wrote to
//! `$FLAX_RS_ORBAX_OUT/sharded`). A missing or damaged process database is a typed error, and
//! a rank that fails or dies mid-save leaves nothing under the final name.

#[allow(dead_code)] // `join_or_spawn`: these tests spawn their workers themselves
mod workers;

use flax::distributed::{Fsdp, ProcessGroup, ShardingSpec};
use flax::optax::{self, Adam};
use flax::prelude::*;
use flax::training::orbax::{self, CheckpointManager, CheckpointManagerOptions, SaveOptions};
use flax::training::TrainState;
use flax::tree::{self, RestoreOptions, Tree};
use flax::{Error, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use workers::{join, spawn_workers, WORKER};

type State = TrainState<(), FrozenDict, Adam>;

/// Deterministic parameters whose chunks do not compress below OCDBT's 1024-byte inline
/// limit, so that the top-level database refers to the process databases' data files.
fn params() -> FrozenDict {
    let leaf = |shape: &[i64], offset: f64| {
        let n: i64 = shape.iter().product();
        (Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.37 + offset).sin().view(shape)
    };
    let dense = |kernel: &[i64], bias: &[i64], offset: f64| {
        let entries = [("kernel", leaf(kernel, offset)), ("bias", leaf(bias, offset + 1.0))];
        Value::Dict(entries.into_iter().map(|(k, t)| (k.to_owned(), Value::Tensor(t))).collect())
    };
    [
        ("Dense_0".to_owned(), dense(&[64, 256], &[256], 0.0)),
        ("Dense_1".to_owned(), dense(&[256, 10], &[10], 2.0)),
    ]
    .into_iter()
    .collect()
}

/// Every leaf split along its last axis: Dense_1's 10 outputs are padded to 12 on 4 ranks
/// (3 each, rank 3's piece one row past the end) and split 5 + 5 on 2.
fn spec() -> ShardingSpec {
    ShardingSpec::from_fn(&params(), |_, leaf| Some(leaf.dim() - 1)).unwrap()
}

/// This rank's pieces of the state after one Adam step (so that `mu` and `nu` are not zeros).
fn sharded_state(fsdp: &Fsdp<'_>) -> State {
    let state = fsdp.train_state((), &params(), optax::adam(1e-2)).unwrap();
    let grads = tree::tree_map(&state.params, |p| Ok(p * 0.5 - 0.1)).unwrap();
    state.apply_gradients(grads).unwrap()
}

/// A target of the same structure, every value different from the saved ones.
fn zero_state() -> State {
    let zeros = tree::tree_map(&params(), |p| Ok(p.zeros_like())).unwrap();
    TrainState::create((), zeros, optax::adam(1e-2)).unwrap()
}

fn max_difference<T: Tree>(a: &T, b: &T) -> f64 {
    let pairs = tree::leaves(a).into_iter().zip(tree::leaves(b));
    pairs
        .map(|(x, y)| (x.to_kind(Kind::Double) - y.to_kind(Kind::Double)).abs().max().double_value(&[]))
        .fold(0.0, f64::max)
}

/// Where the checkpoints of one run go: `$FLAX_RS_ORBAX_OUT` (the Python check's input), as
/// `orbax_checkpoints.rs` writes its own; the workers inherit it from the parent.
fn out_dir() -> PathBuf {
    std::env::var_os("FLAX_RS_ORBAX_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("orbax-rust"))
}

fn worker_group() -> Option<ProcessGroup> {
    std::env::var(WORKER).is_ok().then(|| join(Duration::from_secs(60)))
}

fn spawn_and_require_success(test: &str, world_size: i64) {
    for (rank, output) in spawn_workers(test, world_size).iter().enumerate() {
        assert!(
            output.status.success(),
            "worker {rank} of {test} on {world_size} failed: {:?}",
            output.status
        );
    }
}

#[test]
fn a_checkpoint_saved_on_four_ranks_restores_on_four_two_and_one() {
    let test = "a_checkpoint_saved_on_four_ranks_restores_on_four_two_and_one";
    let Some(group) = worker_group() else {
        let out = out_dir();
        for name in ["sharded", "sharded_reference", "sharded_manager"] {
            let _ = std::fs::remove_dir_all(out.join(name));
        }
        std::fs::create_dir_all(&out).unwrap();
        for world_size in [4, 2, 1] {
            spawn_and_require_success(test, world_size);
        }
        return;
    };
    let world = group.world_size();
    let fsdp = Fsdp::new(&group, spec()).unwrap();
    let (path, reference) = (out_dir().join("sharded"), out_dir().join("sharded_reference"));
    let manager =
        CheckpointManager::new(out_dir().join("sharded_manager"), CheckpointManagerOptions::default());
    if world == 4 {
        let state = sharded_state(&fsdp);
        fsdp.save_sharded(&path, &state, &SaveOptions::default()).unwrap();
        fsdp.save_sharded_step(&manager, 7, &state).unwrap();
        // What one process holds, saved by one process: what every restore is compared with.
        let full = fsdp.gather(&state).unwrap();
        if group.rank() == 0 {
            orbax::save(&reference, &full, &SaveOptions::default()).unwrap();
        }
        // Each rank wrote its own database; saving again is refused on every rank.
        for rank in 0..4 {
            assert!(path.join(format!("ocdbt.process_{rank}/manifest.ocdbt")).is_file());
        }
        let again = fsdp.save_sharded(&path, &state, &SaveOptions::default());
        assert!(matches!(again, Err(Error::AlreadyExists { .. })), "{again:?}");
        group.barrier().unwrap();
    }
    let full: State = orbax::restore(&reference, &zero_state(), RestoreOptions::default()).unwrap();
    let expected = fsdp.shard(&full).unwrap();
    let target = fsdp.shard(&zero_state()).unwrap();
    let pieces = fsdp.restore_sharded(&path, &target, RestoreOptions::default()).unwrap();
    assert_eq!(max_difference(&pieces, &expected), 0.0, "world size {world}");
    let step = fsdp.restore_sharded_step(&manager, 7, &target, RestoreOptions::default()).unwrap();
    assert_eq!(max_difference(&step, &expected), 0.0, "world size {world}, manager");
    // A target of pieces alone, as `Fsdp::init` and `train_state_from_pieces` build it on a
    // rank that never holds the full state.
    let pieces = fsdp.init(|| tree::tree_map(&params(), |p| Ok(p.zeros_like()))).unwrap();
    let from_pieces = fsdp.train_state_from_pieces((), pieces, optax::adam(1e-2)).unwrap();
    let restored = fsdp.restore_sharded(&path, &from_pieces, RestoreOptions::default()).unwrap();
    assert_eq!(max_difference(&restored, &expected), 0.0, "world size {world}, target of pieces");
    // The whole tree on one process, by the one-process reader.
    let whole: State = orbax::restore(&path, &zero_state(), RestoreOptions::default()).unwrap();
    assert_eq!(max_difference(&whole, &full), 0.0);
    assert_eq!(whole.step, 1);
    if world == 1 {
        damaged_process_databases_are_typed_errors(&fsdp, &path, &target);
    }
}

/// On copies of the checkpoint: a process database removed is an `Io` error naming it, one
/// truncated or a damaged top-level manifest a `Format` error; nothing panics.
fn damaged_process_databases_are_typed_errors(fsdp: &Fsdp<'_>, path: &Path, target: &State) {
    let copy = |name: &str| {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join(name);
        copy_dir(path, &to);
        (dir, to)
    };
    let restore = |p: &Path| fsdp.restore_sharded(p, target, RestoreOptions::default()).map(|_| ());

    let (_keep, missing) = copy("missing");
    std::fs::remove_dir_all(missing.join("ocdbt.process_2")).unwrap();
    match restore(&missing) {
        Err(Error::Io { path, .. }) => assert!(path.contains("ocdbt.process_2"), "{path}"),
        other => panic!("expected an Io error, got {other:?}"),
    }

    let (_keep, truncated) = copy("truncated");
    let data =
        std::fs::read_dir(truncated.join("ocdbt.process_1/d")).unwrap().next().unwrap().unwrap().path();
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    let error = restore(&truncated).unwrap_err();
    assert!(matches!(error, Error::Format { .. }), "{error:?}");
    assert!(error.to_string().contains("ocdbt.process_1"), "{error}");

    let (_keep, manifest) = copy("manifest");
    let top = manifest.join("manifest.ocdbt");
    let mut bytes = std::fs::read(&top).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&top, bytes).unwrap();
    let error = restore(&manifest).unwrap_err();
    assert!(matches!(error, Error::Format { .. }) && error.to_string().contains("CRC-32C"), "{error:?}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Two ranks: rank 1 first fails to save (bad input), then exits mid-save as a crash would.
#[test]
fn a_rank_that_fails_or_dies_mid_save_leaves_no_checkpoint() {
    let test = "a_rank_that_fails_or_dies_mid_save_leaves_no_checkpoint";
    let Some(group) = worker_group() else {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("FLAX_SHARDED_FAULT_DIR", dir.path());
        let outputs = spawn_workers(test, 2);
        assert!(outputs[0].status.success(), "rank 0: {:?}", outputs[0].status);
        assert_eq!(outputs[1].status.code(), Some(3), "rank 1 exits as a crash would");
        // Nothing under the final names, and no temporary directory left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{left:?}");
        return;
    };
    let dir = PathBuf::from(std::env::var("FLAX_SHARDED_FAULT_DIR").unwrap());
    let fsdp = Fsdp::new(&group, spec()).unwrap();
    let state = sharded_state(&fsdp);
    // Rank 1 passes the whole state instead of its pieces: it fails, and rank 0 learns it.
    let full = fsdp.gather(&state).unwrap();
    let bad = if group.rank() == 1 { &full } else { &state };
    let failed = fsdp.save_sharded(dir.join("failed"), bad, &SaveOptions::default());
    match (group.rank(), &failed) {
        (1, Err(Error::Value(message))) => assert!(message.contains("piece was expected"), "{message}"),
        (0, Err(Error::Value(message))) => assert!(message.contains("rank(s) [1] failed"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
    // Rank 1 dies while rank 0 saves: rank 0's collective fails, nothing is renamed.
    if group.rank() == 1 {
        std::process::exit(3);
    }
    let died = fsdp.save_sharded(dir.join("died"), &state, &SaveOptions::default());
    assert!(died.is_err());
}
