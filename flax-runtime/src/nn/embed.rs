//! `Embed`: an embedding table, looked up by integer ids and attended over by queries.

use crate::core::errors::Result;
use crate::core::frozen_dict::dtype_name;
use crate::core::repr::FlaxRepr;
use crate::core::scalar_ops::ScalarOps;
use crate::core::scope::Scope;
use crate::core::tensor_checks::masked_fill;
use crate::module;
use crate::nn::dtypes::{cast, result_dtype};
use crate::nn::initializers::{self, Distribution, FanMode, Init, VarianceScaling};
use crate::nn::module_utils::shape_error;
use tch::{Kind, Tensor};

/// Flax's `default_embed_init`: `variance_scaling(1.0, 'fan_in', 'normal', out_axis=0)`,
/// which for a `(num_embeddings, features)` table is `N(0, 1 / features)`.
pub fn default_embed_init() -> VarianceScaling {
    initializers::variance_scaling(1.0, FanMode::FanIn, Distribution::Normal).out_axis(0)
}

/// A table of `num_embeddings` vectors of `features` entries (Flax's `nn.Embed`), param
/// `embedding` of shape `(num_embeddings, features)`. `call` maps integer ids of any shape
/// to their vectors (output shape: the input's plus `features`); `attend` scores queries
/// against every vector (weight tying of an output layer).
///
/// Ids index as `jnp.take` does: negative ids count from the end, ids out of range give
/// NaN vectors (of a floating table). A table of one vector is broadcast to every id, whatever its value.
#[module]
pub struct Embed {
    /// The number of vectors (the vocabulary size).
    pub num_embeddings: i64,
    /// The size of each vector.
    pub features: i64,
    /// The dtype of the looked-up vectors (default: the table's).
    #[module(default = None)]
    pub dtype: Option<Kind>,
    /// The dtype the table is stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
    /// Initializer of the table (default: [`default_embed_init`]).
    #[module(default = default_embed_init().into())]
    pub embedding_init: Init,
}

#[module]
impl Embed {
    /// The vectors of the integer ids `inputs`, shape `inputs.shape + (features,)`.
    #[compact]
    pub fn call(&self, cx: &mut Scope, inputs: &Tensor) -> Result<Tensor> {
        if inputs.is_floating_point()
            || matches!(inputs.kind(), Kind::Bool | Kind::ComplexFloat | Kind::ComplexDouble)
        {
            return Err(shape_error(
                cx,
                format!(
                    "Input type must be an integer or unsigned integer; got {}{}",
                    dtype_name(inputs.kind()),
                    inputs.size().flax_repr()
                ),
            ));
        }
        let embedding = self.embedding(cx)?;
        // promote_dtype(embedding, dtype, inexact=False): only an explicit dtype changes it.
        let embedding = match self.dtype {
            Some(kind) => cast(embedding, kind)?,
            None => embedding,
        };
        let mut out_shape = inputs.size();
        out_shape.push(self.features);
        if self.num_embeddings == 1 {
            return Ok(embedding.f_broadcast_to(out_shape)?);
        }
        take(&embedding, inputs, &out_shape)
    }

    /// The dot product of `query` `(…, features)` with every vector: `(…, num_embeddings)`.
    pub fn attend(&self, cx: &mut Scope, query: &Tensor) -> Result<Tensor> {
        if query.size().last() != Some(&self.features) {
            return Err(shape_error(
                cx,
                format!(
                    "attend needs queries of shape (..., {}), got {}",
                    self.features,
                    query.size().flax_repr()
                ),
            ));
        }
        let embedding = self.embedding(cx)?;
        let kind = result_dtype(&[query, &embedding], self.dtype)?;
        Ok(cast(query.shallow_clone(), kind)?.f_matmul(&cast(embedding, kind)?.f_transpose(0, 1)?)?)
    }
}

impl Embed {
    /// The table, declared by whichever method runs first (Flax declares it in `setup`).
    fn embedding(&self, cx: &mut Scope<'_>) -> Result<Tensor> {
        cx.param_with_dtype(
            "embedding",
            &self.embedding_init,
            &[self.num_embeddings, self.features],
            self.param_dtype,
        )
    }
}

/// `jnp.take(table, ids, axis=0)` with JAX's defaults (`mode='fill'`): negative ids count
/// from the end, ids still out of range give rows of the fill value.
///
/// Ids on the CPU are first looked up by libtorch's `embedding`, the kernel PyTorch's
/// `nn.Embedding` runs, which checks every id as it reads it and refuses the call when one is
/// outside `0..n` (no separate pass over the ids); refused ids, and ids on other devices
/// (where the refusal would come from the device asynchronously), are looked up by wrapping,
/// `index_select` and a mask.
fn take(table: &Tensor, ids: &Tensor, out_shape: &[i64]) -> Result<Tensor> {
    let n = table.size()[0];
    let ids = match ids.kind() {
        Kind::Int64 | Kind::Int => ids.shallow_clone(),
        _ => ids.f_to_kind(Kind::Int64)?,
    };
    if ids.device() == tch::Device::Cpu && table.device() == tch::Device::Cpu {
        if let Ok(rows) = Tensor::f_embedding(table, &ids, -1, false, false) {
            return Ok(rows);
        }
    }
    let ids = ids.f_to_kind(Kind::Int64)?.f_flatten(0, -1)?;
    let wrapped = ids.f_add(&ids.try_lt(0)?.f_to_kind(Kind::Int64)?.try_mul_scalar(n)?)?;
    let valid = wrapped.try_ge(0)?.f_logical_and(&wrapped.try_lt(n)?)?;
    let rows = table.f_index_select(0, &wrapped.try_where_scalarother(&valid, 0)?)?;
    let rows = masked_fill(&rows, &valid.f_logical_not()?.f_unsqueeze(-1)?, fill_value(table.kind()))?;
    Ok(rows.f_reshape(out_shape)?)
}

/// `jnp.take`'s default fill value: NaN for floats, the most negative value of signed ints,
/// the largest of unsigned ones, `True` for booleans.
fn fill_value(kind: Kind) -> f64 {
    match kind {
        Kind::Uint8 => f64::from(u8::MAX),
        Kind::Int8 => f64::from(i8::MIN),
        Kind::Int16 => f64::from(i16::MIN),
        Kind::Int => f64::from(i32::MIN),
        Kind::Int64 => i64::MIN as f64,
        Kind::Bool => 1.0,
        _ => f64::NAN,
    }
}
