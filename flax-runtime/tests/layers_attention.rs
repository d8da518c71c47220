//! Attention functions, masks and modules against Flax 0.12.8
//! (`scripts/golden/layers_attention.py`), including decoding with the cache.

mod layers_golden;

use flax::nn::{self, AttentionDropout, MultiHeadDotProductAttention, SelfAttention};
use flax::prelude::*;
use flax::{Error, Value};
use layers_golden::{assert_close, assert_same_tree, key, Golden};

fn dropout(rate: f64, broadcast: bool) -> AttentionDropout {
    AttentionDropout { rng: PRNGKey::new(1), rate, broadcast }
}

#[test]
fn functions_and_masks_match_flax() {
    let g = Golden::load("attention");
    let c = g.case("weights");
    let (q, k) = (c.input("q"), c.input("k"));
    assert_close("weights", &nn::dot_product_attention_weights(&q, &k).unwrap(), &c.output());
    let c = g.case("weights_bias_mask");
    let (bias, mask) = (c.input("bias"), c.input("mask"));
    let w =
        nn::dot_product_attention_weights_with(&q, &k, nn::AttentionOptions::new().bias(&bias).mask(&mask))
            .unwrap();
    assert_close("weights_bias_mask", &w, &c.output());
    let c = g.case("attention_mask");
    let v = c.input("v");
    let y = nn::dot_product_attention_with(&q, &k, &v, nn::AttentionOptions::new().mask(&mask)).unwrap();
    assert_close("attention_mask", &y, &c.output());
    let c = g.case("attention_dropout");
    let y =
        nn::dot_product_attention_with(&q, &k, &v, nn::AttentionOptions::new().dropout(dropout(0.5, true)))
            .unwrap();
    assert_close("attention_dropout", &y, &c.output());
    let c = g.case("attention_dropout_unbroadcast");
    let y =
        nn::dot_product_attention_with(&q, &k, &v, nn::AttentionOptions::new().dropout(dropout(0.3, false)))
            .unwrap();
    assert_close("attention_dropout_unbroadcast", &y, &c.output());

    let c = g.case("padding_mask");
    let tokens = c.input("tokens");
    let (valid, f32) = (tokens.gt(0), Kind::Float);
    let mask = nn::make_attention_mask(&valid, &valid).unwrap();
    assert_close("padding_mask", &mask, &c.output());
    let c = g.case("greater_equal_mask");
    let mask = nn::make_attention_mask_with(
        &tokens,
        &tokens.narrow(1, 0, 3),
        nn::AttentionMaskOptions::new().pairwise_fn(|a, b| Ok(a.greater_equal_tensor(b))).extra_batch_dims(1),
    )
    .unwrap();
    assert_close("greater_equal_mask", &mask, &c.output());
    let c = g.case("causal_mask");
    let causal = nn::make_causal_mask(&tokens).unwrap();
    assert_close("causal_mask", &causal, &c.output());
    let c = g.case("combined_mask");
    let padding = nn::make_attention_mask(&valid, &valid).unwrap();
    let combined = nn::combine_masks_with(&[Some(&padding), None, Some(&causal)], f32).unwrap().unwrap();
    assert_close("combined_mask", &combined, &c.output());
    assert!(nn::combine_masks_with(&[None, None], f32).unwrap().is_none());

    modules_match_flax(&g);
    decoding_matches_flax(&g);
    g.assert_all_seen();
}

/// The golden script's custom `attention_fn`: Flax's attention with the logits doubled.
fn doubled_logits_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    options: nn::AttentionOptions,
) -> Result<Tensor> {
    nn::dot_product_attention_with(&q.try_mul_scalar(2.0)?, k, v, options)
}

fn modules_match_flax(g: &Golden) {
    let c = g.case("mhdpa");
    let (q, kv, mask) = (c.input("q"), c.input("kv"), c.input("mask"));
    let m = MultiHeadDotProductAttention::new(2);
    c.check(|| m.init(key(), &q, &kv, Some(&mask), None), |v| m.apply(v, &q, &kv, Some(&mask), None));
    let c = g.case("mhdpa_custom_attention_fn");
    let (q, kv, mask) = (c.input("q"), c.input("kv"), c.input("mask"));
    let m = MultiHeadDotProductAttention::new(2).attention_fn(doubled_logits_attention);
    c.check(|| m.init(key(), &q, &kv, Some(&mask), None), |v| m.apply(v, &q, &kv, Some(&mask), None));
    let c = g.case("mhdpa_precision");
    let m = MultiHeadDotProductAttention::new(2).precision(nn::Precision::Highest);
    c.check(|| m.init(key(), &q, &kv, Some(&mask), None), |v| m.apply(v, &q, &kv, Some(&mask), None));
    let c = g.case("mhdpa_features");
    let m = MultiHeadDotProductAttention::new(4).qkv_features(Some(8)).out_features(Some(3)).use_bias(false);
    c.check(|| m.init(key(), &q, &kv, None, None), |v| m.apply(v, &q, &kv, None, None));
    let c = g.case("mhdpa_batch_dims");
    let x = c.input("q");
    let m = MultiHeadDotProductAttention::new(8).qkv_features(Some(16));
    c.check(|| m.init(key(), &x, &x, None, None), |v| m.apply(v, &x, &x, None, None));
    let c = g.case("mhdpa_dropout");
    let m = MultiHeadDotProductAttention::new(2).dropout_rate(0.5);
    let rngs = || Rngs::new().with("params", key()).with("dropout", PRNGKey::new(1));
    c.check(
        || m.init_with(ApplyOptions::new().rngs(rngs()), &q, &kv, None, Some(false)).map(|(_, v)| v),
        |v| m.apply_with(v, ApplyOptions::new().rngs(rngs()), &q, &kv, None, Some(false)).map(|(y, _)| y),
    );
    let c = g.case("self_attention_causal");
    let (x, mask) = (c.input("x"), c.input("mask"));
    let m = SelfAttention::new(2);
    c.check(|| m.init(key(), &x, Some(&mask), None), |v| m.apply(v, &x, Some(&mask), None));
}

fn decoding_matches_flax(g: &Golden) {
    let c = g.case("decode");
    let x = c.input("x");
    let m = MultiHeadDotProductAttention::new(2).qkv_features(Some(6)).decode(true);
    let variables = m.init(key(), &x, &x, None, None).unwrap();
    assert_same_tree("decode: init", &variables, &c.variables());
    let mut variables = c.variables();
    for i in 0..x.size()[1] {
        let xi = x.narrow(1, i, 1);
        let (y, updated) =
            m.apply_with(&variables, ApplyOptions::new().mutable(["cache"]), &xi, &xi, None, None).unwrap();
        assert_close(&format!("decode step {i}"), &y, &c.output_at(&[&i.to_string()]));
        variables = variables.copy([("cache", updated.get("cache").unwrap().clone())]);
    }
    let Some(Value::Dict(cache)) = variables.get("cache") else { panic!("no cache") };
    let expected = c.tensor(&["cache", "cached_key"]);
    assert_close("final cached_key", cache.tensor(&["cached_key"]).unwrap(), &expected);
    assert_eq!(cache.tensor(&["cache_index"]).unwrap().int64_value(&[]), 4);
    // Without the cache, a causal mask gives the same outputs at once.
    let causal = nn::make_causal_mask(&x.select(-1, 0)).unwrap();
    let full = MultiHeadDotProductAttention::new(2).qkv_features(Some(6));
    let y = full.apply(&c.variables().pop("cache").unwrap().0, &x, &x, Some(&causal), None).unwrap();
    assert_close("causal output", &y, &c.tensor(&["causal_output"]));
    // A query of more than one position is Flax's cache shape error.
    match m.apply_with(&variables, ApplyOptions::new().mutable(["cache"]), &x, &x, None, None) {
        Err(Error::Shape { message, .. }) => assert_eq!(
            message,
            "Autoregressive cache shape error, expected query shape (2, 1, 2, 3) instead got (2, 4, 2, 3)."
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_configurations_are_typed_errors() {
    let x = Tensor::ones([2, 3, 6], (Kind::Float, Device::Cpu));
    match MultiHeadDotProductAttention::new(4).init(key(), &x, &x, None, None) {
        Err(Error::InvalidAttribute { scope, message }) => {
            assert_eq!(
                (scope.as_str(), message.as_str()),
                ("/", "Memory dimension (6) must be divisible by number of heads (4).")
            );
        }
        other => panic!("{other:?}"),
    }
    // Dropout needs `deterministic` once; without dropout it is not needed.
    let m = SelfAttention::new(2).dropout_rate(0.1);
    assert!(matches!(m.init(key(), &x, None, None), Err(Error::MergeParam { .. })));
    assert!(SelfAttention::new(2).init(key(), &x, None, None).is_ok());
    let q = Tensor::ones([2, 3, 2, 4], (Kind::Float, Device::Cpu));
    let k = Tensor::ones([2, 3, 2, 5], (Kind::Float, Device::Cpu));
    let err = nn::dot_product_attention_weights(&q, &k).unwrap_err();
    assert!(err.to_string().contains("got query (2, 3, 2, 4), key (2, 3, 2, 5)"), "{err}");
    let a = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
    let b = Tensor::ones([2, 3, 4], (Kind::Float, Device::Cpu));
    assert!(nn::combine_masks(&[Some(&a), Some(&b)]).is_err());
}

/// Plain attention (no mask, bias or dropout) runs on libtorch's fused
/// `scaled_dot_product_attention`; an all-true mask keeps Flax's formula op by op. Both give
/// the same outputs and the same gradients for query, key and value, with two batch axes and
/// a value depth different from the key's.
#[test]
fn fused_attention_matches_flax_s_formula_with_gradients() {
    tch::manual_seed(0);
    let opts = (Kind::Float, Device::Cpu);
    let q = Tensor::randn([2, 3, 5, 4, 8], opts).set_requires_grad(true);
    let k = Tensor::randn([2, 3, 7, 4, 8], opts).set_requires_grad(true);
    let v = Tensor::randn([2, 3, 7, 4, 6], opts).set_requires_grad(true);
    let all = Tensor::ones([1, 1, 4, 5, 7], opts);
    let fused = nn::dot_product_attention(&q, &k, &v).unwrap();
    let formula = nn::dot_product_attention_with(&q, &k, &v, nn::AttentionOptions::new().mask(&all)).unwrap();
    assert_close("fused output", &fused, &formula);
    let seed = Tensor::randn(fused.size(), opts);
    let grads =
        |y: &Tensor| Tensor::run_backward(&[(y * &seed).sum(Kind::Float)], &[&q, &k, &v], false, false);
    for (name, (a, b)) in ["q", "k", "v"].iter().zip(grads(&fused).iter().zip(&grads(&formula))) {
        assert_close(&format!("gradient of {name}"), a, b);
    }
}
