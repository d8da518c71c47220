//! Keys, samplers and initializers against golden vectors from jax 0.10.2 / flax 0.12.8
//! (`scripts/golden/rng_vectors.py` writes `tests/data/rng.msgpack`), read through the
//! crate's own msgpack reader.
//!
//! float32 samples are compared bit for bit (the Rust side reproduces JAX's CPU arithmetic);
//! float64 ones to 1e-12 (JAX and Rust share the C library's `log`/`erf` there, up to the
//! platform); orthogonal matrices to 1e-5 (both QR-decompose with LAPACK, rounding differs).

use flax::core::rng::{fold_in_static, PRNGKey, RngSuffix};
use flax::nn::initializers::{self as init, Distribution, FanMode, Init, Initializer};
use flax::random;
use flax::serialization::msgpack_restore;
use flax::tch::{Device, Kind, Tensor};
use flax::{FrozenDict, Value};

/// The seed every golden sample and initializer output is drawn from.
const SAMPLE_SEED: u64 = 42;
const SHAPE: [i64; 2] = [5, 7];
const F32: (Kind, Device) = (Kind::Float, Device::Cpu);
const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

fn vectors() -> FrozenDict {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rng.msgpack")).unwrap();
    match msgpack_restore(&bytes).unwrap() {
        Value::Dict(dict) => dict,
        other => panic!("rng.msgpack is not a dict: {other:?}"),
    }
}

fn golden(vectors: &FrozenDict, path: &[&str]) -> Tensor {
    vectors.tensor(path).unwrap_or_else(|| panic!("no golden tensor at {path:?}")).shallow_clone()
}

fn section<'a>(vectors: &'a FrozenDict, path: &[&str]) -> &'a FrozenDict {
    match vectors.get_path(path) {
        Some(Value::Dict(dict)) => dict,
        _ => panic!("no golden section at {path:?}"),
    }
}

fn raw_key(vectors: &FrozenDict, path: &[&str]) -> [u32; 2] {
    let words = Vec::<i64>::try_from(golden(vectors, path)).unwrap();
    [words[0] as u32, words[1] as u32]
}

/// Same shape and dtype, and every element within `tol` (absolute and relative; 0 = equal).
fn assert_close(name: &str, actual: &Tensor, expected: &Tensor, tol: f64) {
    assert_eq!(actual.size(), expected.size(), "{name}: shape");
    assert_eq!(actual.kind(), expected.kind(), "{name}: dtype");
    let ok = if tol == 0.0 { actual.equal(expected) } else { actual.allclose(expected, tol, tol, false) };
    let diff = (actual.to_kind(Kind::Double) - expected.to_kind(Kind::Double)).abs().max();
    assert!(ok, "{name}: max abs difference {}", diff.double_value(&[]));
}

#[test]
fn keys_match_jax() {
    let v = vectors();
    for seed in [0u64, 42, (1 << 32) + 5] {
        let key = PRNGKey::new(seed);
        assert_eq!(key.raw(), raw_key(&v, &["keys", "seed", &seed.to_string()]), "seed {seed}");
        let split: Vec<i64> = key.split(3).iter().flat_map(|k| k.raw().map(i64::from)).collect();
        let expected =
            Vec::<i64>::try_from(golden(&v, &["keys", "split3", &seed.to_string()]).flatten(0, -1));
        assert_eq!(split, expected.unwrap(), "split of seed {seed}");
        for data in [0u32, 1, 12345, u32::MAX] {
            let expected = raw_key(&v, &["keys", "fold_in", &format!("{seed}_{data}")]);
            assert_eq!(key.fold_in(data).raw(), expected, "fold_in({seed}, {data})");
        }
    }
}

#[test]
fn fold_in_static_matches_flax() {
    use RngSuffix::{Int, Str};
    let v = vectors();
    let cases: [(&str, &[RngSuffix<'_>]); 8] = [
        ("1", &[Int(1)]),
        ("Dense_0_1", &[Str("Dense_0"), Int(1)]),
        ("Dense_0_2", &[Str("Dense_0"), Int(2)]),
        ("Encoder_0_Dense_1_3", &[Str("Encoder_0"), Str("Dense_1"), Int(3)]),
        ("int_0", &[Int(0)]),
        ("int_256", &[Int(256)]),
        ("int_2pow40", &[Int(1 << 40)]),
        ("unicode", &[Str("Схема"), Int(7)]),
    ];
    assert_eq!(section(&v, &["keys", "fold_in_static"]).len(), cases.len());
    for (name, suffix) in cases {
        let expected = raw_key(&v, &["keys", "fold_in_static", name]);
        assert_eq!(fold_in_static(PRNGKey::new(0), suffix).raw(), expected, "{name}");
    }
}

#[test]
fn samplers_match_jax() {
    let v = vectors();
    let key = PRNGKey::new(SAMPLE_SEED);
    let cpu = Device::Cpu;
    let cases: Vec<(&str, Tensor)> = vec![
        ("random_bits", random::random_bits(key, &SHAPE, cpu).unwrap()),
        ("uniform", random::uniform(key, &SHAPE, F32, 0.0, 1.0).unwrap()),
        ("uniform_m3_7", random::uniform(key, &SHAPE, F32, -3.0, 7.0).unwrap()),
        ("normal", random::normal(key, &SHAPE, F32).unwrap()),
        ("normal_large", random::normal(key, &[4096], F32).unwrap()),
        ("truncated_normal_m2_2", random::truncated_normal(key, -2.0, 2.0, &SHAPE, F32).unwrap()),
        ("truncated_normal_m1_3", random::truncated_normal(key, -1.0, 3.0, &SHAPE, F32).unwrap()),
        ("truncated_normal_large", random::truncated_normal(key, -2.0, 2.0, &[4096], F32).unwrap()),
        ("bernoulli_0_3", random::bernoulli(key, 0.3, &SHAPE, cpu).unwrap()),
        ("randint_m5_17", random::randint(key, &SHAPE, -5, 17, (Kind::Int, cpu)).unwrap()),
        ("randint_u8_0_256", random::randint(key, &SHAPE, 0, 256, (Kind::Uint8, cpu)).unwrap()),
        (
            "randint_i32_full",
            random::randint(key, &SHAPE, i32::MIN.into(), i32::MAX.into(), (Kind::Int, cpu)).unwrap(),
        ),
        ("permutation_3", random::permutation(key, 3, cpu).unwrap()),
        ("permutation_10", random::permutation(key, 10, cpu).unwrap()),
        ("permutation_3000", random::permutation(key, 3000, cpu).unwrap()),
    ];
    assert_eq!(section(&v, &["samples"]).len(), cases.len());
    for (name, actual) in cases {
        let expected = golden(&v, &["samples", name]);
        // Integer vectors are stored as int64 (JAX's int32/uint8/uint32 widened).
        let actual = if name.starts_with("randint") { actual.to_kind(Kind::Int64) } else { actual };
        assert_close(name, &actual, &expected, 0.0);
    }
}

/// The Rust initializer for each golden entry of `initializer_cases()` in the script.
fn initializer(name: &str) -> Init {
    match name {
        "zeros" => init::zeros_init().into(),
        "ones" => init::ones_init().into(),
        "constant_m7" => init::constant(-7.0).into(),
        "normal_5" => init::normal(5.0).into(),
        "uniform_10" => init::uniform(10.0).into(),
        "truncated_normal_2" => init::truncated_normal(2.0).into(),
        "lecun_normal" => init::lecun_normal().into(),
        "lecun_uniform" => init::lecun_uniform().into(),
        "glorot_normal" => init::glorot_normal().into(),
        "glorot_uniform" => init::glorot_uniform().into(),
        "xavier_normal" => init::xavier_normal().into(),
        "xavier_uniform" => init::xavier_uniform().into(),
        "he_normal" => init::he_normal().into(),
        "he_uniform" => init::he_uniform().into(),
        "kaiming_normal" => init::kaiming_normal().into(),
        "kaiming_uniform" => init::kaiming_uniform().into(),
        "vs_2_fan_out_normal" => init::variance_scaling(2.0, FanMode::FanOut, Distribution::Normal).into(),
        "vs_0_5_fan_avg_uniform" => {
            init::variance_scaling(0.5, FanMode::FanAvg, Distribution::Uniform).into()
        }
        "vs_custom_axes" => init::variance_scaling(1.0, FanMode::FanIn, Distribution::TruncatedNormal)
            .in_axis([0, 1])
            .out_axis(3)
            .batch_axis(2)
            .into(),
        "orthogonal" => init::orthogonal(1.0).into(),
        "orthogonal_2_col0" => init::orthogonal(2.0).column_axis(0).into(),
        "delta_orthogonal" => init::delta_orthogonal(1.0).into(),
        other => panic!("no Rust initializer for golden entry {other}"),
    }
}

fn tolerance(init: &Init) -> f64 {
    match init {
        Init::Orthogonal(_) | Init::DeltaOrthogonal(_) => 1e-5,
        _ => 0.0,
    }
}

#[test]
fn initializers_match_flax() {
    let v = vectors();
    let key = PRNGKey::new(SAMPLE_SEED);
    for (name, shapes) in section(&v, &["initializers"]).iter() {
        let init = initializer(name);
        for (shape_name, expected) in shapes.as_dict().unwrap().iter() {
            let expected = expected.as_tensor().unwrap();
            let actual = init.init(key, &expected.size(), F32).unwrap();
            assert_close(&format!("{name} {shape_name}"), &actual, expected, tolerance(&init));
        }
    }
}

#[test]
fn float64_matches_jax_x64() {
    let v = vectors();
    let key = PRNGKey::new(SAMPLE_SEED);
    assert_eq!(key.raw(), raw_key(&v, &["f64", "key"]));
    let cases: Vec<(&str, Tensor, f64)> = vec![
        ("uniform", random::uniform(key, &SHAPE, F64, 0.0, 1.0).unwrap(), 0.0),
        ("uniform_m3_7", random::uniform(key, &SHAPE, F64, -3.0, 7.0).unwrap(), 0.0),
        ("normal", random::normal(key, &SHAPE, F64).unwrap(), 1e-12),
        ("truncated_normal_m2_2", random::truncated_normal(key, -2.0, 2.0, &SHAPE, F64).unwrap(), 1e-12),
        ("truncated_normal_m1_3", random::truncated_normal(key, -1.0, 3.0, &SHAPE, F64).unwrap(), 1e-12),
        ("lecun_normal", init::lecun_normal().init(key, &[3, 3, 2, 4], F64).unwrap(), 1e-12),
        ("glorot_uniform", init::glorot_uniform().init(key, &[4, 3], F64).unwrap(), 1e-12),
        ("orthogonal", init::orthogonal(1.0).init(key, &[3, 4], F64).unwrap(), 1e-10),
    ];
    for (name, actual, tol) in cases {
        assert_close(&format!("f64 {name}"), &actual, &golden(&v, &["f64", name]), tol);
    }
}

/// `Dense(3).init(PRNGKey(0), ones((2, 4)))` and a two-layer MLP, through the module system:
/// the same seed gives bit-identical params to Flax's, because `make_rng` derives the key of a
/// scope at path `p` asking for its `n`-th key as `fold_in_static(root, [p..., n])`.
#[test]
fn flax_models_initialise_to_the_same_params() {
    let v = vectors();
    let x = Tensor::ones([2, 4], F32);
    let dense = flax::nn::Dense::new(3).init(PRNGKey::new(0), &x).unwrap();
    let mlp = Mlp::new().init(PRNGKey::new(0), &x).unwrap();
    let cases = [
        (["models", "dense", "kernel"].as_slice(), dense.tensor(&["params", "kernel"])),
        (&["models", "dense", "bias"], dense.tensor(&["params", "bias"])),
        (&["models", "mlp", "Dense_0", "kernel"], mlp.tensor(&["params", "Dense_0", "kernel"])),
        (&["models", "mlp", "Dense_0", "bias"], mlp.tensor(&["params", "Dense_0", "bias"])),
        (&["models", "mlp", "Dense_1", "kernel"], mlp.tensor(&["params", "Dense_1", "kernel"])),
        (&["models", "mlp", "Dense_1", "bias"], mlp.tensor(&["params", "Dense_1", "bias"])),
    ];
    for (path, actual) in cases {
        assert_close(&path.join("/"), actual.expect("param exists"), &golden(&v, path), 0.0);
    }
    // Conv lands with the layer library; until then its kernel key is derived by hand.
    let conv =
        init::lecun_normal().init(fold_in_static(PRNGKey::new(0), &[RngSuffix::Int(1)]), &[3, 3, 2, 4], F32);
    assert_close("conv/kernel", &conv.unwrap(), &golden(&v, &["models", "conv", "kernel"]), 0.0);
}

#[flax::module]
pub struct Mlp {}

#[flax::module]
impl Mlp {
    #[compact]
    pub fn call(&self, cx: &mut flax::Scope, x: &Tensor) -> flax::Result<Tensor> {
        let x = flax::nn::Dense::new(5).call(cx, x)?;
        flax::nn::Dense::new(3).call(cx, &x.relu())
    }
}
