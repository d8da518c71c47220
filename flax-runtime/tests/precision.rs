//! `precision` (JAX's `lax.Precision`): libtorch's float32 precision of CUDA products, set for a
//! layer's products and restored after. On CPU it changes nothing, as in JAX: every layer gives
//! its default outputs. (`tests/layers_attention.rs` checks attention with `HIGHEST` against
//! Flax; `tests/cuda.rs` checks TF32 against full float32 on a GPU.)

use flax::nn::precision::{cuda_fp32_precision, with_precision};
use flax::nn::{self, AttentionOptions, Precision};
use flax::prelude::*;
use flax::Error;
use std::sync::{Mutex, MutexGuard};

/// The setting is process-wide: tests that set it take turns.
fn exclusive() -> MutexGuard<'static, ()> {
    static SETTING: Mutex<()> = Mutex::new(());
    SETTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn normal(shape: &[i64], seed: u64) -> Tensor {
    flax::random::normal(PRNGKey::new(seed), shape, (Kind::Float, Device::Cpu)).unwrap()
}

#[test]
fn with_precision_sets_and_restores_libtorch_setting() {
    let _turn = exclusive();
    let before = cuda_fp32_precision().unwrap();
    let inside = |p| with_precision(Some(p), cuda_fp32_precision).unwrap();
    assert_eq!(inside(Precision::Highest), ["ieee", "ieee"]);
    assert_eq!(inside(Precision::High), ["tf32", "tf32"]);
    assert_eq!(inside(Precision::Default), ["tf32", "tf32"]);
    assert_eq!(cuda_fp32_precision().unwrap(), before);
    // `None` (Flax's default) leaves the setting alone.
    assert_eq!(with_precision(None, cuda_fp32_precision).unwrap(), before);
    // A failing body restores it too, and its error comes back.
    let failed =
        with_precision(Some(Precision::Highest), || -> Result<()> { Err(Error::Value("boom".into())) });
    assert!(matches!(failed, Err(Error::Value(m)) if m == "boom"));
    assert_eq!(cuda_fp32_precision().unwrap(), before);
}

#[test]
fn layers_with_a_precision_give_their_default_outputs_on_cpu() {
    let _turn = exclusive();
    let before = cuda_fp32_precision().unwrap();
    let x = normal(&[2, 5, 6, 3], 0);
    let check = |what: &str, y: Tensor, y_precise: Tensor| {
        assert!(y.equal(&y_precise), "{what}: a precision changed the CPU output");
        assert_eq!(cuda_fp32_precision().unwrap(), before, "{what}: the setting was not restored");
    };
    for p in [Precision::Default, Precision::High, Precision::Highest] {
        let m = nn::Dense::new(4);
        let v = m.init(PRNGKey::new(1), &x).unwrap();
        check("Dense", m.apply(&v, &x).unwrap(), m.clone().precision(p).apply(&v, &x).unwrap());
        let m = nn::DenseGeneral::new([2, 2]).axis([-2, -1]);
        let v = m.init(PRNGKey::new(1), &x).unwrap();
        check("DenseGeneral", m.apply(&v, &x).unwrap(), m.clone().precision(p).apply(&v, &x).unwrap());
        let m = nn::DenseGeneral::new(4).batch_dims(vec![0]);
        let v = m.init(PRNGKey::new(1), &x).unwrap();
        check(
            "DenseGeneral batch_dims",
            m.apply(&v, &x).unwrap(),
            m.clone().precision(p).apply(&v, &x).unwrap(),
        );
        let m = nn::Conv::new(4, [3, 3]);
        let v = m.init(PRNGKey::new(1), &x).unwrap();
        check("Conv", m.apply(&v, &x).unwrap(), m.clone().precision(p).apply(&v, &x).unwrap());
        let m = nn::ConvLocal::new(4, [3, 3]);
        let v = m.init(PRNGKey::new(1), &x).unwrap();
        check("ConvLocal", m.apply(&v, &x).unwrap(), m.clone().precision(p).apply(&v, &x).unwrap());
        let m = nn::ConvTranspose::new(4, [3, 3]).strides(2);
        let v = m.init(PRNGKey::new(1), &x).unwrap();
        check("ConvTranspose", m.apply(&v, &x).unwrap(), m.clone().precision(p).apply(&v, &x).unwrap());
        let seq = x.flatten(1, 2);
        let m = nn::MultiHeadDotProductAttention::new(1);
        let v = m.init(PRNGKey::new(1), &seq, &seq, None, None).unwrap();
        let precise = m.clone().precision(p).apply(&v, &seq, &seq, None, None).unwrap();
        check("MultiHeadDotProductAttention", m.apply(&v, &seq, &seq, None, None).unwrap(), precise);
        let m = nn::SelfAttention::new(3);
        let v = m.init(PRNGKey::new(1), &seq, None, None).unwrap();
        let precise = m.clone().precision(p).apply(&v, &seq, None, None).unwrap();
        check("SelfAttention", m.apply(&v, &seq, None, None).unwrap(), precise);
        let (q, k) = (normal(&[2, 4, 2, 3], 2), normal(&[2, 5, 2, 3], 3));
        let precise =
            nn::dot_product_attention_with(&q, &k, &k, AttentionOptions::new().precision(p)).unwrap();
        check("dot_product_attention", nn::dot_product_attention(&q, &k, &k).unwrap(), precise);
        let precise =
            nn::dot_product_attention_weights_with(&q, &k, AttentionOptions::new().precision(p)).unwrap();
        check("dot_product_attention_weights", nn::dot_product_attention_weights(&q, &k).unwrap(), precise);
    }
}

#[test]
fn attention_passes_its_precision_and_options_to_its_attention_fn() {
    let _turn = exclusive();
    let x = normal(&[2, 4, 6], 4);
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let m = nn::SelfAttention::new(2).precision(Precision::High).attention_fn(
        move |q: &Tensor, k: &Tensor, v: &Tensor, options: AttentionOptions| {
            record.lock().unwrap().push((options.precision, options.mask.is_some(), options.dtype));
            nn::dot_product_attention_with(q, k, v, options)
        },
    );
    let mask = nn::make_causal_mask(&x.select(-1, 0)).unwrap();
    let v = m.init(PRNGKey::new(0), &x, Some(&mask), None).unwrap();
    let y = m.apply(&v, &x, Some(&mask), None).unwrap();
    let default = nn::SelfAttention::new(2).apply(&v, &x, Some(&mask), None).unwrap();
    assert!(y.equal(&default), "a custom attention_fn that calls the default gives the default output");
    assert_eq!(*seen.lock().unwrap(), [(Some(Precision::High), true, None); 2]);
}

#[test]
fn precision_and_attention_fn_print_as_in_flax() {
    let dense = format!("{:?}", nn::Dense::new(3).precision(Precision::Highest));
    assert!(
        dense.contains(
            "\n    param_dtype = float32\n    precision = Precision.HIGHEST\n    kernel_init = init\n"
        ),
        "{dense}"
    );
    let attention = format!("{:?}", nn::MultiHeadDotProductAttention::new(2));
    assert!(attention.contains("\n    precision = None\n"), "{attention}");
    assert!(attention.contains("\n    attention_fn = dot_product_attention\n"), "{attention}");
}
