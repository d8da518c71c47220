//! Custom autograd functions with Rust forward and backward (`flax::core::custom_function`):
//! gradients against plain autograd, undefined output gradients, closure lifetimes, errors and
//! panics from either side, and `checkpoint` (remat).

use flax::core::custom_function::{checkpoint, custom_vjp, grad};
use flax::tch::{Device, Kind, Tensor};
use flax::{Error, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const OPTS: (Kind, Device) = (Kind::Double, Device::Cpu);

fn seeded(seed: i64, shape: &[i64]) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn(shape, OPTS)
}

fn assert_close(a: &Tensor, b: &Tensor) {
    assert_eq!(a.size(), b.size());
    let diff = (a - b).abs().max().double_value(&[]);
    assert!(diff < 1e-10, "max difference {diff}");
}

/// Increments a counter when dropped: captured by a backward closure, it shows when the
/// closure is freed.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// `tanh(x @ w + b)` with a hand-written VJP.
fn dense_tanh(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = custom_vjp(
        &[x.shallow_clone(), w.shallow_clone(), b.shallow_clone()],
        |xs| {
            let y = (xs[0].matmul(&xs[1]) + &xs[2]).tanh();
            Ok((vec![y.shallow_clone()], vec![xs[0].shallow_clone(), xs[1].shallow_clone(), y]))
        },
        |res, grads| {
            let (x, w, y) = (&res[0], &res[1], &res[2]);
            let dz: Tensor = &grads[0] * (1.0 - y.square());
            Ok(vec![
                Some(dz.matmul(&w.tr())),
                Some(x.tr().matmul(&dz)),
                Some(dz.sum_dim_intlist(0, false, Kind::Double)),
            ])
        },
    )?;
    Ok(out.into_iter().next().expect("one output"))
}

#[test]
fn custom_vjp_gradients_equal_plain_autograd() -> Result<()> {
    let x = seeded(0, &[4, 3]).set_requires_grad(true);
    let w = seeded(1, &[3, 5]).set_requires_grad(true);
    let b = seeded(2, &[5]).set_requires_grad(true);
    let w2 = seeded(3, &[5, 2]);
    let loss = |h: Tensor| h.matmul(&w2).relu().sum(Kind::Double);
    let got = Tensor::f_run_backward(&[loss(dense_tanh(&x, &w, &b)?)], &[&x, &w, &b], false, false)?;
    let expected = Tensor::run_backward(&[loss((x.matmul(&w) + &b).tanh())], &[&x, &w, &b], false, false);
    for (g, e) in got.iter().zip(&expected) {
        assert_close(g, e);
    }
    Ok(())
}

#[test]
fn inputs_not_requiring_grad_and_none_gradients() -> Result<()> {
    // Only `w` requires gradients; the backward still returns one entry per input.
    let x = seeded(4, &[4, 3]);
    let w = seeded(5, &[3, 5]).set_requires_grad(true);
    let b = seeded(6, &[5]);
    let h = dense_tanh(&x, &w, &b)?;
    assert!(h.requires_grad());
    let got = Tensor::run_backward(&[h.sum(Kind::Double)], &[&w], false, false);
    let expected = Tensor::run_backward(&[(x.matmul(&w) + &b).tanh().sum(Kind::Double)], &[&w], false, false);
    assert_close(&got[0], &expected[0]);

    // A `None` gradient: the input gets none (libtorch's allow_unused gives `None`).
    let y = custom_vjp(&[w.shallow_clone()], |xs| Ok((vec![xs[0].square()], vec![])), |_, _| Ok(vec![None]))?;
    let grads = grad(&[&y[0].sum(Kind::Double)], &[&Tensor::ones([], OPTS)], &[&w], false, false)?;
    assert!(grads[0].is_none());
    Ok(())
}

#[test]
fn unused_outputs_get_zero_gradients() -> Result<()> {
    let x = seeded(7, &[3]).set_requires_grad(true);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let ys = custom_vjp(
        &[x.shallow_clone()],
        |xs| Ok((vec![xs[0].sin(), xs[0].cos()], vec![xs[0].shallow_clone()])),
        move |res, grads| {
            record.lock().expect("not poisoned").extend(grads.iter().map(|g| (g.defined(), g.size())));
            Ok(vec![Some(&grads[0] * res[0].cos() - &grads[1] * res[0].sin())])
        },
    )?;
    // The loss reads only the first output.
    let g = Tensor::run_backward(&[ys[0].sum(Kind::Double)], &[&x], false, false);
    assert_close(&g[0], &x.detach().cos());
    let seen = seen.lock().expect("not poisoned");
    assert_eq!(
        *seen,
        [(true, vec![3]), (true, vec![3])],
        "the unused output's gradient is zeros, not undefined"
    );
    Ok(())
}

#[test]
fn closures_live_as_long_as_the_graph() -> Result<()> {
    let drops = Arc::new(AtomicUsize::new(0));
    let x = seeded(8, &[3]).set_requires_grad(true);
    let counter = DropCounter(Arc::clone(&drops));
    let ys = custom_vjp(
        &[x.shallow_clone()],
        |xs| Ok((vec![xs[0].exp()], vec![])),
        move |_, grads| {
            let _keep = &counter;
            Ok(vec![Some(grads[0].shallow_clone())])
        },
    )?;
    let loss = ys[0].sum(Kind::Double);
    assert_eq!(drops.load(Ordering::SeqCst), 0, "the graph holds the closure");
    let _ = Tensor::run_backward(&[&loss], &[&x], true, false);
    assert_eq!(drops.load(Ordering::SeqCst), 0, "a retained graph still holds it");
    drop(ys);
    assert_eq!(drops.load(Ordering::SeqCst), 0, "the loss still references the node");
    drop(loss);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "freed with the graph");

    // No input requires gradients: no node is recorded and the closure is dropped at once.
    let counter = DropCounter(Arc::clone(&drops));
    let ys = custom_vjp(
        &[x.detach()],
        |xs| Ok((vec![xs[0].exp()], vec![])),
        move |_, grads| {
            let _keep = &counter;
            Ok(vec![Some(grads[0].shallow_clone())])
        },
    )?;
    assert!(!ys[0].requires_grad());
    assert_eq!(drops.load(Ordering::SeqCst), 2);

    // A forward error drops it too.
    let counter = DropCounter(Arc::clone(&drops));
    let err = custom_vjp(
        &[x.shallow_clone()],
        |_| Err(Error::Value("no".into())),
        move |_, _| {
            let _keep = &counter;
            Ok(vec![None])
        },
    );
    assert!(err.is_err());
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    Ok(())
}

#[test]
fn errors_and_panics_from_backward_surface_from_run_backward() -> Result<()> {
    let x = seeded(9, &[3]).set_requires_grad(true);
    let ys = custom_vjp(
        &[x.shallow_clone()],
        |xs| Ok((vec![xs[0].exp()], vec![])),
        |_, _| Err(Error::Value("backward says no".into())),
    )?;
    let err = Tensor::f_run_backward(&[ys[0].sum(Kind::Double)], &[&x], false, false);
    let message = err.expect_err("the backward error surfaces").to_string();
    assert!(message.contains("backward says no"), "{message}");

    let ys = custom_vjp(
        &[x.shallow_clone()],
        |xs| Ok((vec![xs[0].exp()], vec![])),
        |_, _| -> Result<Vec<Option<Tensor>>> { panic!("backward panics") },
    )?;
    let err = grad(&[&ys[0].sum(Kind::Double)], &[&Tensor::ones([], OPTS)], &[&x], false, false);
    assert!(
        matches!(&err, Err(Error::Torch(e)) if e.to_string().contains("panicked: backward panics")),
        "{err:?}"
    );

    // The wrong number of gradients is libtorch's error, not a crash.
    let ys = custom_vjp(
        &[x.shallow_clone()],
        |xs| Ok((vec![xs[0].exp()], vec![])),
        |_, g| Ok(vec![Some(g[0].shallow_clone()), None]),
    )?;
    let err = Tensor::f_run_backward(&[ys[0].sum(Kind::Double)], &[&x], false, false);
    assert!(err
        .expect_err("two gradients for one input")
        .to_string()
        .contains("returned 2 gradients for 1 inputs"));
    Ok(())
}

#[test]
fn forward_errors_are_typed_and_forward_panics_resume() {
    let x = Tensor::ones([2], OPTS);
    let err = custom_vjp(
        &[x.shallow_clone()],
        |_| Err(Error::Value("forward says no".into())),
        |_, _| Ok(vec![None]),
    );
    assert!(matches!(err, Err(Error::Value(m)) if m == "forward says no"));
    let panicked = std::panic::catch_unwind(|| {
        let x = Tensor::ones([2], OPTS);
        let _ = custom_vjp(
            &[x],
            |_| -> Result<(Vec<Tensor>, Vec<Tensor>)> { panic!("forward panics") },
            |_, _| Ok(vec![None]),
        );
    });
    let payload = panicked.expect_err("the panic resumes");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"forward panics"));
}

/// A small MLP over its inputs: `[x, w1, b1, w2, w3]`.
fn mlp(xs: &[Tensor]) -> Result<Vec<Tensor>> {
    let h = (xs[0].matmul(&xs[1]) + &xs[2]).relu();
    let h = h.matmul(&xs[3]).tanh();
    Ok(vec![h.matmul(&xs[4]), h])
}

#[test]
fn checkpoint_gradients_equal_the_plain_computation() -> Result<()> {
    let inputs = [
        seeded(10, &[8, 6]),                          // x: no gradient
        seeded(11, &[6, 16]).set_requires_grad(true), // w1
        seeded(12, &[16]),                            // b1: no gradient
        seeded(13, &[16, 16]).set_requires_grad(true),
        seeded(14, &[16, 3]).set_requires_grad(true),
    ];
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let outs = checkpoint(&inputs, move |xs| {
        let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
        // Gradients are off in the forward pass and on when the backward pass recomputes.
        assert_eq!(flax::core::custom_function::grad_enabled(), !first);
        mlp(xs)
    })?;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let weights = seeded(15, &[8, 16]);
    // Both outputs feed the loss (the hidden one through a weighted sum).
    let loss =
        |o: &[Tensor]| o[0].logsumexp([1], false).sum(Kind::Double) + (&o[1] * &weights).sum(Kind::Double);
    let wrt: Vec<&Tensor> = vec![&inputs[1], &inputs[3], &inputs[4]];
    let got = Tensor::f_run_backward(&[loss(&outs)], &wrt, false, false)?;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the backward pass recomputed once");
    let expected = Tensor::run_backward(&[loss(&mlp(&inputs)?)], &wrt, false, false);
    for (g, e) in got.iter().zip(&expected) {
        assert_close(g, e);
    }

    // Only one output used: the other's gradient is zeros.
    let outs = checkpoint(&inputs, mlp)?;
    let got = Tensor::run_backward(&[outs[0].sum(Kind::Double)], &wrt, false, false);
    let expected = Tensor::run_backward(&[mlp(&inputs)?[0].sum(Kind::Double)], &wrt, false, false);
    for (g, e) in got.iter().zip(&expected) {
        assert_close(g, e);
    }
    Ok(())
}

#[test]
fn checkpoint_forward_records_nothing_inside() -> Result<()> {
    let x = seeded(16, &[4, 4]).set_requires_grad(true);
    let inner = Arc::new(std::sync::Mutex::new(None::<bool>));
    let seen = Arc::clone(&inner);
    let outs = checkpoint(&[x.shallow_clone()], move |xs| {
        let h = xs[0].relu();
        let mut seen = seen.lock().expect("not poisoned");
        // First call (forward): intermediates carry no graph.
        seen.get_or_insert(h.requires_grad());
        Ok(vec![h.tanh()])
    })?;
    assert_eq!(
        *inner.lock().expect("not poisoned"),
        Some(false),
        "the forward pass recorded no intermediate"
    );
    assert!(outs[0].requires_grad(), "the output is connected to the checkpoint node");
    Ok(())
}

#[test]
fn checkpoint_refuses_create_graph_and_reports_recompute_errors() -> Result<()> {
    let x = seeded(17, &[3]).set_requires_grad(true);
    let outs = checkpoint(&[x.shallow_clone()], |xs| Ok(vec![xs[0].exp()]))?;
    let err = Tensor::f_run_backward(&[outs[0].sum(Kind::Double)], &[&x], false, true);
    assert!(err.expect_err("create_graph").to_string().contains("higher-order"));

    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let outs = checkpoint(&[x.shallow_clone()], move |xs| {
        if counted.fetch_add(1, Ordering::SeqCst) > 0 {
            return Err(Error::Value("recompute failed".into()));
        }
        Ok(vec![xs[0].exp()])
    })?;
    let err = Tensor::f_run_backward(&[outs[0].sum(Kind::Double)], &[&x], false, false);
    assert!(err.expect_err("recompute error").to_string().contains("recompute failed"));
    Ok(())
}

#[test]
fn custom_functions_refuse_vmap_inside_and_compose_outside() -> Result<()> {
    use flax::core::batching::{functorch_depth, vmap};
    let x = seeded(18, &[4, 3]);
    let w = seeded(19, &[3, 2]).set_requires_grad(true);
    let f = |xs: &[Tensor]| Ok(vec![xs[0].matmul(&xs[1]).tanh()]);
    // libtorch refuses a C++ autograd Function under a functorch transform: an error, not
    // silently wrong gradients.
    let inside =
        vmap(4, &[Some(0), None], &[x.shallow_clone(), w.shallow_clone()], &[0], |xs| checkpoint(xs, f));
    assert!(matches!(&inside, Err(Error::Torch(e)) if e.to_string().contains("functorch")), "{inside:?}");
    assert_eq!(functorch_depth(), 0);
    // The same values and gradients with the vmap inside the checkpoint (remat of vmap equals
    // vmap of remat), which is how the lifted transforms order them.
    let out = checkpoint(&[x.shallow_clone(), w.shallow_clone()], move |xs| {
        vmap(4, &[Some(0), None], xs, &[0], |ys| f(ys))
    })?;
    let got = Tensor::f_run_backward(&[out[0].sum(Kind::Double)], &[&w], false, false)?;
    let expected = Tensor::run_backward(&[x.matmul(&w).tanh().sum(Kind::Double)], &[&w], false, false);
    assert_close(&got[0], &expected[0]);
    Ok(())
}
