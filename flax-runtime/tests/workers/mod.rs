//! Multi-process tests on loopback Gloo: the test binary re-executed as workers.
//!
//! A multi-process test runs its body in each worker: the parent re-executes this binary with
//! `--exact <test name>`, the torchrun variables (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`,
//! `MASTER_ADDR`, `MASTER_PORT`) and `FLAX_DIST_WORKER` set, and checks that every worker exited
//! cleanly.

use flax::distributed::{Backend, ProcessGroup, ProcessGroupOptions};
use flax::Error;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Set in a worker's environment; its value is the worker's scenario.
pub const WORKER: &str = "FLAX_DIST_WORKER";

/// A port that was free a moment ago, for one group's store.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener.local_addr().expect("a bound socket has an address").port()
}

/// Starts `test` in `world_size` workers on loopback, by rank; their stdout is piped.
pub fn spawn(test: &str, world_size: i64) -> Vec<Child> {
    let port = free_port().to_string();
    let exe = std::env::current_exe().expect("the test binary's path");
    (0..world_size)
        .map(|rank| {
            Command::new(&exe)
                .args(["--exact", test, "--nocapture", "--test-threads=1"])
                .env(WORKER, test)
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", world_size.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env_remove("TORCHELASTIC_USE_AGENT_STORE")
                .env("OMP_NUM_THREADS", "1")
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawning a worker")
        })
        .collect()
}

/// Runs `test` in `world_size` workers on loopback and returns their outputs, by rank.
pub fn spawn_workers(test: &str, world_size: i64) -> Vec<Output> {
    let children = spawn(test, world_size);
    children.into_iter().map(|c| c.wait_with_output().expect("waiting for a worker")).collect()
}

/// The worker's group, from torchrun's variables, on Gloo.
pub fn join(timeout: Duration) -> ProcessGroup {
    join_on(Backend::Gloo, timeout)
}

/// The worker's group, from torchrun's variables, on `backend`.
pub fn join_on(backend: Backend, timeout: Duration) -> ProcessGroup {
    let options = ProcessGroupOptions::from_env().expect("the parent set torchrun's variables");
    ProcessGroup::new(&options.with_timeout(timeout).with_backend(backend)).expect("joining the group")
}

/// In the parent: spawns the workers and requires each to pass. In a worker: `Some(group)`,
/// on Gloo.
pub fn join_or_spawn(test: &str, world_size: i64, timeout: Duration) -> Option<ProcessGroup> {
    join_or_spawn_on(Backend::Gloo, test, world_size, timeout)
}

/// [`join_or_spawn`] with the workers' group on `backend`.
pub fn join_or_spawn_on(
    backend: Backend,
    test: &str,
    world_size: i64,
    timeout: Duration,
) -> Option<ProcessGroup> {
    if std::env::var(WORKER).as_deref() != Ok(test) {
        for (rank, output) in spawn_workers(test, world_size).iter().enumerate() {
            assert!(output.status.success(), "worker {rank} of {test} failed: {:?}", output.status);
        }
        return None;
    }
    Some(join_on(backend, timeout))
}

/// In the parent: starts 2 workers, waits until rank 1 prints `ready`, then `disrupt`s it
/// (kills it, say) and requires rank 0 to pass. In a worker: `Some(group)`.
pub fn spawn_and_disrupt(
    test: &str,
    timeout: Duration,
    disrupt: impl FnOnce(&mut Child),
) -> Option<ProcessGroup> {
    if std::env::var(WORKER).as_deref() == Ok(test) {
        return Some(join(timeout));
    }
    let mut children = spawn(test, 2);
    let stdout = children[1].stdout.take().expect("rank 1's stdout is piped");
    let ready =
        BufReader::new(stdout).lines().map_while(|line| line.ok()).any(|line| line.ends_with("ready")); // after libtest's `test … ` prefix
    assert!(ready, "rank 1 never got ready");
    disrupt(&mut children[1]);
    let mut rank1 = children.pop().expect("two workers");
    let rank0 = children.pop().expect("two workers").wait_with_output().expect("waiting for rank 0");
    let _ = rank1.kill();
    let _ = rank1.wait();
    assert!(rank0.status.success(), "rank 0 of {test} failed: {:?}", rank0.status);
    None
}

/// In a worker of [`spawn_and_disrupt`]: tells the parent this rank is ready (rank 1), then
/// runs `step` until it fails and returns that error, checking that the failing call came
/// within `timeout` (plus slack) of its start.
pub fn until_error<T>(
    group: &ProcessGroup,
    timeout: Duration,
    mut step: impl FnMut() -> flax::Result<T>,
) -> Error {
    if group.rank() == 1 {
        println!("ready");
    }
    loop {
        let start = Instant::now();
        if let Err(err) = step() {
            assert!(start.elapsed() <= timeout + Duration::from_secs(5), "took {:?}", start.elapsed());
            eprintln!("rank {} saw after {:?}: {err}", group.rank(), start.elapsed());
            return err;
        }
    }
}

/// A disruption for [`spawn_and_disrupt`]: SIGSTOP leaves the rank alive and connected but
/// silent, as a rank stuck in a deadlock is.
pub fn sigstop(rank: &mut Child) {
    let status = Command::new("kill").args(["-STOP", &rank.id().to_string()]).status();
    assert!(status.expect("running kill").success());
}
