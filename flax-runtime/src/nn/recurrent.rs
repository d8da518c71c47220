//! Recurrent cells (Flax's `flax.linen.recurrent`): `LSTMCell`, `OptimizedLSTMCell`,
//! `GRUCell`, `ConvLSTMCell`, and their `initialize_carry`.
//!
//! The spec's Flax 0.6.10 API: cells have no `features` attribute (the hidden size is the
//! carry's last dimension) and `initialize_carry(rng, batch_dims, size, init_fn)` is a
//! function of the cell type; here it also takes the device. Flax 0.12 moved the size into a
//! `features` attribute; parameters and numerics are the same.

use crate::core::errors::Result;
use crate::core::repr::FlaxRepr;
use crate::core::rng::PRNGKey;
use crate::core::scalar_ops::ScalarOps;
use crate::core::scope::Scope;
use crate::module;
use crate::nn::activation::{sigmoid, tanh};
use crate::nn::conv::Conv;
use crate::nn::dims::Dims;
use crate::nn::dtypes::{cast, result_dtype};
use crate::nn::initializers::{self, Init, Initializer};
use crate::nn::linear::Dense;
use crate::nn::loop_invariant;
use crate::nn::module_utils::shape_error;
use crate::nn::padding::Padding;
use crate::nn::rnn::{vector_carry_shape, FusedCell, RNNCellBase};
use tch::{Device, Kind, Tensor};

/// An activation function held by a cell (`gate_fn`, `activation_fn`).
pub type ActivationFn = fn(&Tensor) -> Result<Tensor>;

impl FlaxRepr for ActivationFn {
    fn flax_repr(&self) -> String {
        "<function>".to_owned()
    }
}

/// Whether a cell with these functions and dtype computes exactly what libtorch's fused
/// operator does: Flax's defaults, `sigmoid` gates and `tanh` activation, no `dtype`.
fn default_functions(gate_fn: ActivationFn, activation_fn: ActivationFn, dtype: Option<Kind>) -> bool {
    std::ptr::fn_addr_eq(gate_fn, sigmoid as ActivationFn)
        && std::ptr::fn_addr_eq(activation_fn, tanh as ActivationFn)
        && dtype.is_none()
}

/// `(init_fn(key1, shape), init_fn(key2, shape))` with `key1, key2 = split(rng)`: an LSTM
/// carry `(c, h)` as Flax's `initialize_carry` draws it, in float32.
fn two_part_carry(
    rng: PRNGKey,
    shape: &[i64],
    init_fn: &impl Initializer,
    device: Device,
) -> Result<(Tensor, Tensor)> {
    let keys = rng.split(2);
    let c = init_fn.init(keys[0], shape, (Kind::Float, device))?;
    let h = init_fn.init(keys[1], shape, (Kind::Float, device))?;
    Ok((c, h))
}

/// The hidden size: the last dimension of `h`.
fn hidden_size(cx: &Scope<'_>, cell: &str, h: &Tensor) -> Result<i64> {
    h.size()
        .last()
        .copied()
        .ok_or_else(|| shape_error(cx, format!("{cell} needs a carry of shape (..., hidden), got a scalar")))
}

/// A long short-term memory cell (Flax's `nn.LSTMCell`), carry `(c, h)`:
/// `i = σ(W_ii x + W_hi h + b_hi)`, `f`, `g` (with `activation_fn`) and `o` alike, `c' = f·c +
/// i·g`, `h' = o·tanh(c')`; returns `((c', h'), h')`. Eight `Dense` submodules: `ii`, `if`,
/// `ig`, `io` on the input (no bias) and `hi`, `hf`, `hg`, `ho` on `h` (with bias).
#[module]
pub struct LSTMCell {
    /// The gates' activation (default: `sigmoid`).
    #[module(default = sigmoid, exact)]
    pub gate_fn: ActivationFn,
    /// The activation of the candidate and of the output (default: `tanh`).
    #[module(default = tanh, exact)]
    pub activation_fn: ActivationFn,
    /// Initializer of the input kernels (default: `lecun_normal`).
    #[module(default = initializers::lecun_normal().into())]
    pub kernel_init: Init,
    /// Initializer of the recurrent kernels (default: `orthogonal`).
    #[module(default = initializers::orthogonal(1.0).into())]
    pub recurrent_kernel_init: Init,
    /// Initializer of the biases (default: `zeros`).
    #[module(default = initializers::zeros().into())]
    pub bias_init: Init,
    /// The dtype of the computation (default: promoted from the inputs and params).
    #[module(default = None)]
    pub dtype: Option<Kind>,
    /// The dtype the params are stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
}

#[module]
impl LSTMCell {
    /// One step: `carry = (c, h)` and `inputs` `(..., features)` (leading dims are batch dims).
    #[compact]
    pub fn call(
        &self,
        cx: &mut Scope,
        carry: &(Tensor, Tensor),
        inputs: &Tensor,
    ) -> Result<((Tensor, Tensor), Tensor)> {
        let (c, h) = carry;
        let hidden = hidden_size(cx, "LSTMCell", h)?;
        let dense_i = |name: &'static str| {
            Dense::new(hidden)
                .use_bias(false)
                .kernel_init(self.kernel_init.clone())
                .dtype(self.dtype)
                .param_dtype(self.param_dtype)
                .name(name)
        };
        let dense_h = |name: &'static str| {
            Dense::new(hidden)
                .kernel_init(self.recurrent_kernel_init.clone())
                .bias_init(self.bias_init.clone())
                .dtype(self.dtype)
                .param_dtype(self.param_dtype)
                .name(name)
        };
        let gate =
            |cx: &mut Scope<'_>, i: &'static str, hn: &'static str, f: ActivationFn| -> Result<Tensor> {
                f(&dense_i(i).call(cx, inputs)?.f_add(&dense_h(hn).call(cx, h)?)?)
            };
        let i = gate(cx, "ii", "hi", self.gate_fn)?;
        let f = gate(cx, "if", "hf", self.gate_fn)?;
        let g = gate(cx, "ig", "hg", self.activation_fn)?;
        let o = gate(cx, "io", "ho", self.gate_fn)?;
        lstm_update(c, (&i, &f, &g, &o), self.activation_fn)
    }
}

/// `c' = f·c + i·g`, `h' = o·act(c')`: `((c', h'), h')`.
fn lstm_update(
    c: &Tensor,
    (i, f, g, o): (&Tensor, &Tensor, &Tensor, &Tensor),
    activation_fn: ActivationFn,
) -> Result<((Tensor, Tensor), Tensor)> {
    let new_c = f.f_mul(c)?.f_add(&i.f_mul(g)?)?;
    let new_h = o.f_mul(&activation_fn(&new_c)?)?;
    Ok(((new_c, new_h.shallow_clone()), new_h))
}

impl LSTMCell {
    /// The initial carry `(c, h)` of shape `batch_dims + (size,)` (Flax's static
    /// `initialize_carry(rng, batch_dims, size, init_fn)`; `init_fn` is usually `zeros()`).
    pub fn initialize_carry(
        rng: PRNGKey,
        batch_dims: &[i64],
        size: i64,
        init_fn: &impl Initializer,
        device: Device,
    ) -> Result<(Tensor, Tensor)> {
        two_part_carry(rng, &[batch_dims, &[size]].concat(), init_fn, device)
    }
}

/// The params of a `Dense` layer without the layer (Flax's `DenseParams`): `OptimizedLSTMCell`
/// declares its params through it so that they match `LSTMCell`'s.
#[module]
pub struct DenseParams {
    /// The number of output features.
    pub features: i64,
    /// Whether there is a bias.
    #[module(default = true)]
    pub use_bias: bool,
    /// The dtype the params are stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
    /// Initializer of the kernel.
    #[module(default = initializers::lecun_normal().into())]
    pub kernel_init: Init,
    /// Initializer of the bias.
    #[module(default = initializers::zeros().into())]
    pub bias_init: Init,
}

#[module]
impl DenseParams {
    /// `(kernel (in, features), bias (features,) if use_bias)` for `inputs` `(..., in)`.
    #[compact]
    pub fn call(&self, cx: &mut Scope, inputs: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let in_features = hidden_size(cx, "DenseParams", inputs)?;
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
        Ok((kernel, bias))
    }
}

/// [`LSTMCell`] computing the four gates with one matrix product for the input and one for
/// `h` (Flax's `nn.OptimizedLSTMCell`); same params, same results, usually faster for hidden
/// sizes up to about 2048.
#[module]
pub struct OptimizedLSTMCell {
    /// The gates' activation (default: `sigmoid`).
    #[module(default = sigmoid, exact)]
    pub gate_fn: ActivationFn,
    /// The activation of the candidate and of the output (default: `tanh`).
    #[module(default = tanh, exact)]
    pub activation_fn: ActivationFn,
    /// Initializer of the input kernels (default: `lecun_normal`).
    #[module(default = initializers::lecun_normal().into())]
    pub kernel_init: Init,
    /// Initializer of the recurrent kernels (default: `orthogonal`).
    #[module(default = initializers::orthogonal(1.0).into())]
    pub recurrent_kernel_init: Init,
    /// Initializer of the biases (default: `zeros`).
    #[module(default = initializers::zeros().into())]
    pub bias_init: Init,
    /// The dtype of the computation (default: promoted from the inputs and params).
    #[module(default = None)]
    pub dtype: Option<Kind>,
    /// The dtype the params are stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
}

#[module]
impl OptimizedLSTMCell {
    /// One step, as [`LSTMCell::call`].
    #[compact]
    pub fn call(
        &self,
        cx: &mut Scope,
        carry: &(Tensor, Tensor),
        inputs: &Tensor,
    ) -> Result<((Tensor, Tensor), Tensor)> {
        let (c, h) = carry;
        let hidden = hidden_size(cx, "OptimizedLSTMCell", h)?;
        let mut input_params = Vec::with_capacity(4);
        let mut hidden_params = Vec::with_capacity(4);
        for (i_name, h_name) in [("ii", "hi"), ("if", "hf"), ("ig", "hg"), ("io", "ho")] {
            let dense_i = DenseParams::new(hidden)
                .use_bias(false)
                .param_dtype(self.param_dtype)
                .kernel_init(self.kernel_init.clone())
                .bias_init(self.bias_init.clone())
                .name(i_name);
            input_params.push(dense_i.call(cx, inputs)?);
            let dense_h = DenseParams::new(hidden)
                .param_dtype(self.param_dtype)
                .kernel_init(self.recurrent_kernel_init.clone())
                .bias_init(self.bias_init.clone())
                .name(h_name);
            hidden_params.push(dense_h.call(cx, h)?);
        }
        let from_h = self.concat_dense(h, &hidden_params)?;
        let from_x = self.concat_dense(inputs, &input_params)?;
        let sum = from_h.f_add(&from_x)?;
        let gates = sum.f_split(hidden, -1)?;
        let i = (self.gate_fn)(&gates[0])?;
        let f = (self.gate_fn)(&gates[1])?;
        let g = (self.activation_fn)(&gates[2])?;
        let o = (self.gate_fn)(&gates[3])?;
        lstm_update(c, (&i, &f, &g, &o), self.activation_fn)
    }
}

impl OptimizedLSTMCell {
    /// `x @ concat(kernels) + concat(biases)`: the four gates' pre-activations side by side.
    /// The concatenation is made once per sequence inside an [`RNN`](crate::nn::rnn::RNN)
    /// (see [`loop_invariant`]); Flax makes it at every call and XLA hoists it.
    fn concat_dense(&self, x: &Tensor, params: &[(Tensor, Option<Tensor>)]) -> Result<Tensor> {
        let kernels: Vec<&Tensor> = params.iter().map(|(k, _)| k).collect();
        let biases: Vec<&Tensor> = params.iter().filter_map(|(_, b)| b.as_ref()).collect();
        let kernel = loop_invariant::hoisted("OptimizedLSTMCell.kernel", &kernels, || {
            Ok(Tensor::f_cat(&kernels, -1)?)
        })?;
        let bias = if biases.is_empty() {
            None
        } else {
            Some(loop_invariant::hoisted("OptimizedLSTMCell.bias", &biases, || {
                Ok(Tensor::f_cat(&biases, -1)?)
            })?)
        };
        let kind = match &bias {
            Some(b) => result_dtype(&[x, &kernel, b], self.dtype)?,
            None => result_dtype(&[x, &kernel], self.dtype)?,
        };
        let y = cast(x.shallow_clone(), kind)?.f_matmul(&cast(kernel, kind)?)?;
        match bias {
            Some(b) => Ok(y.f_add(&cast(b, kind)?)?),
            None => Ok(y),
        }
    }

    /// The initial carry, as [`LSTMCell::initialize_carry`].
    pub fn initialize_carry(
        rng: PRNGKey,
        batch_dims: &[i64],
        size: i64,
        init_fn: &impl Initializer,
        device: Device,
    ) -> Result<(Tensor, Tensor)> {
        LSTMCell::initialize_carry(rng, batch_dims, size, init_fn, device)
    }
}

/// A gated recurrent unit (Flax's `nn.GRUCell`), carry `h`: `r = σ(W_ir x + b_ir + W_hr h)`,
/// `z` alike, `n = tanh(W_in x + b_in + r·(W_hn h + b_hn))`, `h' = (1 - z)·n + z·h`; returns
/// `(h', h')`. `Dense` submodules `ir`, `iz`, `in` (with bias), `hr`, `hz` (without) and `hn`
/// (with).
#[module]
pub struct GRUCell {
    /// The gates' activation (default: `sigmoid`).
    #[module(default = sigmoid, exact)]
    pub gate_fn: ActivationFn,
    /// The candidate's activation (default: `tanh`).
    #[module(default = tanh, exact)]
    pub activation_fn: ActivationFn,
    /// Initializer of the input kernels (default: `lecun_normal`).
    #[module(default = initializers::lecun_normal().into())]
    pub kernel_init: Init,
    /// Initializer of the recurrent kernels (default: `orthogonal`).
    #[module(default = initializers::orthogonal(1.0).into())]
    pub recurrent_kernel_init: Init,
    /// Initializer of the biases (default: `zeros`).
    #[module(default = initializers::zeros().into())]
    pub bias_init: Init,
    /// The dtype of the computation (default: promoted from the inputs and params).
    #[module(default = None)]
    pub dtype: Option<Kind>,
    /// The dtype the params are stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
}

#[module]
impl GRUCell {
    /// One step: `carry = h` and `inputs` `(..., features)`.
    #[compact]
    pub fn call(&self, cx: &mut Scope, carry: &Tensor, inputs: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = carry;
        let hidden = hidden_size(cx, "GRUCell", h)?;
        let dense = |name: &'static str, use_bias: bool, kernel_init: &Init| {
            Dense::new(hidden)
                .use_bias(use_bias)
                .kernel_init(kernel_init.clone())
                .bias_init(self.bias_init.clone())
                .dtype(self.dtype)
                .param_dtype(self.param_dtype)
                .name(name)
        };
        let (input, recurrent) = (&self.kernel_init, &self.recurrent_kernel_init);
        let r = (self.gate_fn)(
            &dense("ir", true, input).call(cx, inputs)?.f_add(&dense("hr", false, recurrent).call(cx, h)?)?,
        )?;
        let z = (self.gate_fn)(
            &dense("iz", true, input).call(cx, inputs)?.f_add(&dense("hz", false, recurrent).call(cx, h)?)?,
        )?;
        let from_x = dense("in", true, input).call(cx, inputs)?;
        let from_h = dense("hn", true, recurrent).call(cx, h)?;
        let n = (self.activation_fn)(&from_x.f_add(&r.f_mul(&from_h)?)?)?;
        let new_h = z.f_neg()?.try_add_scalar(1.0)?.f_mul(&n)?.f_add(&z.f_mul(h)?)?;
        Ok((new_h.shallow_clone(), new_h))
    }
}

impl GRUCell {
    /// The initial carry `init_fn(rng, batch_dims + (size,))` (Flax's static
    /// `initialize_carry`).
    pub fn initialize_carry(
        rng: PRNGKey,
        batch_dims: &[i64],
        size: i64,
        init_fn: &impl Initializer,
        device: Device,
    ) -> Result<Tensor> {
        init_fn.init(rng, &[batch_dims, &[size]].concat(), (Kind::Float, device))
    }
}

/// A convolutional LSTM cell (Flax's `nn.ConvLSTMCell`), carry `(c, h)` of shape
/// `(batch, spatial…, features)`: the gates come from two `Conv`s with `4 · features`
/// filters, `ih` on the input and `hh` on `h`, split into `i, g, f, o`; the forget gate is
/// `σ(f + 1)`.
#[module]
pub struct ConvLSTMCell {
    /// The number of filters of the carry.
    pub features: i64,
    /// The shape of the convolution window.
    pub kernel_size: Vec<i64>,
    /// The strides of the convolutions (Flax's default `None` means 1).
    #[module(default = Dims::Int(1))]
    pub strides: Dims,
    /// The convolutions' padding.
    #[module(default = Padding::Same)]
    pub padding: Padding,
    /// Whether the convolutions have biases.
    #[module(default = true)]
    pub use_bias: bool,
    /// The dtype of the computation (default: promoted from the inputs and params).
    #[module(default = None)]
    pub dtype: Option<Kind>,
    /// The dtype the params are stored in.
    #[module(default = Kind::Float)]
    pub param_dtype: Kind,
}

#[module]
impl ConvLSTMCell {
    /// One step: `carry = (c, h)` and `inputs` `(batch, spatial…, in_features)`.
    #[compact]
    pub fn call(
        &self,
        cx: &mut Scope,
        carry: &(Tensor, Tensor),
        inputs: &Tensor,
    ) -> Result<((Tensor, Tensor), Tensor)> {
        let (c, h) = carry;
        let conv = |name: &'static str| {
            Conv::new(4 * self.features, self.kernel_size.clone())
                .strides(self.strides.clone())
                .padding(self.padding.clone())
                .use_bias(self.use_bias)
                .dtype(self.dtype)
                .param_dtype(self.param_dtype)
                .name(name)
        };
        let gates = conv("ih").call(cx, inputs)?.f_add(&conv("hh").call(cx, h)?)?;
        let Some(&width) = gates.size().last() else {
            return Err(shape_error(cx, "ConvLSTMCell needs inputs of shape (batch, spatial..., features)"));
        };
        let parts = gates.f_split(width / 4, -1)?;
        let (i, g, f, o) = (&parts[0], &parts[1], &parts[2], &parts[3]);
        let f = f.try_add_scalar(1.0)?.f_sigmoid()?;
        let new_c = f.f_mul(c)?.f_add(&i.f_sigmoid()?.f_mul(&g.f_tanh()?)?)?;
        let new_h = o.f_sigmoid()?.f_mul(&new_c.f_tanh()?)?;
        Ok(((new_c, new_h.shallow_clone()), new_h))
    }
}

impl ConvLSTMCell {
    /// The initial carry `(c, h)` of shape `batch_dims + size` (`size` = spatial dims and
    /// features), as Flax's static `initialize_carry`.
    pub fn initialize_carry(
        rng: PRNGKey,
        batch_dims: &[i64],
        size: &[i64],
        init_fn: &impl Initializer,
        device: Device,
    ) -> Result<(Tensor, Tensor)> {
        two_part_carry(rng, &[batch_dims, size].concat(), init_fn, device)
    }
}

impl RNNCellBase for LSTMCell {
    type Carry = (Tensor, Tensor);

    fn step(
        &self,
        cx: &mut Scope<'_>,
        carry: &Self::Carry,
        inputs: &Tensor,
    ) -> Result<(Self::Carry, Tensor)> {
        self.call(cx, carry, inputs)
    }

    fn initialize_carry(
        rng: PRNGKey,
        batch_dims: &[i64],
        size: &[i64],
        device: Device,
    ) -> Result<Self::Carry> {
        two_part_carry(rng, &vector_carry_shape(batch_dims, size)?, &initializers::zeros(), device)
    }

    fn fused(&self) -> Option<FusedCell> {
        default_functions(self.gate_fn, self.activation_fn, self.dtype).then_some(FusedCell::Lstm)
    }
}

impl RNNCellBase for OptimizedLSTMCell {
    type Carry = (Tensor, Tensor);

    fn step(
        &self,
        cx: &mut Scope<'_>,
        carry: &Self::Carry,
        inputs: &Tensor,
    ) -> Result<(Self::Carry, Tensor)> {
        self.call(cx, carry, inputs)
    }

    fn initialize_carry(
        rng: PRNGKey,
        batch_dims: &[i64],
        size: &[i64],
        device: Device,
    ) -> Result<Self::Carry> {
        <LSTMCell as RNNCellBase>::initialize_carry(rng, batch_dims, size, device)
    }

    fn fused(&self) -> Option<FusedCell> {
        default_functions(self.gate_fn, self.activation_fn, self.dtype).then_some(FusedCell::Lstm)
    }
}

impl RNNCellBase for GRUCell {
    type Carry = Tensor;

    fn step(
        &self,
        cx: &mut Scope<'_>,
        carry: &Self::Carry,
        inputs: &Tensor,
    ) -> Result<(Self::Carry, Tensor)> {
        self.call(cx, carry, inputs)
    }

    fn initialize_carry(
        rng: PRNGKey,
        batch_dims: &[i64],
        size: &[i64],
        device: Device,
    ) -> Result<Self::Carry> {
        initializers::zeros().init(rng, &vector_carry_shape(batch_dims, size)?, (Kind::Float, device))
    }

    fn fused(&self) -> Option<FusedCell> {
        default_functions(self.gate_fn, self.activation_fn, self.dtype).then_some(FusedCell::Gru)
    }
}

impl RNNCellBase for ConvLSTMCell {
    type Carry = (Tensor, Tensor);

    fn step(
        &self,
        cx: &mut Scope<'_>,
        carry: &Self::Carry,
        inputs: &Tensor,
    ) -> Result<(Self::Carry, Tensor)> {
        self.call(cx, carry, inputs)
    }

    fn initialize_carry(
        rng: PRNGKey,
        batch_dims: &[i64],
        size: &[i64],
        device: Device,
    ) -> Result<Self::Carry> {
        two_part_carry(rng, &[batch_dims, size].concat(), &initializers::zeros(), device)
    }
}
