//! Batch-1 `apply` of the spec's basic-usage MLP against the same network hand-written in
//! `tch`, in one run. The ratio is the cost of the module system (scopes, names, variable
//! lookups) on top of libtorch's own per-op cost.
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
    let mut group = c.benchmark_group("mlp_apply_batch1");
    group.bench_function("flax", |b| {
        b.iter(|| black_box(model.apply(&variables, black_box(&x)).expect("apply")))
    });
    group.bench_function("tch", |b| b.iter(|| black_box(hand.forward(black_box(&x)))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
