//! What the lifted transforms cost: `nn::vmap`, `nn::scan` and `nn::remat` against the same
//! work written without them, forward and backward pass, in one run and from the same
//! weights (issue 16's benchmark).
//!
//! - **vmap**: an ensemble of 8 MLPs (784-512-512-10), each member on its own batch of 128,
//!   the gradient of the mean cross-entropy with respect to the stacked parameters (kernel
//!   `(8, 784, 512)`).
//!   `vmap` is `nn::vmap(Mlp).variable_axes({params: 0}).split_rngs({params: true})` under
//!   `flax::grad`, as a user writes it; `tch_bmm` is the same network written by hand with
//!   `baddbmm` on the stacked weights; `loop_tch` slices each member's weights and runs
//!   `addmm` per member; `loop_flax` applies the library's `Mlp` 8 times, once per member's
//!   slice of the stacked parameters. Targets: `vmap` within 1.2x of `tch_bmm`, at least 3x
//!   faster than the loops.
//! - **scan**: a 12-layer residual MLP (`x + relu(Dense(512)(x))`, batch 128), the gradient of
//!   the mean square of its output. `scan` is `nn::scan(Block).variable_axes({params: 0})
//!   .length(12)`; `unrolled` is the same 12 layers as 12 `Dense` calls in a `#[compact]`
//!   method (its parameters copied from the scanned ones), `tch` the same by hand. Target:
//!   `scan` within 1.1x of `unrolled`.
//! - **remat**: a 24-layer MLP (`relu(Dense(1024)(x))`, batch 256), the gradient of the sum
//!   of its output, plain and inside `nn::remat` (every activation recomputed in the
//!   backward pass). The heap held by the graph after the forward pass (glibc's `mallinfo2`:
//!   libtorch's CPU allocator is malloc) with and without, and the time remat costs.
//!   Target: at most 1.4x.
//!
//! Before timing, every version of a group is checked to give the same loss and gradients.
//! The versions of a group run interleaved, round by round (the order rotating), each
//! sample `--steps` consecutive steps after `--warmup` steps; the table gives each version's
//! median step time and the median of its paired per-round ratio to the group's base, which
//! a change in the machine's load during the run cannot skew.
//!
//! Run (one pinned core, as the numbers in `scripts/bench/README-transforms.md`):
//! `taskset -c 0 cargo bench -p flax-runtime --bench transforms -- [--threads 1 --rounds 15
//! --steps 2 --warmup 2 --only vmap,vmap_small,scan,scan_small,remat]`. The `_small` groups
//! (members 784-32-32-10 at batch 8; a residual stack of width 32 at batch 8) are small enough
//! that per-op overhead, not arithmetic, bounds a step: they show what the transforms cost.

use flax::prelude::*;
use flax::tree;
use flax::Value;
use std::time::Instant;

// ---------------------------------------------------------------------------------------
// vmap: an ensemble of MLPs.

const MEMBERS: i64 = 8;
const ENSEMBLE_BATCH: i64 = 128;

/// One member: 784-hidden-hidden-10.
#[module]
pub struct Mlp {
    pub hidden: i64,
}

#[module]
impl Mlp {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Dense::new(self.hidden).call(cx, x)?.relu();
        let x = nn::Dense::new(self.hidden).call(cx, &x)?.relu();
        nn::Dense::new(10).call(cx, &x)
    }
}

/// The ensemble: one `Mlp` per row of `xs` (`(members, batch, 784)`), parameters stacked.
#[module]
pub struct Ensemble {
    pub hidden: i64,
}

#[module]
impl Ensemble {
    #[compact]
    pub fn call(&self, cx: &mut Scope, xs: &Tensor) -> Result<Tensor> {
        nn::vmap(Mlp::new(self.hidden)).variable_axes([("params", 0)]).split_rngs([("params", true)]).call(
            cx,
            xs,
            |mlp, cx, x: Tensor| mlp.call(cx, &x),
        )
    }
}

/// The mean cross-entropy over every member's examples.
fn ensemble_loss(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits.reshape([-1, 10]).cross_entropy_for_logits(&labels.reshape([-1]))
}

/// The stacked weights by hand: `[w0, b0, w1, b1, w2, b2]`, kernels `(members, in, out)`.
fn ensemble_leaves(params: &FrozenDict) -> Vec<Tensor> {
    let mut out = Vec::new();
    for layer in ["Dense_0", "Dense_1", "Dense_2"] {
        for name in ["kernel", "bias"] {
            let t = params.tensor(&["VmapMlp_0", layer, name]).expect("ensemble param");
            out.push(t.detach().copy().set_requires_grad(true));
        }
    }
    out
}

/// The ensemble by hand, batched: `baddbmm` per layer.
fn bmm_logits(w: &[Tensor], xs: &Tensor) -> Tensor {
    let h = w[1].unsqueeze(1).baddbmm(xs, &w[0], 1, 1).relu();
    let h = w[3].unsqueeze(1).baddbmm(&h, &w[2], 1, 1).relu();
    w[5].unsqueeze(1).baddbmm(&h, &w[4], 1, 1)
}

/// The ensemble by hand, one member after another (each member's slice of the weights).
fn loop_logits(w: &[Tensor], xs: &Tensor) -> Tensor {
    let members: Vec<Tensor> = (0..MEMBERS)
        .map(|i| {
            let p: Vec<Tensor> = w.iter().map(|t| t.select(0, i)).collect();
            let h = p[1].addmm(&xs.select(0, i), &p[0]).relu();
            let h = p[3].addmm(&h, &p[2]).relu();
            p[5].addmm(&h, &p[4])
        })
        .collect();
    Tensor::stack(&members, 0)
}

/// The gradients of the hand-written ensemble's loss, in `ensemble_leaves` order.
fn hand_grads(w: &[Tensor], logits: impl Fn(&[Tensor]) -> Tensor, labels: &Tensor) -> (Tensor, Vec<Tensor>) {
    let loss = ensemble_loss(&logits(w), labels);
    let grads = Tensor::run_backward(&[&loss], &w.iter().collect::<Vec<_>>(), false, false);
    (loss.detach(), grads)
}

/// The library's `Mlp` applied to each member's slice of the stacked parameters.
fn flax_loop_logits(mlp: &Mlp, params: &FrozenDict, xs: &Tensor) -> Result<Tensor> {
    let stacked = match params.get("VmapMlp_0") {
        Some(Value::Dict(d)) => d.clone(),
        _ => return Err(flax::Error::Value("no VmapMlp_0".into())),
    };
    let mut members = Vec::new();
    for i in 0..MEMBERS {
        let member = tree::tree_map(&stacked, |t| Ok(t.select(0, i)))?;
        members.push(mlp.apply(&variables(&member), &xs.select(0, i))?);
    }
    Ok(Tensor::stack(&members, 0))
}

/// The ensemble's group with `hidden` units per hidden layer and `batch` examples per member.
fn vmap_group(hidden: i64, batch: i64, repeat: usize) -> Group {
    let xs = data([MEMBERS, batch, 784], 0.0);
    let labels = labels([MEMBERS, batch], 10);
    let ensemble = Ensemble::new(hidden);
    let mlp = Mlp::new(hidden);
    let params = params_of(ensemble.init(PRNGKey::new(0), &xs).expect("init"));
    let w_bmm = ensemble_leaves(&params);
    let w_loop = ensemble_leaves(&params);

    let flax_vmap = {
        let (params, xs, labels) = (params.clone(), xs.shallow_clone(), labels.shallow_clone());
        move || {
            flax::value_and_grad(&params, |p| {
                Ok(ensemble_loss(&ensemble.apply(&variables(p), &xs)?, &labels))
            })
            .expect("vmap grad")
        }
    };
    let flax_loop = {
        let (params, xs, labels) = (params.clone(), xs.shallow_clone(), labels.shallow_clone());
        move || {
            flax::value_and_grad(&params, |p| Ok(ensemble_loss(&flax_loop_logits(&mlp, p, &xs)?, &labels)))
                .expect("loop grad")
        }
    };
    let tch_bmm = {
        let (xs, labels) = (xs.shallow_clone(), labels.shallow_clone());
        move || hand_grads(&w_bmm, |w| bmm_logits(w, &xs), &labels)
    };
    let tch_loop = {
        let (xs, labels) = (xs.shallow_clone(), labels.shallow_clone());
        move || hand_grads(&w_loop, |w| loop_logits(w, &xs), &labels)
    };

    // The same loss and gradients from every version.
    let (loss, grads) = flax_vmap();
    let reference = ensemble_leaves(&grads);
    for (name, (l, g)) in [("tch_bmm", tch_bmm()), ("tch_loop", tch_loop())] {
        check_close(name, &loss, &l, &reference, &g);
    }
    let (l, g) = flax_loop();
    check_close("loop_flax", &loss, &l, &reference, &ensemble_leaves(&g));

    Group {
        title: format!("vmap: {MEMBERS} MLPs 784-{hidden}-{hidden}-10, batch {batch} each, forward+backward"),
        repeat,
        versions: vec![
            Version::new("vmap", move || drop(flax_vmap())),
            Version::new("tch_bmm", move || drop(tch_bmm())),
            Version::new("loop_tch", move || drop(tch_loop())),
            Version::new("loop_flax", move || drop(flax_loop())),
        ],
    }
}

// ---------------------------------------------------------------------------------------
// scan: a residual MLP stack.

const SCAN_LAYERS: i64 = 12;
const SCAN_WIDTH: i64 = 512;
const SCAN_BATCH: i64 = 128;

/// One residual layer: `x + relu(Dense(width)(x))`.
#[module]
pub struct Block {
    pub width: i64,
}

#[module]
impl Block {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        Ok(x + nn::Dense::new(self.width).call(cx, x)?.relu())
    }
}

/// The stack as a scan over `Block` (kernel `(12, 512, 512)`).
#[module]
pub struct Scanned {
    pub width: i64,
}

#[module]
impl Scanned {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let (x, ()) = nn::scan(Block::new(self.width))
            .variable_axes([("params", 0)])
            .split_rngs([("params", true)])
            .length(SCAN_LAYERS)
            .call(cx, x.shallow_clone(), &(), |block, cx, x, ()| Ok((block.call(cx, &x)?, ())))?;
        Ok(x)
    }
}

/// The same stack unrolled: 12 `Dense` calls (`Dense_0` … `Dense_11`).
#[module]
pub struct Unrolled {
    pub width: i64,
}

#[module]
impl Unrolled {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let mut x = x.shallow_clone();
        for _ in 0..SCAN_LAYERS {
            x = &x + nn::Dense::new(self.width).call(cx, &x)?.relu();
        }
        Ok(x)
    }
}

/// The residual stack's group at `width` units and `batch` examples.
fn scan_group(width: i64, batch: i64, repeat: usize) -> Group {
    let x = data([batch, width], 1.0);
    let scanned = Scanned::new(width);
    let params = params_of(scanned.init(PRNGKey::new(0), &x).expect("init"));
    let stacked = |name: &str| params.tensor(&["ScanBlock_0", "Dense_0", name]).expect("scan param").detach();
    let (kernels, biases) = (stacked("kernel"), stacked("bias"));
    let unrolled_params = FrozenDict::from_iter((0..SCAN_LAYERS).map(|i| {
        let layer = FrozenDict::from_iter([
            ("kernel".to_owned(), Value::Tensor(kernels.get(i).copy())),
            ("bias".to_owned(), Value::Tensor(biases.get(i).copy())),
        ]);
        (format!("Dense_{i}"), Value::Dict(layer))
    }));
    let hand: Vec<Tensor> = (0..SCAN_LAYERS)
        .flat_map(|i| [kernels.get(i).copy(), biases.get(i).copy()])
        .map(|t| t.set_requires_grad(true))
        .collect();
    let loss = |y: Tensor| y.square().mean(Kind::Float);

    let flax_scan = {
        let (params, x) = (params.clone(), x.shallow_clone());
        move || {
            flax::value_and_grad(&params, |p| Ok(loss(scanned.apply(&variables(p), &x)?))).expect("scan grad")
        }
    };
    let flax_unrolled = {
        let x = x.shallow_clone();
        let unrolled = Unrolled::new(width);
        move || {
            flax::value_and_grad(&unrolled_params, |p| Ok(loss(unrolled.apply(&variables(p), &x)?)))
                .expect("unrolled grad")
        }
    };
    let tch = {
        let x = x.shallow_clone();
        move || {
            let mut h = x.shallow_clone();
            for layer in hand.chunks(2) {
                h = &h + layer[1].addmm(&h, &layer[0]).relu();
            }
            let l = loss(h);
            let grads = Tensor::run_backward(&[&l], &hand.iter().collect::<Vec<_>>(), false, false);
            (l.detach(), grads)
        }
    };

    let (l, g) = flax_scan();
    let reference: Vec<Tensor> = (0..SCAN_LAYERS)
        .flat_map(|i| {
            let t = |n: &str| g.tensor(&["ScanBlock_0", "Dense_0", n]).expect("grad").get(i);
            [t("kernel"), t("bias")]
        })
        .collect();
    let (lu, gu) = flax_unrolled();
    let unrolled_grads: Vec<Tensor> = (0..SCAN_LAYERS)
        .flat_map(|i| {
            let layer = format!("Dense_{i}");
            let t = |n: &str| gu.tensor(&[layer.as_str(), n]).expect("grad").shallow_clone();
            [t("kernel"), t("bias")]
        })
        .collect();
    check_close("unrolled", &l, &lu, &reference, &unrolled_grads);
    let (lt, gt) = tch();
    check_close("tch", &l, &lt, &reference, &gt);

    Group {
        title: format!(
            "scan: {SCAN_LAYERS}-layer residual MLP, width {width}, batch {batch}, forward+backward"
        ),
        repeat,
        versions: vec![
            Version::new("scan", move || drop(flax_scan())),
            Version::new("unrolled", move || drop(flax_unrolled())),
            Version::new("tch", move || drop(tch())),
        ],
    }
}

// ---------------------------------------------------------------------------------------
// remat: a deep MLP, its activations recomputed in the backward pass.

const REMAT_LAYERS: i64 = 24;
const REMAT_WIDTH: i64 = 1024;
const REMAT_BATCH: i64 = 256;

/// 24 layers `relu(Dense(1024)(x))`.
#[module]
pub struct Deep {}

#[module]
impl Deep {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let mut x = x.shallow_clone();
        for _ in 0..REMAT_LAYERS {
            x = nn::Dense::new(REMAT_WIDTH).call(cx, &x)?.relu();
        }
        Ok(x)
    }
}

/// `Deep` inside `nn::remat` (named `CheckpointDeep_0`).
#[module]
pub struct RematDeep {}

#[module]
impl RematDeep {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::remat(Deep::new()).call(cx, x, |deep, cx, x: Tensor| deep.call(cx, &x))
    }
}

/// Bytes in use on the heap: small allocations plus mmapped blocks (glibc only; 0 elsewhere,
/// where the memory line of the report is meaningless).
fn heap_in_use() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: reads glibc's allocator statistics.
        let info = unsafe { libc::mallinfo2() };
        info.uordblks + info.hblkhd
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    0
}

const MIB: f64 = 1024.0 * 1024.0;

/// The heap the forward pass leaves held (graph alive, before the backward pass), in MiB,
/// for `forward` run under gradient tracking.
fn held_after_forward(forward: &dyn Fn() -> Tensor) -> f64 {
    tch::with_grad(|| {
        let before = heap_in_use();
        let loss = forward();
        let held = heap_in_use().saturating_sub(before) as f64 / MIB;
        drop(loss);
        held
    })
}

fn remat_group(memory: &mut Vec<String>) -> Group {
    let x = data([REMAT_BATCH, REMAT_WIDTH], 2.0);
    let remat = RematDeep::new();
    let params = params_of(remat.init(PRNGKey::new(0), &x).expect("init"));
    let plain_params = match params.get("CheckpointDeep_0") {
        Some(Value::Dict(d)) => d.clone(),
        _ => panic!("no CheckpointDeep_0 in {params:?}"),
    };
    let loss = |y: Tensor| y.sum(Kind::Float);

    let flax_remat = {
        let (params, x, remat) = (params.clone(), x.shallow_clone(), remat.clone());
        move || {
            flax::value_and_grad(&params, |p| Ok(loss(remat.apply(&variables(p), &x)?))).expect("remat grad")
        }
    };
    let flax_plain = {
        let (params, x) = (plain_params.clone(), x.shallow_clone());
        let deep = Deep::new();
        move || {
            flax::value_and_grad(&params, |p| Ok(loss(deep.apply(&variables(p), &x)?))).expect("plain grad")
        }
    };

    let (l, g) = flax_remat();
    let (lp, gp) = flax_plain();
    let g = match g.get("CheckpointDeep_0") {
        Some(Value::Dict(d)) => d.clone(),
        _ => panic!("no CheckpointDeep_0 gradients"),
    };
    let owned = |p: &FrozenDict| tree::leaves(p).into_iter().map(Tensor::shallow_clone).collect::<Vec<_>>();
    check_close("plain", &l, &lp, &owned(&g), &owned(&gp));

    // Memory: the graph of a forward pass whose leaves require gradients.
    let leaves =
        |p: &FrozenDict| tree::tree_map(p, |t| Ok(t.detach().set_requires_grad(true))).expect("leaves");
    let (remat_leaves, plain_leaves) = (leaves(&params), leaves(&plain_params));
    let remat_held = held_after_forward(&|| loss(remat.apply(&variables(&remat_leaves), &x).expect("apply")));
    let plain_held =
        held_after_forward(&|| loss(Deep::new().apply(&variables(&plain_leaves), &x).expect("apply")));
    let activation = (REMAT_BATCH * REMAT_WIDTH * 4) as f64 / MIB;
    memory.push(format!(
        "remat: heap held after the forward pass (graph alive): plain {plain_held:.1} MiB, remat {remat_held:.1} MiB \
         (one activation is {activation:.1} MiB; {REMAT_LAYERS} layers)"
    ));

    Group {
        title: "remat: 24-layer MLP, width 1024, batch 256, forward+backward".into(),
        repeat: 1,
        versions: vec![
            Version::new("plain", move || drop(flax_plain())),
            Version::new("remat", move || drop(flax_remat())),
        ],
    }
}

// ---------------------------------------------------------------------------------------
// Shared.

/// Deterministic data without libtorch's global generator.
fn data(shape: impl Into<Vec<i64>>, seed: f64) -> Tensor {
    let shape: Vec<i64> = shape.into();
    let n: i64 = shape.iter().product();
    (Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.37 + seed).sin().reshape(shape)
}

/// Deterministic integer labels in `0..classes`.
fn labels(shape: impl Into<Vec<i64>>, classes: i64) -> Tensor {
    let shape: Vec<i64> = shape.into();
    let n: i64 = shape.iter().product();
    (Tensor::arange(n, (Kind::Int64, Device::Cpu)) * 7 + 3).remainder(classes).reshape(shape)
}

fn params_of(variables: Variables) -> FrozenDict {
    variables.get_dict("params").cloned().expect("params")
}

/// `{"params": params}`, what `apply` takes.
fn variables(params: &FrozenDict) -> Variables {
    flax::frozen_dict! { "params": params }
}

/// Panics unless `loss` and `grads` agree with the reference's.
fn check_close(name: &str, reference_loss: &Tensor, loss: &Tensor, reference: &[Tensor], grads: &[Tensor]) {
    assert!(reference_loss.allclose(loss, 1e-4, 1e-5, false), "{name}: loss {loss} vs {reference_loss}");
    assert_eq!(reference.len(), grads.len(), "{name}: number of gradients");
    for (i, (a, b)) in reference.iter().zip(grads).enumerate() {
        let scale = a.abs().max().double_value(&[]).max(1e-6);
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(diff <= 1e-4 * scale, "{name}: gradient {i} differs by {diff} (scale {scale})");
    }
}

/// A timed version: one forward+backward step.
struct Version {
    name: &'static str,
    step: Box<dyn FnMut()>,
}

impl Version {
    fn new(name: &'static str, step: impl FnMut() + 'static) -> Self {
        Version { name, step: Box::new(step) }
    }
}

/// Versions timed together; the first is the base of the ratios.
struct Group {
    title: String,
    /// Steps per sample, as a multiple of `--steps` (small work needs more to be timed).
    repeat: usize,
    versions: Vec<Version>,
}

/// Command-line options (after cargo's own `--bench`).
struct Options {
    threads: i32,
    rounds: usize,
    steps: usize,
    warmup: usize,
    only: Vec<String>,
}

impl Options {
    fn parse() -> Self {
        let mut o = Options {
            threads: 1,
            rounds: 15,
            steps: 2,
            warmup: 2,
            only: ["vmap", "vmap_small", "scan", "scan_small", "remat"].map(str::to_owned).to_vec(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
            match arg.as_str() {
                "--threads" => o.threads = value().parse().expect("--threads N"),
                "--rounds" => o.rounds = value().parse().expect("--rounds N"),
                "--steps" => o.steps = value().parse().expect("--steps N"),
                "--warmup" => o.warmup = value().parse().expect("--warmup N"),
                "--only" => o.only = value().split(',').map(str::to_owned).collect(),
                "--bench" => {} // cargo bench passes it to every bench binary
                other => panic!("unknown argument {other}; see the doc comment at the top of this bench"),
            }
        }
        o
    }
}

/// Runs the versions interleaved (`warmup` steps each first), `rounds` samples of `steps`
/// steps each, the order rotating every round; each version's per-step times in seconds.
fn interleaved(versions: &mut [Version], steps: usize, o: &Options) -> Vec<Vec<f64>> {
    for v in versions.iter_mut() {
        (0..o.warmup * steps / o.steps.max(1)).for_each(|_| (v.step)());
    }
    let mut times = vec![Vec::with_capacity(o.rounds); versions.len()];
    for round in 0..o.rounds {
        for k in 0..versions.len() {
            let i = (k + round) % versions.len();
            let start = Instant::now();
            (0..steps).for_each(|_| (versions[i].step)());
            times[i].push(start.elapsed().as_secs_f64() / steps as f64);
        }
    }
    times
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let o = Options::parse();
    tch::set_num_threads(o.threads);
    let mut memory = Vec::new();
    let mut groups = Vec::new();
    for name in &o.only {
        groups.push(match name.as_str() {
            "vmap" => vmap_group(512, ENSEMBLE_BATCH, 1),
            // Small members and layers, where per-op overhead rather than arithmetic bounds
            // a step: what the transforms themselves cost.
            "vmap_small" => vmap_group(32, 8, 20),
            "scan" => scan_group(SCAN_WIDTH, SCAN_BATCH, 1),
            "scan_small" => scan_group(32, 8, 20),
            "remat" => remat_group(&mut memory),
            other => panic!("unknown group {other} (vmap, vmap_small, scan, scan_small, remat)"),
        });
    }
    println!(
        "threads {}, {} rounds of {} steps after {} warm-up steps; ratio = median of per-round (this / first)",
        o.threads, o.rounds, o.steps, o.warmup
    );
    for mut group in groups {
        let times = interleaved(&mut group.versions, o.steps * group.repeat, &o);
        println!("\n{}", group.title);
        println!("{:<12} {:>10} {:>10} {:>10}", "version", "median ms", "min ms", "ratio");
        for (v, t) in group.versions.iter().zip(&times) {
            let ratios = t.iter().zip(&times[0]).map(|(a, b)| a / b).collect();
            let min = t.iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "{:<12} {:>10.3} {:>10.3} {:>10.3}",
                v.name,
                median(t.clone()) * 1e3,
                min * 1e3,
                median(ratios)
            );
        }
    }
    for line in memory {
        println!("\n{line}");
    }
}
