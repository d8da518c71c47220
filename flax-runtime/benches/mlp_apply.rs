//! Batch-1 `apply` of the spec's basic-usage MLP against the same network hand-written in
//! `tch`, in one run. The ratio is the cost of the module system (scopes, names, variable
//! lookups) on top of libtorch's own per-op cost. `flax_declared` is the same MLP with a
//! `#[shape]` declaration: the difference to `flax` is the cost of the run-time shape guard
//! (an undeclared module has none). As that difference is within the noise of an MLP's
//! `apply`, `shape_guard` measures it where little else runs: an identity module, undeclared
//! and declared.
//!
//! Run: `cargo bench -p flax-runtime --bench mlp_apply`.

use criterion::{criterion_group, criterion_main, Criterion};
use flax::prelude::*;
use std::hint::black_box;

#[module]
pub struct Mlp {
    pub out_dims: i64,
}

#[module]
impl Mlp {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = x.flatten(1, -1);
        let x = nn::Dense::new(128).call(cx, &x)?.relu();
        nn::Dense::new(self.out_dims).call(cx, &x)
    }
}

/// `Mlp` with its shapes declared: `apply` checks the input and output against the declaration.
#[module]
pub struct DeclaredMlp {
    pub out_dims: i64,
}

#[module]
impl DeclaredMlp {
    #[compact]
    #[shape(x: [B, 28, 28, 1] -> [B, self.out_dims])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = x.flatten(1, -1);
        let x = nn::Dense::new(128).call(cx, &x)?.relu();
        nn::Dense::new(self.out_dims).call(cx, &x)
    }
}

/// A module that returns its input: `apply` is the module system's overhead alone.
#[module]
pub struct Identity;

#[module]
impl Identity {
    #[compact]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        Ok(x.shallow_clone())
    }
}

/// `Identity` with its shapes declared.
#[module]
pub struct DeclaredIdentity;

#[module]
impl DeclaredIdentity {
    #[compact]
    #[shape(x: [B, 28, 28, 1] -> [B, 28, 28, 1])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        Ok(x.shallow_clone())
    }
}

/// The same computation with the weights held directly, as a tch user would write it.
struct HandWritten {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

impl HandWritten {
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = x.flatten(1, -1);
        let x = self.b1.addmm(&x, &self.w1).relu();
        self.b2.addmm(&x, &self.w2)
    }
}

fn bench(c: &mut Criterion) {
    tch::set_num_threads(1);
    let _guard = tch::no_grad_guard();
    let model = Mlp::new(10);
    let x = Tensor::ones([1, 28, 28, 1], (Kind::Float, Device::Cpu));
    let variables = model.init(PRNGKey::new(0), &x).expect("init");
    let p = |path: &[&str]| variables.tensor(path).expect("param").shallow_clone();
    let hand = HandWritten {
        w1: p(&["params", "Dense_0", "kernel"]),
        b1: p(&["params", "Dense_0", "bias"]),
        w2: p(&["params", "Dense_1", "kernel"]),
        b2: p(&["params", "Dense_1", "bias"]),
    };
    assert!(hand.forward(&x).allclose(&model.apply(&variables, &x).expect("apply"), 1e-6, 1e-6, false));
    // Same names, so the same variables serve the declared MLP.
    let declared = DeclaredMlp::new(10);
    assert!(hand.forward(&x).allclose(&declared.apply(&variables, &x).expect("apply"), 1e-6, 1e-6, false));
    let mut group = c.benchmark_group("mlp_apply_batch1");
    group.bench_function("flax", |b| {
        b.iter(|| black_box(model.apply(&variables, black_box(&x)).expect("apply")))
    });
    group.bench_function("flax_declared", |b| {
        b.iter(|| black_box(declared.apply(&variables, black_box(&x)).expect("apply")))
    });
    group.bench_function("tch", |b| b.iter(|| black_box(hand.forward(black_box(&x)))));
    group.finish();

    let mut group = c.benchmark_group("shape_guard");
    let (identity, declared) = (Identity::new(), DeclaredIdentity::new());
    let empty = identity.init(PRNGKey::new(0), &x).expect("init");
    group.bench_function("undeclared", |b| {
        b.iter(|| black_box(identity.apply(&empty, black_box(&x)).expect("apply")))
    });
    group.bench_function("declared", |b| {
        b.iter(|| black_box(declared.apply(&empty, black_box(&x)).expect("apply")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
