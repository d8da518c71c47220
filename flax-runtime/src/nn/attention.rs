//! Attention (Flax's `flax.linen.attention`): `dot_product_attention_weights`,
//! `dot_product_attention`, the mask helpers, and the `MultiHeadDotProductAttention` and
//! `SelfAttention` modules with their autoregressive `cache`.
//!
//! The spec's Flax 0.6.10 API: the modules take `(inputs_q, inputs_kv, mask, deterministic)`.
//! Their `attention_fn` (an [`AttentionFn`], [`dot_product_attention_with`] by default) can be
//! replaced by any function of its signature; `precision` is libtorch's float32 precision of
//! CUDA products ([`Precision`]). The `dot_general` attributes have no libtorch equivalent.

use crate::core::errors::{Error, Result};
use crate::core::repr::FlaxRepr;
use crate::core::rng::PRNGKey;
use crate::core::scalar_ops::ScalarOps;
use crate::core::scope::Scope;
use crate::core::tensor_checks::{check_defined, masked_fill};
use crate::core::tensor_identity::identity;
use crate::module;
use crate::nn::dtypes::{cast, result_dtype};
use crate::nn::fused_qkv::fused_qkv;
use crate::nn::initializers::{self, Init};
use crate::nn::linear::DenseGeneral;
use crate::nn::module_utils::{attribute_error, merge_param, shape_error};
use crate::nn::precision::{with_precision, Precision};
use crate::random::bernoulli;
use std::sync::Arc;
use tch::{Kind, Tensor};

/// The dropout of attention weights (the `dropout_rng`, `dropout_rate` and
/// `broadcast_dropout` arguments of Flax's attention functions; no dropout is
/// `deterministic=True`).
#[derive(Clone, Copy, Debug)]
pub struct AttentionDropout {
    /// The key the mask is drawn from.
    pub rng: PRNGKey,
    /// The probability of dropping a weight.
    pub rate: f64,
    /// Whether one mask `(q_len, kv_len)` is shared by every batch element and head
    /// (Flax's default `broadcast_dropout=True`).
    pub broadcast: bool,
}

/// Checks that `query` and `key` (and `value`) are `[batch…, length, heads, depth]` arrays
/// that fit together, as Flax's assertions do.
fn check_qkv(query: &Tensor, key: &Tensor, value: Option<&Tensor>) -> Result<()> {
    check_defined(query, "the query")?;
    check_defined(key, "the key")?;
    if let Some(value) = value {
        check_defined(value, "the value")?;
    }
    let (q, k) = (query.size(), key.size());
    let fits = q.len() >= 3
        && q.len() == k.len()
        && q[..q.len() - 3] == k[..k.len() - 3]
        && q[q.len() - 2..] == k[k.len() - 2..]
        && value.is_none_or(|v| {
            let v = v.size();
            v.len() == k.len() && v[..v.len() - 1] == k[..k.len() - 1]
        });
    if fits {
        return Ok(());
    }
    let value = value.map(|v| v.size().flax_repr()).unwrap_or_default();
    Err(Error::Value(format!(
        "query, key (and value) must be [batch..., length, heads, depth] with the same batch dims, heads and \
         depth (and key/value lengths); got query {}, key {}{}{value}",
        q.flax_repr(),
        k.flax_repr(),
        if value.is_empty() { "" } else { ", value " }
    )))
}

/// The keyword arguments of [`dot_product_attention_with`] and
/// [`dot_product_attention_weights_with`] (and of a module's `attention_fn`), Flax's defaults
/// by [`Default`].
#[derive(Debug, Default)]
pub struct AttentionOptions {
    /// Added to the attention logits, broadcast to `[batch…, heads, q_len, kv_len]`.
    pub bias: Option<Tensor>,
    /// False (or 0) where attention is not allowed, broadcast like `bias`.
    pub mask: Option<Tensor>,
    /// Dropout of the weights (Flax's `dropout_rng`, `dropout_rate`, `broadcast_dropout`;
    /// `None` is `deterministic=True`).
    pub dropout: Option<AttentionDropout>,
    /// The dtype of the computation (default: promoted from the inputs).
    pub dtype: Option<Kind>,
    /// The float32 precision of the products on CUDA (default: libtorch's setting).
    pub precision: Option<Precision>,
}

impl AttentionOptions {
    /// Flax's defaults: no bias, mask or dropout; the inputs' promoted dtype.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bias` to the attention logits.
    pub fn bias(mut self, bias: &Tensor) -> Self {
        self.bias = Some(bias.shallow_clone());
        self
    }

    /// Masks the logits where `mask` is false (or 0).
    pub fn mask(mut self, mask: &Tensor) -> Self {
        self.mask = Some(mask.shallow_clone());
        self
    }

    /// Drops attention weights as `dropout` says.
    pub fn dropout(mut self, dropout: AttentionDropout) -> Self {
        self.dropout = Some(dropout);
        self
    }

    /// Computes in `dtype`: a [`Kind`], or `None` for the inputs' promoted dtype.
    pub fn dtype(mut self, dtype: impl Into<Option<Kind>>) -> Self {
        self.dtype = dtype.into();
        self
    }

    /// Runs the products at `precision` (on CUDA; nothing changes on CPU).
    pub fn precision(mut self, precision: impl Into<Option<Precision>>) -> Self {
        self.precision = precision.into();
        self
    }
}

/// The signature of [`dot_product_attention_with`]: `(query, key, value, options)` to
/// `[batch…, q_len, heads, v_depth]`.
pub type AttentionFnBody =
    dyn Fn(&Tensor, &Tensor, &Tensor, AttentionOptions) -> Result<Tensor> + Send + Sync;

/// The attention function of [`MultiHeadDotProductAttention`] and [`SelfAttention`] (Flax's
/// `attention_fn`): [`dot_product_attention_with`] by default, or any function of its
/// signature (`.attention_fn(my_attention)`). The modules pass it the projected query, key and
/// value with their mask, dropout, `dtype` and `precision` in the [`AttentionOptions`].
#[derive(Clone)]
pub struct AttentionFn {
    body: Arc<AttentionFnBody>,
    /// Whether this is Flax's default, for the module's repr.
    is_default: bool,
}

impl AttentionFn {
    /// A custom attention function.
    pub fn new(
        f: impl Fn(&Tensor, &Tensor, &Tensor, AttentionOptions) -> Result<Tensor> + Send + Sync + 'static,
    ) -> Self {
        AttentionFn { body: Arc::new(f), is_default: false }
    }

    /// Applies the function.
    pub fn call(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        options: AttentionOptions,
    ) -> Result<Tensor> {
        (self.body)(query, key, value, options)
    }
}

impl Default for AttentionFn {
    fn default() -> Self {
        AttentionFn { body: Arc::new(dot_product_attention_with), is_default: true }
    }
}

impl<F: Fn(&Tensor, &Tensor, &Tensor, AttentionOptions) -> Result<Tensor> + Send + Sync + 'static> From<F>
    for AttentionFn
{
    fn from(f: F) -> Self {
        AttentionFn::new(f)
    }
}

impl FlaxRepr for AttentionFn {
    fn flax_repr(&self) -> String {
        if self.is_default { "dot_product_attention" } else { "attention_fn" }.to_owned()
    }
}

impl std::fmt::Debug for AttentionFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.flax_repr())
    }
}

/// The attention weights `softmax(q·kᵀ / √depth)` of `query` `[batch…, q_len, heads, depth]`
/// and `key` `[batch…, kv_len, heads, depth]`: shape `[batch…, heads, q_len, kv_len]`
/// (Flax's `dot_product_attention_weights(query, key)`).
pub fn dot_product_attention_weights(query: &Tensor, key: &Tensor) -> Result<Tensor> {
    dot_product_attention_weights_with(query, key, AttentionOptions::new())
}

/// [`dot_product_attention_weights`] with `options`: `bias` is added to the logits; where
/// `mask` is false (or 0) the logits are the dtype's lowest value; with `dropout`, weights
/// are dropped and rescaled. Computed in the promoted dtype of `query` and `key`, or `dtype`;
/// the product at `precision`.
pub fn dot_product_attention_weights_with(
    query: &Tensor,
    key: &Tensor,
    options: AttentionOptions,
) -> Result<Tensor> {
    let AttentionOptions { bias, mask, dropout, dtype, precision } = options;
    let (bias, mask, dropout) = (bias.as_ref(), mask.as_ref(), dropout.as_ref());
    check_qkv(query, key, None)?;
    // An undefined bias or mask is an error that says which (libtorch's would not).
    if let Some(bias) = bias {
        check_defined(bias, "the attention bias")?;
    }
    if let Some(mask) = mask {
        check_defined(mask, "the attention mask")?;
    }
    let kind = result_dtype(&[query, key], dtype)?;
    let (query, key) = (cast(query.shallow_clone(), kind)?, cast(key.shallow_clone(), kind)?);
    let depth = *query.size().last().unwrap_or(&1);
    let query = query.try_div_scalar((depth as f64).sqrt())?;
    let mut weights = with_precision(precision, || {
        Ok(Tensor::f_einsum("...qhd,...khd->...hqk", &[&query, &key], None::<&[i64]>)?)
    })?;
    if let Some(bias) = bias {
        weights = weights.f_add(bias)?;
    }
    if let Some(mask) = mask {
        let lowest = match kind {
            Kind::Double => f64::MIN,
            Kind::Half => -65504.0,
            Kind::BFloat16 => -3.389_531_389_251_535e38,
            _ => f64::from(f32::MIN),
        };
        weights = masked_fill(&weights, &mask.try_eq(0.0)?, lowest)?;
    }
    let mut weights = cast(weights.f_softmax(-1, weights.kind())?, kind)?;
    if let Some(d) = dropout.filter(|d| d.rate > 0.0) {
        let keep_prob = 1.0 - d.rate;
        let shape = weights.size();
        let mask_shape = if d.broadcast {
            let mut s = vec![1; key.dim() - 2];
            s.extend_from_slice(&shape[shape.len() - 2..]);
            s
        } else {
            shape
        };
        let keep = bernoulli(d.rng, keep_prob, &mask_shape, weights.device())?;
        let multiplier = keep.f_to_kind(kind)?.try_div_scalar(keep_prob)?;
        weights = weights.f_mul(&multiplier)?;
    }
    Ok(weights)
}

/// Attention of `query` over `key` and `value` (`[batch…, length, heads, depth]` each):
/// the weights of [`dot_product_attention_weights`] applied to `value`, shape `[batch…,
/// q_len, heads, v_depth]` (Flax's `dot_product_attention(query, key, value)`).
pub fn dot_product_attention(query: &Tensor, key: &Tensor, value: &Tensor) -> Result<Tensor> {
    dot_product_attention_with(query, key, value, AttentionOptions::new())
}

/// [`dot_product_attention`] with `options` (bias, mask, dropout and dtype, as
/// [`dot_product_attention_weights_with`] takes them; both products at `precision`).
pub fn dot_product_attention_with(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    options: AttentionOptions,
) -> Result<Tensor> {
    check_qkv(query, key, Some(value))?;
    let kind = result_dtype(&[query, key, value], options.dtype)?;
    let (query, key) = (cast(query.shallow_clone(), kind)?, cast(key.shallow_clone(), kind)?);
    let plain = options.bias.is_none() && options.mask.is_none();
    let precision = options.precision;
    let value = cast(value.shallow_clone(), kind)?;
    if plain && options.dropout.is_none_or(|d| d.rate <= 0.0) {
        if let Some(fused) = with_precision(precision, || fused_attention(&query, &key, &value))? {
            return Ok(fused);
        }
    }
    let weights = dot_product_attention_weights_with(&query, &key, options.dtype(kind))?;
    with_precision(precision, || {
        Ok(Tensor::f_einsum("...hqk,...khd->...qhd", &[&weights, &value], None::<&[i64]>)?)
    })
}

/// Plain attention (no bias, mask or dropout) on libtorch's fused
/// `scaled_dot_product_attention`, which computes Flax's `softmax(q·kᵀ / √depth)·v` in one
/// kernel (on CPU a blocked, flash-style kernel that never materializes the weights; its
/// online softmax differs from the two-einsum formula only by rounding, well inside the
/// golden tolerances), forward and backward. `None` where it does not apply: dtypes other
/// than `float32`/`float64` (Flax computes half-precision softmax in half precision, the kernel
/// accumulates in float) and empty inputs. Masks stay on Flax's formula because a fully masked
/// row there gets uniform weights over the dtype's lowest value, where the kernel's boolean
/// mask gives `-inf` logits; bias and dropout (drawn from Flax's key) stay too.
fn fused_attention(query: &Tensor, key: &Tensor, value: &Tensor) -> Result<Option<Tensor>> {
    let fits =
        [query, key, value].iter().all(|t| matches!(t.kind(), Kind::Float | Kind::Double) && t.numel() > 0);
    if !fits {
        return Ok(None);
    }
    // `[batch…, len, heads, depth]` -> `[batch, heads, len, depth]` (views of the projections).
    let heads_first = |t: &Tensor| -> Result<Tensor> {
        let s = t.size();
        Ok(t.f_reshape([-1, s[s.len() - 3], s[s.len() - 2], s[s.len() - 1]])?.f_transpose(1, 2)?)
    };
    let depth = *query.size().last().unwrap_or(&1);
    let y = Tensor::f_scaled_dot_product_attention(
        &heads_first(query)?,
        &heads_first(key)?,
        &heads_first(value)?,
        None::<Tensor>,
        0.0,
        false,
        1.0 / (depth as f64).sqrt(),
        false,
    )?;
    let mut shape = query.size();
    let last = shape.len() - 1;
    shape[last] = *value.size().last().unwrap_or(&1);
    Ok(Some(y.f_transpose(1, 2)?.f_reshape(shape)?))
}

/// The pairwise function of [`make_attention_mask_with`]: called with the query input
/// `[batch…, q_len, 1]` and the key input `[batch…, 1, kv_len]`.
pub type PairwiseFn = Arc<dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync>;

/// The keyword arguments of [`make_attention_mask_with`], Flax's defaults by [`Default`].
#[derive(Clone)]
pub struct AttentionMaskOptions {
    /// Combines query and key inputs (Flax's default `jnp.multiply`).
    pub pairwise_fn: PairwiseFn,
    /// The number of leading singleton axes added (Flax's default 0).
    pub extra_batch_dims: usize,
    /// The dtype of the mask (Flax's default float32).
    pub kind: Kind,
}

impl Default for AttentionMaskOptions {
    fn default() -> Self {
        AttentionMaskOptions {
            pairwise_fn: Arc::new(|a, b| Ok(a.f_mul(b)?)),
            extra_batch_dims: 0,
            kind: Kind::Float,
        }
    }
}

impl std::fmt::Debug for AttentionMaskOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttentionMaskOptions")
            .field("extra_batch_dims", &self.extra_batch_dims)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl AttentionMaskOptions {
    /// Flax's defaults: multiplication, no extra batch dims, float32.
    pub fn new() -> Self {
        Self::default()
    }

    /// Combines query and key inputs with `pairwise_fn` (for example `|a, b| Ok(a.f_ge_tensor(b)?)`).
    pub fn pairwise_fn(
        mut self,
        pairwise_fn: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static,
    ) -> Self {
        self.pairwise_fn = Arc::new(pairwise_fn);
        self
    }

    /// Adds `extra_batch_dims` leading singleton axes.
    pub fn extra_batch_dims(mut self, extra_batch_dims: usize) -> Self {
        self.extra_batch_dims = extra_batch_dims;
        self
    }

    /// Makes the mask in `kind` (Flax's `dtype`).
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }
}

/// A float32 mask `[batch…, 1, q_len, kv_len]` from `[batch…, q_len]` and `[batch…, kv_len]`
/// inputs: `query_input[…, :, None] · key_input[…, None, :]` (Flax's
/// `make_attention_mask(query_input, key_input)`; `make_attention_mask(&tokens.gt(0),
/// &tokens.gt(0))` masks padding).
pub fn make_attention_mask(query_input: &Tensor, key_input: &Tensor) -> Result<Tensor> {
    make_attention_mask_with(query_input, key_input, AttentionMaskOptions::new())
}

/// [`make_attention_mask`] combining the inputs with `options.pairwise_fn`, with
/// `extra_batch_dims` leading singleton axes, in `options.kind`.
pub fn make_attention_mask_with(
    query_input: &Tensor,
    key_input: &Tensor,
    options: AttentionMaskOptions,
) -> Result<Tensor> {
    let pairwise = (options.pairwise_fn)(&query_input.f_unsqueeze(-1)?, &key_input.f_unsqueeze(-2)?)?;
    let mut mask = pairwise.f_unsqueeze(-3)?;
    for _ in 0..options.extra_batch_dims {
        mask = mask.f_unsqueeze(0)?;
    }
    Ok(mask.f_to_kind(options.kind)?)
}

/// The float32 causal mask `[batch…, 1, len, len]` of a `[batch…, len]` input: position `i`
/// attends to positions `j <= i` (Flax's `make_causal_mask(x)`).
pub fn make_causal_mask(x: &Tensor) -> Result<Tensor> {
    make_causal_mask_with(x, AttentionMaskOptions::new())
}

/// [`make_causal_mask`] with `options`' `extra_batch_dims` and `kind` (Flax's keyword
/// arguments); its `pairwise_fn` is replaced by the causal comparison, as in Flax.
pub fn make_causal_mask_with(x: &Tensor, options: AttentionMaskOptions) -> Result<Tensor> {
    check_defined(x, "make_causal_mask's input")?;
    let len = *x
        .size()
        .last()
        .ok_or_else(|| Error::Value("make_causal_mask needs a [batch..., len] input".into()))?;
    let idxs = Tensor::try_arange(len, (Kind::Int, x.device()))?.f_expand(x.size(), false)?;
    make_attention_mask_with(&idxs, &idxs, options.pairwise_fn(|a, b| Ok(a.f_ge_tensor(b)?)))
}

/// The logical and of the given masks (all of one rank), as `float32` (Flax's default
/// dtype); `None` when none is given (Flax's `combine_masks`).
pub fn combine_masks(masks: &[Option<&Tensor>]) -> Result<Option<Tensor>> {
    combine_masks_with(masks, Kind::Float)
}

/// [`combine_masks`] in `kind` (Flax's `combine_masks(*masks, dtype=…)`).
pub fn combine_masks_with(masks: &[Option<&Tensor>], kind: Kind) -> Result<Option<Tensor>> {
    let given: Vec<&Tensor> = masks.iter().flatten().copied().collect();
    for mask in &given {
        check_defined(mask, "a mask")?;
    }
    let Some((first, rest)) = given.split_first() else { return Ok(None) };
    if rest.iter().any(|m| m.dim() != first.dim()) {
        let ranks: Vec<i64> = given.iter().map(|m| m.dim() as i64).collect();
        return Err(Error::Value(format!("masks must have same rank: {}", ranks.flax_repr())));
    }
    let mut mask = first.try_ne(0.0)?;
    for m in rest {
        mask = mask.f_logical_and(&m.try_ne(0.0)?)?;
    }
    Ok(Some(mask.f_to_kind(kind)?))
}

/// The attributes of both attention modules, borrowed from either, and what they do.
struct Attention<'a> {
    num_heads: i64,
    dtype: Option<Kind>,
    param_dtype: Kind,
    qkv_features: Option<i64>,
    out_features: Option<i64>,
    broadcast_dropout: bool,
    dropout_rate: f64,
    deterministic: Option<bool>,
    precision: Option<Precision>,
    kernel_init: &'a Init,
    bias_init: &'a Init,
    use_bias: bool,
    attention_fn: &'a AttentionFn,
    decode: bool,
}

/// The [`Attention`] of a module with Flax's attention attributes.
macro_rules! attention_of {
    ($m:expr) => {
        Attention {
            num_heads: $m.num_heads,
            dtype: $m.dtype,
            param_dtype: $m.param_dtype,
            qkv_features: $m.qkv_features,
            out_features: $m.out_features,
            broadcast_dropout: $m.broadcast_dropout,
            dropout_rate: $m.dropout_rate,
            deterministic: $m.deterministic,
            precision: $m.precision,
            kernel_init: &$m.kernel_init,
            bias_init: &$m.bias_init,
            use_bias: $m.use_bias,
            attention_fn: &$m.attention_fn,
            decode: $m.decode,
        }
    };
}

/// Multi-head dot-product attention (Flax's `nn.MultiHeadDotProductAttention`): `query`,
/// `key` and `value` projections (`DenseGeneral` submodules with those names, kernels
/// `(in_features, num_heads, head_dim)`), [`dot_product_attention`], and the `out`
/// projection (kernel `(num_heads, head_dim, features)`).
///
/// With `decode`, the layer keeps an autoregressive cache in the `cache` collection
/// (`cached_key`, `cached_value`, `cache_index`): `init` on a full-length input creates it,
/// then each call (with `cache` mutable) feeds one position, which attends to the positions
/// fed so far.
#[module]
pub struct MultiHeadDotProductAttention {
    /// The number of heads; `qkv_features` must be a multiple of it.
    pub num_heads: i64,
    /// The dtype of the computation (default: promoted from the inputs and params).
    #[module(default = None)]
    pub dtype: Option<Kind>,
    /// The dtype the params are stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
    /// The size of the query, key and value projections (default: the query features).
    #[module(default = None)]
    pub qkv_features: Option<i64>,
    /// The size of the output (default: the query features).
    #[module(default = None)]
    pub out_features: Option<i64>,
    /// Whether one dropout mask is shared across batch and heads.
    #[module(default = true)]
    pub broadcast_dropout: bool,
    /// The dropout rate of the attention weights.
    #[module(default = 0.0)]
    pub dropout_rate: f64,
    /// Whether to skip dropout (needed, once, only when `dropout_rate > 0`).
    #[module(default = None)]
    pub deterministic: Option<bool>,
    /// The float32 precision of the projections and attention products on CUDA (Flax's
    /// `precision`; default `None`: libtorch's setting). Changes nothing on CPU; see
    /// [`Precision`].
    #[module(default = None)]
    pub precision: Option<Precision>,
    /// Initializer of the projection kernels (default: `lecun_normal`).
    #[module(default = initializers::lecun_normal().into())]
    pub kernel_init: Init,
    /// Initializer of the projection biases (default: `zeros`).
    #[module(default = initializers::zeros().into())]
    pub bias_init: Init,
    /// Whether the projections have biases.
    #[module(default = true)]
    pub use_bias: bool,
    /// The attention itself (default: [`dot_product_attention_with`]).
    #[module(default = AttentionFn::default())]
    pub attention_fn: AttentionFn,
    /// Whether to use the autoregressive cache.
    #[module(default = false)]
    pub decode: bool,
}

#[module]
impl MultiHeadDotProductAttention {
    /// Attends from `inputs_q` `[batch…, q_len, features]` over `inputs_kv` `[batch…, kv_len,
    /// features]`; `mask` `[batch…, heads or 1, q_len, kv_len]` is false where attention is
    /// not allowed. Output `[batch…, q_len, out_features]`.
    #[compact]
    pub fn call(
        &self,
        cx: &mut Scope,
        inputs_q: &Tensor,
        inputs_kv: &Tensor,
        mask: Option<&Tensor>,
        deterministic: Option<bool>,
    ) -> Result<Tensor> {
        attention_of!(self).attend(cx, inputs_q, inputs_kv, mask, deterministic)
    }
}

impl Attention<'_> {
    /// Flax's `MultiHeadDotProductAttention.__call__`, in the calling module's scope.
    fn attend(
        &self,
        cx: &mut Scope<'_>,
        inputs_q: &Tensor,
        inputs_kv: &Tensor,
        mask: Option<&Tensor>,
        deterministic: Option<bool>,
    ) -> Result<Tensor> {
        let Some(&q_features) = inputs_q.size().last() else {
            return Err(shape_error(cx, "inputs_q must be [batch..., length, features], got a scalar"));
        };
        let features = self.out_features.unwrap_or(q_features);
        let qkv_features = self.qkv_features.unwrap_or(q_features);
        if self.num_heads <= 0 || qkv_features % self.num_heads != 0 {
            return Err(attribute_error(
                cx,
                format!(
                    "Memory dimension ({qkv_features}) must be divisible by number of heads ({}).",
                    self.num_heads
                ),
            ));
        }
        let head_dim = qkv_features / self.num_heads;
        let (query, mut key, mut value) = match self.fused_projections(cx, inputs_q, inputs_kv, head_dim)? {
            Some([query, key, value]) => (query, key, value),
            None => (
                self.projection("query", head_dim).call(cx, inputs_q)?,
                self.projection("key", head_dim).call(cx, inputs_kv)?,
                self.projection("value", head_dim).call(cx, inputs_kv)?,
            ),
        };
        let mut mask = mask.map(Tensor::shallow_clone);
        if self.decode {
            (key, value, mask) = self.use_cache(cx, &query, key, value, mask)?;
        }
        let dropout = self.dropout(cx, deterministic)?;
        let options =
            AttentionOptions { mask, dropout, dtype: self.dtype, precision: self.precision, bias: None };
        let x = self.attention_fn.call(&query, &key, &value, options)?;
        DenseGeneral::new(features)
            .axis([-2, -1])
            .kernel_init(self.kernel_init.clone())
            .bias_init(self.bias_init.clone())
            .use_bias(self.use_bias)
            .dtype(self.dtype)
            .param_dtype(self.param_dtype)
            .precision(self.precision)
            .name("out")
            .call(cx, &x)
    }

    /// The three projections as one product (`nn/fused_qkv.rs`), where the keys and values
    /// come from the query's own input and the computation is float32; `None` otherwise.
    fn fused_projections(
        &self,
        cx: &Scope<'_>,
        inputs_q: &Tensor,
        inputs_kv: &Tensor,
        head_dim: i64,
    ) -> Result<Option<[Tensor; 3]>> {
        if identity(inputs_q) != identity(inputs_kv) || self.dtype.is_some_and(|k| k != Kind::Float) {
            return Ok(None);
        }
        fused_qkv(cx, inputs_q, self.num_heads, head_dim, self.use_bias, self.precision)
    }

    /// The `DenseGeneral` projecting inputs to `(num_heads, head_dim)`.
    fn projection(&self, name: &'static str, head_dim: i64) -> DenseGeneral {
        DenseGeneral::new([self.num_heads, head_dim])
            .kernel_init(self.kernel_init.clone())
            .bias_init(self.bias_init.clone())
            .use_bias(self.use_bias)
            .dtype(self.dtype)
            .param_dtype(self.param_dtype)
            .precision(self.precision)
            .name(name)
    }

    /// The dropout of the attention weights: none unless `dropout_rate > 0` and not
    /// deterministic (then `deterministic` must be given once, and a `dropout` key is drawn).
    fn dropout(&self, cx: &mut Scope<'_>, deterministic: Option<bool>) -> Result<Option<AttentionDropout>> {
        if self.dropout_rate <= 0.0 || merge_param(cx, "deterministic", self.deterministic, deterministic)? {
            return Ok(None);
        }
        let rng = cx.make_rng("dropout")?;
        Ok(Some(AttentionDropout { rng, rate: self.dropout_rate, broadcast: self.broadcast_dropout }))
    }

    /// The autoregressive cache: created (zeros, index 0) when absent; otherwise the one
    /// position in `key`/`value` is written at the cache index, the index advances, and the
    /// mask lets the query see the positions written so far.
    fn use_cache(
        &self,
        cx: &mut Scope<'_>,
        query: &Tensor,
        key: Tensor,
        value: Tensor,
        mask: Option<Tensor>,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let is_initialized = cx.has_variable("cache", "cached_key");
        let zeros_like = |t: &Tensor| t.f_zeros_like();
        let (k0, v0) = (zeros_like(&key)?, zeros_like(&value)?);
        let cached_key = cx.variable("cache", "cached_key", |_| Ok(k0))?;
        let cached_value = cx.variable("cache", "cached_value", |_| Ok(v0))?;
        let cache_index = cx.variable("cache", "cache_index", |cx| {
            Ok(Tensor::f_zeros([0i64; 0], (Kind::Int, cx.device()))?)
        })?;
        if !is_initialized {
            return Ok((key, value, mask));
        }
        let (old_key, old_value) = (cached_key.value(cx)?, cached_value.value(cx)?);
        let shape = old_key.size();
        let rank = shape.len();
        let mut expected = shape[..rank - 3].to_vec();
        expected.extend([1, shape[rank - 2], shape[rank - 1]]);
        if query.size() != expected {
            return Err(shape_error(
                cx,
                format!(
                    "Autoregressive cache shape error, expected query shape {} instead got {}.",
                    expected.flax_repr(),
                    query.size().flax_repr()
                ),
            ));
        }
        let max_length = shape[rank - 3];
        if max_length == 0 {
            // Flax's dynamic_update_slice of one step into no steps fails too.
            return Err(shape_error(
                cx,
                "the autoregressive cache holds no steps (it was initialized with a length-0 input)",
            ));
        }
        let index = cache_index.value(cx)?;
        let cur = index.f_int64_value(&[])?;
        // lax.dynamic_update_slice clamps the start so that the update fits.
        let start = cur.clamp(0, max_length - 1);
        let time = rank as i64 - 3;
        let key = old_key.f_slice_scatter(&cast(key, old_key.kind())?, time, start, start + 1, 1)?;
        let value = old_value.f_slice_scatter(&cast(value, old_value.kind())?, time, start, start + 1, 1)?;
        cached_key.set_value(cx, key.shallow_clone())?;
        cached_value.set_value(cx, value.shallow_clone())?;
        cache_index.set_value(cx, index.try_add_scalar(1)?)?;
        let mut visible_shape = shape[..rank - 3].to_vec();
        visible_shape.extend([1, 1, max_length]);
        let visible = Tensor::try_arange(max_length, (Kind::Int64, key.device()))?
            .try_le(cur)?
            .f_expand(visible_shape, false)?;
        let mask = combine_masks(&[mask.as_ref(), Some(&visible)])?;
        Ok((key, value, mask))
    }
}

/// Self-attention (Flax's `nn.SelfAttention`): [`MultiHeadDotProductAttention`] with the
/// queries as keys and values. Same attributes and variables.
#[module]
pub struct SelfAttention {
    /// The number of heads; `qkv_features` must be a multiple of it.
    pub num_heads: i64,
    /// The dtype of the computation (default: promoted from the inputs and params).
    #[module(default = None)]
    pub dtype: Option<Kind>,
    /// The dtype the params are stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
    /// The size of the query, key and value projections (default: the input features).
    #[module(default = None)]
    pub qkv_features: Option<i64>,
    /// The size of the output (default: the input features).
    #[module(default = None)]
    pub out_features: Option<i64>,
    /// Whether one dropout mask is shared across batch and heads.
    #[module(default = true)]
    pub broadcast_dropout: bool,
    /// The dropout rate of the attention weights.
    #[module(default = 0.0)]
    pub dropout_rate: f64,
    /// Whether to skip dropout (needed, once, only when `dropout_rate > 0`).
    #[module(default = None)]
    pub deterministic: Option<bool>,
    /// The float32 precision of the projections and attention products on CUDA (Flax's
    /// `precision`; default `None`: libtorch's setting). Changes nothing on CPU; see
    /// [`Precision`].
    #[module(default = None)]
    pub precision: Option<Precision>,
    /// Initializer of the projection kernels (default: `lecun_normal`).
    #[module(default = initializers::lecun_normal().into())]
    pub kernel_init: Init,
    /// Initializer of the projection biases (default: `zeros`).
    #[module(default = initializers::zeros().into())]
    pub bias_init: Init,
    /// Whether the projections have biases.
    #[module(default = true)]
    pub use_bias: bool,
    /// The attention itself (default: [`dot_product_attention_with`]).
    #[module(default = AttentionFn::default())]
    pub attention_fn: AttentionFn,
    /// Whether to use the autoregressive cache.
    #[module(default = false)]
    pub decode: bool,
}

#[module]
impl SelfAttention {
    /// Self-attention over `inputs_q` `[batch…, length, features]`.
    #[compact]
    pub fn call(
        &self,
        cx: &mut Scope,
        inputs_q: &Tensor,
        mask: Option<&Tensor>,
        deterministic: Option<bool>,
    ) -> Result<Tensor> {
        attention_of!(self).attend(cx, inputs_q, inputs_q, mask, deterministic)
    }
}
