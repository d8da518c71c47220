//! `random::gumbel` and `random::categorical` against jax 0.10.2 on the CPU. The expected
//! values were printed by
//! `jax.random.gumbel(PRNGKey(42), (2, 3))` and
//! `jax.random.categorical(PRNGKey(7), jnp.tile(jnp.log(jnp.array([.1, .2, .3, .4])), (16, 1)), axis)`
//! for `axis` -1 and, on the transposed logits, 0.

use flax::random;
use flax::tch::{Device, Kind, Tensor};
use flax::{Error, PRNGKey};

/// The logits of the probabilities 0.1, 0.2, 0.3, 0.4, one row per sample.
fn logits(rows: i64) -> Tensor {
    Tensor::from_slice(&[0.1f32, 0.2, 0.3, 0.4]).log().unsqueeze(0).repeat([rows, 1])
}

#[test]
fn gumbel_samples_are_jax_s() {
    let g = random::gumbel(PRNGKey::new(42), &[2, 3], (Kind::Float, Device::Cpu)).unwrap();
    let expected = Tensor::from_slice(&[
        0.334_093_39_f64,
        0.952_019_45,
        0.725_530_56,
        0.548_171_5,
        0.226_804_96,
        0.626_115_9,
    ])
    .to_kind(Kind::Float)
    .reshape([2, 3]);
    assert!(g.allclose(&expected, 1e-6, 1e-7, false), "{g}");
    let g64 = random::gumbel(PRNGKey::new(42), &[2, 3], (Kind::Double, Device::Cpu)).unwrap();
    assert_eq!(g64.kind(), Kind::Double);
}

#[test]
fn categorical_samples_are_jax_s_along_either_axis() {
    let samples = |axis: i64, logits: &Tensor| -> Vec<i64> {
        Vec::try_from(random::categorical(PRNGKey::new(7), logits, axis).unwrap()).unwrap()
    };
    assert_eq!(samples(-1, &logits(16)), [1, 3, 3, 2, 3, 0, 2, 2, 3, 2, 1, 3, 3, 3, 1, 1]);
    // The noise has the logits' shape, so drawing along axis 0 of the transpose differs.
    assert_eq!(samples(0, &logits(16).tr()), [2, 0, 3, 1, 1, 3, 3, 3, 1, 2, 1, 0, 2, 3, 1, 2]);
}

#[test]
fn categorical_frequencies_follow_the_probabilities() {
    let draws = random::categorical(PRNGKey::new(3), &logits(100_000), -1).unwrap();
    let counts = draws.bincount::<Tensor>(None, 4).to_kind(Kind::Double) / 100_000.0;
    let expected = Tensor::from_slice(&[0.1f64, 0.2, 0.3, 0.4]);
    assert!(counts.allclose(&expected, 0.0, 0.01, false), "{counts}");
}

#[test]
fn categorical_of_integer_logits_is_a_value_error() {
    let ids = Tensor::from_slice(&[1i64, 2, 3]);
    assert!(matches!(random::categorical(PRNGKey::new(0), &ids, -1), Err(Error::Value(_))));
}
