//! Corrupt files give typed errors, never a panic: a bounded mutation test on stable Rust,
//! the test-suite companion of the cargo-fuzz targets in `fuzz/`.
//!
//! Every msgpack and safetensors file of the golden vectors (written by Flax, PyTorch and
//! safetensors) is mutated with a fixed-seed generator — bit flips, random bytes, truncations,
//! insertions, duplicated and deleted runs, splices of two files — and read back. Readers must
//! return `Ok` or an `Err`; what they accept must be written again and read back to a tree that
//! writes the same bytes (the fuzz targets' property). `FLAX_RS_MUTATIONS` sets the number of
//! mutants per reader (default 20000, a fraction of a second).

use flax::serialization::safetensors::{safetensors_restore, to_safetensors};
use flax::serialization::{msgpack_restore, msgpack_serialize};
use std::path::Path;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

/// The golden files under `tests/data/<dir>` whose names end with one of `suffixes`.
fn corpus(dirs: &[&str], keep: impl Fn(&str) -> bool) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for dir in dirs {
        for entry in std::fs::read_dir(Path::new(DATA).join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() && keep(path.file_name().unwrap().to_str().unwrap()) {
                files.push(std::fs::read(&path).unwrap());
            }
        }
    }
    assert!(!files.is_empty(), "no corpus in {dirs:?}");
    files
}

/// xorshift64*: a reproducible stream, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four random edits of `file` (or a splice with `other`).
fn mutate(rng: &mut Rng, file: &[u8], other: &[u8]) -> Vec<u8> {
    let mut bytes = file.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len());
        match rng.below(7) {
            0 if !bytes.is_empty() => bytes[at] ^= 1 << rng.below(8),
            1 if !bytes.is_empty() => bytes[at] = rng.next() as u8,
            2 => bytes.truncate(at),
            3 => bytes.splice(at..at, (0..1 + rng.below(8)).map(|_| rng.next() as u8)).for_each(drop),
            4 => {
                let end = (at + 1 + rng.below(16)).min(bytes.len());
                bytes.drain(at..end);
            }
            5 => {
                let end = (at + 1 + rng.below(32)).min(bytes.len());
                let run = bytes[at..end].to_vec();
                bytes.splice(at..at, run).for_each(drop);
            }
            _ => {
                let from = rng.below(other.len());
                bytes.truncate(at);
                bytes.extend_from_slice(&other[from..]);
            }
        }
    }
    bytes
}

fn mutants() -> usize {
    std::env::var("FLAX_RS_MUTATIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000)
}

fn each_mutant(files: &[Vec<u8>], seed: u64, mut check: impl FnMut(&[u8])) {
    let mut rng = Rng(seed);
    for _ in 0..mutants() {
        let file = &files[rng.below(files.len())];
        let other = &files[rng.below(files.len())];
        check(&mutate(&mut rng, file, other));
    }
}

#[test]
fn mutated_msgpack_files_restore_or_fail_cleanly() {
    let files = corpus(&["serialization", "checkpoints/flax_dir"], |name| !name.ends_with(".json"));
    let mut restored = 0;
    each_mutant(&files, 0x5eed_0001, |bytes| {
        let Ok(value) = msgpack_restore(bytes) else { return };
        restored += 1;
        let written = msgpack_serialize(&value).expect("a restored tree serializes");
        let again = msgpack_restore(&written).expect("serialized bytes restore");
        assert!(msgpack_serialize(&again).unwrap() == written, "a second round trip changed the bytes");
    });
    // Some mutants (e.g. of array data) stay valid: the round trip was exercised.
    assert!(restored > 0);
}

#[test]
fn mutated_safetensors_files_restore_or_fail_cleanly() {
    let files = corpus(&["pytorch", "safetensors"], |name| name.ends_with(".safetensors"));
    let mut restored = 0;
    each_mutant(&files, 0x5eed_0002, |bytes| {
        let Ok(tree) = safetensors_restore(bytes) else { return };
        restored += 1;
        let written = to_safetensors(&tree).expect("a restored tree is written");
        let again = safetensors_restore(&written).expect("written bytes restore");
        assert!(to_safetensors(&again).unwrap() == written, "a second round trip changed the bytes");
    });
    assert!(restored > 0);
}
