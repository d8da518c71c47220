//! `flax::training::checkpoints` against `flax.training.checkpoints` 0.12.8 (legacy mode).
//!
//! `scripts/golden/checkpoint_vectors.py` wrote `tests/data/checkpoints/`: a checkpoint saved
//! by Python Flax (`flax_dir/checkpoint_3`) and `expected.json`, which records the file names
//! Flax gives steps, its natural sort, and sequences of saves with the directory Flax left
//! after each. The checkpoint Rust writes is saved (to `$FLAX_RS_CHECKPOINT_OUT`, by default
//! `target/tmp/checkpoint-rust`) for `scripts/golden/check_rust_checkpoints.py`.

use flax::serialization::RestoreOptions;
use flax::tch::{Device, Kind, Tensor};
use flax::training::checkpoints::{
    self, available_steps, latest_checkpoint, natural_sort, restore_checkpoint, restore_checkpoint_raw,
    save_checkpoint, AsyncCheckpointer, RestoreCheckpointOptions, SaveCheckpointOptions, Step,
};
use flax::{Error, FrozenDict, Scalar, Value};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/checkpoints");

fn expected() -> Json {
    serde_json::from_str(&std::fs::read_to_string(format!("{DATA}/expected.json")).unwrap()).unwrap()
}

/// An empty directory of its own for each test.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("checkpoints").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The names Flax sees in `dir`: all but the hidden ones (this library's checksum sidecars
/// and temporary files).
fn listing(dir: &Path) -> Vec<String> {
    all_names(dir).into_iter().filter(|name| !name.starts_with('.')).collect()
}

fn all_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_owned()
}

fn dict(entries: Vec<(&str, Value)>) -> Value {
    Value::Dict(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn tensor(values: &[f64], shape: &[i64], kind: Kind) -> Value {
    Value::Tensor(Tensor::from_slice(values).reshape(shape).to_kind(kind))
}

/// `tree()` of checkpoint_vectors.py, in the same insertion order.
fn flax_tree() -> FrozenDict {
    let kernel: Vec<f64> = (0..6).map(|i| (f64::from(i) - 2.5) / 4.0).collect();
    let tree = dict(vec![
        (
            "params",
            dict(vec![(
                "Dense_0",
                dict(vec![
                    ("kernel", tensor(&kernel, &[3, 2], Kind::Float)),
                    ("bias", tensor(&[0.5, -1.5], &[2], Kind::Float)),
                ]),
            )]),
        ),
        (
            "batch_stats",
            dict(vec![
                ("mean", tensor(&[-1.0, -1.0 / 3.0, 1.0 / 3.0, 1.0], &[4], Kind::Double)),
                ("count", tensor(&[0.0, 1.0, 2.0], &[3], Kind::Int)),
            ]),
        ),
        (
            "opt_state",
            Value::List(vec![dict(vec![("mu", tensor(&[1.0, 1.0], &[2], Kind::Half))]), dict(vec![])]),
        ),
        ("step", Value::Scalar(Scalar::Int(3))),
        ("lr", Value::Scalar(Scalar::Float(0.01))),
        ("name", Value::Scalar(Scalar::Str("mlp".into()))),
    ]);
    tree.as_dict().unwrap().clone()
}

fn small() -> Value {
    dict(vec![("a", Value::Tensor(Tensor::arange(3, (Kind::Int64, Device::Cpu))))])
}

fn step_of(json: &Json) -> Step {
    match json.as_i64() {
        Some(n) => Step::from(n),
        None => Step::from(json.as_f64().unwrap()),
    }
}

fn assert_close(path: &str, actual: &Tensor, expected: &Tensor) {
    assert_eq!((actual.kind(), actual.size()), (expected.kind(), expected.size()), "{path}");
    let diff = (actual.to_kind(Kind::Double) - expected.to_kind(Kind::Double)).abs().max().double_value(&[]);
    assert!(diff <= 1e-12, "{path}: differs by {diff}");
}

#[test]
fn file_names_are_flaxs() {
    let dir = fresh_dir("names");
    let options = SaveCheckpointOptions::default().overwrite(true).keep(100);
    for case in expected()["names"].as_array().unwrap() {
        let step = if case["is_float"].as_bool().unwrap() {
            Step::from(case["step"].as_f64().unwrap())
        } else {
            step_of(&case["step"])
        };
        let path = save_checkpoint(&dir, &small(), step, &options).unwrap();
        assert_eq!(file_name(&path), case["name"].as_str().unwrap(), "{step:?}");
        assert_eq!(path.parent().unwrap(), dir);
    }
}

#[test]
fn natural_sort_and_latest_checkpoint_match_flax() {
    for (i, case) in expected()["natural_sort"].as_array().unwrap().iter().enumerate() {
        let names: Vec<&str> =
            case["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
        let sorted: Vec<&str> =
            case["sorted"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
        assert_eq!(natural_sort(names.clone()), sorted);
        let dir = fresh_dir(&format!("natural_sort_{i}"));
        for name in &names {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        let latest = latest_checkpoint(&dir, "ckpt_").unwrap().map(|p| file_name(&p));
        // A deliberate difference: only `<prefix><number>` names are checkpoints here, so the
        // stray `ckpt_x9` that Flax takes for the latest is not one.
        let expected = case["latest"].as_str().map(|name| if name == "ckpt_x9" { "ckpt_1E2" } else { name });
        assert_eq!(latest.as_deref(), expected, "{names:?}");
    }
}

fn save_options(json: &Json) -> SaveCheckpointOptions {
    let mut options = SaveCheckpointOptions::default();
    if let Some(prefix) = json.get("prefix") {
        options = options.prefix(prefix.as_str().unwrap());
    }
    if let Some(keep) = json.get("keep") {
        options = options.keep(keep.as_u64().unwrap() as usize);
    }
    if let Some(overwrite) = json.get("overwrite") {
        options = options.overwrite(overwrite.as_bool().unwrap());
    }
    if let Some(n) = json.get("keep_every_n_steps") {
        options = options.keep_every_n_steps(n.as_u64().unwrap());
    }
    options
}

/// Runs one operation of a scenario; returns what Flax's script recorded as its result.
fn run_op(dir: &Path, op: &Json) -> Json {
    if op["op"] == "touch" {
        let path = dir.join(op["name"].as_str().unwrap());
        std::fs::create_dir_all(dir).unwrap();
        if op["directory"].as_bool().unwrap() {
            std::fs::create_dir(path).unwrap();
        } else {
            std::fs::write(path, b"not a checkpoint").unwrap();
        }
        return Json::Null;
    }
    match save_checkpoint(dir, &small(), step_of(&op["step"]), &save_options(&op["options"])) {
        Ok(path) => Json::from(file_name(&path)),
        Err(Error::InvalidCheckpoint { .. }) => Json::from("InvalidCheckpointError"),
        Err(other) => panic!("{op}: {other}"),
    }
}

#[test]
fn saves_keep_overwrite_and_clean_up_as_flax_does() {
    for (name, scenario) in expected()["scenarios"].as_object().unwrap() {
        if name == "stray_file_blocks_saves" {
            continue; // a deliberate difference: a_stray_name_is_never_a_checkpoint
        }
        let dir = fresh_dir(&format!("scenario_{name}")).join("ckpts");
        let ops = scenario["ops"].as_array().unwrap();
        for (i, (op, after)) in ops.iter().zip(scenario["after"].as_array().unwrap()).enumerate() {
            let at = format!("{name}[{i}] {op}");
            assert_eq!(run_op(&dir, op), after["result"], "{at}: result");
            assert_eq!(Json::from(listing(&dir)), after["files"], "{at}: files");
            let prefix = op["options"].get("prefix").and_then(Json::as_str).unwrap_or("checkpoint_");
            let latest = latest_checkpoint(&dir, prefix).unwrap().map(|p| file_name(&p));
            assert_eq!(latest.as_deref(), after["latest"].as_str(), "{at}: latest");
            let steps = match available_steps::<f64>(&dir, prefix) {
                Ok(steps) => Json::from(steps),
                Err(Error::Value(_)) => Json::from("ValueError"),
                Err(other) => panic!("{at}: {other}"),
            };
            assert_eq!(steps, after["available_steps"], "{at}: available_steps");
        }
    }
}

#[test]
fn invalid_checkpoint_error_names_the_path_and_step() {
    let dir = fresh_dir("invalid");
    save_checkpoint(&dir, &small(), 0.5, &SaveCheckpointOptions::default()).unwrap();
    let err = save_checkpoint(&dir, &small(), 0.25, &SaveCheckpointOptions::default()).unwrap_err();
    let Error::InvalidCheckpoint { path, step } = &err else { panic!("{err}") };
    assert_eq!((path.as_str(), step.as_str()), (dir.join("checkpoint_0.25").to_str().unwrap(), "0.25"));
    assert!(available_steps::<i64>(&dir, "checkpoint_").unwrap_err().to_string().contains("0.5"));
}

#[test]
fn a_flax_checkpoint_restores_raw_and_into_a_target() {
    let dir = Path::new(DATA).join("flax_dir");
    let target = flax_tree();
    let restored = restore_checkpoint(&dir, target.clone(), &RestoreCheckpointOptions::default()).unwrap();
    assert_eq!(restored.keys().collect::<Vec<_>>(), target.keys().collect::<Vec<_>>());
    for path in [["params", "Dense_0", "kernel"], ["params", "Dense_0", "bias"]] {
        assert_close(&path.join("/"), restored.tensor(&path).unwrap(), target.tensor(&path).unwrap());
    }
    let mean = restored.tensor(&["batch_stats", "mean"]).unwrap();
    assert!((mean - target.tensor(&["batch_stats", "mean"]).unwrap()).abs().max().double_value(&[]) < 1e-15);
    assert!(matches!(restored.get("lr"), Some(Value::Scalar(Scalar::Float(x))) if *x == 0.01));
    let opt_state = restored.get("opt_state").and_then(Value::as_list).unwrap();
    assert_eq!(opt_state[0].as_dict().unwrap().tensor(&["mu"]).unwrap().kind(), Kind::Half);

    // Without a target: the state dict, lists as dicts keyed "0", "1" (as in Flax).
    let raw = restore_checkpoint_raw(dir.join("checkpoint_3"), &RestoreCheckpointOptions::default()).unwrap();
    let raw = raw.unwrap();
    let raw = raw.as_dict().unwrap();
    assert_eq!(raw.get_dict("opt_state").unwrap().keys().collect::<Vec<_>>(), ["0", "1"]);
    assert!(raw.get_path(&["opt_state", "1"]).unwrap().as_dict().unwrap().is_empty());
    assert!(matches!(raw.get("step"), Some(Value::Scalar(Scalar::Int(3)))));
}

#[test]
fn rust_writes_the_bytes_flax_writes() {
    let flax_file = Path::new(DATA).join("flax_dir/checkpoint_3");
    let options = RestoreCheckpointOptions::default();
    let restored = restore_checkpoint(&flax_file, flax_tree(), &options).unwrap();
    let out = std::env::var_os("FLAX_RS_CHECKPOINT_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("checkpoint-rust"));
    let _ = std::fs::remove_dir_all(&out);
    let path = save_checkpoint(&out, &restored, 3, &SaveCheckpointOptions::default()).unwrap();
    assert_eq!(path, out.join("checkpoint_3"));
    assert!(std::fs::read(&path).unwrap() == std::fs::read(&flax_file).unwrap(), "bytes differ from Flax's");
    assert_eq!(listing(&out), ["checkpoint_3"]);
}

/// Restores a Flax checkpoint of a bare value into `target` and saves it again.
fn round_trip_flax_value(dir: &str, step: i64, target: Value) -> Value {
    let flax_dir = Path::new(DATA).join(dir);
    let restored = restore_checkpoint(&flax_dir, target, &RestoreCheckpointOptions::default()).unwrap();
    let out = fresh_dir(&format!("rewrite_{dir}"));
    let path = save_checkpoint(&out, &restored, step, &SaveCheckpointOptions::default()).unwrap();
    let flax_file = flax_dir.join(file_name(&path));
    assert!(std::fs::read(&path).unwrap() == std::fs::read(flax_file).unwrap(), "{dir}: bytes differ");
    restored
}

#[test]
fn bare_lists_and_arrays_are_checkpoints_too() {
    // A list's state dict keys are "0" … "10" in insertion order, not sorted ("10" < "2").
    let int = |i: i64| Value::Tensor(Tensor::from_slice(&[i as i32]));
    let list = round_trip_flax_value("flax_list", 1, Value::List((0..11).map(|_| int(0)).collect()));
    let items = list.as_list().unwrap();
    assert_eq!(items.len(), 11);
    assert_eq!(items[10].as_tensor().unwrap().int64_value(&[0]), 10);
    let array = round_trip_flax_value("flax_array", 2, tensor(&[0.0; 4], &[4], Kind::Float));
    assert!(array.as_tensor().unwrap().equal(&Tensor::arange(4, (Kind::Float, Device::Cpu))));
    // A target of another kind is a mismatch at the root.
    let dir = Path::new(DATA).join("flax_array");
    let err = restore_checkpoint(&dir, small(), &RestoreCheckpointOptions::default()).unwrap_err();
    assert!(matches!(&err, Error::StateDictMismatch { mismatched, .. } if mismatched.len() == 1), "{err}");
}

#[test]
fn nothing_to_restore_gives_the_target_back() {
    let dir = fresh_dir("nothing");
    let options = RestoreCheckpointOptions::default();
    let target = small();
    for path in [dir.join("missing"), dir.clone(), dir.join("missing_file")] {
        let same = restore_checkpoint(&path, target.clone(), &options).unwrap();
        let (a, b) = (
            same.as_dict().unwrap().tensor(&["a"]).unwrap(),
            target.as_dict().unwrap().tensor(&["a"]).unwrap(),
        );
        assert_eq!(a.data_ptr(), b.data_ptr());
        assert!(restore_checkpoint_raw(&path, &options).unwrap().is_none());
    }
    let err = restore_checkpoint_raw(&dir, &options.clone().step(7)).unwrap_err();
    assert!(matches!(&err, Error::Value(m) if m.starts_with("Matching checkpoint not found")), "{err}");
}

#[test]
fn restore_by_step_prefix_and_file() {
    let dir = fresh_dir("by_step");
    let options = SaveCheckpointOptions::default().keep(3).prefix("ckpt_");
    for step in 1..=3i64 {
        let tree = dict(vec![("step", Value::Scalar(Scalar::Int(step)))]);
        save_checkpoint(&dir, &tree, step, &options).unwrap();
    }
    let step_in = |value: Value| match value.as_dict().unwrap().get("step") {
        Some(Value::Scalar(Scalar::Int(n))) => *n,
        other => panic!("{other:?}"),
    };
    let target = dict(vec![("step", Value::Scalar(Scalar::Int(0)))]);
    let restore =
        |options: RestoreCheckpointOptions| restore_checkpoint(&dir, target.clone(), &options).unwrap();
    let ckpt = RestoreCheckpointOptions::default().prefix("ckpt_");
    assert_eq!(step_in(restore(ckpt.clone())), 3);
    assert_eq!(step_in(restore(ckpt.clone().step(2))), 2);
    // With the default prefix nothing matches, so the target comes back.
    assert_eq!(step_in(restore(RestoreCheckpointOptions::default())), 0);
    let file = restore_checkpoint(dir.join("ckpt_1"), target.clone(), &RestoreCheckpointOptions::default());
    assert_eq!(step_in(file.unwrap()), 1);
}

#[test]
fn restoring_into_a_different_structure_reports_every_difference() {
    let dir = fresh_dir("mismatch");
    save_checkpoint(&dir, &flax_tree(), 3, &SaveCheckpointOptions::default()).unwrap();
    let (target, _) = flax_tree().pop("lr").unwrap();
    let target = target
        .copy([("extra", tensor(&[1.0], &[1], Kind::Float)), ("name", tensor(&[1.0], &[1], Kind::Float))]);
    let options = RestoreCheckpointOptions::default();
    let err = restore_checkpoint(&dir, target.clone(), &options).unwrap_err();
    let Error::StateDictMismatch { missing, unexpected, mismatched } = &err else { panic!("{err}") };
    assert_eq!(
        (missing.as_slice(), unexpected.as_slice()),
        (&["extra".to_owned()][..], &["lr".to_owned()][..])
    );
    assert_eq!(mismatched.len(), 1, "{mismatched:?}");
    assert!(mismatched[0].starts_with("name: "), "{mismatched:?}");

    let (target, _) = flax_tree().pop("lr").unwrap();
    let target = target.copy([("extra", tensor(&[1.0], &[1], Kind::Float))]);
    let partial = options.state_dict(RestoreOptions { allow_partial: true, allow_unexpected: true });
    let restored = restore_checkpoint(&dir, target, &partial).unwrap();
    assert!(restored.contains_key("extra") && !restored.contains_key("lr"));
}

#[test]
fn a_corrupt_checkpoint_is_a_format_error_naming_the_file() {
    let dir = fresh_dir("corrupt");
    save_checkpoint(&dir, &flax_tree(), 1, &SaveCheckpointOptions::default()).unwrap();
    let path = dir.join("checkpoint_1");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
    let options = RestoreCheckpointOptions::default();
    // Its checksum reports it first; without the sidecar (as Python writes it) the reader does.
    let err = restore_checkpoint(&dir, flax_tree(), &options).unwrap_err();
    assert!(matches!(&err, Error::ChecksumMismatch { path, .. } if path.ends_with("checkpoint_1")), "{err}");
    std::fs::remove_file(dir.join(".checkpoint_1.crc32")).unwrap();
    let err = restore_checkpoint(&dir, flax_tree(), &options).unwrap_err();
    assert!(matches!(&err, Error::Format { message, .. } if message.contains("checkpoint_1")), "{err}");
}

#[test]
fn prefixes_with_separators_and_malformed_orbax_directories_are_refused() {
    let dir = fresh_dir("refused");
    let err = save_checkpoint(&dir, &small(), 1, &SaveCheckpointOptions::default().prefix("sub/ckpt_"))
        .unwrap_err();
    assert!(matches!(err, Error::Value(_)), "{err}");
    let orbax = dir.join("checkpoint_1");
    std::fs::create_dir_all(&orbax).unwrap();
    std::fs::write(orbax.join("_METADATA"), b"{}").unwrap();
    // An Orbax checkpoint is restored through `flax::training::orbax`, which reports this one's
    // `_METADATA` as malformed.
    let err = restore_checkpoint_raw(&dir, &RestoreCheckpointOptions::default()).unwrap_err();
    assert!(matches!(&err, Error::Format { message, .. } if message.contains("tree_metadata")), "{err}");
}

#[test]
fn io_errors_are_typed_and_leave_the_latest_checkpoint_alone() {
    let dir = fresh_dir("io_error");
    save_checkpoint(&dir, &small(), 1, &SaveCheckpointOptions::default()).unwrap();
    // The sidecar's name is taken by a directory that cannot be removed as a file.
    std::fs::create_dir_all(dir.join(".checkpoint_2.crc32/occupied")).unwrap();
    let err = save_checkpoint(&dir, &small(), 2, &SaveCheckpointOptions::default()).unwrap_err();
    assert!(matches!(&err, Error::Io { path, .. } if path.ends_with(".checkpoint_2.crc32")), "{err}");
    // Nothing else changed, and the temporary file is gone.
    assert_eq!(all_names(&dir), [".checkpoint_1.crc32", ".checkpoint_2.crc32", "checkpoint_1"]);
    let latest = latest_checkpoint(&dir, "checkpoint_").unwrap().unwrap();
    assert_eq!(file_name(&latest), "checkpoint_1");
    assert!(restore_checkpoint_raw(&dir, &RestoreCheckpointOptions::default()).unwrap().is_some());

    // The checkpoint directory is a file.
    let not_a_dir = dir.join("checkpoint_1");
    let err = save_checkpoint(&not_a_dir, &small(), 2, &SaveCheckpointOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn async_saves_run_one_at_a_time_and_report_errors_later() {
    let dir = fresh_dir("async");
    let mut saver = AsyncCheckpointer::new();
    let options = SaveCheckpointOptions::default().keep(2);
    for step in 1..=4 {
        let path = saver.save_checkpoint(&dir, &small(), step, &options).unwrap();
        assert_eq!(file_name(&path), format!("checkpoint_{step}"));
    }
    saver.wait().unwrap();
    assert!(!saver.is_saving());
    assert_eq!(listing(&dir), ["checkpoint_3", "checkpoint_4"]);

    // A write that fails in the background surfaces on the next call, which then goes on.
    std::fs::create_dir_all(dir.join(".checkpoint_5.crc32/occupied")).unwrap();
    saver.save_checkpoint(&dir, &small(), 5, &options).unwrap();
    let err = saver.save_checkpoint(&dir, &small(), 6, &options).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    std::fs::remove_dir_all(dir.join(".checkpoint_5.crc32")).unwrap();
    saver.save_checkpoint(&dir, &small(), 6, &options).unwrap();
    saver.wait().unwrap();
    assert_eq!(listing(&dir), ["checkpoint_4", "checkpoint_6"]);
    // Checks that need no writing fail at once.
    let err = saver.save_checkpoint(&dir, &small(), 2, &options).unwrap_err();
    assert!(matches!(err, Error::InvalidCheckpoint { .. }), "{err}");
}

#[test]
fn checkpoint_steps_convert_from_rust_numbers() {
    assert_eq!(Step::from(7usize), Step::Int(7));
    assert_eq!(Step::from(0.5), Step::Float(0.5));
    assert_eq!(checkpoints::Step::from(u64::MAX).to_string(), "18446744073709551615");
}

/// Any pytree checkpoints, e.g. a train state with a scalar step (kept in the state dict).
#[derive(flax::Tree)]
struct State {
    step: i64,
    params: FrozenDict,
    momentum: Option<Tensor>,
}

#[test]
fn a_derived_tree_checkpoints_and_restores() {
    let dir = fresh_dir("derived_tree");
    let params: FrozenDict = [("w".to_owned(), Value::Tensor(Tensor::arange(6, (Kind::Float, Device::Cpu))))]
        .into_iter()
        .collect();
    let state = State { step: 7, params, momentum: Some(Tensor::ones([2], (Kind::Float, Device::Cpu))) };
    save_checkpoint(&dir, &state, 7, &SaveCheckpointOptions::default()).unwrap();
    let blank = State {
        step: 0,
        params: [("w".to_owned(), Value::Tensor(Tensor::zeros([6], (Kind::Float, Device::Cpu))))]
            .into_iter()
            .collect(),
        momentum: Some(Tensor::zeros([2], (Kind::Float, Device::Cpu))),
    };
    let restored = restore_checkpoint(&dir, blank, &RestoreCheckpointOptions::default()).unwrap();
    assert_eq!(restored.step, 7);
    assert!(restored.params.tensor(&["w"]).unwrap().equal(state.params.tensor(&["w"]).unwrap()));
    assert!(restored.momentum.unwrap().equal(&Tensor::ones([2], (Kind::Float, Device::Cpu))));
}
