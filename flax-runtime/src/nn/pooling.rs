//! Pooling (Flax's `flax.linen.pooling`): `pool` (XLA's `ReduceWindow` with any reduction),
//! `max_pool`, `min_pool` and `avg_pool` over the spatial dimensions of channels-last inputs
//! `(*batch, window dims…, features)`.
//!
//! Max, min and average pooling over one to three spatial dimensions of floating inputs run
//! on libtorch's pooling kernels, through the same channels-last views as convolutions; other
//! cases (and `pool`) reduce the strided views of a padded input one window offset at a time.
//! A window that fits nowhere in some dimension (`VALID` and larger than the input, or pads
//! that crop the input below it) gives XLA's zero-size result, as Flax does (`empty_windows`).
//! These are functions, not modules, so their errors carry no module path.
//!
//! `max_pool(&x, [2, 2])` uses Flax's defaults (`strides=None`: 1 along every window
//! dimension, `padding="VALID"`; `avg_pool` also `count_include_pad=True`);
//! `max_pool_with(&x, [2, 2], PoolOptions::new().strides([2, 2]))` sets Flax's keyword
//! arguments through [`PoolOptions`].

use crate::core::errors::{Error, Result};
use crate::core::repr::FlaxRepr;
use crate::core::scalar_ops::ScalarOps;
use crate::nn::empty_windows::{empty_pool, has_no_windows};
use crate::nn::module_utils::FoldedBatch;
use crate::nn::padding::{
    narrow_spatial, same_pads, symmetric_padding, torch_pad_list, window_count, Padding,
};
use tch::{Kind, Tensor};

/// The windows of one pooling over the folded input's spatial dimensions.
struct Window {
    shape: Vec<i64>,
    strides: Vec<i64>,
    pads: Vec<(i64, i64)>,
}

impl Window {
    /// The output's spatial shape for an input of spatial shape `input`.
    fn output_shape(&self, input: &[i64]) -> Vec<i64> {
        (0..input.len())
            .map(|i| window_count(input[i], self.shape[i], self.strides[i], self.pads[i]))
            .collect()
    }
}

/// Flax's `pool` checks: batch dims folded, strides defaulted, padding resolved.
fn windows(inputs: &Tensor, window_shape: &[i64], options: &PoolOptions) -> Result<(FoldedBatch, Window)> {
    let (strides, padding) = (options.strides.as_deref(), &options.padding);
    let n = window_shape.len();
    if n == 0 || window_shape.iter().any(|&w| w < 1) {
        return Err(Error::Value(format!(
            "window_shape must be a non-empty sequence of positive ints, got {}",
            window_shape.flax_repr()
        )));
    }
    let folded = FoldedBatch::new(inputs, n)?.ok_or_else(|| {
        Error::Value(format!(
            "pooling with window_shape {} needs inputs of shape (*batch, {n} window dims, features), got {}",
            window_shape.flax_repr(),
            inputs.size().flax_repr()
        ))
    })?;
    let strides = match strides {
        None => vec![1; n],
        Some(s) if s.len() == n && s.iter().all(|&v| v >= 1) => s.to_vec(),
        Some(s) => {
            return Err(Error::Value(format!(
                "len({}) must equal len({}), with positive strides",
                window_shape.flax_repr(),
                s.flax_repr()
            )))
        }
    };
    let spatial = &folded.x.size()[1..=n];
    let pads = match padding {
        Padding::Same => same_pads(spatial, window_shape, &strides),
        Padding::Valid => vec![(0, 0); n],
        Padding::Explicit(pairs) if pairs.len() != n => {
            return Err(Error::Value(format!(
                "padding {} must specify pads for same number of dims as window_shape {}",
                padding.flax_repr(),
                window_shape.flax_repr()
            )))
        }
        Padding::Explicit(_) if folded.batch_dims() > 1 => {
            return Err(Error::Value(format!(
                "explicit padding pads one batch dimension, got inputs of shape {}",
                inputs.size().flax_repr()
            )))
        }
        Padding::Explicit(pairs) => pairs.clone(),
        other => {
            return Err(Error::Value(format!(
                "pooling takes 'SAME', 'VALID' or (low, high) pairs, got {}",
                other.flax_repr()
            )))
        }
    };
    Ok((folded, Window { shape: window_shape.to_vec(), strides, pads }))
}

/// The keyword arguments of the pooling functions, Flax's defaults by [`Default`].
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// The step between windows, one per window dimension (Flax's default `None`: all 1).
    pub strides: Option<Vec<i64>>,
    /// The padding of the spatial dimensions (Flax's default `"VALID"`).
    pub padding: Padding,
    /// Whether `avg_pool` counts padded positions (as zeros) in a window's size (Flax's
    /// default `true`); the other poolings have no use for it.
    pub count_include_pad: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions { strides: None, padding: Padding::Valid, count_include_pad: true }
    }
}

impl PoolOptions {
    /// Flax's defaults: strides of 1, `VALID` padding, padding counted by `avg_pool`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Steps `strides` between windows (one per window dimension: `[2, 2]`).
    pub fn strides(mut self, strides: impl AsRef<[i64]>) -> Self {
        self.strides = Some(strides.as_ref().to_vec());
        self
    }

    /// Pads the spatial dimensions: `Padding::Same`, `Padding::Valid` or `(low, high)` pairs.
    pub fn padding(mut self, padding: impl Into<Padding>) -> Self {
        self.padding = padding.into();
        self
    }

    /// Whether `avg_pool` divides by the whole window size, padding included.
    pub fn count_include_pad(mut self, count_include_pad: bool) -> Self {
        self.count_include_pad = count_include_pad;
        self
    }
}

/// Pools `inputs` with any reduction (Flax's `pool`, XLA's `ReduceWindow`): padded positions
/// hold `init`, and `reduce_fn` combines two tensors of window values elementwise. Its order
/// of application is unspecified, as in XLA: it should be associative and commutative. Flax's
/// `strides` and `padding` have no defaults here; `options` gives them (or the pooling ones).
pub fn pool(
    inputs: &Tensor,
    init: f64,
    reduce_fn: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
    window_shape: impl AsRef<[i64]>,
    options: PoolOptions,
) -> Result<Tensor> {
    let (folded, window) = windows(inputs, window_shape.as_ref(), &options)?;
    folded.unfold(reduce_window(&folded.x, init, &reduce_fn, &window)?)
}

/// The maximum over each window, with strides 1 and no padding (Flax's `max_pool(inputs,
/// window_shape)`).
pub fn max_pool(inputs: &Tensor, window_shape: impl AsRef<[i64]>) -> Result<Tensor> {
    max_pool_with(inputs, window_shape, PoolOptions::new())
}

/// The maximum over each window (Flax's `max_pool`); padding never wins (it is `-inf`).
pub fn max_pool_with(
    inputs: &Tensor,
    window_shape: impl AsRef<[i64]>,
    options: PoolOptions,
) -> Result<Tensor> {
    let (folded, window) = windows(inputs, window_shape.as_ref(), &options)?;
    folded.unfold(window_max(&folded.x, &window)?)
}

/// The minimum over each window, with strides 1 and no padding (Flax's `min_pool(inputs,
/// window_shape)`).
pub fn min_pool(inputs: &Tensor, window_shape: impl AsRef<[i64]>) -> Result<Tensor> {
    min_pool_with(inputs, window_shape, PoolOptions::new())
}

/// The minimum over each window (Flax's `min_pool`); padding is `+inf`.
pub fn min_pool_with(
    inputs: &Tensor,
    window_shape: impl AsRef<[i64]>,
    options: PoolOptions,
) -> Result<Tensor> {
    let (folded, window) = windows(inputs, window_shape.as_ref(), &options)?;
    folded.unfold(window_max(&folded.x.f_neg()?, &window)?.f_neg()?)
}

/// The mean over each window, with strides 1 and no padding (Flax's `avg_pool(inputs,
/// window_shape)`).
pub fn avg_pool(inputs: &Tensor, window_shape: impl AsRef<[i64]>) -> Result<Tensor> {
    avg_pool_with(inputs, window_shape, PoolOptions::new())
}

/// The mean over each window (Flax's `avg_pool`): the window sum divided by the window size
/// with `count_include_pad` (padding counts as zeros, Flax's default), else by the number of
/// input elements the window covers.
pub fn avg_pool_with(
    inputs: &Tensor,
    window_shape: impl AsRef<[i64]>,
    options: PoolOptions,
) -> Result<Tensor> {
    let window_shape = window_shape.as_ref();
    let (folded, window) = windows(inputs, window_shape, &options)?;
    let y = if options.count_include_pad {
        // Every window lies within the padded input, so libtorch's own average divides by
        // the window size, as Flax does.
        match native_pool(&folded.x, Reduction::Mean, &window)? {
            Some(y) => y,
            None => window_sum(&folded.x, &window)?.try_div_scalar(window_shape.iter().product::<i64>())?,
        }
    } else {
        let sums = window_sum(&folded.x, &window)?;
        let mut ones_shape = folded.x.size();
        let last = ones_shape.len() - 1;
        ones_shape[0] = 1;
        ones_shape[last] = 1;
        let ones = Tensor::f_ones(ones_shape, (sums.kind(), sums.device()))?;
        sums.f_div(&window_sum(&ones, &window)?)?
    };
    folded.unfold(y)
}

/// The reductions libtorch has pooling kernels for.
#[derive(Clone, Copy)]
enum Reduction {
    Max,
    Sum,
    /// The sum divided by the window size, padding included.
    Mean,
}

fn window_max(x: &Tensor, window: &Window) -> Result<Tensor> {
    match native_pool(x, Reduction::Max, window)? {
        Some(y) => Ok(y),
        None => reduce_window(x, f64::NEG_INFINITY, &|a: &Tensor, b: &Tensor| Ok(a.f_maximum(b)?), window),
    }
}

fn window_sum(x: &Tensor, window: &Window) -> Result<Tensor> {
    match native_pool(x, Reduction::Sum, window)? {
        Some(y) => Ok(y),
        None => reduce_window(x, 0.0, &|a: &Tensor, b: &Tensor| Ok(a.f_add(b)?), window),
    }
}

/// XLA's `ReduceWindow` over `x` `(N, spatial…, C)`: pad with `init`, then fold the strided
/// view of every window offset into the result with `reduce_fn`.
fn reduce_window(
    x: &Tensor,
    init: f64,
    reduce_fn: &dyn Fn(&Tensor, &Tensor) -> Result<Tensor>,
    window: &Window,
) -> Result<Tensor> {
    let n = window.shape.len();
    let out = window.output_shape(&x.size()[1..=n]);
    if has_no_windows(&out) {
        // Before padding: pads may crop more than the input (XLA still gives zero windows).
        return empty_pool(x, &out);
    }
    let mut pads = window.pads.clone();
    pads.push((0, 0));
    let padded = x.f_pad(torch_pad_list(&pads), "constant", init)?;
    let mut result: Option<Tensor> = None;
    let mut offset = vec![0i64; n];
    loop {
        let mut view = padded.shallow_clone();
        for d in 0..n {
            let (start, stride) = (offset[d], window.strides[d]);
            view = view.f_slice(d as i64 + 1, start, start + (out[d] - 1).max(0) * stride + 1, stride)?;
            view = view.f_narrow(d as i64 + 1, 0, out[d])?;
        }
        result = Some(match result {
            None => view,
            Some(acc) => reduce_fn(&acc, &view)?,
        });
        if !next_offset(&mut offset, &window.shape) {
            break;
        }
    }
    result.ok_or_else(|| Error::Value("pooling window is empty".into()))
}

/// Advances `offset` through every position of a window of `shape` (last dimension fastest);
/// false after the last one.
fn next_offset(offset: &mut [i64], shape: &[i64]) -> bool {
    for d in (0..offset.len()).rev() {
        offset[d] += 1;
        if offset[d] < shape[d] {
            return true;
        }
        offset[d] = 0;
    }
    false
}

/// libtorch's pooling kernel for `reduction`, on the channels-first view of `x`, for one to
/// three spatial dimensions of a floating input (`None` otherwise). 1-D runs as 2-D with a
/// unit height, for the sum's `divisor_override`.
fn native_pool(x: &Tensor, reduction: Reduction, window: &Window) -> Result<Option<Tensor>> {
    let n = window.shape.len();
    if n > 3 || !matches!(x.kind(), Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double) {
        return Ok(None);
    }
    let input = &x.size()[1..=n];
    let wanted = window.output_shape(input);
    if has_no_windows(&wanted) {
        // libtorch's kernels refuse a zero-size output.
        return Ok(Some(empty_pool(x, &wanted)?));
    }
    let half: Vec<i64> = window.shape.iter().map(|w| w / 2).collect();
    let fill = match reduction {
        Reduction::Max => f64::NEG_INFINITY,
        Reduction::Sum | Reduction::Mean => 0.0,
    };
    let (x, padding) =
        match symmetric_padding(input, &window.shape, &window.strides, &window.pads, Some(&half)) {
            Some(padding) => (x.shallow_clone(), padding),
            None => {
                let mut pads = window.pads.clone();
                pads.push((0, 0));
                (x.f_pad(torch_pad_list(&pads), "constant", fill)?, vec![0; n])
            }
        };
    let channels_first: Vec<i64> = [0, n as i64 + 1].into_iter().chain(1..=n as i64).collect();
    let mut x = x.f_permute(channels_first)?;
    let (mut kernel, mut strides, mut padding) = (window.shape.clone(), window.strides.clone(), padding);
    if n == 1 {
        x = x.f_unsqueeze(2)?;
        kernel.insert(0, 1);
        strides.insert(0, 1);
        padding.insert(0, 0);
    }
    let ones = vec![1; kernel.len()];
    let y = match (reduction, kernel.len()) {
        (Reduction::Max, 2) => x.f_max_pool2d(&kernel, &strides, &padding, &ones, false)?,
        (Reduction::Max, _) => x.f_max_pool3d(&kernel, &strides, &padding, &ones, false)?,
        (Reduction::Sum, 2) => x.f_avg_pool2d(&kernel, &strides, &padding, false, true, 1)?,
        (Reduction::Sum, _) => x.f_avg_pool3d(&kernel, &strides, &padding, false, true, 1)?,
        (Reduction::Mean, 2) => x.f_avg_pool2d(&kernel, &strides, &padding, false, true, None)?,
        (Reduction::Mean, _) => x.f_avg_pool3d(&kernel, &strides, &padding, false, true, None)?,
    };
    let y = if n == 1 { y.f_squeeze_dim(2)? } else { y };
    let y = narrow_spatial(y, 2, &wanted)?;
    let channels_last: Vec<i64> = [0].into_iter().chain(2..n as i64 + 2).chain([1]).collect();
    Ok(Some(y.f_permute(channels_last)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_cover_the_window_in_order() {
        let mut offset = vec![0, 0];
        let mut seen = vec![offset.clone()];
        while next_offset(&mut offset, &[2, 3]) {
            seen.push(offset.clone());
        }
        assert_eq!(seen.len(), 6);
        assert_eq!(seen[1], [0, 1]);
        assert_eq!(seen[5], [1, 2]);
    }
}
