// The body of the `checkpoint_dir` fuzz target, shared with the stable test suite: the fuzz
// target and `flax-runtime/tests/checkpoint_dir_ops.rs` both `include!` this file, so the
// code the fuzzer runs is compiled (and run on bounded random inputs) by `cargo test`.
//
// The checkpoint directory logic on arbitrary sequences of operations: saves (with and
// without `overwrite`, any `keep`), stray files with names near checkpoint names, damaged
// files and sidecars, and restores. Nothing may panic; a save that returned `Ok` restores to
// what it saved.

/// Names a stray file may take: checkpoint-like, temporary-like and sidecar-like.
const STRAY: [&str; 8] = [
    "checkpoint_1.bak",
    "checkpoint_tmp",
    ".checkpoint_tmp.x",
    ".checkpoint_2.crc32",
    "checkpoint_3",
    "checkpoint_1e2",
    "checkpoint_x9",
    "checkpoint_",
];

fn checkpoint_state(step: i64) -> flax::Value {
    use flax::{Scalar, Value};
    Value::Dict([("step".to_owned(), Value::Scalar(Scalar::Int(step)))].into_iter().collect())
}

/// Runs the operations `data` encodes (three bytes each) in the empty directory `dir`.
/// Panics (the fuzzer's finding) when a saved checkpoint does not restore to its state; every
/// other outcome is allowed to be an error.
pub fn run_checkpoint_ops(dir: &std::path::Path, data: &[u8]) {
    use flax::training::checkpoints::{
        latest_checkpoint, restore_checkpoint_raw, save_checkpoint, RestoreCheckpointOptions,
        SaveCheckpointOptions,
    };
    use flax::{Scalar, Value};
    let restore = RestoreCheckpointOptions::default();
    for op in data.chunks(3) {
        let (kind, a, b) = (op[0] % 4, op.get(1).copied().unwrap_or(0), op.get(2).copied().unwrap_or(0));
        match kind {
            0 => {
                let step = i64::from(a % 16);
                let options = SaveCheckpointOptions::default().keep(usize::from(b % 4)).overwrite(b & 4 != 0);
                if let Ok(path) = save_checkpoint(dir, &checkpoint_state(step), step, &options) {
                    let restored =
                        restore_checkpoint_raw(&path, &restore).expect("a saved checkpoint restores");
                    let restored = restored.expect("a saved checkpoint exists");
                    let step_back = restored.as_dict().and_then(|d| d.get("step").cloned());
                    assert!(matches!(step_back, Some(Value::Scalar(Scalar::Int(s))) if s == step));
                }
            }
            1 => {
                let _ = std::fs::write(dir.join(STRAY[usize::from(a % 8)]), [b]);
            }
            2 => {
                // Damage a byte of the latest checkpoint: restoring must not panic.
                if let Ok(Some(latest)) = latest_checkpoint(dir, "checkpoint_") {
                    if let Ok(mut bytes) = std::fs::read(&latest) {
                        if !bytes.is_empty() {
                            let at = usize::from(a) % bytes.len();
                            bytes[at] ^= b | 1;
                            let _ = std::fs::write(&latest, bytes);
                        }
                    }
                }
            }
            _ => {
                let _ = restore_checkpoint_raw(dir, &restore);
            }
        }
    }
}
