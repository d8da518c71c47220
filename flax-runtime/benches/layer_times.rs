//! Per-layer times: each library layer against the libtorch operator PyTorch's own layer
//! runs for the same work, forward and forward + backward (issue 17).
//!
//! The library side is what a user writes: `apply` on the layer's variables, and `flax::grad`
//! of a loss over the params. The libtorch side is what `torch.nn` does: the operator on
//! tensors laid out as PyTorch keeps them (`Linear`'s `(out, in)` weight; NHWC activations as
//! channels-last NCHW views), with `run_backward` for the gradients of the same params. Both
//! losses are `sum(y * g)` for one fixed random `g`, so both backward passes start from the
//! same output gradient.
//!
//! Every pair is first checked to compute the same output. Rounds alternate the two sides
//! (which goes first alternates too); a round times `--iters` calls of each; the table gives
//! the medians over `--rounds` rounds and their ratio (library / libtorch: below 1 is faster).
//! One thread (`tch::set_num_threads(1)`); pin the process for stable figures. Times are by
//! the wall clock, or with `--cpu-time` by the process's CPU time (on a machine shared with
//! other jobs, the work done without the waits for the core):
//!
//! `taskset -c 0 cargo bench -p flax-runtime --bench layer_times [-- --rounds 15 --iters 20 --cpu-time]`
//!
//! `--only TEXT` builds and times only the layers whose name contains `TEXT` (for `perf record`;
//! the inputs are drawn from one random stream, so they differ from a full run's, and so does
//! the heap the timed calls run in).
//! `--side flax` or `--side libtorch` runs only that side's calls (the other's columns print
//! `-`): under `valgrind --tool=callgrind`, whose instruction counts do not move with the
//! machine's load, one run per side gives each side's count, e.g.
//! `valgrind --tool=callgrind target/release/deps/layer_times-* --only RMSNorm --side flax --rounds 1 --iters 50`
//! (the checks and warm-up that every run does are common to both runs).
//!
//! Each row is followed (on stderr) by the minor page faults per call of each side: where
//! glibc's malloc gives a freed block of a few MB back to the kernel, the next call faults the
//! same pages in again, zeroed, a cost set by the heap's history rather than by the code under
//! test (in a side measurement, one libtorch closure took 10 faults per call and another 830).
//! A ratio is only read as the code's when both sides show about none.

use flax::nn::{self, BatchNorm, Dense, Embed, GroupNorm, LayerNorm, RMSNorm};
use flax::optax::losses::softmax_cross_entropy_with_integer_labels;
use flax::prelude::*;
use flax::{FrozenDict, Value};
use std::rc::Rc;
use std::time::Instant;

/// One comparison: the library's forward and loss, libtorch's forward and loss over `leaves`.
struct Case {
    name: &'static str,
    flax_forward: Box<dyn Fn() -> Tensor>,
    flax_backward: Box<dyn Fn()>,
    torch_forward: Box<dyn Fn() -> Tensor>,
    torch_backward: Box<dyn Fn()>,
}

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

fn with_params(variables: &Variables, params: &FrozenDict) -> Variables {
    variables.copy([("params", Value::Dict(params.clone()))])
}

/// `sum(y * g)`.
fn dot(y: &Tensor, g: &Tensor) -> Tensor {
    y.f_mul(g).unwrap().sum(Kind::Float)
}

/// The libtorch gradients of `loss` with respect to `leaves`.
fn torch_grads(loss: &Tensor, leaves: &[&Tensor]) -> Vec<Tensor> {
    Tensor::run_backward(&[loss], leaves, false, false)
}

/// A case for a layer whose `apply` takes one tensor: `flax_apply(variables)`, and a libtorch
/// forward over `torch_leaves` (leaf tensors requiring gradients).
fn case(
    name: &'static str,
    variables: Variables,
    flax_apply: impl Fn(&Variables) -> Tensor + 'static,
    torch_leaves: Vec<Tensor>,
    torch_apply: impl Fn(&[Tensor]) -> Tensor + 'static,
) -> Case {
    let (flax_apply, torch_apply) = (Rc::new(flax_apply), Rc::new(torch_apply));
    let out = flax_apply(&variables);
    let g = randn(&out.size());
    let params = variables.get_dict("params").expect("params").clone();
    let (v, f) = (variables.clone(), flax_apply.clone());
    let g1 = g.shallow_clone();
    let flax_backward = move || {
        let grads = flax::grad(&params, |p| Ok(dot(&f(&with_params(&v, p)), &g1))).expect("grad");
        drop(grads);
    };
    let leaves: Vec<Tensor> = torch_leaves.iter().map(|t| t.shallow_clone()).collect();
    let t = torch_apply.clone();
    let torch_backward = move || {
        let refs: Vec<&Tensor> = leaves.iter().collect();
        drop(torch_grads(&dot(&t(&leaves), &g), &refs));
    };
    let expected = tch::no_grad(|| torch_apply(&torch_leaves));
    assert!(out.allclose(&expected, 1e-4, 1e-4, false), "{name}: the library and libtorch disagree");
    let variables2 = variables.clone();
    Case {
        name,
        flax_forward: Box::new(move || flax_apply(&variables2)),
        flax_backward: Box::new(flax_backward),
        torch_forward: Box::new(move || tch::no_grad(|| torch_apply(&torch_leaves))),
        torch_backward: Box::new(torch_backward),
    }
}

fn leaf(t: &Tensor) -> Tensor {
    t.detach().copy().set_requires_grad(true)
}

fn param(v: &Variables, path: &[&str]) -> Tensor {
    let mut full = vec!["params"];
    full.extend_from_slice(path);
    match v.get_path(&full) {
        Some(Value::Tensor(t)) => t.shallow_clone(),
        _ => panic!("no param {path:?}"),
    }
}

fn cases(want: &dyn Fn(&str) -> bool) -> Vec<Case> {
    let key = PRNGKey::new(0);
    let mut out = Vec::new();

    // Dense on tokens (batch 16 x 64, 256 -> 256): PyTorch's `nn.Linear` is `linear`.
    let name = "Dense (16x64, 256->256)";
    if want(name) {
        let x = randn(&[16, 64, 256]);
        let m = Dense::new(256);
        let v = m.init(key, &x).unwrap();
        let (k, b) = (param(&v, &["kernel"]), param(&v, &["bias"]));
        let xf = x.shallow_clone();
        out.push(case(
            name,
            v,
            move |v| m.apply(v, &xf).unwrap(),
            vec![leaf(&k.transpose(0, 1).contiguous()), leaf(&b)],
            move |l| x.linear(&l[0], Some(&l[1])),
        ));
    }

    // Flax's default (tanh) GELU on the transformer's MLP activations (16 x 64 x 1024); PyTorch's
    // `F.gelu(approximate='tanh')` is `gelu`. The input is the one "parameter" differentiated.
    let name = "gelu, tanh form (16x64x1024)";
    if want(name) {
        let x = randn(&[16, 64, 1024]);
        let v = flax::frozen_dict! { "params": flax::frozen_dict! { "x": x.shallow_clone() } };
        out.push(case(
            name,
            v,
            |v| nn::gelu(&param(v, &["x"])).unwrap(),
            vec![leaf(&x)],
            |l| l[0].gelu("tanh"),
        ));
    }

    // LayerNorm over the last axis of the same tokens.
    let name = "LayerNorm (16x64, 256)";
    if want(name) {
        let x = randn(&[16, 64, 256]);
        let m = LayerNorm::new();
        let v = m.init(key, &x).unwrap();
        let (s, b) = (param(&v, &["scale"]), param(&v, &["bias"]));
        let xf = x.shallow_clone();
        out.push(case(
            name,
            v,
            move |v| m.apply(v, &xf).unwrap(),
            vec![leaf(&s), leaf(&b)],
            move |l| x.layer_norm([256], Some(&l[0]), Some(&l[1]), 1e-6, true),
        ));
    }

    // RMSNorm alike (PyTorch's `nn.RMSNorm` is `rms_norm`).
    let name = "RMSNorm (16x64, 256)";
    if want(name) {
        let x = randn(&[16, 64, 256]);
        let m = RMSNorm::new();
        let v = m.init(key, &x).unwrap();
        let s = param(&v, &["scale"]);
        let xf = x.shallow_clone();
        out.push(case(
            name,
            v,
            move |v| m.apply(v, &xf).unwrap(),
            vec![leaf(&s)],
            move |l| x.rms_norm([256], Some(&l[0]), 1e-6),
        ));
    }

    // BatchNorm in training and in evaluation on NHWC images (64, 16, 16, 32); PyTorch
    // channels-last, whose running statistics are updated in place in training.
    for (name, training) in
        [("BatchNorm train (64x16x16, 32)", true), ("BatchNorm eval (64x16x16, 32)", false)]
    {
        if !want(name) {
            continue;
        }
        let x = randn(&[64, 16, 16, 32]);
        let m = BatchNorm::new().use_running_average(Some(!training));
        let v = m.init(key, &x, None).unwrap();
        let (s, b) = (param(&v, &["scale"]), param(&v, &["bias"]));
        let (rm, rv) =
            (Tensor::zeros([32], (Kind::Float, Device::Cpu)), Tensor::ones([32], (Kind::Float, Device::Cpu)));
        let xf = x.shallow_clone();
        let apply = move |v: &Variables| match training {
            true => m.apply_with(v, ApplyOptions::new().mutable(["batch_stats"]), &xf, None).unwrap().0,
            false => m.apply(v, &xf, None).unwrap(),
        };
        out.push(case(name, v, apply, vec![leaf(&s), leaf(&b)], move |l| {
            let nchw = x.permute([0, 3, 1, 2]);
            Tensor::batch_norm(
                &nchw,
                Some(&l[0]),
                Some(&l[1]),
                Some(&rm),
                Some(&rv),
                training,
                0.01,
                1e-5,
                true,
            )
            .permute([0, 2, 3, 1])
        }));
    }

    // GroupNorm, 8 groups, NHWC; PyTorch on NCHW (its channels-last backward kernel crashes
    // when the input needs no gradient, libtorch 2.13).
    let name = "GroupNorm (16x16x16, 32 / 8)";
    if want(name) {
        let x = randn(&[16, 16, 16, 32]);
        let xc = x.permute([0, 3, 1, 2]).contiguous();
        let m = GroupNorm::new().num_groups(Some(8));
        let v = m.init(key, &x).unwrap();
        let (s, b) = (param(&v, &["scale"]), param(&v, &["bias"]));
        let xf = x.shallow_clone();
        out.push(case(
            name,
            v,
            move |v| m.apply(v, &xf).unwrap(),
            vec![leaf(&s), leaf(&b)],
            move |l| xc.group_norm(8, Some(&l[0]), Some(&l[1]), 1e-6, true).permute([0, 2, 3, 1]),
        ));
    }

    // Embed: ids (16, 64) from 1000 vectors of 256.
    let name = "Embed (16x64 ids, 1000x256)";
    if want(name) {
        let ids = Tensor::randint(1000, [16, 64], (Kind::Int64, Device::Cpu));
        let m = Embed::new(1000, 256);
        let v = m.init(key, &ids).unwrap();
        let table = param(&v, &["embedding"]);
        let idf = ids.shallow_clone();
        out.push(case(
            name,
            v,
            move |v| m.apply(v, &idf).unwrap(),
            vec![leaf(&table)],
            move |l| Tensor::embedding(&l[0], &ids, -1, false, false),
        ));
    }

    // Conv 3x3 SAME, NHWC, stride 1 (symmetric padding 1) and stride 2 (on an even size Flax's
    // SAME pads (0, 1), which libtorch's convolution cannot express: PyTorch pads explicitly,
    // as `padding='same'` does for asymmetric cases).
    for (name, stride) in
        [("Conv 3x3 s1 SAME (32x32x32, 64->64)", 1), ("Conv 3x3 s2 SAME (32x32x32, 64->64)", 2)]
    {
        if !want(name) {
            continue;
        }
        let x = randn(&[32, 32, 32, 64]);
        let m = nn::Conv::new(64, vec![3, 3]).strides(vec![stride, stride]);
        let v = m.init(key, &x).unwrap();
        let (k, b) = (param(&v, &["kernel"]), param(&v, &["bias"]));
        let xf = x.shallow_clone();
        let xc = x.permute([0, 3, 1, 2]);
        out.push(case(
            name,
            v,
            move |v| m.apply(v, &xf).unwrap(),
            vec![leaf(&k.permute([3, 2, 0, 1]).contiguous()), leaf(&b)],
            move |l| {
                let y = match stride {
                    1 => xc.conv2d(&l[0], Some(&l[1]), [1, 1], [1, 1], [1, 1], 1),
                    _ => xc.constant_pad_nd([0, 1, 0, 1]).conv2d(
                        &l[0],
                        Some(&l[1]),
                        [stride, stride],
                        [0, 0],
                        [1, 1],
                        1,
                    ),
                };
                y.permute([0, 2, 3, 1])
            },
        ));
    }

    // The integer-label cross-entropy, mean over 1024 examples of 1000 classes: against
    // PyTorch's `cross_entropy` (`reduction='mean'`, reduced inside `nll_loss`), and against
    // the same operator with `reduction='none'` and a separate mean, the operator the library
    // runs (Optax's loss is one value per example; its mean is the caller's).
    for (name, reduction) in [
        ("softmax CE, integer labels (1024, 1000)", tch::Reduction::Mean),
        ("softmax CE per example, then mean (1024, 1000)", tch::Reduction::None),
    ] {
        if !want(name) {
            continue;
        }
        let logits = randn(&[1024, 1000]);
        let labels = Tensor::randint(1000, [1024], (Kind::Int64, Device::Cpu));
        let g = randn(&[]);
        let l1 = leaf(&logits);
        let (lf, lab) = (l1.shallow_clone(), labels.shallow_clone());
        let flax_loss = Rc::new(move |x: &Tensor| {
            softmax_cross_entropy_with_integer_labels(x, &lab).unwrap().mean(Kind::Float)
        });
        let torch_loss = Rc::new(move |x: &Tensor| {
            let loss = x.cross_entropy_loss::<Tensor>(&labels, None, reduction, -100, 0.0);
            match reduction {
                tch::Reduction::None => loss.mean(Kind::Float),
                _ => loss,
            }
        });
        assert!(tch::no_grad(|| flax_loss(&lf).allclose(&torch_loss(&lf), 1e-5, 1e-5, false)));
        let (f1, f2, t1, t2) = (flax_loss.clone(), flax_loss, torch_loss.clone(), torch_loss);
        let (x1, x2, x3, x4) = (lf.shallow_clone(), lf.shallow_clone(), lf.shallow_clone(), lf);
        let (g1, g2) = (g.shallow_clone(), g);
        out.push(Case {
            name,
            flax_forward: Box::new(move || tch::no_grad(|| f1(&x1))),
            flax_backward: Box::new(move || drop(torch_grads(&dot(&f2(&x2), &g1), &[&x2]))),
            torch_forward: Box::new(move || tch::no_grad(|| t1(&x3))),
            torch_backward: Box::new(move || drop(torch_grads(&dot(&t2(&x4), &g2), &[&x4]))),
        });
    }
    out
}

/// The median of `v`, `None` for no samples (a side left out by `--side`).
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied()
}

/// `x` to `digits` decimals, or `-` for no value.
fn show(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

/// CPU time of this process in µs (all threads): on a shared machine, the work done, not the
/// waits for a core.
fn cpu_us() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes the clock's value into `t`.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e6 + t.tv_nsec as f64 / 1e3
}

/// Minor page faults of this process so far.
fn minor_faults() -> i64 {
    // SAFETY: `getrusage` writes into the zeroed struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_minflt
}

/// Microseconds per call of `f`, `iters` calls, by the wall clock or (`cpu`) by CPU time.
fn time(iters: usize, cpu: bool, f: &dyn Fn()) -> f64 {
    let (start, start_cpu) = (Instant::now(), cpu_us());
    for _ in 0..iters {
        f();
    }
    let total = if cpu { cpu_us() - start_cpu } else { start.elapsed().as_secs_f64() * 1e6 };
    total / iters as f64
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let (rounds, iters) = (arg("--rounds", 15), arg("--iters", 20));
    let cpu = std::env::args().any(|a| a == "--cpu-time");
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let only = value("--only");
    // Which of the four columns run: library forward, libtorch forward, and their fwd+bwd.
    let runs: [bool; 4] = match value("--side").as_deref() {
        None => [true; 4],
        Some("flax") => [true, false, true, false],
        Some("libtorch") => [false, true, false, true],
        Some(other) => panic!("--side takes flax or libtorch, got {other}"),
    };
    println!(
        "| layer | flax fwd µs | libtorch fwd µs | ratio | flax fwd+bwd µs | libtorch fwd+bwd µs | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for c in cases(&|name| only.as_ref().is_none_or(|o| name.contains(o.as_str()))) {
        let fwd_flax = || drop((c.flax_forward)());
        let fwd_torch = || drop((c.torch_forward)());
        let mut samples = [vec![], vec![], vec![], vec![]];
        let mut faults = [0i64; 4];
        let calls: [&dyn Fn(); 4] = [&fwd_flax, &fwd_torch, &*c.flax_backward, &*c.torch_backward];
        // Warm-up.
        for (f, run) in calls.iter().zip(runs) {
            if run {
                time(2, cpu, *f);
            }
        }
        for round in 0..rounds {
            let order: [usize; 4] = if round % 2 == 0 { [0, 1, 2, 3] } else { [1, 0, 3, 2] };
            for slot in order.into_iter().filter(|&slot| runs[slot]) {
                let before = minor_faults();
                samples[slot].push(time(iters, cpu, calls[slot]));
                faults[slot] += minor_faults() - before;
            }
        }
        let [a, b, cc, d] = samples.map(median);
        let ratio = |x: Option<f64>, y: Option<f64>| x.zip(y).map(|(x, y)| x / y);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.name,
            show(a, 0),
            show(b, 0),
            show(ratio(a, b), 2),
            show(cc, 0),
            show(d, 0),
            show(ratio(cc, d), 2)
        );
        let [fa, fb, fc, fd] = faults.map(|n| n as f64 / (rounds * iters) as f64);
        eprintln!(
            "  {}: minor page faults per call: flax fwd {fa:.0}, libtorch fwd {fb:.0}, flax fwd+bwd {fc:.0}, libtorch fwd+bwd {fd:.0}",
            c.name
        );
    }
}
