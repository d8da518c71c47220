//! `flax::training::orbax` against checkpoints written by pip-installed orbax-checkpoint 0.12.8
//! (`scripts/golden/orbax_vectors.py`), and the checkpoints this library writes, which
//! `scripts/golden/orbax_check_restore.py` restores with Orbax:
//!
//! ```text
//! cargo test -p flax-runtime --test orbax_checkpoints
//! .golden-venv/bin/python scripts/golden/orbax_check_restore.py
//! ```

use flax::core::uint_array::UintArray;
use flax::optax;
use flax::serialization::msgpack_restore;
use flax::training::checkpoints::{self, RestoreCheckpointOptions};
use flax::training::orbax::{self, CheckpointManager, CheckpointManagerOptions, Layout, SaveOptions};
use flax::training::TrainState;
use flax::tree::RestoreOptions;
use flax::{Error, FrozenDict, Scalar, Value};
use std::fs;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/orbax");

fn golden(name: &str) -> PathBuf {
    Path::new(DATA).join(name)
}

/// What Orbax restored from each golden checkpoint, as Flax's state dict.
fn expected(name: &str) -> Value {
    let bytes = fs::read(golden("expected.msgpack")).unwrap();
    let Value::Dict(all) = msgpack_restore(&bytes).unwrap() else { panic!("not a dict") };
    all.get(name).unwrap().clone()
}

/// Asserts that two state dicts hold the same keys, the same tensors (shape, dtype and bits)
/// and the same scalars.
fn assert_same(expected: &Value, got: &Value, path: &str) {
    match (expected, got) {
        (Value::Dict(e), Value::Dict(g)) => {
            let mut ek: Vec<_> = e.keys().collect();
            let mut gk: Vec<_> = g.keys().collect();
            ek.sort_unstable();
            gk.sort_unstable();
            assert_eq!(ek, gk, "keys at {path}");
            for (k, v) in e.iter() {
                assert_same(v, g.get(k).unwrap(), &format!("{path}/{k}"));
            }
        }
        (Value::Tensor(e), Value::Tensor(g)) => {
            assert_eq!((e.size(), e.kind()), (g.size(), g.kind()), "{path}");
            assert!(e.equal(g), "{path}: {e} != {g}");
        }
        (Value::Scalar(e), Value::Scalar(g)) => assert_eq!(e, g, "{path}"),
        _ => panic!("{path}: expected {}, got {}", expected.describe(), got.describe()),
    }
}

#[test]
fn restores_orbax_default_layout_of_a_cnn_with_bf16_ints_and_scalars() {
    let raw = orbax::restore_raw(golden("cnn")).unwrap();
    assert_same(&expected("cnn"), &raw, "");
    let Value::Dict(raw) = raw else { panic!() };
    let bf16 = raw.tensor(&["extras", "bf16"]).unwrap();
    assert_eq!(bf16.kind(), Kind::BFloat16);
    assert!(matches!(raw.get_path(&["lr"]), Some(Value::Scalar(Scalar::Float(x))) if *x == 0.125));
    assert!(matches!(raw.get_path(&["epoch"]), Some(Value::Scalar(Scalar::Int(7)))));
    assert!(
        matches!(raw.get_path(&["extras", "nested", "deeper", "empty"]), Some(Value::Dict(d)) if d.is_empty())
    );
    // The Dense kernel (2560 bytes) is stored out of line in a per-process data file.
    assert_eq!(raw.tensor(&["params", "Dense_0", "kernel"]).unwrap().size(), [64, 10]);
}

#[test]
fn restores_into_a_target_strictly() {
    let target = expected("cnn");
    let restored = orbax::restore(golden("cnn"), &target, RestoreOptions::default()).unwrap();
    assert_same(&target, &restored, "");

    // A target with a wrongly shaped kernel, a missing and an extra entry: all three listed.
    let Value::Dict(root) = target else { panic!() };
    let Value::Dict(params) = root.get("params").unwrap().clone() else { panic!() };
    let params = params.copy([(
        "Conv_0",
        Value::Dict(FrozenDict::new().copy([
            ("kernel", Value::Tensor(Tensor::zeros([3, 3, 1, 8], (Kind::Float, tch::Device::Cpu)))),
            ("bias", Value::Tensor(Tensor::zeros([4], (Kind::Float, tch::Device::Cpu)))),
        ])),
    )]);
    let (root, _) = root.copy([("params", Value::Dict(params))]).pop("lr").unwrap();
    let target = Value::Dict(root.copy([("extra_field", Value::Scalar(Scalar::Int(1)))]));
    match orbax::restore(golden("cnn"), &target, RestoreOptions::default()) {
        Err(Error::StateDictMismatch { missing, unexpected, mismatched }) => {
            assert_eq!(missing, ["extra_field"]);
            assert_eq!(unexpected, ["lr"]);
            assert_eq!(mismatched.len(), 1, "{mismatched:?}");
            assert!(mismatched[0].starts_with("params/Conv_0/kernel"), "{mismatched:?}");
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[test]
fn restores_checkpoint_manager_steps_into_a_train_state() {
    let manager = CheckpointManager::new(golden("manager"), CheckpointManagerOptions::default());
    assert_eq!(manager.all_steps().unwrap(), [2, 3]);
    assert_eq!(manager.latest_step().unwrap(), Some(3));
    for step in [2, 3] {
        let expected = expected(&format!("manager_{step}"));
        // Orbax stores optax's EmptyState as None; the raw tree says so.
        let raw = manager.restore_raw(step).unwrap();
        assert!(matches!(
            raw.as_dict().unwrap().get_path(&["opt_state", "1"]),
            Some(Value::Scalar(Scalar::None))
        ));
        // A typed TrainState with Adam: step (a 0-d int32 array under jax.jit), params, and
        // Adam's count, mu and nu.
        let Value::Dict(expected_dict) = &expected else { panic!() };
        let params = expected_dict.get("params").unwrap().clone();
        let params = zeros_like(&params);
        let state = TrainState::create((), params, optax::adam(1e-2)).unwrap();
        let restored = manager.restore(step, &state, RestoreOptions::default()).unwrap();
        assert_eq!(restored.step, step as i64);
        let restored = flax::tree::to_state_dict(&restored);
        let Value::Dict(restored) = restored else { panic!() };
        for key in ["params", "opt_state"] {
            assert_same(expected_dict.get(key).unwrap(), restored.get(key).unwrap(), key);
        }
    }
}

#[test]
fn flax_restore_checkpoint_detects_orbax_directories() {
    // Flax's `checkpoints.restore_checkpoint` restores Orbax checkpoints too, raw or into a
    // target (spec L4290: "can automatically identify whether a checkpoint is saved in the
    // legacy Flax format or with an Orbax backend").
    let options = RestoreCheckpointOptions::default();
    let raw = checkpoints::restore_checkpoint_raw(golden("cnn"), &options).unwrap().unwrap();
    assert_same(&expected("cnn"), &raw, "");
    let step_dir = golden("manager").join("3").join("default");
    let target = expected("manager_3");
    let restored = checkpoints::restore_checkpoint(&step_dir, zeros_like(&target), &options).unwrap();
    assert_same(&target, &restored, "");
}

fn zeros_like(value: &Value) -> Value {
    match value {
        Value::Dict(d) => Value::Dict(d.iter().map(|(k, v)| (k.to_owned(), zeros_like(v))).collect()),
        Value::Tensor(t) => Value::Tensor(t.zeros_like()),
        other => other.clone(),
    }
}

#[test]
fn restores_the_per_array_layout_and_the_spec_era_aggregate_file() {
    for name in ["per_array", "aggregate"] {
        let raw = orbax::restore_raw(golden(name)).unwrap();
        assert_same(&expected(name), &raw, name);
        let raw = raw.as_dict().unwrap().clone();
        assert!(
            matches!(raw.get_path(&["config", "name"]), Some(Value::Scalar(Scalar::Str(s))) if s == "dense")
        );
        assert!(matches!(raw.get_path(&["model", "opt_state", "0"]), Some(Value::Scalar(Scalar::None))));
    }
    assert!(orbax::is_orbax_checkpoint(golden("aggregate")));
    assert!(!orbax::is_orbax_checkpoint(golden("manager")));
}

/// A tree with every kind of leaf this library writes.
fn rust_tree() -> Value {
    let f = |v: &[f32], shape: &[i64]| Value::Tensor(Tensor::from_slice(v).view(shape));
    let big: Vec<f32> = (0..600).map(|i| i as f32 / 7.0).collect();
    Value::Dict(FrozenDict::new().copy([
        (
            "params",
            Value::Dict(
                FrozenDict::new().copy(
                    [
                        (
                            "Dense_0",
                            Value::Dict(FrozenDict::new().copy([
                                ("kernel", f(&big, &[20, 30])),
                                ("bias", f(&[0.5, -1.5, 2.0], &[3])),
                            ])),
                        ),
                    ],
                ),
            ),
        ),
        ("bf16", Value::Tensor(Tensor::from_slice(&[1.5f32, -2.0]).to_kind(Kind::BFloat16))),
        ("int32", Value::Tensor(Tensor::from_slice(&[-3i32, 0, 7]))),
        ("bool", Value::Tensor(Tensor::from_slice(&[true, false]))),
        ("key", Value::Scalar(Scalar::UintArray(UintArray::from_u32(&[0, 42])))),
        ("step", Value::Tensor(Tensor::from(5i32))),
        ("lr", Value::Scalar(Scalar::Float(0.25))),
        ("epoch", Value::Scalar(Scalar::Int(3))),
        ("name", Value::Scalar(Scalar::Str("cnn".into()))),
        ("nothing", Value::Scalar(Scalar::None)),
        ("empty", Value::Dict(FrozenDict::new())),
        (
            "opt_state",
            Value::Dict(FrozenDict::new().copy([
                ("0", Value::Dict(FrozenDict::new().copy([("count", Value::Tensor(Tensor::from(2i32)))]))),
                ("1", Value::Dict(FrozenDict::new())),
            ])),
        ),
    ]))
}

/// Where this test leaves the checkpoints `orbax_check_restore.py` restores.
fn rust_out() -> PathBuf {
    std::env::var_os("FLAX_RS_ORBAX_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("orbax-rust"))
}

#[test]
fn written_checkpoints_restore_here_in_both_layouts() {
    let out = rust_out();
    let _ = fs::remove_dir_all(&out);
    let tree = rust_tree();
    for (name, layout) in [("ocdbt", Layout::Ocdbt), ("per_array", Layout::PerArray)] {
        let path = out.join(name);
        orbax::save(&path, &tree, &SaveOptions::default().layout(layout)).unwrap();
        let raw = orbax::restore_raw(&path).unwrap();
        assert_same(&tree, &raw, name);
        assert_eq!(path.join("manifest.ocdbt").exists(), layout == Layout::Ocdbt);
        // Saving again is refused unless forced.
        assert!(matches!(
            orbax::save(&path, &tree, &SaveOptions::default()),
            Err(Error::AlreadyExists { .. })
        ));
        orbax::save(&path, &tree, &SaveOptions::default().layout(layout).force(true)).unwrap();
    }
    // The checkpoint a TrainState's restore in Python reads: a manager with three steps.
    let manager =
        CheckpointManager::new(out.join("manager"), CheckpointManagerOptions::default().max_to_keep(2));
    for step in 1..=3 {
        manager.save(step, &tree).unwrap();
    }
    assert_eq!(manager.all_steps().unwrap(), [2, 3]);
    assert_same(&tree, &manager.restore_raw(3).unwrap(), "manager");
    assert!(matches!(manager.save(3, &tree), Err(Error::AlreadyExists { .. })));
    assert!(matches!(manager.save(1, &tree), Err(Error::InvalidCheckpoint { .. })));
    // No temporary directory is left behind.
    let names: Vec<_> = fs::read_dir(out.join("manager")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// A copy of a golden checkpoint to damage.
fn damaged_copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&golden(name), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn format_error(path: &Path) -> String {
    match orbax::restore_raw(path) {
        Err(Error::Format { message, .. }) => message,
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn missing_checkpoints_and_files_are_io_errors_naming_them() {
    let missing = Path::new(DATA).join("no_such_checkpoint");
    let message = orbax::restore_raw(&missing).unwrap_err().to_string();
    assert!(message.contains("no_such_checkpoint"), "{message}");
    let dir = damaged_copy("cnn");
    fs::remove_file(dir.path().join("manifest.ocdbt")).unwrap();
    assert!(
        matches!(orbax::restore_raw(dir.path()), Err(Error::Io { path, .. }) if path.ends_with("manifest.ocdbt"))
    );
    let dir = tempfile::tempdir().unwrap();
    assert!(format_error(dir.path()).contains("not an Orbax checkpoint"));
}

/// Calls `check` on `dir` after each flip of one bit in `file`, and after each truncation,
/// then puts the file back.
fn damage_each_byte(dir: &Path, file: &Path, mut check: impl FnMut(usize, flax::Result<Value>)) {
    let original = fs::read(file).unwrap();
    for at in 0..original.len() {
        let mut bytes = original.clone();
        bytes[at] ^= 0x10;
        fs::write(file, &bytes).unwrap();
        check(at, orbax::restore_raw(dir));
        fs::write(file, &original[..at]).unwrap();
        check(at, orbax::restore_raw(dir));
    }
    fs::write(file, &original).unwrap();
}

#[test]
fn every_flipped_or_truncated_byte_of_the_manifest_and_nodes_is_a_typed_error() {
    let dir = damaged_copy("cnn");
    // The top-level manifest and B+tree nodes (what a restore reads; the per-process
    // database's manifest and nodes were merged into them) are checksummed: every change is
    // noticed.
    let mut files = vec![dir.path().join("manifest.ocdbt")];
    files.extend(fs::read_dir(dir.path().join("d")).unwrap().map(|e| e.unwrap().path()));
    for file in &files {
        damage_each_byte(dir.path(), file, |at, result| {
            assert!(result.is_err(), "{}: damage at byte {at} was not noticed", file.display());
        });
    }
    let manifest = dir.path().join("manifest.ocdbt");
    let mut bytes = fs::read(&manifest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&manifest, bytes).unwrap();
    assert!(format_error(dir.path()).contains("CRC-32C"));
}

#[test]
fn damaged_value_files_never_panic() {
    // The out-of-line values (zstd chunks) in the per-process data files carry no OCDBT
    // checksum: damage there is an error when zstd or the chunk size notices it, and
    // otherwise changes values, but never panics.
    let dir = damaged_copy("cnn");
    let mut noticed = 0;
    for entry in fs::read_dir(dir.path().join("ocdbt.process_0/d")).unwrap() {
        damage_each_byte(dir.path(), &entry.unwrap().path(), |_, result| {
            noticed += usize::from(result.is_err())
        });
    }
    assert!(noticed > 0);
    assert!(orbax::restore_raw(dir.path()).is_ok());
}

#[test]
fn missing_or_damaged_arrays_of_the_per_array_layout_are_named() {
    let dir = damaged_copy("per_array");
    fs::remove_dir_all(dir.path().join("model.params.kernel")).unwrap();
    let message = format_error(dir.path());
    assert!(message.contains("model.params.kernel") && message.contains(".zarray"), "{message}");

    let dir = damaged_copy("per_array");
    let chunk = dir.path().join("model.params.kernel/0.0");
    let bytes = fs::read(&chunk).unwrap();
    fs::write(&chunk, &bytes[..bytes.len() / 2]).unwrap();
    assert!(format_error(dir.path()).contains("model.params.kernel"));

    let dir = damaged_copy("per_array");
    fs::write(dir.path().join("_METADATA"), b"{\"tree_metadata\": 3}").unwrap();
    assert!(format_error(dir.path()).contains("tree_metadata"));

    let dir = damaged_copy("per_array");
    fs::write(dir.path().join("model.params.bias/.zarray"), b"[1, 2").unwrap();
    assert!(format_error(dir.path()).contains("not JSON"));

    let dir = damaged_copy("per_array");
    fs::remove_file(dir.path().join("_strings.json")).unwrap();
    assert!(matches!(orbax::restore_raw(dir.path()), Err(Error::Io { .. })));
}
