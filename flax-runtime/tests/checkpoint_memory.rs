//! `checkpoint` (remat) really drops the activations: the heap in use after the forward pass
//! of a 24-layer MLP (width 1024, batch 256, f32), graph alive, measured with glibc's
//! `mallinfo2` (libtorch's CPU allocator is malloc), with and without a checkpoint around the
//! whole network, and the gradients of both agree. Its own test binary: the heap is
//! process-wide, so no other test may run beside it.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use flax::core::custom_function::checkpoint;
use flax::tch::{Device, Kind, Tensor};
use flax::Result;

/// Bytes in use on the heap: small allocations plus mmapped blocks.
fn heap_in_use() -> usize {
    // SAFETY: reads glibc's allocator statistics.
    let info = unsafe { libc::mallinfo2() };
    info.uordblks + info.hblkhd
}

const LAYERS: usize = 24;
const WIDTH: i64 = 1024;
const BATCH: i64 = 256;
const MIB: f64 = 1024.0 * 1024.0;

fn mlp(xs: &[Tensor]) -> Result<Vec<Tensor>> {
    let mut h = xs[0].shallow_clone();
    for w in &xs[1..] {
        h = h.matmul(w).relu();
    }
    Ok(vec![h])
}

#[test]
fn checkpoint_keeps_only_the_inputs() -> Result<()> {
    tch::manual_seed(0);
    let opts = (Kind::Float, Device::Cpu);
    let x = Tensor::randn([BATCH, WIDTH], opts);
    let mut inputs = vec![x];
    for _ in 0..LAYERS {
        inputs.push((Tensor::randn([WIDTH, WIDTH], opts) / (WIDTH as f64).sqrt()).set_requires_grad(true));
    }
    let activation = (BATCH * WIDTH * 4) as f64 / MIB;

    let before = heap_in_use();
    let plain = mlp(&inputs)?;
    let plain_bytes = heap_in_use().saturating_sub(before) as f64 / MIB;
    let loss = plain[0].sum(Kind::Float);
    let wrt: Vec<&Tensor> = inputs[1..].iter().collect();
    let expected = Tensor::run_backward(&[&loss], &wrt, false, false);
    drop((plain, loss));

    let before = heap_in_use();
    let remat = checkpoint(&inputs, mlp)?;
    let remat_bytes = heap_in_use().saturating_sub(before) as f64 / MIB;
    let loss = remat[0].sum(Kind::Float);
    let got = Tensor::f_run_backward(&[&loss], &wrt, false, false)?;

    println!(
        "24-layer MLP (1024 wide, batch 256, f32): heap held after the forward pass {plain_bytes:.1} MiB plain, \
         {remat_bytes:.1} MiB with checkpoint (one activation is {activation:.1} MiB)"
    );
    // Plain autograd keeps one activation per layer (relu saves its output, which is also the
    // next matmul's saved input; the pre-activation is freed). The checkpoint keeps only its
    // output (and saves the inputs, which exist already).
    assert!(plain_bytes > 0.9 * LAYERS as f64 * activation, "plain: {plain_bytes:.1} MiB");
    assert!(remat_bytes < 2.5 * activation, "checkpoint: {remat_bytes:.1} MiB");
    for (g, e) in got.iter().zip(&expected) {
        let scale = e.abs().max().double_value(&[]).max(1e-12);
        let diff = (g - e).abs().max().double_value(&[]);
        assert!(diff / scale < 1e-4, "relative difference {}", diff / scale);
    }
    Ok(())
}
