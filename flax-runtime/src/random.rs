//! `jax.random`: functional sampling from a [`PRNGKey`], value for value what JAX draws.
//!
//! Every function takes a key and returns a tensor that is a pure function of that key, the
//! shape and the dtype: the values are computed in Rust on the CPU with JAX's threefry bits
//! and JAX's formulas (including the fused multiply-adds and special-function
//! approximations of JAX's CPU backend, see `xla_math`), then placed on the requested
//! device. libtorch's global generator is never used.
//!
//! Dtypes: `Float` (JAX's default) and `Double` (JAX with `jax_enable_x64`) are sampled
//! natively and match JAX. `Half` and `BFloat16` are sampled as `Float` and then rounded;
//! JAX samples those at 16 bits from 16 (or 8) random bits, so their values differ from
//! JAX's (the distributions are the same).

mod float;
mod xla_math;

use tch::{Device, Kind, Tensor};

pub(crate) use self::float::JaxFloat;
use crate::core::rng::PRNGKey;
use crate::{Error, Result};

/// A float tensor computed at the width `T` (so that rounding happens exactly where JAX's
/// does): the samplers below and the initializers, dispatched on dtype by [`float_tensor`].
pub(crate) trait FloatGenerator {
    /// The CPU tensor of dtype `T::KIND`, shape `shape` (with `n` elements) drawn from `key`.
    fn generate<T: JaxFloat>(&self, key: PRNGKey, shape: &[i64], n: usize) -> Result<Tensor>;
}

/// The number of elements of `shape`, or the `ValueError` JAX would raise for it.
pub(crate) fn num_elements(op: &str, shape: &[i64]) -> Result<usize> {
    shape.iter().try_fold(1usize, |n, &d| {
        let d = usize::try_from(d)
            .map_err(|_| Error::Value(format!("{op}: shape {shape:?} has a negative dimension")))?;
        n.checked_mul(d).ok_or_else(|| Error::Value(format!("{op}: shape {shape:?} is too large")))
    })
}

/// The number of values a sampler of `shape` draws, once the host can hold them: the samplers
/// compute on the host (JAX's Threefry, bit for bit) into buffers of up to 8 bytes a value, and
/// Rust aborts the process when such a buffer cannot be allocated, so a shape no allocation can
/// give (a layer of 2^58 features) is an error here instead. The probe reserves and frees the
/// buffer: the pages are never touched, so it costs one `malloc`/`free` pair.
fn sample_count(op: &str, shape: &[i64]) -> Result<usize> {
    let n = num_elements(op, shape)?;
    Vec::<u64>::new().try_reserve_exact(n).map_err(|_| {
        Error::Value(format!("{op}: shape {shape:?} ({n} values) is too large to allocate on the host"))
    })?;
    Ok(n)
}

/// Runs `generator` at the width of `kind` (`Half` and `BFloat16` at `float32`, then rounded)
/// and moves the result to `device`; a non-float dtype is JAX's `ValueError`.
pub(crate) fn float_tensor(
    op: &str,
    generator: &impl FloatGenerator,
    key: PRNGKey,
    shape: &[i64],
    (kind, device): (Kind, Device),
) -> Result<Tensor> {
    let n = sample_count(op, shape)?;
    let tensor = match kind {
        Kind::Float => generator.generate::<f32>(key, shape, n)?,
        Kind::Half | Kind::BFloat16 => generator.generate::<f32>(key, shape, n)?.f_to_kind(kind)?,
        Kind::Double => generator.generate::<f64>(key, shape, n)?,
        other => {
            return Err(Error::Value(format!(
                "dtype argument to `{op}` must be a float dtype, got {other:?}"
            )))
        }
    };
    Ok(tensor.f_to_device(device)?)
}

/// A CPU tensor of `shape` holding `values` in row-major order.
pub(crate) fn values_tensor<T: JaxFloat>(values: &[T], shape: &[i64]) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(values)?.f_reshape(shape)?)
}

/// `jax.random.uniform` on `[minval, maxval)`: `max(minval, u * (maxval - minval) + minval)`
/// for mantissa-built `u` in `[0, 1)`, with the multiply-add fused as in JAX.
pub(crate) fn uniform_values<T: JaxFloat>(key: PRNGKey, n: usize, minval: T, maxval: T) -> Vec<T> {
    let span = maxval - minval;
    let mut values = T::unit_uniforms(key, n);
    for v in &mut values {
        let x = v.mul_add(span, minval);
        *v = if minval > x { minval } else { x };
    }
    values
}

/// `jax.random.normal`: `sqrt(2) * erf_inv(u)` for `u` uniform on `(-1, 1)`.
pub(crate) fn normal_values<T: JaxFloat>(key: PRNGKey, n: usize) -> Vec<T> {
    let lower = T::from_f64(-1.0).next_after(T::from_f64(0.0));
    let mut values = uniform_values(key, n, lower, T::ONE);
    for v in &mut values {
        *v = T::SQRT_2 * v.erf_inv();
    }
    values
}

/// `jax.random.truncated_normal` on `(lower, upper)`: inverse-CDF sampling between
/// `erf(lower / sqrt(2))` and `erf(upper / sqrt(2))`, clipped to the open interval. (XLA
/// turns the division by the constant `sqrt(2)` into a multiplication by its reciprocal,
/// and so does this.)
pub(crate) fn truncated_normal_values<T: JaxFloat>(key: PRNGKey, n: usize, lower: T, upper: T) -> Vec<T> {
    let inv_sqrt2 = T::ONE / T::SQRT_2;
    let (a, b) = ((lower * inv_sqrt2).erf(), (upper * inv_sqrt2).erf());
    let infinity = T::from_f64(f64::INFINITY);
    let (lo, hi) = (lower.next_after(infinity), upper.next_after(T::from_f64(f64::NEG_INFINITY)));
    let mut values = uniform_values(key, n, a, b);
    for v in &mut values {
        let x = T::SQRT_2 * v.erf_inv();
        let x = if x < lo { lo } else { x };
        *v = if x > hi { hi } else { x };
    }
    values
}

/// The samplers behind the public functions, as [`FloatGenerator`]s.
enum Distribution {
    Uniform { minval: f64, maxval: f64 },
    Normal,
    TruncatedNormal { lower: f64, upper: f64 },
}

impl FloatGenerator for Distribution {
    fn generate<T: JaxFloat>(&self, key: PRNGKey, shape: &[i64], n: usize) -> Result<Tensor> {
        let values = match *self {
            Distribution::Uniform { minval, maxval } => {
                uniform_values(key, n, T::from_f64(minval), T::from_f64(maxval))
            }
            Distribution::Normal => normal_values(key, n),
            Distribution::TruncatedNormal { lower, upper } => {
                truncated_normal_values(key, n, T::from_f64(lower), T::from_f64(upper))
            }
        };
        values_tensor(&values, shape)
    }
}

/// `jax.random.bits(key, shape)`: uniformly random 32-bit words. libtorch has no `uint32`,
/// so they are returned as `Int64` tensors holding values in `[0, 2^32)`.
pub fn random_bits(key: PRNGKey, shape: &[i64], device: Device) -> Result<Tensor> {
    let n = sample_count("random_bits", shape)?;
    let words: Vec<i64> = key.random_bits_u32(n).into_iter().map(i64::from).collect();
    Ok(Tensor::f_from_slice(&words)?.f_reshape(shape)?.f_to_device(device)?)
}

/// `jax.random.uniform(key, shape, dtype, minval, maxval)`: uniform on `[minval, maxval)`.
pub fn uniform(
    key: PRNGKey,
    shape: &[i64],
    options: (Kind, Device),
    minval: f64,
    maxval: f64,
) -> Result<Tensor> {
    float_tensor("uniform", &Distribution::Uniform { minval, maxval }, key, shape, options)
}

/// `jax.random.normal(key, shape, dtype)`: standard normal samples.
pub fn normal(key: PRNGKey, shape: &[i64], options: (Kind, Device)) -> Result<Tensor> {
    float_tensor("normal", &Distribution::Normal, key, shape, options)
}

/// `jax.random.truncated_normal(key, lower, upper, shape, dtype)`: standard normal samples
/// conditioned on the open interval `(lower, upper)`.
pub fn truncated_normal(
    key: PRNGKey,
    lower: f64,
    upper: f64,
    shape: &[i64],
    options: (Kind, Device),
) -> Result<Tensor> {
    let sampler = Distribution::TruncatedNormal { lower, upper };
    float_tensor("truncated_normal", &sampler, key, shape, options)
}

/// `jax.random.gumbel(key, shape, dtype)` (JAX's default `mode="low"`): standard Gumbel
/// samples `-log(-log(u))` of `u = uniform(key, shape, dtype, tiny, 1)`, `tiny` the dtype's
/// smallest normal number (so that the inner log is finite).
///
/// The uniform draws are JAX's; the two logs are libtorch's, which may differ from XLA's in
/// the last bit. `Half` and `BFloat16` are computed in `Float`, then rounded.
pub fn gumbel(key: PRNGKey, shape: &[i64], (kind, device): (Kind, Device)) -> Result<Tensor> {
    let (wide, tiny) = if kind == Kind::Double {
        (Kind::Double, f64::MIN_POSITIVE)
    } else {
        (Kind::Float, f64::from(f32::MIN_POSITIVE))
    };
    let u = uniform(key, shape, (wide, Device::Cpu), tiny, 1.0)?;
    Ok(u.f_log()?.f_neg()?.f_log()?.f_neg()?.f_to_kind(kind)?.f_to_device(device)?)
}

/// `jax.random.categorical(key, logits, axis)`: one index along `axis` per slice of
/// unnormalised log-probabilities `logits`, drawn with the Gumbel-max trick as JAX does
/// (`argmax(logits + gumbel(key, logits.shape), axis)`), so the same key gives JAX's
/// samples. An `Int64` tensor of `logits`' shape without `axis`.
///
/// # Errors
/// [`Error::Value`] when `logits` is not a floating tensor; libtorch's for a bad `axis`.
pub fn categorical(key: PRNGKey, logits: &Tensor, axis: i64) -> Result<Tensor> {
    if !logits.is_floating_point() {
        return Err(Error::Value(format!("categorical needs floating logits, got {:?}", logits.kind())));
    }
    let noise = gumbel(key, &logits.size(), (logits.kind(), logits.device()))?;
    Ok(logits.f_add(&noise)?.f_argmax(axis, false)?)
}

/// `jax.random.bernoulli(key, p, shape)`: a `Bool` tensor, true with probability `p`.
/// As in JAX with a Python float `p`, the comparison `uniform < p` happens in `float32`.
pub fn bernoulli(key: PRNGKey, p: f64, shape: &[i64], device: Device) -> Result<Tensor> {
    let n = sample_count("bernoulli", shape)?;
    let p = p as f32;
    let draws: Vec<bool> = uniform_values(key, n, 0.0f32, 1.0).into_iter().map(|u| u < p).collect();
    Ok(Tensor::f_from_slice(&draws)?.f_reshape(shape)?.f_to_device(device)?)
}

/// `jax.random.permutation(key, n)`: a random ordering of `0..n` as an `Int64` tensor (JAX
/// returns `int32`; `Int64` is what libtorch indexing takes).
///
/// JAX's algorithm, reproduced exactly: `ceil(3 ln(n) / ln(2^32 - 1))` rounds (one round up
/// to 1625 elements, two up to about 2.6 million) of stable-sorting by fresh random 32-bit
/// keys, each round splitting the key into (next key, sort-key key).
pub fn permutation(key: PRNGKey, n: i64, device: Device) -> Result<Tensor> {
    let len = sample_count("permutation", &[n])?;
    let rounds = (3.0 * (len.max(1) as f64).ln() / f64::from(u32::MAX).ln()).ceil() as usize;
    let mut order: Vec<i64> = (0..n).collect();
    let mut key = key;
    let mut keyed: Vec<(u32, i64)> = Vec::with_capacity(len);
    for _ in 0..rounds {
        let (next, subkey) = key.split2();
        key = next;
        keyed.clear();
        keyed.extend(subkey.random_bits_u32(len).into_iter().zip(order.iter().copied()));
        keyed.sort_by_key(|&(sort_key, _)| sort_key);
        order.clear();
        order.extend(keyed.iter().map(|&(_, value)| value));
    }
    Ok(Tensor::f_from_slice(&order)?.f_to_device(device)?)
}

/// `jax.random.randint(key, shape, minval, maxval, dtype)`: integers in `[minval, maxval)`.
///
/// JAX's modulus-based algorithm with twice the dtype's random bits (from the two halves of
/// `split(key)`), including its clipping of out-of-range bounds and `span = 1` when
/// `maxval <= minval`. `Int` (JAX's default `int32`) matches JAX; `Int64` follows JAX's
/// 64-bit mode; `Int16`, `Int8` and `Uint8` are sampled as `int32` and cast, as JAX does.
pub fn randint(
    key: PRNGKey,
    shape: &[i64],
    minval: i64,
    maxval: i64,
    (kind, device): (Kind, Device),
) -> Result<Tensor> {
    let n = sample_count("randint", shape)?;
    let (bits, range) = match kind {
        Kind::Int64 => (64, (i64::MIN, i64::MAX)),
        Kind::Int => (32, (i64::from(i32::MIN), i64::from(i32::MAX))),
        Kind::Int16 => (32, (i64::from(i16::MIN), i64::from(i16::MAX))),
        Kind::Int8 => (32, (i64::from(i8::MIN), i64::from(i8::MAX))),
        Kind::Uint8 => (32, (0, i64::from(u8::MAX))),
        other => return Err(Error::Value(format!("randint only accepts integer dtypes, got {other:?}"))),
    };
    // JAX clips the bounds of narrow dtypes to their range before sampling in int32.
    let (minval, maxval) = if bits == 32 && kind != Kind::Int {
        (minval.clamp(range.0, range.1), maxval.clamp(range.0, range.1 + 1))
    } else {
        (minval, maxval)
    };
    let values = randint_values(key, n, minval, maxval, bits);
    Ok(Tensor::f_from_slice(&values)?.f_to_kind(kind)?.f_reshape(shape)?.f_to_device(device)?)
}

/// The core of [`randint`] for `bits`-wide signed integers (32 or 64), computed in `u64`
/// with wrap-around at `bits` bits, as JAX's unsigned arithmetic wraps.
fn randint_values(key: PRNGKey, n: usize, minval: i64, maxval: i64, bits: u32) -> Vec<i64> {
    let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
    let (lo, hi) =
        if bits == 64 { (i64::MIN, i64::MAX) } else { (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1) };
    let maxval_out_of_range = maxval > hi;
    let (minval, maxval) = (minval.clamp(lo, hi), maxval.clamp(lo, hi));
    let mut span = (maxval.wrapping_sub(minval) as u64) & mask;
    if maxval <= minval {
        span = 1;
    } else if maxval_out_of_range {
        span = span.wrapping_add(1) & mask;
    }
    // XLA's unsigned remainder by zero returns the dividend (full-range spans wrap to 0).
    let rem = |a: u64| if span == 0 { a } else { a % span };
    let half = rem(1u64 << (bits / 2));
    let multiplier = rem(half.wrapping_mul(half) & mask);
    let (k1, k2) = key.split2();
    let words = |k: PRNGKey| -> Vec<u64> {
        if bits == 64 {
            k.random_bits_u64(n)
        } else {
            k.random_bits_u32(n).into_iter().map(u64::from).collect()
        }
    };
    let (higher, lower) = (words(k1), words(k2));
    higher
        .into_iter()
        .zip(lower)
        .map(|(h, l)| {
            let offset = rem(rem(h).wrapping_mul(multiplier).wrapping_add(rem(l)) & mask);
            let wrapped = (minval as u64).wrapping_add(offset) & mask;
            // Sign-extend the `bits`-wide result.
            ((wrapped << (64 - bits)) as i64) >> (64 - bits)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values are printed by scripts/golden/rng_vectors.py from jax 0.10.2 (PRNGKey(42),
    // shape (5, 7)); the full arrays are checked by tests/rng_golden.rs.
    const CPU_F32: (Kind, Device) = (Kind::Float, Device::Cpu);

    fn first(t: &Tensor, n: i64) -> Vec<f64> {
        Vec::<f64>::try_from(t.flatten(0, -1).narrow(0, 0, n).to_kind(Kind::Double)).unwrap()
    }

    fn key() -> PRNGKey {
        PRNGKey::new(42)
    }

    #[test]
    fn float_samplers_match_jax_bit_for_bit() {
        let cases: [(Tensor, [f64; 6]); 4] = [
            (
                uniform(key(), &[5, 7], CPU_F32, 0.0, 1.0).unwrap(),
                [
                    0.48870956897735596,
                    0.6797971725463867,
                    0.6162714958190918,
                    0.5610160827636719,
                    0.4506446123123169,
                    0.58586585521698,
                ],
            ),
            (
                uniform(key(), &[5, 7], CPU_F32, -3.0, 7.0).unwrap(),
                [
                    1.8870956897735596,
                    3.797971725463867,
                    3.162714958190918,
                    2.6101608276367188,
                    1.506446123123169,
                    2.8586585521698,
                ],
            ),
            (
                normal(key(), &[5, 7], CPU_F32).unwrap(),
                [
                    -0.02830461598932743,
                    0.4671318531036377,
                    0.2957029640674591,
                    0.15354591608047485,
                    -0.12403281778097153,
                    0.21692314743995667,
                ],
            ),
            (
                truncated_normal(key(), -2.0, 2.0, &[5, 7], CPU_F32).unwrap(),
                [
                    -0.027016498148441315,
                    0.44438081979751587,
                    0.2818770706653595,
                    0.14650805294513702,
                    -0.11836230009794235,
                    0.2069074809551239,
                ],
            ),
        ];
        for (tensor, expected) in cases {
            assert_eq!(tensor.size(), [5, 7]);
            assert_eq!(tensor.kind(), Kind::Float);
            assert_eq!(first(&tensor, 6), expected);
        }
    }

    #[test]
    fn discrete_samplers_match_jax() {
        let bits = random_bits(key(), &[5, 7], Device::Cpu).unwrap();
        assert_eq!(first(&bits, 3), [2098992034.0, 2919706841.0, 2646866425.0]);
        let coin = bernoulli(key(), 0.3, &[5, 7], Device::Cpu).unwrap();
        assert_eq!(coin.kind(), Kind::Bool);
        assert_eq!(first(&coin, 10), [0., 0., 0., 0., 0., 0., 1., 0., 0., 0.]);
        let ints = randint(key(), &[5, 7], -5, 17, (Kind::Int, Device::Cpu)).unwrap();
        assert_eq!(ints.kind(), Kind::Int);
        assert_eq!(first(&ints, 6), [7., 7., 4., 14., 10., 12.]);
        let perm = permutation(key(), 10, Device::Cpu).unwrap();
        assert_eq!(Vec::<i64>::try_from(perm).unwrap(), [7, 4, 2, 5, 3, 6, 8, 9, 0, 1]);
    }

    #[test]
    fn sixteen_bit_floats_are_rounded_float32_samples() {
        let half = normal(key(), &[5, 7], (Kind::Half, Device::Cpu)).unwrap();
        let full = normal(key(), &[5, 7], CPU_F32).unwrap();
        assert_eq!(half.kind(), Kind::Half);
        assert!(half.to_kind(Kind::Float).allclose(&full, 1e-3, 1e-3, false));
    }

    #[test]
    fn bad_arguments_are_value_errors() {
        assert!(matches!(uniform(key(), &[2, -1], CPU_F32, 0.0, 1.0), Err(Error::Value(_))));
        assert!(matches!(normal(key(), &[2], (Kind::Int64, Device::Cpu)), Err(Error::Value(_))));
        assert!(matches!(randint(key(), &[2], 0, 3, (Kind::Float, Device::Cpu)), Err(Error::Value(_))));
        assert!(matches!(permutation(key(), -3, Device::Cpu), Err(Error::Value(_))));
    }

    #[test]
    fn randint_handles_empty_and_full_ranges() {
        let constant = randint(key(), &[100], 3, 3, (Kind::Int, Device::Cpu)).unwrap();
        assert!(constant.eq(3).all().int64_value(&[]) == 1);
        let bytes = randint(key(), &[1000], 0, 256, (Kind::Uint8, Device::Cpu)).unwrap();
        assert_eq!(bytes.kind(), Kind::Uint8);
        let full =
            randint(key(), &[1000], i64::from(i32::MIN), i64::from(i32::MAX) + 1, (Kind::Int, Device::Cpu));
        assert_eq!(full.unwrap().size(), [1000]);
    }

    #[test]
    fn truncated_normal_stays_inside_bounds() {
        for (lower, upper) in [(-2.0, 2.0), (0.5, 1.5), (-1.0, 3.0)] {
            let draws = truncated_normal(key(), lower, upper, &[100_000], CPU_F32).unwrap();
            assert!(draws.min().double_value(&[]) > lower);
            assert!(draws.max().double_value(&[]) < upper);
        }
    }

    #[test]
    fn large_draws_have_the_right_moments() {
        let n = 100_000;
        let tolerance = 5.0 / (n as f64).sqrt();
        let mean_std = |t: Tensor| (t.mean(Kind::Double).double_value(&[]), t.std(true).double_value(&[]));
        let (mean, std) = mean_std(normal(key(), &[n], CPU_F32).unwrap());
        assert!(mean.abs() < tolerance && (std - 1.0).abs() < tolerance, "normal: {mean} {std}");
        let (mean, std) = mean_std(normal(key(), &[n], (Kind::Double, Device::Cpu)).unwrap());
        assert!(mean.abs() < tolerance && (std - 1.0).abs() < tolerance, "normal f64: {mean} {std}");
        let (mean, std) = mean_std(uniform(key(), &[n], CPU_F32, -1.0, 3.0).unwrap());
        assert!((mean - 1.0).abs() < 2.0 * tolerance && (std - 4.0 / 12f64.sqrt()).abs() < 2.0 * tolerance);
        let (mean, std) = mean_std(truncated_normal(key(), -2.0, 2.0, &[n], CPU_F32).unwrap());
        assert!(mean.abs() < tolerance && (std - 0.8796256610342398).abs() < tolerance);
        let p = bernoulli(key(), 0.3, &[n], Device::Cpu).unwrap().to_kind(Kind::Double).mean(Kind::Double);
        assert!((p.double_value(&[]) - 0.3).abs() < tolerance);
    }

    #[test]
    fn permutation_is_a_permutation() {
        for n in [0, 1, 3000] {
            let perm = permutation(key(), n, Device::Cpu).unwrap();
            let (sorted, _) = perm.sort(0, false);
            assert!(sorted.equal(&Tensor::arange(n, (Kind::Int64, Device::Cpu))));
        }
    }
}
