//! Flax's dtype policy: params are stored in `param_dtype`; computation runs in `dtype` when
//! given, else in the promoted dtype of the inputs and params (`promote_dtype`).

use crate::core::errors::Result;
use tch::{Kind, Tensor};

/// The dtype a layer computes in: `dtype` if given, else the promotion of all `tensors`.
pub fn result_dtype(tensors: &[&Tensor], dtype: Option<Kind>) -> Result<Kind> {
    if let Some(kind) = dtype {
        return Ok(kind);
    }
    let mut kind = tensors.first().map_or(Kind::Float, |t| t.kind());
    for t in tensors.iter().skip(1) {
        kind = promote_types(kind, t.kind());
    }
    Ok(kind)
}

/// The dtype two dtypes promote to (`jnp.promote_types`).
pub fn promote_types(a: Kind, b: Kind) -> Kind {
    if a == b {
        return a;
    }
    // libtorch's promotion agrees with jnp.promote_types for the float and int kinds a layer
    // sees; one-element probes keep this exact without a table of our own.
    let x = Tensor::zeros([1], (a, tch::Device::Cpu));
    let y = Tensor::zeros([1], (b, tch::Device::Cpu));
    x.f_add(&y).map_or(a, |z| z.kind())
}

/// Casts `tensor` to `kind` unless it already has it (then it is returned as is).
pub fn cast(tensor: Tensor, kind: Kind) -> Result<Tensor> {
    if tensor.kind() == kind {
        Ok(tensor)
    } else {
        Ok(tensor.f_to_kind(kind)?)
    }
}
