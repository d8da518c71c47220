//! Forward-mode AD (`flax::core::forward_ad::jvp`) against closed forms, central finite
//! differences and reverse mode (J·v from the reverse-mode Jacobian), and its error paths.

use flax::core::forward_ad::{jvp, DualLevel};
use flax::tch::{Device, Kind, Tensor};
use flax::{Error, Result};

const OPTS: (Kind, Device) = (Kind::Double, Device::Cpu);

fn seeded(seed: i64, shape: &[i64]) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn(shape, OPTS)
}

fn assert_close(a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.size(), b.size());
    let diff = (a - b).abs().max().double_value(&[]);
    assert!(diff <= tol, "max difference {diff}");
}

type F = fn(&[Tensor]) -> Tensor;

fn linear(xs: &[Tensor]) -> Tensor {
    xs[0].matmul(&xs[1]) + &xs[2]
}
fn tanh_mlp(xs: &[Tensor]) -> Tensor {
    xs[0].matmul(&xs[1]).tanh()
}
fn softmax(xs: &[Tensor]) -> Tensor {
    xs[0].softmax(-1, Kind::Double)
}
fn conv(xs: &[Tensor]) -> Tensor {
    xs[0].conv2d(&xs[1], None::<&Tensor>, [1, 1], [1, 1], [1, 1], 1).relu()
}

fn cases() -> Vec<(&'static str, F, Vec<Vec<i64>>)> {
    vec![
        ("linear", linear as F, vec![vec![3, 4], vec![4, 2], vec![2]]),
        ("tanh", tanh_mlp as F, vec![vec![3, 4], vec![4, 5]]),
        ("softmax", softmax as F, vec![vec![2, 6]]),
        ("conv", conv as F, vec![vec![1, 2, 5, 5], vec![3, 2, 3, 3]]),
    ]
}

fn jvp_of(f: F, primals: &[Tensor], tangents: &[Tensor]) -> Result<(Tensor, Tensor)> {
    let (mut y, mut t) = jvp(primals, tangents, |xs| Ok(vec![f(xs)]))?;
    Ok((y.remove(0), t.remove(0)))
}

#[test]
fn jvp_of_linear_is_the_closed_form() -> Result<()> {
    let (x, w, b) = (seeded(0, &[3, 4]), seeded(1, &[4, 2]), seeded(2, &[2]));
    let (dx, dw, db) = (seeded(3, &[3, 4]), seeded(4, &[4, 2]), seeded(5, &[2]));
    let (y, t) = jvp_of(
        linear,
        &[x.shallow_clone(), w.shallow_clone(), b.shallow_clone()],
        &[dx.shallow_clone(), dw.shallow_clone(), db.shallow_clone()],
    )?;
    assert_close(&y, &(x.matmul(&w) + &b), 1e-12);
    assert_close(&t, &(dx.matmul(&w) + x.matmul(&dw) + db), 1e-12);
    Ok(())
}

#[test]
fn jvp_equals_central_finite_differences() -> Result<()> {
    let eps = 1e-6;
    for (name, f, shapes) in cases() {
        let primals: Vec<Tensor> = shapes.iter().enumerate().map(|(i, s)| seeded(10 + i as i64, s)).collect();
        let tangents: Vec<Tensor> =
            shapes.iter().enumerate().map(|(i, s)| seeded(20 + i as i64, s)).collect();
        let (_, t) = jvp_of(f, &primals, &tangents)?;
        let shifted = |sign: f64| -> Vec<Tensor> {
            primals.iter().zip(&tangents).map(|(p, v)| p + v * (sign * eps)).collect()
        };
        let fd = (f(&shifted(1.0)) - f(&shifted(-1.0))) / (2.0 * eps);
        let diff = (&t - &fd).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{name}: jvp and finite differences differ by {diff}");
    }
    Ok(())
}

#[test]
fn jvp_equals_reverse_mode() -> Result<()> {
    for (name, f, shapes) in cases() {
        let primals: Vec<Tensor> = shapes.iter().enumerate().map(|(i, s)| seeded(30 + i as i64, s)).collect();
        let tangents: Vec<Tensor> =
            shapes.iter().enumerate().map(|(i, s)| seeded(40 + i as i64, s)).collect();
        let (_, t) = jvp_of(f, &primals, &tangents)?;
        // J·v from reverse mode: row i of the Jacobian is the gradient of output element i.
        let leaves: Vec<Tensor> = primals.iter().map(|p| p.detach().set_requires_grad(true)).collect();
        let y = f(&leaves).flatten(0, -1);
        let refs: Vec<&Tensor> = leaves.iter().collect();
        let jv: Vec<f64> = (0..y.size()[0])
            .map(|i| {
                let grads = Tensor::run_backward(&[y.get(i)], &refs, true, false);
                grads.iter().zip(&tangents).map(|(g, v)| (g * v).sum(Kind::Double).double_value(&[])).sum()
            })
            .collect();
        let expected = Tensor::from_slice(&jv).reshape(t.size());
        let diff = (&t - &expected).abs().max().double_value(&[]);
        assert!(diff < 1e-10, "{name}: forward and reverse mode differ by {diff}");
    }
    Ok(())
}

#[test]
fn outputs_independent_of_the_primals_get_zero_tangents() -> Result<()> {
    let x = seeded(50, &[3]);
    let c = seeded(51, &[2]);
    let (ys, ts) =
        jvp(&[x.shallow_clone()], &[Tensor::ones([3], OPTS)], |xs| Ok(vec![xs[0].exp(), c.exp()]))?;
    assert_close(&ts[0], &x.exp(), 1e-12);
    assert_close(&ys[1], &c.exp(), 0.0);
    assert_close(&ts[1], &Tensor::zeros([2], OPTS), 0.0);
    Ok(())
}

#[test]
fn errors_leave_no_level_behind() -> Result<()> {
    let x = seeded(60, &[3]);
    let err = jvp(&[x.shallow_clone()], &[Tensor::ones([3], OPTS)], |_| Err(Error::Value("inside".into())));
    assert!(matches!(err, Err(Error::Value(m)) if m == "inside"));
    // A tangent of the wrong shape is libtorch's error.
    let err = jvp(&[x.shallow_clone()], &[Tensor::ones([4], OPTS)], |xs| Ok(vec![xs[0].exp()]));
    assert!(matches!(err, Err(Error::Torch(_))), "{err:?}");
    let err = jvp(&[x.shallow_clone()], &[], |xs| Ok(xs.iter().map(Tensor::exp).collect()));
    assert!(matches!(err, Err(Error::Value(_))));
    // Nesting is refused, not a deadlock.
    let err = jvp(&[x.shallow_clone()], &[Tensor::ones([3], OPTS)], |xs| {
        assert!(matches!(DualLevel::enter(), Err(Error::Value(_))));
        jvp(xs, &[Tensor::ones([3], OPTS)], |ys| Ok(vec![ys[0].exp()])).map(|(y, _)| y)
    });
    assert!(matches!(err, Err(Error::Value(_))));
    let panicked = std::panic::catch_unwind(|| {
        let x = Tensor::ones([2], OPTS);
        let _ = jvp(&[x], &[Tensor::ones([2], OPTS)], |_| panic!("inside jvp"));
    });
    assert!(panicked.is_err());
    // The level was exited every time: the next jvp works.
    let (_, t) = jvp(&[x.shallow_clone()], &[Tensor::ones([3], OPTS)], |xs| Ok(vec![xs[0].square()]))?;
    assert_close(&t[0], &(&x * 2.0), 1e-12);
    Ok(())
}

#[test]
fn jvp_from_several_threads_is_serialized() {
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || -> Result<()> {
                let x = Tensor::full([5], i as f64, OPTS);
                for _ in 0..20 {
                    let (_, t) =
                        jvp(&[x.shallow_clone()], &[Tensor::ones([5], OPTS)], |xs| Ok(vec![xs[0].square()]))?;
                    assert_close(&t[0], &(&x * 2.0), 1e-12);
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().expect("no panic").expect("no error");
    }
}
