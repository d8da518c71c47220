//! Checkpoint integrity under crashes, concurrent writers, damaged files and stray names.
//!
//! The multi-process tests run this test binary again as their child processes (selected by
//! an environment variable and `--exact`), so they need nothing but the binary itself.

use flax::tch::{Device, Kind, Tensor};
use flax::training::checkpoints::{
    available_steps, latest_checkpoint, restore_checkpoint_raw, save_checkpoint, RestoreCheckpointOptions,
    SaveCheckpointOptions,
};
use flax::{Error, Scalar, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An empty directory of its own for each test.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("checkpoint_integrity").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_owned()
}

/// A checkpoint of `numel` float32 values, all equal to `mark`, with `mark` also as a scalar:
/// a restored one shows whose it is and whether it is whole.
fn marked(mark: i64, numel: i64) -> Value {
    Value::Dict(
        [
            ("mark".to_owned(), Value::Scalar(Scalar::Int(mark))),
            ("w".to_owned(), Value::Tensor(Tensor::full([numel], mark as f64, (Kind::Float, Device::Cpu)))),
        ]
        .into_iter()
        .collect(),
    )
}

/// Restores `path` (verifying its checksum) and returns its mark, checking every value holds it.
fn mark_of(path: &Path) -> i64 {
    let value = restore_checkpoint_raw(path, &RestoreCheckpointOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .unwrap();
    let state = value.as_dict().unwrap();
    let Some(Value::Scalar(Scalar::Int(mark))) = state.get("mark") else {
        panic!("no mark in {}", path.display())
    };
    let w = state.tensor(&["w"]).unwrap();
    let (min, max) = (w.min().double_value(&[]), w.max().double_value(&[]));
    assert!(min == *mark as f64 && max == *mark as f64, "{}: values {min}..{max}", path.display());
    *mark
}

/// Runs this test binary's test `name` as a child process with `env` set.
fn spawn_child(name: &str, env: (&str, String), stdout: Stdio) -> KillOnDrop {
    KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1", "--nocapture"])
            .env(env.0, env.1)
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Kills the child process however the parent test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---- Two writer processes ------------------------------------------------------------------

/// Set in a writer child: `<dir>|<writer id>`.
const WRITER_CHILD: &str = "FLAX_RS_CHECKPOINT_WRITER";
const WRITER_STEPS: i64 = 40;

/// A writer: tries to save every step with its own mark and prints what each save returned.
fn run_writer(arg: &str) {
    let (dir, id) = arg.split_once('|').unwrap();
    let id: i64 = id.parse().unwrap();
    let options = SaveCheckpointOptions::default().keep(0);
    for step in 0..WRITER_STEPS {
        let outcome = match save_checkpoint(dir, &marked(id * 1000 + step, 64 << 10), step, &options) {
            Ok(_) => "ok".to_owned(),
            Err(Error::InvalidCheckpoint { .. }) => "outdated".to_owned(),
            Err(Error::AlreadyExists { .. }) => "exists".to_owned(),
            Err(other) => format!("error {other}"),
        };
        println!("step {step} {outcome}");
    }
}

#[test]
fn two_writer_processes_never_clobber_each_other() {
    if let Ok(arg) = std::env::var(WRITER_CHILD) {
        return run_writer(&arg);
    }
    let dir = fresh_dir("two_writers");
    let name = "two_writer_processes_never_clobber_each_other";
    let children: Vec<KillOnDrop> = (1..=2)
        .map(|id| spawn_child(name, (WRITER_CHILD, format!("{}|{id}", dir.display())), Stdio::piped()))
        .collect();
    let mut winners = vec![Vec::new(); WRITER_STEPS as usize];
    for (id, mut child) in (1..=2i64).zip(children) {
        let stdout = BufReader::new(child.0.stdout.take().unwrap());
        // The harness may print "test <name> ... " before the first line.
        for line in stdout.lines().map(Result::unwrap) {
            let Some(at) = line.find("step ") else { continue };
            let mut words = line[at..].split(' ').skip(1);
            let step: usize = words.next().unwrap().parse().unwrap();
            match words.next().unwrap() {
                "ok" => winners[step].push(id),
                "outdated" | "exists" => {}
                other => panic!("writer {id}, step {step}: {other} {}", words.collect::<Vec<_>>().join(" ")),
            }
        }
        assert!(child.0.wait().unwrap().success(), "writer {id} failed");
    }
    // Every step was saved by exactly one writer, and its file holds that writer's state.
    for (step, winners) in winners.iter().enumerate() {
        assert_eq!(winners.len(), 1, "step {step} saved by {winners:?}");
        assert_eq!(mark_of(&dir.join(format!("checkpoint_{step}"))), winners[0] * 1000 + step as i64);
    }
    assert!(!names(&dir).iter().any(|name| name.contains("tmp")), "{:?}", names(&dir));
}

// ---- Saves killed while writing --------------------------------------------------------------

/// Set in the child process: the directory it saves into, forever, until killed.
const CRASH_CHILD_DIR: &str = "FLAX_RS_CHECKPOINT_CRASH_DIR";
/// 32 MiB of float32: long enough to write that the parent can kill the child mid-file.
const BIG_NUMEL: i64 = 8 << 20;
const KILLS: usize = 3;

/// The child: saves bigger and bigger steps, after the latest in the directory, until killed
/// (or, should the parent be gone, for at most 30 seconds).
fn run_crash_child(dir: &Path) {
    let options = SaveCheckpointOptions::default();
    let start = Instant::now();
    let first = available_steps::<i64>(dir, "checkpoint_").unwrap().last().unwrap() + 1;
    for step in first.. {
        if start.elapsed() > Duration::from_secs(30) {
            return;
        }
        save_checkpoint(dir, &marked(step, BIG_NUMEL), step, &options).unwrap();
    }
}

/// The size of the temporary file being written, if there is one.
fn temporary_size(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(".checkpoint_tmp."))
        .filter_map(|entry| entry.metadata().ok())
        .map(|metadata| metadata.len())
        .max()
}

/// Starts a child saving into `dir` and SIGKILLs it part-way through a file, once it has
/// completed a save of its own.
fn kill_a_child_mid_save(dir: &Path, whole_size: u64) {
    let before = available_steps::<i64>(dir, "checkpoint_").unwrap().last().copied();
    let name = "saves_killed_mid_write_never_lose_the_latest_checkpoint";
    let mut child = spawn_child(name, (CRASH_CHILD_DIR, dir.display().to_string()), Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let saved_one = available_steps::<i64>(dir, "checkpoint_").unwrap().last().copied() > before;
        let written = temporary_size(dir).unwrap_or(0);
        if saved_one && written > 0 && written < whole_size {
            child.0.kill().unwrap(); // SIGKILL on Unix
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    panic!("never saw the child part-way through writing a checkpoint");
}

#[test]
fn saves_killed_mid_write_never_lose_the_latest_checkpoint() {
    if let Some(dir) = std::env::var_os(CRASH_CHILD_DIR) {
        return run_crash_child(Path::new(&dir));
    }
    let dir = fresh_dir("crash");
    let first = save_checkpoint(&dir, &marked(1, BIG_NUMEL), 1, &SaveCheckpointOptions::default()).unwrap();
    let whole_size = std::fs::metadata(&first).unwrap().len();
    for kill in 0..KILLS {
        kill_a_child_mid_save(&dir, whole_size);
        // No final name holds a partial file, and the latest checkpoint restores whole (its
        // checksum verified) and is the child's.
        for name in names(&dir).iter().filter(|name| !name.starts_with('.')) {
            mark_of(&dir.join(name));
        }
        let latest = latest_checkpoint(&dir, "checkpoint_").unwrap().unwrap();
        assert!(mark_of(&latest) > 1 + kill as i64, "kill {kill}: the child's save was not kept");
    }
    // The next save deletes the stale temporary files and cleans up as usual.
    let next = available_steps::<i64>(&dir, "checkpoint_").unwrap().last().unwrap() + 1;
    let path = save_checkpoint(&dir, &marked(next, 4), next, &SaveCheckpointOptions::default()).unwrap();
    let name = file_name(&path);
    assert_eq!(names(&dir), [format!(".{name}.crc32"), name]);
}

// ---- Damaged files and stray names -----------------------------------------------------------

#[test]
fn every_flipped_byte_of_a_library_checkpoint_is_reported() {
    let dir = fresh_dir("flipped");
    let path = save_checkpoint(&dir, &marked(7, 16), 1, &SaveCheckpointOptions::default()).unwrap();
    let good = std::fs::read(&path).unwrap();
    let options = RestoreCheckpointOptions::default();
    let assert_reported = |bytes: &[u8], what: &str| {
        std::fs::write(&path, bytes).unwrap();
        let err = restore_checkpoint_raw(&dir, &options).unwrap_err();
        assert!(
            matches!(&err, Error::ChecksumMismatch { path, .. } if path.ends_with("checkpoint_1")),
            "{what}: {err}"
        );
    };
    for at in 0..good.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bytes = good.clone();
            bytes[at] ^= flip;
            assert_reported(&bytes, &format!("byte {at} ^ {flip:#x}"));
        }
    }
    // Two or three bytes changed anywhere (a fixed-seed xorshift stream), and truncations.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for trial in 0..500 {
        let mut bytes = good.clone();
        for _ in 0..2 + next() % 2 {
            let at = (next() % good.len() as u64) as usize;
            bytes[at] ^= 1 + (next() % 255) as u8;
        }
        if bytes != good {
            assert_reported(&bytes, &format!("trial {trial}"));
        }
    }
    assert_reported(&good[..good.len() - 1], "truncated");
    assert_reported(&[good.as_slice(), &[0xc0]].concat(), "extended");
    std::fs::write(&path, &good).unwrap();
    assert_eq!(mark_of(&path), 7);
}

#[test]
fn checkpoints_without_a_sidecar_restore_as_python_wrote_them() {
    let dir = fresh_dir("no_sidecar");
    let path = save_checkpoint(&dir, &marked(3, 4), 3, &SaveCheckpointOptions::default()).unwrap();
    std::fs::remove_file(dir.join(".checkpoint_3.crc32")).unwrap();
    assert_eq!(mark_of(&path), 3);
    // Deleting a checkpoint deletes its sidecar.
    save_checkpoint(&dir, &marked(4, 4), 4, &SaveCheckpointOptions::default()).unwrap();
    save_checkpoint(&dir, &marked(5, 4), 5, &SaveCheckpointOptions::default()).unwrap();
    assert_eq!(names(&dir), [".checkpoint_5.crc32", "checkpoint_5"]);
}

#[test]
fn a_stray_name_is_never_a_checkpoint() {
    let dir = fresh_dir("stray");
    let options = SaveCheckpointOptions::default().keep(2);
    save_checkpoint(&dir, &marked(1, 4), 1, &options).unwrap();
    for stray in ["checkpoint_1.bak", "checkpoint_9.bak", "checkpoint_foo", "checkpoint_2_gda"] {
        std::fs::write(dir.join(stray), b"not a checkpoint").unwrap();
    }
    let latest = latest_checkpoint(&dir, "checkpoint_").unwrap().unwrap();
    assert_eq!(file_name(&latest), "checkpoint_1");
    assert_eq!(available_steps::<i64>(&dir, "checkpoint_").unwrap(), [1]);
    // Stray names neither block saves nor are deleted by the keep rule.
    for step in 2..=4 {
        save_checkpoint(&dir, &marked(step, 4), step, &options).unwrap();
    }
    let visible: Vec<String> = names(&dir).into_iter().filter(|name| !name.starts_with('.')).collect();
    assert_eq!(
        visible,
        [
            "checkpoint_1.bak",
            "checkpoint_2_gda",
            "checkpoint_3",
            "checkpoint_4",
            "checkpoint_9.bak",
            "checkpoint_foo"
        ]
    );
    assert_eq!(mark_of(&latest_checkpoint(&dir, "checkpoint_").unwrap().unwrap()), 4);
}
