//! c10d process groups over Gloo on loopback: real processes (this test binary re-executed as
//! workers), real sockets, libtorch's collectives.
//!
//! A multi-process test runs its body in each worker: the parent re-executes this binary with
//! `--exact <test name>`, the torchrun variables (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`,
//! `MASTER_PORT`) and `FLAX_DIST_WORKER` set, and checks that every worker exited cleanly.

use flax::distributed::{ProcessGroup, ProcessGroupOptions};
use flax::tch::{Kind, Tensor};
use flax::Error;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Set in a worker's environment; its value is the worker's scenario.
const WORKER: &str = "FLAX_DIST_WORKER";

/// A port that was free a moment ago, for one group's store.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener.local_addr().expect("a bound socket has an address").port()
}

/// Runs `test` in `world_size` workers on loopback and returns their outputs, by rank.
fn spawn_workers(test: &str, world_size: i64) -> Vec<Output> {
    let port = free_port().to_string();
    let exe = std::env::current_exe().expect("the test binary's path");
    let children: Vec<_> = (0..world_size)
        .map(|rank| {
            Command::new(&exe)
                .args(["--exact", test, "--nocapture", "--test-threads=1"])
                .env(WORKER, test)
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", world_size.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env_remove("TORCHELASTIC_USE_AGENT_STORE")
                .env("OMP_NUM_THREADS", "1")
                .spawn()
                .expect("spawning a worker")
        })
        .collect();
    children.into_iter().map(|c| c.wait_with_output().expect("waiting for a worker")).collect()
}

/// In the parent: spawns the workers and requires each to pass. In a worker: `Some(group)`.
fn join_or_spawn(test: &str, world_size: i64, timeout: Duration) -> Option<ProcessGroup> {
    if std::env::var(WORKER).as_deref() != Ok(test) {
        for (rank, output) in spawn_workers(test, world_size).iter().enumerate() {
            assert!(output.status.success(), "worker {rank} of {test} failed: {:?}", output.status);
        }
        return None;
    }
    let options = ProcessGroupOptions::from_env().expect("the parent set torchrun's variables");
    Some(ProcessGroup::new(&options.with_timeout(timeout)).expect("joining the group"))
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1)).expect("a float tensor")
}

#[test]
fn all_reduce_sum_and_broadcast_across_two_processes() {
    let Some(group) =
        join_or_spawn("all_reduce_sum_and_broadcast_across_two_processes", 2, Duration::from_secs(60))
    else {
        return;
    };
    assert_eq!(group.world_size(), 2);
    let r = group.rank() as f32;
    // A transposed view: the sum comes back in its logical layout, and the input is untouched.
    let x = Tensor::from_slice(&[r, 1.0, 10.0 * r, 100.0, -r, 0.5]).reshape([2, 3]).tr();
    let before = values(&x);
    let total = group.all_reduce_sum(&x).unwrap();
    assert_eq!(total.size(), [3, 2]);
    assert_eq!(values(&total), [1.0, 200.0, 2.0, -1.0, 10.0, 1.0]);
    assert_eq!(values(&x), before);
    // Integers too, and the same result whichever rank sums first.
    let n = Tensor::from_slice(&[group.rank() + 1, 7]);
    assert_eq!(Vec::<i64>::try_from(group.all_reduce_sum(&n).unwrap()).unwrap(), [3, 14]);
    // Rank 1's values everywhere.
    let b =
        group.broadcast(&Tensor::full([2, 2], 5.0 + f64::from(r), (Kind::Double, flax::tch::Device::Cpu)), 1);
    assert_eq!(values(&b.unwrap()), [6.0; 4]);
    group.barrier().unwrap();
    // A bad root is refused on the rank that passed it, before any communication.
    assert!(matches!(group.broadcast(&x, 2), Err(Error::Value(_))));
}

#[test]
fn a_dead_peer_is_an_error_within_the_timeout() {
    let test = "a_dead_peer_is_an_error_within_the_timeout";
    let timeout = Duration::from_secs(10);
    let Some(group) = join_or_spawn(test, 2, timeout) else {
        return;
    };
    let one = Tensor::ones([4], (Kind::Float, flax::tch::Device::Cpu));
    assert_eq!(values(&group.all_reduce_sum(&one).unwrap()), [2.0; 4]);
    if group.rank() == 1 {
        // Dies without leaving the group, as a crashed worker does.
        std::process::exit(0);
    }
    let start = Instant::now();
    let err = group.all_reduce_sum(&one).expect_err("the peer is gone");
    assert!(matches!(err, Error::Torch(_)), "{err:?}");
    assert!(start.elapsed() <= timeout + Duration::from_secs(5), "took {:?}", start.elapsed());
    eprintln!("rank 0 saw: {err}");
}

#[test]
fn a_missing_peer_is_an_error_within_the_timeout() {
    // Rank 0 of 2, alone: the store's rendezvous waits for rank 1 until the timeout.
    let options =
        ProcessGroupOptions::new("127.0.0.1", free_port(), 0, 2).with_timeout(Duration::from_secs(2));
    let start = Instant::now();
    let err = ProcessGroup::new(&options).expect_err("no rank 1 ever comes");
    assert!(matches!(err, Error::Torch(_)), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
}

#[test]
fn bad_options_are_value_errors() {
    for (rank, world_size) in [(2, 2), (-1, 2), (0, 0)] {
        let options = ProcessGroupOptions::new("127.0.0.1", 29500, rank, world_size);
        assert!(matches!(ProcessGroup::new(&options), Err(Error::Value(_))), "rank {rank} of {world_size}");
    }
    let zero = ProcessGroupOptions::new("127.0.0.1", 29500, 0, 1).with_timeout(Duration::ZERO);
    assert!(matches!(ProcessGroup::new(&zero), Err(Error::Value(_))));
}

#[test]
fn a_group_of_one_reduces_to_itself() {
    let options =
        ProcessGroupOptions::new("127.0.0.1", free_port(), 0, 1).with_timeout(Duration::from_secs(30));
    let group = ProcessGroup::new(&options).unwrap();
    let x = Tensor::from_slice(&[1.5f32, -2.0]);
    assert_eq!(values(&group.all_reduce_sum(&x).unwrap()), [1.5, -2.0]);
    assert_eq!(values(&group.broadcast(&x, 0).unwrap()), [1.5, -2.0]);
    group.barrier().unwrap();
}
