//! The `checkpoint_dir` fuzz target's body (`fuzz/fuzz_targets/checkpoint_dir_ops.rs`),
//! compiled here on stable Rust and run on bounded random operation sequences: cargo-fuzz
//! needs a nightly toolchain and the `cargo fuzz` tool, which the suite cannot assume, so
//! this keeps the target from rotting and checks its property on every `cargo test`.
//! `FLAX_RS_CHECKPOINT_OPS=<n>` runs `n` sequences instead of the default.

include!("../../fuzz/fuzz_targets/checkpoint_dir_ops.rs");

/// xorshift64*: a reproducible stream, no dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn random_operation_sequences_never_panic_and_saves_restore() {
    let runs: u64 = std::env::var("FLAX_RS_CHECKPOINT_OPS").ok().and_then(|n| n.parse().ok()).unwrap_or(48);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    // The corner inputs first: nothing, one save, a save then every stray name.
    let mut inputs: Vec<Vec<u8>> =
        vec![vec![], vec![0, 3, 1], (0..8u8).flat_map(|i| [1, i, 7, 0, i, 2]).collect()];
    for _ in 0..runs {
        let len = (next(&mut state) % 48) as usize;
        inputs.push((0..len).map(|_| next(&mut state) as u8).collect());
    }
    let mut saves = 0;
    for data in &inputs {
        let dir = tempfile::tempdir().unwrap();
        run_checkpoint_ops(dir.path(), data);
        saves += data.chunks(3).filter(|op| op[0] % 4 == 0).count();
    }
    assert!(saves > runs as usize, "the sequences should save often ({saves} saves)");
}
