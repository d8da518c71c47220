//! Linear layers: `Dense` and `DenseGeneral`.

use crate::core::errors::{Error, Result};
use crate::core::repr::FlaxRepr;
use crate::core::rng::PRNGKey;
use crate::core::scope::Scope;
use crate::module;
use crate::nn::dims::Dims;
use crate::nn::dtypes::{cast, promote_types, result_dtype};
use crate::nn::initializers::{self, Init, Initializer};
use crate::nn::module_utils::{attribute_error, shape_error};
use crate::nn::packed_linear::packed_linear;
use crate::nn::precision::{with_precision, Precision};
use tch::{Device, Kind, Tensor};

/// A linear transformation applied over the last dimension of the input (Flax's `nn.Dense`):
/// `y = x @ kernel + bias`, with `kernel` of shape `(in_features, features)`. The input size
/// is inferred from the first call.
#[module]
pub struct Dense {
    /// The number of output features.
    pub features: i64,
    /// Whether to add a bias.
    #[module(default = true)]
    pub use_bias: bool,
    /// The dtype of the computation (default: inferred from inputs and params).
    #[module(default = None)]
    pub dtype: Option<Kind>,
    /// The dtype the params are stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
    /// The float32 precision of the layer's products on CUDA (Flax's `precision`; default
    /// `None`: libtorch's setting). Changes nothing on CPU, as in JAX; see [`Precision`].
    #[module(default = None)]
    pub precision: Option<Precision>,
    /// Initializer of the kernel (default: `lecun_normal`).
    #[module(default = initializers::lecun_normal().into())]
    pub kernel_init: Init,
    /// Initializer of the bias (default: `zeros`).
    #[module(default = initializers::zeros().into())]
    pub bias_init: Init,
}

#[module]
impl Dense {
    /// Applies the layer to `inputs` of shape `(..., in_features)`.
    #[compact]
    pub fn call(&self, cx: &mut Scope, inputs: &Tensor) -> Result<Tensor> {
        let shape = inputs.size();
        let in_features = *shape.last().ok_or_else(|| Error::Shape {
            scope: cx.path_text(),
            message: "Dense needs an input with at least one dimension, got a scalar".into(),
        })?;
        let kernel = cx.param_with_dtype(
            "kernel",
            &self.kernel_init,
            &[in_features, self.features],
            self.param_dtype,
        )?;
        let bias = if self.use_bias {
            Some(cx.param_with_dtype("bias", &self.bias_init, &[self.features], self.param_dtype)?)
        } else {
            None
        };
        if self.dtype.is_none() {
            // Fast path: inputs and params of one dtype need no promotion, and libtorch
            // refuses mixed dtypes, so only a failure pays for asking the dtypes.
            if let Ok(y) = with_precision(self.precision, || linear(inputs, &kernel, &kernel, bias.as_ref()))
            {
                return Ok(y);
            }
        }
        let (input_kind, kernel_kind) = (inputs.kind(), kernel.kind());
        let kind = self.dtype.unwrap_or_else(|| promote_types(input_kind, kernel_kind));
        let cast_inputs;
        let x = if input_kind == kind {
            inputs
        } else {
            cast_inputs = inputs.f_to_kind(kind)?;
            &cast_inputs
        };
        let cast_kernel =
            if kernel_kind == kind { kernel.shallow_clone() } else { kernel.f_to_kind(kind)? };
        let bias = bias.map(|b| cast(b, kind)).transpose()?;
        with_precision(self.precision, || linear(x, &kernel, &cast_kernel, bias.as_ref()))
    }
}

/// `x @ kernel + bias` over the last axis of `x` (of any rank) with a `(in, out)` kernel, as
/// one kernel launch: `addmm` on `x` viewed as a matrix (a view unless `x` is not
/// contiguous, when `matmul` would copy it too), `matmul` without a bias; or, where no
/// gradient is needed and the product is large, oneDNN's on a kernel packed once for the
/// param `param` (the tensor `kernel` is, or was cast or reshaped from; see
/// [`packed_linear`]).
pub(crate) fn linear(x: &Tensor, param: &Tensor, kernel: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let shape = x.size();
    let (lead, in_features) = shape.split_at(shape.len().saturating_sub(1));
    let matrix = match shape.len() {
        2 => x.shallow_clone(),
        _ => x.f_reshape([lead.iter().product(), in_features.iter().product()])?,
    };
    let y = match (packed_linear(&matrix, param, kernel, bias)?, bias) {
        (Some(y), _) => y,
        (None, Some(b)) => b.f_addmm(&matrix, kernel)?,
        (None, None) => matrix.f_matmul(kernel)?,
    };
    if shape.len() == 2 {
        return Ok(y);
    }
    let mut out_shape = lead.to_vec();
    out_shape.extend(&kernel.size()[1..]);
    Ok(y.f_reshape(out_shape)?)
}

/// An initializer run on a flat 2-D (or 1-D) shape and reshaped to the param's shape, as
/// `DenseGeneral` initializes its kernel (so fans are those of the flattened matrix).
struct Flattened<'a> {
    init: &'a Init,
    flat: Vec<i64>,
}

impl Initializer for Flattened<'_> {
    fn init(&self, key: PRNGKey, shape: &[i64], options: (Kind, Device)) -> Result<Tensor> {
        Ok(self.init.init(key, &self.flat, options)?.f_reshape(shape)?)
    }

    fn box_value(&self, value: crate::core::frozen_dict::Value) -> crate::core::frozen_dict::Value {
        self.init.box_value(value)
    }
}

/// A linear transformation contracting any input axes, with several output features and
/// batch axes (Flax's `nn.DenseGeneral`). The kernel is `batch_shape + contracted_shape +
/// features` and the bias `batch_shape + features`; both initializers see the flattened
/// shapes `(prod(batch) · prod(contracted), prod(features))` and `(prod(batch) ·
/// prod(features),)`. The output is `batch dims + remaining input dims + features`.
#[module]
pub struct DenseGeneral {
    /// The output features: an int or a tuple of them.
    pub features: Dims,
    /// The axes to contract (negative ones count from the end).
    #[module(default = Dims::Int(-1))]
    pub axis: Dims,
    /// Batch axes with a kernel of their own each; must be `0, 1, …` (leading).
    #[module(default = Vec::new())]
    pub batch_dims: Vec<i64>,
    /// Whether to add a bias.
    #[module(default = true)]
    pub use_bias: bool,
    /// The dtype of the computation (default: promoted from the inputs and params).
    #[module(default = None)]
    pub dtype: Option<Kind>,
    /// The dtype the params are stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
    /// Initializer of the kernel (default: `lecun_normal`, on the flattened shape).
    #[module(default = initializers::lecun_normal().into())]
    pub kernel_init: Init,
    /// Initializer of the bias (default: `zeros`).
    #[module(default = initializers::zeros().into())]
    pub bias_init: Init,
    /// The float32 precision of the layer's products on CUDA (Flax's `precision`; default
    /// `None`: libtorch's setting). Changes nothing on CPU, as in JAX; see [`Precision`].
    #[module(default = None)]
    pub precision: Option<Precision>,
}

#[module]
impl DenseGeneral {
    /// Applies the transformation to `inputs`.
    #[compact]
    pub fn call(&self, cx: &mut Scope, inputs: &Tensor) -> Result<Tensor> {
        let shape = inputs.size();
        let (axis, batch_dims) = self.axes(cx, &shape)?;
        let features = self.features.to_tuple();
        let batch_shape: Vec<i64> = batch_dims.iter().map(|&d| shape[d]).collect();
        let contracted: Vec<i64> = axis.iter().map(|&d| shape[d]).collect();
        let (n_batch, n_contracted, n_features): (i64, i64, i64) =
            (batch_shape.iter().product(), contracted.iter().product(), features.iter().product());
        let kernel_shape = [batch_shape.as_slice(), &contracted, &features].concat();
        let flat_kernel =
            Flattened { init: &self.kernel_init, flat: vec![n_batch * n_contracted, n_features] };
        let kernel = cx.param_with_dtype("kernel", flat_kernel, &kernel_shape, self.param_dtype)?;
        let bias = if self.use_bias {
            let flat_bias = Flattened { init: &self.bias_init, flat: vec![n_batch * n_features] };
            let bias_shape = [batch_shape.as_slice(), &features].concat();
            Some(cx.param_with_dtype("bias", flat_bias, &bias_shape, self.param_dtype)?)
        } else {
            None
        };
        let kind = match &bias {
            Some(b) => result_dtype(&[inputs, &kernel, b], self.dtype)?,
            None => result_dtype(&[inputs, &kernel], self.dtype)?,
        };
        // Input as (batch, free, contracted), kernel as (batch, contracted, features).
        let free: Vec<usize> =
            (0..shape.len()).filter(|d| !axis.contains(d) && !batch_dims.contains(d)).collect();
        let order: Vec<i64> = batch_dims.iter().chain(&free).chain(&axis).map(|&d| d as i64).collect();
        let free_shape: Vec<i64> = free.iter().map(|&d| shape[d]).collect();
        let n_free: i64 = free_shape.iter().product();
        let x = cast(inputs.shallow_clone(), kind)?.f_permute(order)?;
        let out_shape = [batch_shape.as_slice(), &free_shape, &features].concat();
        if batch_dims.is_empty() {
            // One matrix product with the bias fused in (attention's projections).
            let x = x.f_reshape([n_free, n_contracted])?;
            let k = cast(kernel.shallow_clone(), kind)?.f_reshape([n_contracted, n_features])?;
            let b = match bias {
                Some(b) => Some(cast(b, kind)?.f_reshape([n_features])?),
                None => None,
            };
            let y = with_precision(self.precision, || linear(&x, &kernel, &k, b.as_ref()))?;
            return Ok(y.f_reshape(out_shape)?);
        }
        let x = x.f_reshape([n_batch, n_free, n_contracted])?;
        let k = cast(kernel, kind)?.f_reshape([n_batch, n_contracted, n_features])?;
        let y = with_precision(self.precision, || Ok(x.f_matmul(&k)?))?.f_reshape(out_shape)?;
        match bias {
            // The bias broadcasts over the free dims: batch dims, then ones, then features.
            Some(b) => {
                let expanded = [batch_shape.as_slice(), &vec![1; free.len()], &features].concat();
                Ok(y.f_add(&cast(b, kind)?.f_reshape(expanded)?)?)
            }
            None => Ok(y),
        }
    }
}

impl DenseGeneral {
    /// The contracted axes and the batch axes, normalised and checked against the input's rank.
    fn axes(&self, cx: &Scope<'_>, shape: &[i64]) -> Result<(Vec<usize>, Vec<usize>)> {
        let mut batch_sorted = self.batch_dims.clone();
        batch_sorted.sort_unstable();
        batch_sorted.dedup();
        if batch_sorted.iter().enumerate().any(|(i, &d)| d != i as i64) {
            return Err(attribute_error(
                cx,
                format!(
                    "batch_dims {} must be consecutive leading dimensions starting from 0.",
                    self.batch_dims.flax_repr()
                ),
            ));
        }
        let rank = shape.len() as i64;
        let normalise = |axes: &[i64]| -> Result<Vec<usize>> {
            let mut out = Vec::with_capacity(axes.len());
            for &a in axes {
                let d = if a < 0 { a + rank } else { a };
                if !(0..rank).contains(&d) {
                    return Err(shape_error(
                        cx,
                        format!("axis {a} is out of range for inputs of shape {}", shape.flax_repr()),
                    ));
                }
                out.push(d as usize);
            }
            out.sort_unstable();
            Ok(out)
        };
        let axis = normalise(&self.axis.to_tuple())?;
        let batch = normalise(&batch_sorted)?;
        if axis.iter().any(|a| batch.contains(a)) || axis.windows(2).any(|w| w[0] == w[1]) {
            return Err(attribute_error(
                cx,
                format!(
                    "axis {} must name distinct axes outside batch_dims {}",
                    self.axis.flax_repr(),
                    self.batch_dims.flax_repr()
                ),
            ));
        }
        Ok((axis, batch))
    }
}
