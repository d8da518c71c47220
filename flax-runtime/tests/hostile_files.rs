//! The memory that reading a hostile msgpack file takes, measured: under 10x the file's size.
//!
//! Each file is read in a child process (this test binary again, selected by an environment
//! variable), which resets its peak resident size (`/proc/self/clear_refs`), reads and
//! restores the file as a checkpoint, and prints how far its peak rose above its resident size
//! before. Linux only (the counters are procfs').

use flax::training::checkpoints::{restore_checkpoint_raw, RestoreCheckpointOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set in the child: the file to read.
const CHILD_FILE: &str = "FLAX_RS_HOSTILE_FILE";
const SIZE: usize = 20 << 20;

/// A field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The child: restores the file and prints `peak <bytes above the resident size before>`
/// and whether it restored.
fn measure(file: &Path) {
    std::fs::write("/proc/self/clear_refs", "5").unwrap(); // resets VmHWM to VmRSS
    let before = status_bytes("VmRSS:");
    let restored = restore_checkpoint_raw(file, &RestoreCheckpointOptions::default());
    let peak = status_bytes("VmHWM:");
    println!(
        "\npeak {} {}",
        peak.saturating_sub(before),
        if restored.is_ok() { "restored" } else { "refused" }
    );
}

fn peak_reading(name: &str, bytes: &[u8]) -> (u64, String) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile_files");
    std::fs::create_dir_all(&dir).unwrap();
    let file: PathBuf = dir.join(name);
    std::fs::write(&file, bytes).unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "reading_hostile_files_takes_under_10x_their_size",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_FILE, &file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line =
        stdout.lines().find(|line| line.starts_with("peak ")).unwrap_or_else(|| panic!("{name}: {stdout}"));
    let mut words = line.split(' ').skip(1);
    (words.next().unwrap().parse().unwrap(), words.next().unwrap().to_owned())
}

/// msgpack headers: an array or map of `n` (32-bit count), a string, an ndarray extension.
fn array32(n: usize) -> Vec<u8> {
    [&[0xdd][..], &(n as u32).to_be_bytes()].concat()
}

fn map32(n: usize) -> Vec<u8> {
    [&[0xdf][..], &(n as u32).to_be_bytes()].concat()
}

fn ext32(code: u8, payload: &[u8]) -> Vec<u8> {
    [&[0xc9][..], &(payload.len() as u32).to_be_bytes(), &[code], payload].concat()
}

/// `[shape, "float32", raw bytes]` as an ndarray payload.
fn ndarray(shape: &[u8], data: &[u8]) -> Vec<u8> {
    let bin = [&[0xc6][..], &(data.len() as u32).to_be_bytes(), data].concat();
    [&[0x93][..], shape, &[0xa7], b"float32", &bin].concat()
}

fn hostile_files() -> Vec<(&'static str, Vec<u8>)> {
    let n = SIZE;
    vec![
        // 20 MB of nils in one array (the file that took 2.3 GB).
        ("nils", [array32(n), vec![0xc0; n]].concat()),
        // An array declaring four billion items, followed by 20 MB of nils.
        ("lying_length", [array32(u32::MAX as usize), vec![0xc0; n]].concat()),
        // A map of ten million empty keys with nil values.
        ("empty_keys", [map32(n / 2), [0xa0, 0xc0].repeat(n / 2)].concat()),
        // Lists of 15 nils, nested in lists of 15.
        ("nested_lists", [array32(n / 16), [&[0x9f][..], &[0xc0; 15]].concat().repeat(n / 16)].concat()),
        // One array whose shape is a list of 20 MB of ones (a bomb inside the extension).
        ("shape_bomb", ext32(1, &ndarray(&[array32(n), vec![0x01; n]].concat(), &[]))),
    ]
}

#[test]
fn reading_hostile_files_takes_under_10x_their_size() {
    if let Some(file) = std::env::var_os(CHILD_FILE) {
        return measure(Path::new(&file));
    }
    // A real 20 MB array restores (its tensor is memory the file really holds).
    let array = ndarray(&[0x91, 0xd2, 0x00, 0x50, 0x00, 0x00], &vec![0; SIZE]);
    let genuine = [&[0x81, 0xa1, b'w'][..], &ext32(1, &array)].concat();
    // As many objects as the budget admits, with bytes to pay for them: decoded in full.
    let objects = 1_000_000;
    let padding = SIZE - objects;
    let dense = [
        &map32(2)[..],
        &[0xa1, b'n'],
        &array32(objects),
        &vec![0xc0; objects],
        &[0xa1, b'p', 0xc6],
        &(padding as u32).to_be_bytes(),
        &vec![0; padding],
    ]
    .concat();
    let admitted = [("genuine_array", genuine), ("dense_but_admitted", dense)];
    for (name, bytes) in hostile_files().into_iter().chain(admitted) {
        let (peak, outcome) = peak_reading(name, &bytes);
        let ratio = peak as f64 / bytes.len() as f64;
        println!("{name}: {} bytes, peak +{peak} bytes ({ratio:.2}x), {outcome}", bytes.len());
        assert!(ratio < 10.0, "{name}: reading took {ratio:.2}x its size");
        let admitted = ["genuine_array", "dense_but_admitted"].contains(&name);
        assert_eq!(outcome, if admitted { "restored" } else { "refused" }, "{name}");
    }
}
