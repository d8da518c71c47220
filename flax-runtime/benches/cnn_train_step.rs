//! Forward and backward pass of the spec's quickstart CNN (spec L232-249; loss = mean of the
//! logits, gradients of every param through `flax::value_and_grad`) at batch 32 and 128,
//! against the same network hand-written in `tch` with the same weights, in one run: once
//! channels-first (NCHW data and OIHW kernels, as a PyTorch user writes it) and once
//! channels-last (the NHWC data viewed as NCHW, kernels in channels-last memory format, which
//! is what the library hands libtorch). The outputs and gradients are checked to agree first.
//!
//! Single-threaded (`tch::set_num_threads(1)`), so that the ratios measure the library's
//! overhead rather than the scheduling of a shared machine. Criterion measures the versions
//! one after the other, so a change in the machine's load between them skews its ratios;
//! before it runs, the bench also times the three versions interleaved, step by step, and
//! prints the median of the paired ratios, which such drift cannot skew.
//!
//! Run: `cargo bench -p flax-runtime --bench cnn_train_step`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use flax::nn::{self, Padding};
use flax::prelude::*;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The spec's quickstart CNN.
#[allow(clippy::upper_case_acronyms)]
#[module]
pub struct CNN;

#[module]
impl CNN {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Conv::new(32, vec![3, 3]).call(cx, x)?.relu();
        let x = nn::avg_pool(&x, &[2, 2], Some(&[2, 2]), &Padding::Valid, true)?;
        let x = nn::Conv::new(64, vec![3, 3]).call(cx, &x)?.relu();
        let x = nn::avg_pool(&x, &[2, 2], Some(&[2, 2]), &Padding::Valid, true)?;
        let x = x.flatten(1, -1);
        let x = nn::Dense::new(256).call(cx, &x)?.relu();
        nn::Dense::new(10).call(cx, &x)
    }
}

/// The library's step: the loss and the gradient of every param.
fn flax_step(model: &CNN, variables: &Variables, x: &Tensor) -> (Tensor, Variables) {
    flax::value_and_grad(variables, |v| Ok(model.apply(v, x)?.mean(Kind::Float))).expect("flax step")
}

/// The same network with its weights held directly, as leaves requiring gradients.
struct HandWritten {
    /// Whether activations stay channels-last (NHWC memory) throughout.
    channels_last: bool,
    conv0_w: Tensor,
    conv0_b: Tensor,
    conv1_w: Tensor,
    conv1_b: Tensor,
    dense0_w: Tensor,
    dense0_b: Tensor,
    dense1_w: Tensor,
    dense1_b: Tensor,
}

impl HandWritten {
    /// Takes the library's variables: kernels HWIO -> OIHW (in channels-last memory format
    /// when `channels_last`); for channels-first, `Dense_0`'s rows reordered from Flax's
    /// (h, w, c) flattening to (c, h, w).
    fn new(variables: &Variables, channels_last: bool) -> Self {
        let p = |layer: &str, name: &str| variables.tensor(&["params", layer, name]).expect("param").copy();
        let leaf = |t: Tensor| t.set_requires_grad(true);
        let conv = |layer: &str| {
            let oihw = p(layer, "kernel").permute([3, 2, 0, 1]);
            let w = if channels_last {
                // OHWI memory, viewed as OIHW: libtorch's channels-last weights.
                oihw.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
            } else {
                oihw.contiguous()
            };
            leaf(w)
        };
        let dense0 = if channels_last {
            p("Dense_0", "kernel")
        } else {
            p("Dense_0", "kernel").reshape([7, 7, 64, 256]).permute([2, 0, 1, 3]).reshape([3136, 256])
        };
        HandWritten {
            channels_last,
            conv0_w: conv("Conv_0"),
            conv0_b: leaf(p("Conv_0", "bias")),
            conv1_w: conv("Conv_1"),
            conv1_b: leaf(p("Conv_1", "bias")),
            dense0_w: leaf(dense0),
            dense0_b: leaf(p("Dense_0", "bias")),
            dense1_w: leaf(p("Dense_1", "kernel")),
            dense1_b: leaf(p("Dense_1", "bias")),
        }
    }

    /// The logits for `x`, NCHW (contiguous, or channels-last memory).
    fn forward(&self, x: &Tensor) -> Tensor {
        let pool = |t: &Tensor| t.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
        let x = x.conv2d(&self.conv0_w, Some(&self.conv0_b), [1, 1], [1, 1], [1, 1], 1).relu();
        let x = pool(&x);
        let x = x.conv2d(&self.conv1_w, Some(&self.conv1_b), [1, 1], [1, 1], [1, 1], 1).relu();
        let x = pool(&x);
        // Channels-last memory is NHWC: viewed as such it flattens without a copy.
        let x = if self.channels_last { x.permute([0, 2, 3, 1]).flatten(1, -1) } else { x.flatten(1, -1) };
        let x = self.dense0_b.addmm(&x, &self.dense0_w).relu();
        self.dense1_b.addmm(&x, &self.dense1_w)
    }

    fn params(&self) -> [&Tensor; 8] {
        [
            &self.conv0_w,
            &self.conv0_b,
            &self.conv1_w,
            &self.conv1_b,
            &self.dense0_w,
            &self.dense0_b,
            &self.dense1_w,
            &self.dense1_b,
        ]
    }

    /// The loss and the gradient of every weight (`run_backward` on the leaves: nothing is
    /// accumulated in `.grad`, as in the library).
    fn step(&self, x: &Tensor) -> (Tensor, Vec<Tensor>) {
        let loss = self.forward(x).mean(Kind::Float);
        let grads = Tensor::run_backward(&[&loss], &self.params(), false, false);
        (loss.detach(), grads)
    }

    /// The input as this version takes it: NHWC data viewed as NCHW, channels-last in memory
    /// or copied to contiguous NCHW (what a channels-first data pipeline hands over).
    fn input(&self, nhwc: &Tensor) -> Tensor {
        let nchw = nhwc.permute([0, 3, 1, 2]);
        if self.channels_last {
            nchw
        } else {
            nchw.contiguous()
        }
    }
}

/// The three versions agree on the loss, the logits and the first kernel's gradient.
fn check_agreement(model: &CNN, variables: &Variables, hands: &[&HandWritten], x: &Tensor) {
    let (loss, grads) = flax_step(model, variables, x);
    let logits = model.apply(variables, x).expect("apply");
    let kernel_grad = grads.tensor(&["params", "Conv_0", "kernel"]).expect("grad").permute([3, 2, 0, 1]);
    for hand in hands {
        let input = hand.input(x);
        let (hand_loss, hand_grads) = hand.step(&input);
        assert!(loss.allclose(&hand_loss, 1e-5, 1e-6, false), "losses differ");
        let hand_logits = tch::no_grad(|| hand.forward(&input));
        assert!(logits.allclose(&hand_logits, 1e-4, 1e-5, false), "logits differ");
        assert!(kernel_grad.allclose(&hand_grads[0], 1e-4, 1e-6, false), "gradients differ");
    }
}

/// Times `steps` interleaved, `rounds` times, and returns each one's median time and the
/// median of its time over the first one's, round by round.
fn paired(rounds: usize, steps: &mut [&mut dyn FnMut()]) -> Vec<(Duration, f64)> {
    let mut times = vec![Vec::with_capacity(rounds); steps.len()];
    for _ in 0..rounds {
        for (step, t) in steps.iter_mut().zip(&mut times) {
            let start = Instant::now();
            step();
            t.push(start.elapsed());
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    times
        .iter()
        .map(|t| {
            let ratios = t.iter().zip(&times[0]).map(|(a, b)| a.as_secs_f64() / b.as_secs_f64()).collect();
            let mut sorted = t.clone();
            sorted.sort();
            (sorted[sorted.len() / 2], median(ratios))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    tch::set_num_threads(1);
    let model = CNN::new();
    let template = Tensor::ones([1, 28, 28, 1], (Kind::Float, Device::Cpu));
    let variables = model.init(PRNGKey::new(0), &template).expect("init");
    let nchw = HandWritten::new(&variables, false);
    let channels_last = HandWritten::new(&variables, true);
    let mut group = c.benchmark_group("cnn_train_step");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    for batch in [32, 128] {
        // Deterministic inputs without libtorch's global generator.
        let x = (Tensor::arange(batch * 28 * 28, (Kind::Float, Device::Cpu)) * 0.37)
            .sin()
            .reshape([batch, 28, 28, 1]);
        check_agreement(&model, &variables, &[&nchw, &channels_last], &x);
        let (x_nchw, x_channels_last) = (nchw.input(&x), channels_last.input(&x));
        let summary = paired(
            20,
            &mut [
                &mut || drop(flax_step(&model, &variables, &x)),
                &mut || drop(nchw.step(&x_nchw)),
                &mut || drop(channels_last.step(&x_channels_last)),
            ],
        );
        println!("interleaved, batch {batch}: flax median {:.2?}", summary[0].0);
        for ((time, ratio), name) in summary[1..].iter().zip(["tch_nchw", "tch_channels_last"]) {
            println!(
                "interleaved, batch {batch}: {name} median {time:.2?}, flax / {name} = {:.3}",
                1.0 / ratio
            );
        }
        group.bench_with_input(BenchmarkId::new("flax", batch), &x, |b, x| {
            b.iter(|| black_box(flax_step(&model, &variables, black_box(x))))
        });
        for (name, hand, input) in
            [("tch_nchw", &nchw, &x_nchw), ("tch_channels_last", &channels_last, &x_channels_last)]
        {
            group.bench_with_input(BenchmarkId::new(name, batch), input, |b, input| {
                b.iter(|| black_box(hand.step(black_box(input))))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
