//! `flax.linen.initializers` (JAX's `jax.nn.initializers`): functions from a key, a shape
//! and a dtype to a parameter tensor, with JAX's exact formulas, so that a model initialised
//! here from `PRNGKey::new(s)` has the parameters Flax gives it from `PRNGKey(s)`.
//!
//! Each initializer is a small `Clone` value built by a function of its Flax name
//! (`lecun_normal()`, `orthogonal(1.0).column_axis(0)`, …) and used through the
//! [`Initializer`] trait, which closures of the same signature implement too. Where Flax's
//! `zeros`/`ones` are values usable directly as initializers, here they are calls (`zeros()`,
//! like `zeros_init()`). [`Init`] holds any of them, for layer fields.
//!
//! Samples are computed at the requested float width and match JAX for `Float` and `Double`
//! (see [`crate::random`]); `Half`/`BFloat16` are computed in `float32` and rounded.

use crate::core::scalar_ops::ScalarOps;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use crate::core::frozen_dict::Value;
use crate::core::rng::PRNGKey;
use crate::core::tensor_checks::check_scalar_fits;
use crate::random::{
    float_tensor, normal_values, num_elements, truncated_normal_values, uniform_values, values_tensor,
    FloatGenerator, JaxFloat,
};
use crate::{Error, Result};

pub use crate::core::initializer::Initializer;

/// `constant(value)`, `zeros` and `ones`: every element `value`; the key is ignored. Any dtype
/// (`jnp.full` casts the value).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Constant {
    /// The fill value.
    pub value: f64,
}

/// `jax.nn.initializers.constant(value)`.
pub fn constant(value: f64) -> Constant {
    Constant { value }
}

/// `jax.nn.initializers.zeros`: Flax's default `bias_init`.
pub fn zeros() -> Constant {
    constant(0.0)
}

/// `jax.nn.initializers.ones`: Flax's default `scale_init` of normalization layers.
pub fn ones() -> Constant {
    constant(1.0)
}

/// `flax.linen.initializers.zeros_init()`: returns [`zeros`].
pub fn zeros_init() -> Constant {
    zeros()
}

/// `flax.linen.initializers.ones_init()`: returns [`ones`].
pub fn ones_init() -> Constant {
    ones()
}

impl Initializer for Constant {
    fn init(&self, _key: PRNGKey, shape: &[i64], options: (Kind, Device)) -> Result<Tensor> {
        num_elements("constant", shape)?;
        check_scalar_fits(self.value, options.0)?;
        Ok(Tensor::try_full(shape, self.value, options)?)
    }
}

/// `normal(stddev)`: `N(0, stddev²)` samples, `random.normal(key) * stddev`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normal {
    /// Standard deviation (Flax's default `1e-2`).
    pub stddev: f64,
}

/// `jax.nn.initializers.normal(stddev)` (Flax's default is `normal(1e-2)`, also
/// `Normal::default()`).
pub fn normal(stddev: f64) -> Normal {
    Normal { stddev }
}

impl Default for Normal {
    fn default() -> Self {
        normal(1e-2)
    }
}

impl FloatGenerator for Normal {
    fn generate<T: JaxFloat>(&self, key: PRNGKey, shape: &[i64], n: usize) -> Result<Tensor> {
        values_tensor(&scaled(normal_values::<T>(key, n), T::from_f64(self.stddev)), shape)
    }
}

/// `uniform(scale)`: samples uniform on `[0, scale)`, `random.uniform(key) * scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Uniform {
    /// The (exclusive) upper bound (Flax's default `1e-2`).
    pub scale: f64,
}

/// `jax.nn.initializers.uniform(scale)` (Flax's default is `uniform(1e-2)`, also
/// `Uniform::default()`).
pub fn uniform(scale: f64) -> Uniform {
    Uniform { scale }
}

impl Default for Uniform {
    fn default() -> Self {
        uniform(1e-2)
    }
}

impl FloatGenerator for Uniform {
    fn generate<T: JaxFloat>(&self, key: PRNGKey, shape: &[i64], n: usize) -> Result<Tensor> {
        let values = uniform_values(key, n, T::from_f64(0.0), T::ONE);
        values_tensor(&scaled(values, T::from_f64(self.scale)), shape)
    }
}

/// `truncated_normal(stddev, lower, upper)`: `random.truncated_normal(key, lower, upper) *
/// stddev`. Unlike [`VarianceScaling`], `stddev` is not corrected for the truncation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TruncatedNormal {
    /// Standard deviation of the untruncated distribution (default `1e-2`).
    pub stddev: f64,
    /// Lower truncation bound, in standard deviations (default `-2`).
    pub lower: f64,
    /// Upper truncation bound, in standard deviations (default `2`).
    pub upper: f64,
}

/// `jax.nn.initializers.truncated_normal(stddev)` with bounds `(-2, 2)`; change them with
/// [`TruncatedNormal::lower`] and [`TruncatedNormal::upper`].
pub fn truncated_normal(stddev: f64) -> TruncatedNormal {
    TruncatedNormal { stddev, lower: -2.0, upper: 2.0 }
}

impl TruncatedNormal {
    /// Sets the lower truncation bound (before scaling by `stddev`).
    pub fn lower(self, lower: f64) -> Self {
        TruncatedNormal { lower, ..self }
    }

    /// Sets the upper truncation bound (before scaling by `stddev`).
    pub fn upper(self, upper: f64) -> Self {
        TruncatedNormal { upper, ..self }
    }
}

impl Default for TruncatedNormal {
    fn default() -> Self {
        truncated_normal(1e-2)
    }
}

impl FloatGenerator for TruncatedNormal {
    fn generate<T: JaxFloat>(&self, key: PRNGKey, shape: &[i64], n: usize) -> Result<Tensor> {
        let values = truncated_normal_values(key, n, T::from_f64(self.lower), T::from_f64(self.upper));
        values_tensor(&scaled(values, T::from_f64(self.stddev)), shape)
    }
}

/// Which fan [`VarianceScaling`] divides its scale by (JAX's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FanMode {
    /// `"fan_in"`: the number of inputs (times the receptive field).
    FanIn,
    /// `"fan_out"`: the number of outputs (times the receptive field).
    FanOut,
    /// `"fan_avg"`: the mean of the two.
    FanAvg,
    /// `"fan_geo_avg"`: their geometric mean (added in JAX after Flax 0.6.10, the spec).
    FanGeoAvg,
}

impl FromStr for FanMode {
    type Err = Error;

    /// Parses JAX's mode strings, for configuration files.
    fn from_str(mode: &str) -> Result<Self> {
        match mode {
            "fan_in" => Ok(FanMode::FanIn),
            "fan_out" => Ok(FanMode::FanOut),
            "fan_avg" => Ok(FanMode::FanAvg),
            "fan_geo_avg" => Ok(FanMode::FanGeoAvg),
            _ => Err(Error::Value(format!("invalid mode for variance scaling initializer: {mode}"))),
        }
    }
}

/// The distribution [`VarianceScaling`] samples from (JAX's `distribution`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Distribution {
    /// `"truncated_normal"`: truncated at two standard deviations, then rescaled so that the
    /// result has the target variance.
    TruncatedNormal,
    /// `"normal"`.
    Normal,
    /// `"uniform"`: on `[-sqrt(3 variance), sqrt(3 variance))`.
    Uniform,
}

impl FromStr for Distribution {
    type Err = Error;

    /// Parses JAX's distribution strings, for configuration files.
    fn from_str(distribution: &str) -> Result<Self> {
        match distribution {
            "truncated_normal" => Ok(Distribution::TruncatedNormal),
            "normal" => Ok(Distribution::Normal),
            "uniform" => Ok(Distribution::Uniform),
            _ => Err(Error::Value(format!(
                "invalid distribution for variance scaling initializer: {distribution}"
            ))),
        }
    }
}

/// One axis or several (JAX's `int | Sequence[int]`), negative values counting from the end.
/// Held inline (no allocation): layers build their default initializers on every call.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Axes(pub smallvec::SmallVec<[i64; 2]>);

impl From<i64> for Axes {
    fn from(axis: i64) -> Self {
        Axes(smallvec::smallvec![axis])
    }
}

impl<const N: usize> From<[i64; N]> for Axes {
    fn from(axes: [i64; N]) -> Self {
        Axes(axes.iter().copied().collect())
    }
}

impl From<&[i64]> for Axes {
    fn from(axes: &[i64]) -> Self {
        Axes(axes.iter().copied().collect())
    }
}

impl From<Vec<i64>> for Axes {
    fn from(axes: Vec<i64>) -> Self {
        Axes(axes.into())
    }
}

/// `variance_scaling(scale, mode, distribution, in_axis=-2, out_axis=-1, batch_axis=())`:
/// samples with variance `scale / n`, `n` the fan chosen by `mode`.
///
/// Fans: the product of the `in_axis` (`out_axis`) dimensions times the receptive field, the
/// product of the dimensions in none of the three axis sets (a conv kernel's spatial axes):
/// an HWIO kernel `(3, 3, 16, 32)` has fan-in `144` and fan-out `288`.
#[derive(Clone, Debug, PartialEq)]
pub struct VarianceScaling {
    /// Multiplier of the variance.
    pub scale: f64,
    /// The fan the variance is divided by.
    pub mode: FanMode,
    /// The distribution sampled from.
    pub distribution: Distribution,
    /// Input axes (default `-2`).
    pub in_axis: Axes,
    /// Output axes (default `-1`).
    pub out_axis: Axes,
    /// Axes excluded from both fans (default none).
    pub batch_axis: Axes,
}

/// The standard deviation of a standard normal truncated to `(-2, 2)`.
const TRUNCATED_STDDEV: f64 = 0.8796256610342398;

/// `jax.nn.initializers.variance_scaling(scale, mode, distribution)`, with the default axes;
/// change them with [`VarianceScaling::in_axis`], `out_axis`, `batch_axis`.
pub fn variance_scaling(scale: f64, mode: FanMode, distribution: Distribution) -> VarianceScaling {
    VarianceScaling {
        scale,
        mode,
        distribution,
        in_axis: Axes::from(-2),
        out_axis: Axes::from(-1),
        batch_axis: Axes::default(),
    }
}

impl VarianceScaling {
    /// Sets the input axes.
    pub fn in_axis(self, axes: impl Into<Axes>) -> Self {
        VarianceScaling { in_axis: axes.into(), ..self }
    }

    /// Sets the output axes.
    pub fn out_axis(self, axes: impl Into<Axes>) -> Self {
        VarianceScaling { out_axis: axes.into(), ..self }
    }

    /// Sets the batch axes (ignored by both fans).
    pub fn batch_axis(self, axes: impl Into<Axes>) -> Self {
        VarianceScaling { batch_axis: axes.into(), ..self }
    }

    /// JAX's `_compute_fans`: `(fan_in, fan_out)` of a weight of `shape`.
    fn fans(&self, shape: &[i64]) -> Result<(f64, f64)> {
        let rank = shape.len();
        if rank < 2 {
            return Err(Error::Value(format!(
                "Can't compute input and output sizes of a {rank}-dimensional weights tensor. Must be at least 2D."
            )));
        }
        let size = |axes: &Axes| -> Result<f64> {
            axes.0.iter().try_fold(1.0, |size, &axis| Ok(size * shape[normalize_axis(axis, rank)?] as f64))
        };
        let (in_size, out_size, batch_size) =
            (size(&self.in_axis)?, size(&self.out_axis)?, size(&self.batch_axis)?);
        if in_size == 0.0 || out_size == 0.0 || batch_size == 0.0 {
            return Err(Error::Value(format!("variance_scaling: shape {shape:?} has a zero-sized fan")));
        }
        let total = shape.iter().map(|&d| d as f64).product::<f64>();
        let receptive_field = total / in_size / out_size / batch_size;
        Ok((in_size * receptive_field, out_size * receptive_field))
    }

    /// `scale / n`, computed in double precision as JAX does before casting to the dtype.
    fn variance(&self, shape: &[i64]) -> Result<f64> {
        let (fan_in, fan_out) = self.fans(shape)?;
        let denominator = match self.mode {
            FanMode::FanIn => fan_in,
            FanMode::FanOut => fan_out,
            FanMode::FanAvg => (fan_in + fan_out) / 2.0,
            FanMode::FanGeoAvg => (fan_in * fan_out).sqrt(),
        };
        // A zero receptive field (ConvLocal's kernel over a zero-size output grid): JAX
        // raises Python's ZeroDivisionError rather than drawing with an infinite variance.
        if denominator == 0.0 {
            return Err(Error::Value(format!(
                "variance_scaling: float division by zero (the fan of shape {shape:?} is 0)"
            )));
        }
        Ok(self.scale / denominator)
    }
}

impl FloatGenerator for VarianceScaling {
    fn generate<T: JaxFloat>(&self, key: PRNGKey, shape: &[i64], n: usize) -> Result<Tensor> {
        let variance = T::from_f64(self.variance(shape)?);
        let values = match self.distribution {
            Distribution::TruncatedNormal => {
                let stddev = variance.sqrt() / T::from_f64(TRUNCATED_STDDEV);
                scaled(truncated_normal_values(key, n, T::from_f64(-2.0), T::from_f64(2.0)), stddev)
            }
            Distribution::Normal => scaled(normal_values(key, n), variance.sqrt()),
            Distribution::Uniform => {
                let limit = (T::from_f64(3.0) * variance).sqrt();
                scaled(uniform_values(key, n, T::from_f64(-1.0), T::ONE), limit)
            }
        };
        values_tensor(&values, shape)
    }
}

/// `lecun_normal()`: `variance_scaling(1, fan_in, truncated_normal)`, Flax's default kernel
/// initializer.
pub fn lecun_normal() -> VarianceScaling {
    variance_scaling(1.0, FanMode::FanIn, Distribution::TruncatedNormal)
}

/// `lecun_uniform()`: `variance_scaling(1, fan_in, uniform)`.
pub fn lecun_uniform() -> VarianceScaling {
    variance_scaling(1.0, FanMode::FanIn, Distribution::Uniform)
}

/// `glorot_normal()`: `variance_scaling(1, fan_avg, truncated_normal)`.
pub fn glorot_normal() -> VarianceScaling {
    variance_scaling(1.0, FanMode::FanAvg, Distribution::TruncatedNormal)
}

/// `glorot_uniform()`: `variance_scaling(1, fan_avg, uniform)`.
pub fn glorot_uniform() -> VarianceScaling {
    variance_scaling(1.0, FanMode::FanAvg, Distribution::Uniform)
}

/// `xavier_normal()`: another name of [`glorot_normal`].
pub fn xavier_normal() -> VarianceScaling {
    glorot_normal()
}

/// `xavier_uniform()`: another name of [`glorot_uniform`].
pub fn xavier_uniform() -> VarianceScaling {
    glorot_uniform()
}

/// `he_normal()`: `variance_scaling(2, fan_in, truncated_normal)`.
pub fn he_normal() -> VarianceScaling {
    variance_scaling(2.0, FanMode::FanIn, Distribution::TruncatedNormal)
}

/// `he_uniform()`: `variance_scaling(2, fan_in, uniform)`.
pub fn he_uniform() -> VarianceScaling {
    variance_scaling(2.0, FanMode::FanIn, Distribution::Uniform)
}

/// `kaiming_normal()`: another name of [`he_normal`].
pub fn kaiming_normal() -> VarianceScaling {
    he_normal()
}

/// `kaiming_uniform()`: another name of [`he_uniform`].
pub fn kaiming_uniform() -> VarianceScaling {
    he_uniform()
}

/// `flax.linen.linear.default_kernel_init`: [`lecun_normal`].
pub fn default_kernel_init() -> VarianceScaling {
    lecun_normal()
}

/// `orthogonal(scale, column_axis)`: uniformly distributed (semi-)orthogonal matrices: the
/// `column_axis` dimension against all others flattened, orthonormal along the smaller side,
/// times `scale`. Flax's default recurrent-kernel initializer.
///
/// As JAX does: QR-decompose a normal sample of shape `(max, min)` of the two sizes, multiply
/// `Q`'s columns by the signs of `R`'s diagonal (which makes the distribution uniform),
/// transpose if there are fewer rows than columns. The QR runs in libtorch (LAPACK, like
/// JAX's), so values agree with JAX to rounding, not bit for bit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Orthogonal {
    /// Multiplier of the orthogonal matrix (default `1`).
    pub scale: f64,
    /// The axis whose slices are orthonormal columns (default `-1`).
    pub column_axis: i64,
}

/// `jax.nn.initializers.orthogonal(scale)` with `column_axis = -1`; change it with
/// [`Orthogonal::column_axis`].
pub fn orthogonal(scale: f64) -> Orthogonal {
    Orthogonal { scale, column_axis: -1 }
}

impl Orthogonal {
    /// Sets the column axis.
    pub fn column_axis(self, column_axis: i64) -> Self {
        Orthogonal { column_axis, ..self }
    }
}

impl Default for Orthogonal {
    fn default() -> Self {
        orthogonal(1.0)
    }
}

impl FloatGenerator for Orthogonal {
    fn generate<T: JaxFloat>(&self, key: PRNGKey, shape: &[i64], n: usize) -> Result<Tensor> {
        let rank = shape.len();
        if rank < 2 {
            return Err(Error::Value("orthogonal initializer requires at least a 2D shape".into()));
        }
        let column = normalize_axis(self.column_axis, rank)?;
        if n == 0 {
            return Ok(Tensor::f_zeros(shape, (T::KIND, Device::Cpu))?);
        }
        let n_cols = shape[column];
        let n_rows = n as i64 / n_cols;
        let (long, short) = (n_rows.max(n_cols), n_rows.min(n_cols));
        let sample = values_tensor(&normal_values::<T>(key, n), &[long, short])?;
        let (q, r) = Tensor::f_linalg_qr(&sample, "reduced")?;
        let signs = r.f_diagonal(0, -2, -1)?.f_sign()?.f_unsqueeze(-2)?;
        let mut q = q.f_mul(&signs)?;
        if n_rows < n_cols {
            q = q.f_transpose(0, 1)?;
        }
        let mut rows_shape: Vec<i64> = shape.to_vec();
        rows_shape.remove(column);
        rows_shape.push(n_cols);
        Ok(q.f_reshape(&rows_shape)?
            .f_movedim([rank as i64 - 1], [column as i64])?
            .try_mul_scalar(self.scale)?)
    }
}

/// `delta_orthogonal(scale, column_axis)` (Xiao et al. 2018): a 3-, 4- or 5-D conv kernel that
/// is zero except at the spatial centre, where it is `orthogonal(scale, column_axis)` of its
/// `(in, out)` shape; needs `in <= out`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeltaOrthogonal {
    /// Multiplier of the orthogonal matrix (default `1`).
    pub scale: f64,
    /// The column axis of the centre matrix (default `-1`).
    pub column_axis: i64,
}

/// `jax.nn.initializers.delta_orthogonal(scale)` with `column_axis = -1`; change it with
/// [`DeltaOrthogonal::column_axis`].
pub fn delta_orthogonal(scale: f64) -> DeltaOrthogonal {
    DeltaOrthogonal { scale, column_axis: -1 }
}

impl DeltaOrthogonal {
    /// Sets the column axis of the centre matrix.
    pub fn column_axis(self, column_axis: i64) -> Self {
        DeltaOrthogonal { column_axis, ..self }
    }
}

impl Default for DeltaOrthogonal {
    fn default() -> Self {
        delta_orthogonal(1.0)
    }
}

impl FloatGenerator for DeltaOrthogonal {
    fn generate<T: JaxFloat>(&self, key: PRNGKey, shape: &[i64], _n: usize) -> Result<Tensor> {
        let rank = shape.len();
        if !(3..=5).contains(&rank) {
            return Err(Error::Value("Delta orthogonal initializer requires a 3D, 4D or 5D shape.".into()));
        }
        let (fan_in, fan_out) = (shape[rank - 2], shape[rank - 1]);
        if fan_out < fan_in {
            return Err(Error::Value("`fan_in` must be less or equal than `fan_out`. ".into()));
        }
        let centre_shape = [fan_in, fan_out];
        let ortho = Orthogonal { scale: self.scale, column_axis: self.column_axis };
        let matrix = ortho.generate::<T>(key, &centre_shape, (fan_in * fan_out) as usize)?;
        let kernel = Tensor::f_zeros(shape, (T::KIND, Device::Cpu))?;
        let mut centre = kernel.shallow_clone();
        for &k in &shape[..rank - 2] {
            centre = centre.f_select(0, (k - 1) / 2)?;
        }
        centre.f_copy_(&matrix)?;
        Ok(kernel)
    }
}

/// Every element of `values` times `factor`, at the values' width.
fn scaled<T: JaxFloat>(mut values: Vec<T>, factor: T) -> Vec<T> {
    for v in &mut values {
        *v = *v * factor;
    }
    values
}

/// `axis` (negative counts from the end) as an index into a `rank`-dimensional shape.
fn normalize_axis(axis: i64, rank: usize) -> Result<usize> {
    let rank_i = rank as i64;
    let index = if axis < 0 { axis + rank_i } else { axis };
    if (0..rank_i).contains(&index) {
        Ok(index as usize)
    } else {
        Err(Error::Value(format!("axis {axis} is out of bounds for a {rank}-dimensional weights tensor")))
    }
}

/// Initializers sampled at a float width share one `Initializer` implementation.
macro_rules! float_initializer {
    ($($name:ident => $op:literal),* $(,)?) => {$(
        impl Initializer for $name {
            fn init(&self, key: PRNGKey, shape: &[i64], options: (Kind, Device)) -> Result<Tensor> {
                float_tensor($op, self, key, shape, options)
            }
        }
    )*};
}

float_initializer! {
    Normal => "normal",
    Uniform => "uniform",
    TruncatedNormal => "truncated_normal",
    VarianceScaling => "variance_scaling",
    Orthogonal => "orthogonal",
    DeltaOrthogonal => "delta_orthogonal",
}

/// Any initializer, as one `Clone + Debug` value for the `kernel_init`/`bias_init` fields of
/// layers: each initializer type converts into it with `.into()`, and so does any closure
/// through [`Init::custom`].
#[derive(Clone)]
pub enum Init {
    /// [`constant`], [`zeros`], [`ones`].
    Constant(Constant),
    /// [`normal`].
    Normal(Normal),
    /// [`uniform`].
    Uniform(Uniform),
    /// [`truncated_normal`].
    TruncatedNormal(TruncatedNormal),
    /// [`variance_scaling`] and its named instances ([`lecun_normal`], …).
    VarianceScaling(VarianceScaling),
    /// [`orthogonal`].
    Orthogonal(Orthogonal),
    /// [`delta_orthogonal`].
    DeltaOrthogonal(DeltaOrthogonal),
    /// A user-defined initializer.
    Custom(Arc<dyn Initializer + Send + Sync>),
}

impl Init {
    /// Wraps a user-defined initializer, for example a closure
    /// `|key, shape, options| -> Result<Tensor>`.
    pub fn custom(initializer: impl Initializer + Send + Sync + 'static) -> Self {
        Init::Custom(Arc::new(initializer))
    }
}

impl Initializer for Init {
    fn init(&self, key: PRNGKey, shape: &[i64], options: (Kind, Device)) -> Result<Tensor> {
        match self {
            Init::Constant(i) => i.init(key, shape, options),
            Init::Normal(i) => i.init(key, shape, options),
            Init::Uniform(i) => i.init(key, shape, options),
            Init::TruncatedNormal(i) => i.init(key, shape, options),
            Init::VarianceScaling(i) => i.init(key, shape, options),
            Init::Orthogonal(i) => i.init(key, shape, options),
            Init::DeltaOrthogonal(i) => i.init(key, shape, options),
            Init::Custom(i) => i.init(key, shape, options),
        }
    }

    fn box_value(&self, value: Value) -> Value {
        match self {
            Init::Custom(i) => i.box_value(value),
            _ => value,
        }
    }
}

/// A partitioned initializer as a layer's `kernel_init`:
/// `Dense::new(8).kernel_init(nn::with_partitioning(lecun_normal(), (None, "data")))`.
impl<I: Initializer + Send + Sync + 'static> From<crate::core::meta::WithPartitioning<I>> for Init {
    fn from(init: crate::core::meta::WithPartitioning<I>) -> Self {
        Init::custom(init)
    }
}

/// Layers pass their `kernel_init` field by reference, so a param call never clones it.
impl Initializer for &Init {
    fn init(&self, key: PRNGKey, shape: &[i64], options: (Kind, Device)) -> Result<Tensor> {
        (**self).init(key, shape, options)
    }

    fn box_value(&self, value: Value) -> Value {
        (**self).box_value(value)
    }
}

/// As Flax prints an initializer attribute in a module's repr: the function's `__name__`,
/// which is `zeros`/`ones` for those and `init` for every initializer built by a factory.
impl crate::core::repr::FlaxRepr for Init {
    fn flax_repr(&self) -> String {
        match self {
            Init::Constant(Constant { value }) if *value == 0.0 => "zeros".into(),
            Init::Constant(Constant { value }) if *value == 1.0 => "ones".into(),
            _ => "init".into(),
        }
    }
}

impl fmt::Debug for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Constant(i) => i.fmt(f),
            Init::Normal(i) => i.fmt(f),
            Init::Uniform(i) => i.fmt(f),
            Init::TruncatedNormal(i) => i.fmt(f),
            Init::VarianceScaling(i) => i.fmt(f),
            Init::Orthogonal(i) => i.fmt(f),
            Init::DeltaOrthogonal(i) => i.fmt(f),
            Init::Custom(_) => f.write_str("<custom initializer>"),
        }
    }
}

impl PartialEq for Init {
    /// Structural for the built-in initializers; identity for custom ones.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Init::Constant(a), Init::Constant(b)) => a == b,
            (Init::Normal(a), Init::Normal(b)) => a == b,
            (Init::Uniform(a), Init::Uniform(b)) => a == b,
            (Init::TruncatedNormal(a), Init::TruncatedNormal(b)) => a == b,
            (Init::VarianceScaling(a), Init::VarianceScaling(b)) => a == b,
            (Init::Orthogonal(a), Init::Orthogonal(b)) => a == b,
            (Init::DeltaOrthogonal(a), Init::DeltaOrthogonal(b)) => a == b,
            (Init::Custom(a), Init::Custom(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// `From<X> for Init` for each built-in initializer type.
macro_rules! into_init {
    ($($name:ident),* $(,)?) => {$(
        impl From<$name> for Init {
            fn from(initializer: $name) -> Self {
                Init::$name(initializer)
            }
        }
    )*};
}

into_init!(Constant, Normal, Uniform, TruncatedNormal, VarianceScaling, Orthogonal, DeltaOrthogonal);

#[cfg(test)]
mod tests {
    use super::*;

    const CPU_F32: (Kind, Device) = (Kind::Float, Device::Cpu);
    const N: i64 = 100_000;

    fn key() -> PRNGKey {
        PRNGKey::new(0)
    }

    fn moments(t: &Tensor) -> (f64, f64) {
        (t.mean(Kind::Double).double_value(&[]), t.std(true).double_value(&[]))
    }

    /// Mean within 5 standard errors of `mean`, standard deviation within 2% of `std`.
    fn assert_moments(name: &str, t: &Tensor, mean: f64, std: f64) {
        let (m, s) = moments(t);
        assert!((m - mean).abs() < 5.0 * std / (t.numel() as f64).sqrt(), "{name}: mean {m}, want {mean}");
        assert!((s - std).abs() < 0.02 * std, "{name}: std {s}, want {std}");
    }

    #[test]
    fn lecun_normal_matches_jax() {
        // jax 0.10.2's lecun_normal()(PRNGKey(42), (2, 3)), printed by rng_vectors.py. The spec's
        // example (api-reference.md §13: 0.46700746, 0.8414632, …) shows the values of the
        // JAX of its time, whose default `jax_threefry_partitionable=False` derived keys and
        // bits differently.
        let w = lecun_normal().init(PRNGKey::new(42), &[2, 3], CPU_F32).unwrap();
        let expected = [
            -0.021717816591262817,
            0.3572254478931427,
            0.22659318149089813,
            0.11777377128601074,
            -0.09514818340539932,
            0.16632720828056335,
        ];
        assert_eq!(Vec::<f64>::try_from(w.flatten(0, -1).to_kind(Kind::Double)).unwrap(), expected);
        // The spec's invariant that holds under either algorithm: same key, same base sample.
        let he = he_normal().init(PRNGKey::new(42), &[2, 3], CPU_F32).unwrap();
        assert!(he.allclose(&(&w * 2f64.sqrt()), 1e-6, 1e-6, false));
    }

    #[test]
    fn simple_distributions_have_their_moments() {
        let shape = [N];
        assert_moments("normal", &normal(5.0).init(key(), &shape, CPU_F32).unwrap(), 0.0, 5.0);
        assert_moments(
            "uniform",
            &uniform(10.0).init(key(), &shape, CPU_F32).unwrap(),
            5.0,
            10.0 / 12f64.sqrt(),
        );
        let tn = truncated_normal(2.0).init(key(), &shape, CPU_F32).unwrap();
        assert_moments("truncated_normal", &tn, 0.0, 2.0 * TRUNCATED_STDDEV);
        assert!(tn.abs().max().double_value(&[]) < 4.0);
        let c = constant(-7.0).init(key(), &[2, 3], (Kind::Int, Device::Cpu)).unwrap();
        assert_eq!(Vec::<i32>::try_from(c.flatten(0, -1)).unwrap(), [-7; 6]);
        assert_eq!(zeros_init(), zeros());
        assert_eq!(ones_init(), ones());
    }

    #[test]
    fn variance_scaling_family_has_the_target_variance() {
        // A conv kernel (3, 3, 100, 300): fan_in = 900, fan_out = 2700, ~270k samples.
        let shape = [3, 3, 100, 300];
        let (fan_in, fan_out) = (900.0, 2700.0);
        let cases = [
            ("lecun_normal", lecun_normal(), 1.0 / fan_in),
            ("lecun_uniform", lecun_uniform(), 1.0 / fan_in),
            ("glorot_normal", glorot_normal(), 2.0 / (fan_in + fan_out)),
            ("xavier_uniform", xavier_uniform(), 2.0 / (fan_in + fan_out)),
            ("he_normal", he_normal(), 2.0 / fan_in),
            ("kaiming_uniform", kaiming_uniform(), 2.0 / fan_in),
            ("fan_out normal", variance_scaling(3.0, FanMode::FanOut, Distribution::Normal), 3.0 / fan_out),
            (
                "fan_geo_avg",
                variance_scaling(1.0, FanMode::FanGeoAvg, Distribution::Uniform),
                1.0 / 1558.8457268119896,
            ),
        ];
        for (name, init, variance) in cases {
            let w = init.init(key(), &shape, CPU_F32).unwrap();
            assert_moments(name, &w, 0.0, variance.sqrt());
            if init.distribution == Distribution::TruncatedNormal {
                let bound = 2.0 * variance.sqrt() / TRUNCATED_STDDEV;
                assert!(w.abs().max().double_value(&[]) < bound, "{name} exceeds its truncation");
            }
        }
        assert_eq!(xavier_normal(), glorot_normal());
        assert_eq!(kaiming_normal(), he_normal());
        assert_eq!(default_kernel_init(), lecun_normal());
    }

    #[test]
    fn fans_follow_the_axes() {
        let conv = lecun_normal().fans(&[3, 3, 16, 32]).unwrap();
        assert_eq!(conv, (144.0, 288.0));
        let custom = lecun_normal().in_axis([0, 1]).out_axis(3).batch_axis(2).fans(&[2, 3, 4, 5]).unwrap();
        assert_eq!(custom, (6.0, 5.0));
        assert!(matches!(lecun_normal().fans(&[5]), Err(Error::Value(_))));
        assert!(matches!(lecun_normal().in_axis(7).fans(&[5, 3]), Err(Error::Value(_))));
        assert!(matches!("fan_sideways".parse::<FanMode>(), Err(Error::Value(_))));
        assert_eq!("fan_avg".parse::<FanMode>().unwrap(), FanMode::FanAvg);
        assert_eq!("uniform".parse::<Distribution>().unwrap(), Distribution::Uniform);
    }

    fn assert_orthonormal_columns(m: &Tensor) {
        let gram = m.transpose(0, 1).matmul(m);
        let eye = Tensor::eye(gram.size()[0], (m.kind(), Device::Cpu));
        assert!(gram.allclose(&eye, 1e-5, 1e-5, false), "{gram}");
    }

    #[test]
    fn orthogonal_gives_orthonormal_rows_or_columns() {
        let tall = orthogonal(1.0).init(key(), &[6, 3], CPU_F32).unwrap();
        assert_orthonormal_columns(&tall);
        let wide = orthogonal(1.0).init(key(), &[3, 6], CPU_F32).unwrap();
        assert_orthonormal_columns(&wide.transpose(0, 1));
        let scaled = orthogonal(2.0).init(key(), &[6, 3], CPU_F32).unwrap();
        assert!(scaled.allclose(&(&tall * 2.0), 1e-6, 1e-6, false));
        // Column axis 0 of a (4, 2, 3) kernel: 4 orthonormal columns of length 6.
        let kernel =
            orthogonal(1.0).column_axis(0).init(key(), &[4, 2, 3], (Kind::Double, Device::Cpu)).unwrap();
        assert_orthonormal_columns(&kernel.reshape([4, 6]).transpose(0, 1));
        assert!(matches!(orthogonal(1.0).init(key(), &[5], CPU_F32), Err(Error::Value(_))));
        assert!(matches!(orthogonal(1.0).column_axis(2).init(key(), &[5, 3], CPU_F32), Err(Error::Value(_))));
        assert_eq!(orthogonal(1.0).init(key(), &[0, 3], CPU_F32).unwrap().size(), [0, 3]);
    }

    #[test]
    fn delta_orthogonal_is_zero_except_at_the_centre() {
        let w = delta_orthogonal(1.0).init(key(), &[3, 3, 2, 4], CPU_F32).unwrap();
        let centre = w.get(1).get(1);
        assert_orthonormal_columns(&centre.transpose(0, 1));
        assert_eq!(
            w.abs().sum(Kind::Double).double_value(&[]),
            centre.abs().sum(Kind::Double).double_value(&[])
        );
        let expected = orthogonal(1.0).init(key(), &[2, 4], CPU_F32).unwrap();
        assert!(centre.equal(&expected));
        let bad = [vec![3, 3], vec![3, 3, 3, 3, 3, 3], vec![3, 3, 4, 2]];
        for shape in bad {
            assert!(matches!(delta_orthogonal(1.0).init(key(), &shape, CPU_F32), Err(Error::Value(_))));
        }
    }

    #[test]
    fn init_holds_any_initializer() {
        let inits: Vec<Init> = vec![
            zeros().into(),
            lecun_normal().into(),
            orthogonal(1.0).into(),
            Init::custom(|_key: PRNGKey, shape: &[i64], options: (Kind, Device)| {
                Ok(Tensor::ones(shape, options))
            }),
        ];
        for init in &inits {
            assert_eq!(init.init(key(), &[4, 3], CPU_F32).unwrap().size(), [4, 3]);
        }
        assert_eq!(inits[1], Init::from(default_kernel_init()));
        assert_ne!(inits[0], inits[1]);
        assert_eq!(format!("{:?}", inits[0]), "Constant { value: 0.0 }");
        assert!(matches!(
            lecun_normal().init(key(), &[4, 3], (Kind::Int, Device::Cpu)),
            Err(Error::Value(_))
        ));
    }
}
