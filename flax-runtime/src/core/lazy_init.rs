//! Flax's `Module.lazy_init`: variables from inputs of which only the shape and dtype are known.
//!
//! JAX evaluates such an `init` abstractly and computes only the variables. Eager libtorch has
//! no abstract evaluation (its `meta` device is not reachable through `tch`), so here the
//! module runs on placeholders: tensors of the right shape and dtype that hold one value,
//! broadcast (nothing the size of the input is allocated), NaN for floating dtypes. A variable
//! computed from a placeholder's values then holds NaN, and is refused as Flax refuses it
//! (`LazyInitError`). What this does not save is the forward pass's arithmetic.

use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{FrozenDict, Value, Variables};
use tch::{Device, Kind, Tensor};

/// The shape and dtype of an input, without its values (JAX's `jax.ShapeDtypeStruct`).
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeDtypeStruct {
    /// The shape.
    pub shape: Vec<i64>,
    /// The dtype.
    pub dtype: Kind,
}

impl ShapeDtypeStruct {
    /// An input of `shape` and `dtype`.
    pub fn new(shape: impl Into<Vec<i64>>, dtype: Kind) -> Self {
        ShapeDtypeStruct { shape: shape.into(), dtype }
    }

    /// The placeholder tensor `lazy_init` takes for this input, on the CPU.
    pub fn placeholder(&self) -> Tensor {
        self.placeholder_on(Device::Cpu)
    }

    /// The placeholder on `device`: one value broadcast to the shape, NaN for floating and
    /// complex dtypes (so that a variable computed from it is detected), zero otherwise.
    pub fn placeholder_on(&self, device: Device) -> Tensor {
        let zero = Tensor::zeros([], (self.dtype, device));
        let value = if is_inexact(&zero) { zero.full_like(f64::NAN) } else { zero };
        value.expand(self.shape.as_slice(), false)
    }
}

/// Runs `init` (an `init` on placeholders) without recording gradients and refuses variables
/// that depend on a placeholder's values. Generated `lazy_init` methods call this.
pub fn lazy_init(init: impl FnOnce() -> Result<Variables>) -> Result<Variables> {
    let variables = tch::no_grad(init)?;
    if let Some(path) = first_nan(&variables, &mut Vec::new()) {
        return Err(Error::LazyInit { path });
    }
    Ok(variables)
}

/// The path of the first variable holding a NaN.
fn first_nan<'a>(dict: &'a FrozenDict, path: &mut Vec<&'a str>) -> Option<String> {
    for (key, value) in dict.iter() {
        path.push(key);
        let found = match value {
            Value::Dict(d) => first_nan(d, path),
            Value::Tensor(t) if holds_nan(t) => Some(path.join("/")),
            _ => None,
        };
        path.pop();
        if found.is_some() {
            return found;
        }
    }
    None
}

fn holds_nan(t: &Tensor) -> bool {
    is_inexact(t) && t.isnan().any().int64_value(&[]) != 0
}

/// Whether `t` can hold a NaN (a floating or complex dtype).
fn is_inexact(t: &Tensor) -> bool {
    t.is_floating_point() || t.is_complex()
}
