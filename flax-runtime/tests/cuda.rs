//! The CUDA code paths: each test does the same work on the CPU and on the first CUDA device
//! and checks that the results agree and stay on the device.
//!
//! Ignored by default, since CI and most machines have no GPU; where one is:
//! `cargo test -p flax-runtime --test cuda -- --ignored`. Without a GPU they fail with a
//! message saying so rather than pass vacuously.
//!
//! The CPU results are themselves golden-tested against Flax, so agreement here carries that
//! over to CUDA. Tolerances allow for cuDNN, whose convolutions libtorch lets use TF32 by
//! default (10-bit mantissas) on Ampere and later.

mod quickstart;

use flax::data::{Batches, ImageClassification};
use flax::nn::{LSTMCell, MultiHeadDotProductAttention, RNN};
use flax::optax::{self, BoxedTransformation, GradientTransformation};
use flax::prelude::*;
use flax::serialization::{from_bytes, to_bytes};
use flax::training::metrics::Collection;
use flax::training::TrainState;
use flax::tree::{self, Key, Tree};
use quickstart::{compute_metrics, train_step, Extra, Metrics, State, CNN};

fn cuda() -> Device {
    assert!(tch::Cuda::is_available(), "no CUDA device is available to this process");
    Device::Cuda(0)
}

/// BatchNorm and Dropout, the layers with state and randomness.
#[module]
struct Classifier;

#[module]
impl Classifier {
    #[compact]
    fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = nn::Dense::new(16).call(cx, x)?;
        let x = nn::BatchNorm::new().call(cx, &x, Some(!train))?.relu();
        let x = nn::Dropout::new(0.5).call(cx, &x, Some(!train))?;
        nn::Dense::new(3).call(cx, &x)
    }
}

/// Deterministic inputs, without libtorch's global generator; made on the CPU, so that both
/// devices get the same numbers.
fn images(batch: i64, device: Device) -> Tensor {
    (Tensor::arange(batch * 28 * 28, (Kind::Float, Device::Cpu)) * 0.37)
        .sin()
        .reshape([batch, 28, 28, 1])
        .to_device(device)
}

fn labels(batch: i64, classes: i64, device: Device) -> Tensor {
    Tensor::arange(batch, (Kind::Int64, device)).remainder(classes)
}

/// Every leaf of `on_cuda` is on CUDA and within tolerance of the same leaf of `on_cpu`.
fn assert_follows<T: Tree>(what: &str, on_cpu: &T, on_cuda: &T, rtol: f64, atol: f64) {
    let (cpu, gpu) = (tree::leaves_with_path(on_cpu), tree::leaves(on_cuda));
    assert_eq!(cpu.len(), gpu.len(), "{what}: different trees");
    assert!(!gpu.is_empty(), "{what}: no leaves");
    for ((path, c), g) in cpu.into_iter().zip(gpu) {
        assert!(g.device().is_cuda(), "{what}/{}: on {:?}", path.join("/"), g.device());
        let (c, g) = (c.to_device(Device::Cpu), g.to_device(Device::Cpu));
        assert!(
            c.allclose(&g, rtol, atol, false),
            "{what}/{}: largest difference {}",
            path.join("/"),
            (&c - &g).abs().max().double_value(&[])
        );
    }
}

fn params_of(variables: &Variables) -> FrozenDict {
    variables.get_dict("params").unwrap().clone()
}

/// The quickstart's state after `steps` training steps on `device`.
fn trained_cnn(device: Device, steps: i64) -> State {
    let cnn = CNN::new();
    let params = params_of(&cnn.init(PRNGKey::new(0), &images(1, device)).unwrap());
    let tx = optax::sgd(0.01).momentum(0.9);
    let mut state = TrainState::create_with(cnn, params, tx, Extra { metrics: Metrics::empty() }).unwrap();
    for step in 0..steps {
        let x = images(16, device) * (1.0 + step as f64 * 0.1);
        let y = labels(16, 10, device);
        state = train_step(state, &x, &y).and_then(|state| compute_metrics(state, &x, &y)).unwrap();
    }
    state
}

#[test]
#[ignore = "needs a CUDA device: cargo test -p flax-runtime --test cuda -- --ignored"]
fn init_on_cuda_gives_the_cpu_parameters() {
    let cnn = CNN::new();
    let on_cpu = cnn.init(PRNGKey::new(0), &images(1, Device::Cpu)).unwrap();
    let on_cuda = cnn.init(PRNGKey::new(0), &images(1, cuda())).unwrap();
    assert_follows("init", &on_cpu, &on_cuda, 1e-6, 1e-7);
}

#[test]
#[ignore = "needs a CUDA device: cargo test -p flax-runtime --test cuda -- --ignored"]
fn quickstart_training_on_cuda_follows_the_cpu() {
    let (on_cpu, on_cuda) = (trained_cnn(Device::Cpu, 3), trained_cnn(cuda(), 3));
    assert_eq!(on_cuda.step, 3);
    assert_follows("params", &on_cpu.params, &on_cuda.params, 1e-3, 1e-4);
    assert_follows("opt_state", &on_cpu.opt_state, &on_cuda.opt_state, 1e-2, 1e-3);
    let (cpu, gpu) = (on_cpu.extra.metrics.compute().unwrap(), on_cuda.extra.metrics.compute().unwrap());
    for name in ["loss", "accuracy"] {
        let (c, g) = (cpu.get(name).unwrap().double_value(&[]), gpu.get(name).unwrap().double_value(&[]));
        assert!((c - g).abs() < 1e-3, "{name}: {c} on the CPU, {g} on CUDA");
    }
}

#[test]
#[ignore = "needs a CUDA device: cargo test -p flax-runtime --test cuda -- --ignored"]
fn checkpoints_of_a_cuda_state_are_the_cpu_bytes_and_restore_onto_cuda() {
    let (on_cpu, on_cuda) = (trained_cnn(Device::Cpu, 1), trained_cnn(cuda(), 1));
    let bytes = to_bytes(&on_cuda).unwrap();
    // The same structure as the CPU state's bytes (values differ by float rounding).
    assert_eq!(bytes.len(), to_bytes(&on_cpu).unwrap().len());
    let target = trained_cnn(cuda(), 0);
    let restored = from_bytes(&target, &bytes).unwrap();
    assert_eq!(restored.step, 1);
    assert_follows("restored", &on_cuda.params, &restored.params, 0.0, 0.0);
    assert_follows("restored opt_state", &on_cuda.opt_state, &restored.opt_state, 0.0, 0.0);
}

/// Every optimizer of the issue, boxed so that one loop runs them all.
fn optimizers() -> Vec<(&'static str, BoxedTransformation<FrozenDict>)> {
    let schedule = optax::warmup_cosine_decay_schedule(0.0, 0.1, 2, 10, 0.0, 1.0).unwrap();
    vec![
        ("sgd", optax::sgd(0.1).boxed()),
        ("sgd_momentum", optax::sgd(0.1).momentum(0.9).boxed()),
        ("sgd_nesterov", optax::sgd(0.1).momentum(0.9).nesterov(true).boxed()),
        ("adam", optax::adam(schedule).boxed()),
        ("adamw", optax::adamw(1e-2).weight_decay(1e-2).boxed()),
        ("rmsprop", optax::rmsprop(1e-2).momentum(0.9).centered(true).boxed()),
        ("adagrad", optax::adagrad(1e-1).boxed()),
        ("lamb", optax::lamb(1e-2).boxed()),
        ("clip_then_adam", optax::chain((optax::clip_by_global_norm(0.5), optax::adam(1e-2))).boxed()),
        ("clip", optax::chain((optax::clip(0.05), optax::sgd(0.1))).boxed()),
        (
            "multi_transform",
            optax::multi_transform(
                [("trained", optax::adam(1e-2).boxed()), ("frozen", optax::set_to_zero().boxed())],
                |path, _| if path.keys().contains(&Key::Name("Dense_1")) { "frozen" } else { "trained" },
            )
            .boxed(),
        ),
    ]
}

/// The parameters after five steps of `tx` on `device`, from the CNN's initial parameters and
/// with the same gradients on both devices: the optimizers' arithmetic alone is compared.
/// `fused` steps with `update_and_apply` (libtorch's fused kernel for SGD), else with
/// `update` then `apply_updates`.
fn optimized(tx: &BoxedTransformation<FrozenDict>, device: Device, fused: bool) -> FrozenDict {
    let initial = params_of(&CNN::new().init(PRNGKey::new(0), &images(1, Device::Cpu)).unwrap());
    // A copy: the updates are applied in place, and `initial` makes the gradients.
    let mut params = tree::tree_map(&initial, |p| Ok(p.to_device(device).copy())).unwrap();
    let mut state = tx.init(&params).unwrap();
    for step in 0..5 {
        let grads = tree::tree_map(&initial, |p| {
            let g = (p * 7.0 + step as f64).sin() * 0.1;
            Ok(g.to_device(device))
        })
        .unwrap();
        (params, state) = if fused {
            tx.update_and_apply(grads, state, params).unwrap()
        } else {
            let (updates, next) = tx.update(grads, state, Some(&params)).unwrap();
            (optax::apply_updates(params, &updates).unwrap(), next)
        };
    }
    params
}

#[test]
#[ignore = "needs a CUDA device: cargo test -p flax-runtime --test cuda -- --ignored"]
fn optimizers_on_cuda_follow_the_cpu() {
    for (name, tx) in optimizers() {
        for fused in [false, true] {
            let (on_cpu, on_cuda) = (optimized(&tx, Device::Cpu, fused), optimized(&tx, cuda(), fused));
            assert_follows(&format!("{name} (fused: {fused})"), &on_cpu, &on_cuda, 1e-5, 1e-6);
        }
    }
}

/// The classifier's output and updated batch statistics after one training-mode apply.
fn batch_norm_and_dropout(device: Device) -> (Tensor, Variables) {
    let model = Classifier::new();
    let x = images(8, device).reshape([8, 28 * 28]).narrow(1, 0, 20);
    let variables = model.init(PRNGKey::new(0), &x, false).unwrap();
    let options =
        ApplyOptions::new().mutable(["batch_stats"]).rngs(Rngs::new().with("dropout", PRNGKey::new(7)));
    model.apply_with(&variables, options, &x, true).unwrap()
}

#[test]
#[ignore = "needs a CUDA device: cargo test -p flax-runtime --test cuda -- --ignored"]
fn batch_norm_and_dropout_on_cuda_follow_the_cpu() {
    let (y_cpu, stats_cpu) = batch_norm_and_dropout(Device::Cpu);
    let (y_gpu, stats_gpu) = batch_norm_and_dropout(cuda());
    // Dropout's mask comes from the same threefry bits on both devices.
    assert!(y_cpu.eq(0.0).equal(&y_gpu.eq(0.0).to_device(Device::Cpu)), "different dropout masks");
    assert_follows("output", &y_cpu, &y_gpu, 1e-4, 1e-5);
    assert_follows("batch_stats", &stats_cpu, &stats_gpu, 1e-4, 1e-5);
}

#[test]
#[ignore = "needs a CUDA device: cargo test -p flax-runtime --test cuda -- --ignored"]
fn attention_and_rnn_on_cuda_follow_the_cpu() {
    let run = |device: Device| {
        let x = images(2, device).reshape([2, 28, 28]).narrow(2, 0, 8);
        let attention = MultiHeadDotProductAttention::new(2);
        let variables = attention.init(PRNGKey::new(0), &x, &x, None, None).unwrap();
        let attended = attention.apply(&variables, &x, &x, None, None).unwrap();
        let rnn = RNN::new(LSTMCell::new(), 5);
        let variables = rnn.init(PRNGKey::new(1), &x, None, None).unwrap();
        let (_, outputs) = rnn.apply(&variables, &x, None, None).unwrap();
        (attended, outputs)
    };
    let (on_cpu, on_cuda) = (run(Device::Cpu), run(cuda()));
    assert_follows("attention", &on_cpu.0, &on_cuda.0, 1e-3, 1e-4);
    assert_follows("lstm", &on_cpu.1, &on_cuda.1, 1e-3, 1e-4);
}

#[test]
#[ignore = "needs a CUDA device: cargo test -p flax-runtime --test cuda -- --ignored"]
fn shuffled_batches_on_cuda_are_the_cpu_batches() {
    let data = |device| ImageClassification { image: images(10, device), label: labels(10, 10, device) };
    let key = PRNGKey::new(3).fold_in(1);
    let (cpu_data, gpu_data) = (data(Device::Cpu), data(cuda()));
    let on_cpu: Vec<_> =
        Batches::new(&cpu_data, 4).unwrap().shuffle(key).unwrap().map(Result::unwrap).collect();
    let on_cuda: Vec<_> =
        Batches::new(&gpu_data, 4).unwrap().shuffle(key).unwrap().map(Result::unwrap).collect();
    assert_eq!(on_cpu.len(), 2);
    for (c, g) in on_cpu.iter().zip(&on_cuda) {
        assert_follows("batch", &c.data, &g.data, 0.0, 0.0);
    }
}

/// `precision` on a GPU with TensorFloat-32 (compute capability 8.0 or later): `Highest`
/// keeps a float32 product close to the float64 one, `High` and `Default` run it in TF32 (a
/// 10-bit mantissa: errors about a thousand times larger), and the setting is restored after.
#[test]
#[ignore = "needs a CUDA device with TF32: cargo test -p flax-runtime --test cuda -- --ignored"]
fn precision_selects_tf32_or_full_float32_on_cuda() {
    use flax::nn::precision::cuda_fp32_precision;
    use flax::nn::Precision;
    let device = cuda();
    let x = flax::random::normal(PRNGKey::new(0), &[256, 1024], (Kind::Float, Device::Cpu))
        .unwrap()
        .to_device(device);
    let dense = nn::Dense::new(512);
    let variables = dense.init(PRNGKey::new(1), &x).unwrap();
    let exact = dense.clone().dtype(Kind::Double).apply(&variables, &x).unwrap();
    let before = cuda_fp32_precision().unwrap();
    let error = |precision: Precision| {
        let y = dense.clone().precision(precision).apply(&variables, &x).unwrap();
        let e = (y.to_kind(Kind::Double) - &exact).abs().max().double_value(&[]);
        e / exact.abs().max().double_value(&[])
    };
    let (highest, high, default) =
        (error(Precision::Highest), error(Precision::High), error(Precision::Default));
    assert!(highest < 1e-5, "HIGHEST: relative error {highest}");
    assert!(high > 1e-5 && high > 10.0 * highest, "HIGH: relative error {high} (HIGHEST {highest})");
    assert!(default > 1e-5, "DEFAULT: relative error {default}");
    assert_eq!(cuda_fp32_precision().unwrap(), before);
}
