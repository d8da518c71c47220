//! The checkpoint directory logic on arbitrary sequences of operations (see
//! `checkpoint_dir_ops.rs`, which the stable test suite also compiles and runs).
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("checkpoint_dir_ops.rs");

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("flax-fuzz-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    run_checkpoint_ops(&dir, data);
    let _ = std::fs::remove_dir_all(&dir);
});
