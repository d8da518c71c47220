//! Layers, initializers and the dtype policy (Flax's `flax.linen` layer library).
//!
//! Layers are re-exported here under their Flax names (`nn::Conv`, `nn::Dense`, …), as
//! `flax.linen` exports them.
//!
//! Functions with keyword arguments in Flax come in two forms, as `apply` and `apply_with` do:
//! the short one with Flax's defaults (`nn::one_hot(&labels, 10)?`, `nn::avg_pool(&x, [2,
//! 2])?`, `nn::make_causal_mask(&x)?`), and a `_with` one taking an options struct whose
//! `Default` is Flax's defaults and whose builder setters are Flax's keywords
//! (`nn::avg_pool_with(&x, [2, 2], nn::PoolOptions::new().strides([2, 2]))?`,
//! `nn::logsumexp_with(&x, nn::LogsumexpOptions::new().axis(-1))?`). A function with one
//! keyword takes its value in the `_with` form (`nn::gelu(&x)?` is Flax's `nn.gelu(x)`,
//! `nn::gelu_with(&x, false)?` its `approximate=False`; `leaky_relu_with`, `elu_with`,
//! `celu_with`, `glu_with`, `combine_masks_with` likewise).

pub mod activation;
pub mod attention;
pub mod combinators;
pub mod conv;
pub mod conv_mask;
pub mod conv_transpose;
pub mod dims;
pub mod dtypes;
pub mod embed;
mod empty_windows;
mod fused_qkv;
mod fused_rnn;
pub mod initializers;
mod lax_conv;
pub mod linear;
mod loop_invariant;
mod module_utils;
pub mod normalization;
pub mod packed_linear;
pub mod padding;
pub mod pooling;
pub mod precision;
pub mod recurrent;
pub mod rnn;
pub mod spmd;
pub mod stochastic;

pub use activation::{
    celu, celu_with, elu, elu_with, gelu, gelu_with, glu, glu_with, hard_sigmoid, hard_silu, hard_swish,
    hard_tanh, leaky_relu, leaky_relu_with, log_sigmoid, log_softmax, log_softmax_with, logsumexp,
    logsumexp_with, logsumexp_with_sign, one_hot, one_hot_with, relu, relu6, selu, sigmoid, silu, soft_sign,
    softmax, softmax_with, softplus, standardize, standardize_with, swish, tanh, LogsumexpOptions,
    OneHotOptions, PReLU, SoftmaxOptions, StandardizeOptions,
};
pub use attention::{
    combine_masks, combine_masks_with, dot_product_attention, dot_product_attention_weights,
    dot_product_attention_weights_with, dot_product_attention_with, make_attention_mask,
    make_attention_mask_with, make_causal_mask, make_causal_mask_with, AttentionDropout, AttentionFn,
    AttentionFnBody, AttentionMaskOptions, AttentionOptions, MultiHeadDotProductAttention, PairwiseFn,
    SelfAttention,
};
pub use combinators::{layer, Args, CallArgs, FromArg, IntoLayer, Layer, LayerOutput, Sequential};
pub use conv::{Conv, ConvLocal};
pub use conv_mask::Mask;
pub use conv_transpose::ConvTranspose;
pub use dims::Dims;
pub use embed::Embed;
pub use linear::{Dense, DenseGeneral};
pub use module_utils::merge_param;
pub use normalization::{BatchNorm, GroupNorm, LayerNorm, RMSNorm};
pub use packed_linear::clear_packed_weights;
pub use padding::Padding;
pub use pooling::{
    avg_pool, avg_pool_with, max_pool, max_pool_with, min_pool, min_pool_with, pool, PoolOptions,
};
pub use precision::Precision;
pub use recurrent::{ConvLSTMCell, GRUCell, LSTMCell, OptimizedLSTMCell};
pub use rnn::{
    flip_sequences, fused_run_count, Bidirectional, FusedCell, RNNCellBase, SplitRngs, VariableAxes, RNN,
};
pub use spmd::{
    get_logical_axis_rules, get_partition_spec, logical_axis_rules, logical_to_mesh, logical_to_mesh_axes,
    logical_to_mesh_axes_with, logical_to_mesh_with, set_logical_axis_rules, with_logical_constraint,
    with_logical_partitioning, with_partitioning, LogicallyPartitioned, Partitioned, PARTITION_NAME,
};
pub use stochastic::Dropout;
// Flax's `nn.scan`, `nn.cond`, …: the lifted transforms, under the names Flax gives them in `nn`.
pub use crate::transforms::{
    checkpoint, cond, custom_vjp, jit, jvp, map_variables, remat, remat_scan, scan, scan_fn, switch, vjp,
    vjp_with, vmap, vmap_fn, while_loop, Branch, CustomVjp, Jit, MapVariables, Remat, RematPolicy, RematScan,
    Scan, ScanOptions, TransFn, VjpFn, Vmap, VmapOptions, WhileLoopOptions,
};
