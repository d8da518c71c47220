//! functorch's vmap through the shim (`flax::core::batching`): batched results equal a loop
//! over examples, per-example shapes inside, nesting, functorch's fallback, collectives over a
//! mapped axis, autograd through vmap, and a clean level stack after errors and panics.

use flax::core::batching::{
    current_level, expose_axis, functorch_depth, is_batched_at, mean_over_axis, sum_over_axis, vmap,
    vmap_with, Randomness, VmapLevel,
};
use flax::tch::{Device, Kind, Tensor};
use flax::{Error, Result};

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

/// `f` applied to each example (dimension 0 of every input) and stacked.
fn looped(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Tensor) -> Tensor {
    let n = inputs[0].size()[0];
    let rows: Vec<Tensor> = (0..n).map(|i| f(&inputs.iter().map(|x| x.get(i)).collect::<Vec<_>>())).collect();
    Tensor::stack(&rows, 0)
}

#[test]
fn batched_layers_equal_a_loop() -> Result<()> {
    let x = seeded(0, &[5, 3]);
    let w = seeded(1, &[3, 4]);
    let b = seeded(2, &[4]);
    let layer =
        |x: &Tensor, w: &Tensor, b: &Tensor| x.matmul(w).g_add(b).relu().log_softmax(-1, Kind::Double);
    let batched = vmap(
        5,
        &[Some(0), None, None],
        &[x.shallow_clone(), w.shallow_clone(), b.shallow_clone()],
        &[0],
        |xs| {
            assert_eq!(xs[0].size(), [3], "inside vmap an example has its own shape");
            Ok(vec![layer(&xs[0], &xs[1], &xs[2])])
        },
    )?;
    assert_close(&batched[0], &looped(&[x.shallow_clone()], |e| layer(&e[0], &w, &b)));
    // tch's `linear` and a per-example weight (both inputs mapped).
    let ws = seeded(3, &[5, 4, 3]);
    let batched = vmap(5, &[Some(0), Some(0)], &[x.shallow_clone(), ws.shallow_clone()], &[0], |xs| {
        assert_eq!(xs[1].size(), [4, 3]);
        Ok(vec![xs[0].linear(&xs[1], Some(&b))])
    })?;
    assert_close(&batched[0], &looped(&[x, ws], |e| e[0].linear(&e[1], Some(&b))));
    Ok(())
}

#[test]
fn batched_conv_equals_a_loop_and_out_dims_move_the_axis() -> Result<()> {
    // Per example an unbatched conv input [C, H, W]; the batch is mapped on dimension 1.
    let x = seeded(4, &[2, 6, 3, 8, 8]); // [N, V, C, H, W]: map over V
    let k = seeded(5, &[4, 3, 3, 3]);
    let conv =
        |x: &Tensor| x.unsqueeze(0).conv2d(&k, None::<&Tensor>, [1, 1], [1, 1], [1, 1], 1).squeeze_dim(0);
    let out = vmap(6, &[Some(1)], &[x.shallow_clone()], &[2], |xs| {
        assert_eq!(xs[0].size(), [2, 3, 8, 8]);
        Ok(vec![xs[0].conv2d(&k, None::<&Tensor>, [1, 1], [1, 1], [1, 1], 1)])
    })?;
    assert_eq!(out[0].size(), [2, 4, 6, 8, 8]);
    for n in 0..2 {
        for v in 0..6 {
            assert_close(&out[0].get(n).select(1, v), &conv(&x.get(n).get(v)));
        }
    }
    Ok(())
}

#[test]
fn nested_vmap_maps_two_axes() -> Result<()> {
    let x = seeded(6, &[3, 4, 5]);
    let w = seeded(7, &[5, 2]);
    let out = vmap(3, &[Some(0)], &[x.shallow_clone()], &[0], |outer| {
        let outer_level = current_level().expect("inside a vmap");
        let inner = vmap(4, &[Some(0)], outer, &[1], |xs| {
            assert_eq!(xs[0].size(), [5]);
            assert!(current_level().expect("nested") > outer_level);
            assert_eq!(functorch_depth(), 2);
            Ok(vec![xs[0].matmul(&w).tanh()])
        })?;
        assert_eq!(inner[0].size(), [2, 4], "the inner out_dim put the axis last");
        Ok(inner)
    })?;
    assert_eq!(out[0].size(), [3, 2, 4]);
    assert_close(&out[0], &x.matmul(&w).tanh().transpose(1, 2));
    assert_eq!(functorch_depth(), 0);
    Ok(())
}

#[test]
fn operators_without_a_batching_rule_use_functorchs_fallback() -> Result<()> {
    // `renorm` and `histc` have no batching rule in libtorch 2.13 (torch.vmap warns "There is a
    // performance drop"); functorch's fallback loops in C++ and must still be right.
    let x = seeded(8, &[4, 3, 5]);
    let out = vmap(4, &[Some(0)], &[x.shallow_clone()], &[0, 0], |xs| {
        Ok(vec![xs[0].renorm(2.0, 0, 1.0), xs[0].histc(6)])
    })?;
    assert_close(&out[0], &looped(&[x.shallow_clone()], |e| e[0].renorm(2.0, 0, 1.0)));
    let hist = looped(&[x.to_kind(Kind::Float)], |e| e[0].histc(6));
    assert_eq!(out[1].size(), [4, 6]);
    assert!(out[1].to_kind(Kind::Float).allclose(&hist, 0.0, 0.0, false));
    Ok(())
}

#[test]
fn unbatched_outputs_are_broadcast_and_none_inputs_are_whole() -> Result<()> {
    let x = seeded(9, &[3, 2]);
    let c = seeded(10, &[7]);
    let out = vmap(3, &[Some(0), None], &[x, c.shallow_clone()], &[0, -1], |xs| {
        assert_eq!(xs[1].size(), [7]);
        Ok(vec![xs[1].exp(), xs[1].sum(Kind::Double)])
    })?;
    assert_close(&out[0], &c.exp().unsqueeze(0).expand([3, 7], false));
    assert_eq!(out[1].size(), [3]);
    Ok(())
}

#[test]
fn gradients_through_vmap_equal_the_loops() -> Result<()> {
    let x = seeded(11, &[6, 3]);
    let w = seeded(12, &[3, 4]).set_requires_grad(true);
    let b = seeded(13, &[4]).set_requires_grad(true);
    let xg = x.copy().set_requires_grad(true);
    let f = |x: &Tensor, w: &Tensor, b: &Tensor| (x.matmul(w) + b).tanh().log_softmax(-1, Kind::Double);
    let out = vmap(
        6,
        &[Some(0), None, None],
        &[xg.shallow_clone(), w.shallow_clone(), b.shallow_clone()],
        &[0],
        |xs| Ok(vec![f(&xs[0], &xs[1], &xs[2])]),
    )?;
    let weights = seeded(14, &[6, 4]);
    let loss = (&out[0] * &weights).sum(Kind::Double);
    let grads = Tensor::run_backward(&[&loss], &[&xg, &w, &b], false, false);

    let xl = x.copy().set_requires_grad(true);
    let rows: Vec<Tensor> = (0..6).map(|i| f(&xl.get(i), &w, &b)).collect();
    let loss = (Tensor::stack(&rows, 0) * &weights).sum(Kind::Double);
    let expected = Tensor::run_backward(&[&loss], &[&xl, &w, &b], false, false);
    for (g, e) in grads.iter().zip(&expected) {
        assert_close(g, e);
    }
    Ok(())
}

#[test]
fn mean_over_axis_is_pmean() -> Result<()> {
    let x = seeded(15, &[5, 4]);
    let out = vmap_with(5, Randomness::Error, &[Some(0)], &[x.shallow_clone()], &[0, 0, 0], |level, xs| {
        let mean = mean_over_axis(&xs[0], level.level())?;
        assert_eq!(mean.size(), [4]);
        assert!(!is_batched_at(&mean, level.level()), "a collective's result is the same for every example");
        let total = sum_over_axis(&xs[0], level.level())?;
        // A tensor not batched at the level is its own mean.
        let constant = Tensor::ones([4], OPTS);
        let constant_mean = mean_over_axis(&constant, level.level())?;
        Ok(vec![&xs[0] - mean, total, constant_mean])
    })?;
    assert_close(&out[0], &(&x - x.mean_dim(0, true, Kind::Double)));
    assert_close(&out[1], &x.sum_dim_intlist(0, true, Kind::Double).expand([5, 4], false));
    assert_close(&out[2], &Tensor::ones([5, 4], OPTS));
    Ok(())
}

#[test]
fn collectives_over_an_outer_axis_from_inside_an_inner_vmap() -> Result<()> {
    // x[i, j]: the outer vmap maps i, the inner j; the mean over i is taken inside the inner
    // vmap, so it must stay batched over j.
    let x = seeded(16, &[3, 4, 2]);
    let out = vmap_with(3, Randomness::Error, &[Some(0)], &[x.shallow_clone()], &[0], |outer, xs| {
        let outer_level = outer.level();
        vmap(4, &[Some(0)], xs, &[0], |ys| {
            let gathered = expose_axis(&ys[0], outer_level)?;
            assert_eq!(gathered.size(), [3, 2]);
            Ok(vec![&ys[0] - mean_over_axis(&ys[0], outer_level)?])
        })
    })?;
    assert_close(&out[0], &(&x - x.mean_dim(0, true, Kind::Double)));
    Ok(())
}

#[test]
fn gradients_flow_through_collectives() -> Result<()> {
    let x = seeded(17, &[5, 3]).set_requires_grad(true);
    let out = vmap_with(5, Randomness::Error, &[Some(0)], &[x.shallow_clone()], &[0], |level, xs| {
        let centered = &xs[0] - mean_over_axis(&xs[0], level.level())?;
        Ok(vec![centered.square()])
    })?;
    let weights = seeded(18, &[5, 3]);
    let loss = (&out[0] * &weights).sum(Kind::Double);
    let grad = Tensor::run_backward(&[&loss], &[&x], false, false).remove(0);
    let xl = x.detach().set_requires_grad(true);
    let loss = ((&xl - xl.mean_dim(0, true, Kind::Double)).square() * &weights).sum(Kind::Double);
    let expected = Tensor::run_backward(&[&loss], &[&xl], false, false).remove(0);
    assert_close(&grad, &expected);
    Ok(())
}

#[test]
fn errors_and_panics_inside_leave_a_clean_stack() -> Result<()> {
    let x = seeded(19, &[3, 2]);
    let err = vmap(3, &[Some(0)], &[x.shallow_clone()], &[0], |_| Err(Error::Value("boom".into())));
    assert!(matches!(err, Err(Error::Value(m)) if m == "boom"));
    assert_eq!(functorch_depth(), 0);

    // A libtorch error from a batched op (a shape mismatch) comes back as an `Err`.
    let err = vmap(3, &[Some(0)], &[x.shallow_clone()], &[0], |xs| {
        Ok(vec![xs[0].f_matmul(&Tensor::ones([5], OPTS))?])
    });
    assert!(matches!(err, Err(Error::Torch(_))), "{err:?}");
    assert_eq!(functorch_depth(), 0);

    let panicked = std::panic::catch_unwind(|| {
        let x = Tensor::ones([3, 2], OPTS);
        let _ = vmap(3, &[Some(0)], &[x], &[0], |_| panic!("inside vmap"));
    });
    assert!(panicked.is_err());
    assert_eq!(functorch_depth(), 0);

    // Random operators fail by default, and the level is still popped.
    let err = vmap(3, &[Some(0)], &[x.shallow_clone()], &[0], |xs| Ok(vec![xs[0].f_rand_like()?]));
    assert!(matches!(err, Err(Error::Torch(ref m)) if m.to_string().contains("randomness")), "{err:?}");
    assert_eq!(functorch_depth(), 0);

    // The next vmap works.
    let out = vmap(3, &[Some(0)], &[x.shallow_clone()], &[0], |xs| Ok(vec![xs[0].exp()]))?;
    assert_close(&out[0], &x.exp());
    Ok(())
}

#[test]
fn bad_arguments_are_typed_errors() {
    let x = Tensor::ones([3, 2], OPTS);
    let lists = [Some(0)];
    assert!(matches!(
        vmap(4, &lists, &[x.shallow_clone()], &[0], |xs| Ok(xs.iter().map(Tensor::shallow_clone).collect())),
        Err(Error::Value(_))
    ));
    assert!(matches!(
        vmap(3, &[Some(2)], &[x.shallow_clone()], &[0], |xs| Ok(xs
            .iter()
            .map(Tensor::shallow_clone)
            .collect())),
        Err(Error::Value(_))
    ));
    assert!(matches!(
        vmap(3, &[], &[x.shallow_clone()], &[0], |xs| Ok(xs.iter().map(Tensor::shallow_clone).collect())),
        Err(Error::Value(_))
    ));
    assert!(matches!(
        vmap(3, &lists, &[x.shallow_clone()], &[], |xs| Ok(xs.iter().map(Tensor::shallow_clone).collect())),
        Err(Error::Value(_))
    ));
    assert!(matches!(VmapLevel::push(0, Randomness::Error), Err(Error::Value(_))));
    assert_eq!(functorch_depth(), 0);
}

#[test]
fn randomness_different_and_same() -> Result<()> {
    let x = Tensor::zeros([4, 3], OPTS);
    let out = vmap_with(4, Randomness::Different, &[Some(0)], &[x.shallow_clone()], &[0], |_, xs| {
        Ok(vec![xs[0].rand_like()])
    })?;
    assert!(!out[0].get(0).allclose(&out[0].get(1), 0.0, 0.0, false));
    let out = vmap_with(4, Randomness::Same, &[Some(0)], &[x], &[0], |_, xs| Ok(vec![xs[0].rand_like()]))?;
    assert!(out[0].get(0).allclose(&out[0].get(3), 0.0, 0.0, false));
    Ok(())
}

#[test]
fn guards_dropped_out_of_order_leave_a_clean_stack() -> Result<()> {
    let outer = VmapLevel::push(2, Randomness::Error)?;
    let inner = VmapLevel::push(3, Randomness::Error)?;
    assert_eq!(functorch_depth(), 2);
    drop(outer); // pops the inner level too
    assert_eq!(functorch_depth(), 0);
    drop(inner); // already gone: nothing happens
    assert_eq!(functorch_depth(), 0);
    Ok(())
}
