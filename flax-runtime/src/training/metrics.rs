//! Metrics in the shape of clu's `clu.metrics` (what the spec's quickstart uses): a
//! [`Metric`] accumulates per-batch statistics with `from_model_output` and `merge` and turns
//! them into a value with `compute`; a [`Collection`] does the same for named metrics at once.
//!
//! ```
//! use flax::tch::{Kind, Tensor};
//! use flax::training::metrics::{Accuracy, Average, Collection, Loss};
//! use flax::tree::Tree;
//!
//! // clu: `class Metrics(metrics.Collection): accuracy: metrics.Accuracy;
//! //       loss: metrics.Average.from_output('loss')`
//! #[derive(Tree, Collection)]
//! struct Metrics {
//!     accuracy: Accuracy,
//!     loss: Average<Loss>,
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let logits = Tensor::from_slice(&[0.1f32, 0.9, 0.8, 0.2]).reshape([2, 2]);
//! let labels = Tensor::from_slice(&[1i64, 1]);
//! let loss = Tensor::from(0.5f32);
//! let update = Metrics::single_from_model_output(&[("logits", &logits), ("labels", &labels), ("loss", &loss)])?;
//! let metrics = Metrics::empty().merge(&update)?;
//! let computed = metrics.compute()?;
//! assert_eq!(computed["accuracy"].double_value(&[]), 0.5);
//! assert_eq!(computed["loss"].double_value(&[]), 0.5);
//! # Ok(())
//! # }
//! ```
//!
//! Metrics are [`Tree`]s, so they live in a `TrainState` and are saved with it. Their
//! statistics stay on the device of the model outputs (no synchronisation per batch);
//! `compute` returns 0-d tensors, read once per epoch. clu's pmap-only parts (`reduce`,
//! `gather_from_model_output` and the collection's `_reduction_counter`) have no equivalent.

use crate::core::errors::{Error, Result};
use crate::core::scalar_ops::ScalarOps;
use crate::core::tensor_checks::check_defined;
use crate::optax::losses::check_class_labels;
use crate::tree::Tree;
use indexmap::IndexMap;
use std::marker::PhantomData;
use tch::{Kind, Tensor};

/// `#[derive(Collection)]`: implements [`Collection`] for a struct whose named fields are
/// [`Metric`]s (each field is computed under its name). Derive [`Tree`] alongside it.
pub use flax_macros::Collection;

/// The model outputs a metric is made from, by name: clu's `**kwargs` (`logits=`, `labels=`,
/// `loss=`, and an optional `mask=` marking the valid examples of a padded batch).
pub type ModelOutputs<'a> = [(&'a str, &'a Tensor)];

/// What [`Collection::compute`] returns: each metric's value under its field name, in field
/// order (clu's `dict[str, jnp.ndarray]`).
pub type ComputedMetrics = IndexMap<&'static str, Tensor>;

/// The output named `name`.
///
/// # Errors
/// [`Error::Value`] when `outputs` has no such output (clu's missing keyword argument).
pub fn model_output<'a>(outputs: &ModelOutputs<'a>, name: &str) -> Result<&'a Tensor> {
    find_output(outputs, name).ok_or_else(|| {
        let given: Vec<&str> = outputs.iter().map(|(n, _)| *n).collect();
        Error::Value(format!("the metric needs the model output \"{name}\", but only {given:?} were given"))
    })
}

fn find_output<'a>(outputs: &ModelOutputs<'a>, name: &str) -> Option<&'a Tensor> {
    outputs.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// One metric (`clu.metrics.Metric`): its accumulated statistics are the tree's leaves.
pub trait Metric: Tree + Sized {
    /// The statistics of no data, so that `empty().merge(m)` is `m` (`Metric.empty()`).
    fn empty() -> Self;

    /// The statistics of one batch (`Metric.from_model_output(**outputs)`).
    ///
    /// # Errors
    /// [`Error::Value`] when an output it needs is missing or has the wrong rank or dtype;
    /// libtorch's.
    fn from_model_output(outputs: &ModelOutputs<'_>) -> Result<Self>;

    /// The statistics of both (`Metric.merge(other)`). `self` is consumed, and moved to
    /// `other`'s device if it is elsewhere (an `empty()` metric is on the CPU).
    ///
    /// # Errors
    /// [`Error::Value`] when the statistics' shapes differ; libtorch's.
    fn merge(self, other: &Self) -> Result<Self>;

    /// The metric's value, a 0-d tensor (`Metric.compute()`).
    ///
    /// # Errors
    /// libtorch's.
    fn compute(&self) -> Result<Tensor>;
}

/// Several named metrics updated together (`clu.metrics.Collection`); derive it with
/// `#[derive(Tree, Collection)]` on a struct of [`Metric`] fields.
pub trait Collection: Tree + Sized {
    /// Every metric empty (`Collection.empty()`).
    fn empty() -> Self;

    /// Every metric from one batch's outputs; each reads the outputs it needs
    /// (`Collection.single_from_model_output(**outputs)`).
    ///
    /// # Errors
    /// The first metric's error.
    fn single_from_model_output(outputs: &ModelOutputs<'_>) -> Result<Self>;

    /// Every metric merged with its counterpart in `other` (`Collection.merge(other)`).
    ///
    /// # Errors
    /// The first metric's error.
    fn merge(self, other: &Self) -> Result<Self>;

    /// Every metric's value by field name (`Collection.compute()`).
    ///
    /// # Errors
    /// The first metric's error.
    fn compute(&self) -> Result<ComputedMetrics>;
}

/// The name of the model output an [`Average`] reads: clu's `Average.from_output(name)` is
/// `Average<N>` with `N::NAME == name`. Make new names with [`output_name!`](crate::output_name).
pub trait OutputName {
    /// The output's name.
    const NAME: &'static str;
}

/// Declares a type naming a model output, for [`Average`]:
/// `flax::output_name!(pub Perplexity = "perplexity");` then `Average<Perplexity>`.
#[macro_export]
macro_rules! output_name {
    ($(#[$attr:meta])* $vis:vis $name:ident = $output:literal) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        $vis struct $name;

        impl $crate::training::metrics::OutputName for $name {
            const NAME: &'static str = $output;
        }
    };
}

output_name!(
    /// The output `values`, which clu's plain `Average` reads.
    pub Values = "values"
);
output_name!(
    /// The output `loss` (`Average.from_output('loss')`).
    pub Loss = "loss"
);

/// The mean of a model output over every example seen (`clu.metrics.Average`, read from the
/// output `N::NAME`; `Average<Loss>` is `Average.from_output('loss')`).
///
/// A scalar output (a batch's mean loss) counts once per batch, so the epoch's value is the
/// mean of the batch means, as in the spec's quickstart. A per-example output honours the
/// output `mask` when there is one with the same leading dimension; otherwise the mask is
/// ignored, as clu's `from_output` does (clu also logs a warning).
#[derive(Debug, Tree)]
pub struct Average<N = Values> {
    /// The sum of the values seen (`float32` for `float32` outputs).
    pub total: Tensor,
    /// The number of values seen (`int32`).
    pub count: Tensor,
    #[tree(static)]
    name: PhantomData<fn() -> N>,
}

impl<N> Average<N> {
    /// The statistics of `values`, those where `mask` is false left out
    /// (`Average.from_model_output(values, mask)`); a 0-d value counts as one.
    ///
    /// # Errors
    /// [`Error::Value`] when `mask`'s leading dimension is not `values`'; libtorch's.
    pub fn from_values(values: &Tensor, mask: Option<&Tensor>) -> Result<Self> {
        let (total, count) = masked_total_and_count(values, mask)?;
        Ok(Average { total, count, name: PhantomData })
    }
}

impl<N: OutputName> Metric for Average<N> {
    fn empty() -> Self {
        let (total, count) = empty_total_and_count();
        Average { total, count, name: PhantomData }
    }

    fn from_model_output(outputs: &ModelOutputs<'_>) -> Result<Self> {
        let values = model_output(outputs, N::NAME)?;
        let leading = values.size().first().copied();
        let mask = find_output(outputs, "mask").filter(|mask| mask.size().first().copied() == leading);
        Self::from_values(values, mask)
    }

    fn merge(self, other: &Self) -> Result<Self> {
        let (total, count) = merged((self.total, self.count), (&other.total, &other.count))?;
        Ok(Average { total, count, name: PhantomData })
    }

    /// `total / count`. Over no values this is clu's `0 / 0 = NaN`: the value is not
    /// defined, and returning clu's keeps logs comparable; the state (`total = 0`, `count =
    /// 0`, what a `TrainState` saves) stays finite, and merging a real batch gives its mean.
    fn compute(&self) -> Result<Tensor> {
        Ok(self.total.f_div(&self.count)?)
    }
}

/// The fraction of examples whose highest logit is the label (`clu.metrics.Accuracy`), from
/// the outputs `logits` (`[..., classes]`) and `labels` (integers, the logits' shape without
/// the class axis: a mismatch is an error, where clu would broadcast), and the optional `mask`
/// of valid examples.
#[derive(Debug, Tree)]
pub struct Accuracy {
    /// The number of correct predictions (`float32`).
    pub total: Tensor,
    /// The number of predictions (`int32`).
    pub count: Tensor,
}

impl Metric for Accuracy {
    fn empty() -> Self {
        let (total, count) = empty_total_and_count();
        Accuracy { total, count }
    }

    /// clu requires `int32` labels; any integer dtype is accepted here, since libtorch's
    /// class indices are `int64`.
    fn from_model_output(outputs: &ModelOutputs<'_>) -> Result<Self> {
        let logits = model_output(outputs, "logits")?;
        let labels = model_output(outputs, "labels")?;
        if logits.dim() != labels.dim() + 1 || labels.f_is_floating_point()? || labels.f_kind()? == Kind::Bool
        {
            return Err(Error::Value(format!(
                "Expected integer labels and logits.ndim={}==labels.ndim+1={} (labels are {:?})",
                logits.dim(),
                labels.dim() + 1,
                labels.f_kind()?
            )));
        }
        check_class_labels(logits, labels)?;
        let correct = logits.f_argmax(-1, false)?.f_eq_tensor(labels)?.f_to_kind(Kind::Float)?;
        let (total, count) = masked_total_and_count(&correct, find_output(outputs, "mask"))?;
        Ok(Accuracy { total, count })
    }

    fn merge(self, other: &Self) -> Result<Self> {
        let (total, count) = merged((self.total, self.count), (&other.total, &other.count))?;
        Ok(Accuracy { total, count })
    }

    fn compute(&self) -> Result<Tensor> {
        Ok(self.total.f_div(&self.count)?)
    }
}

/// clu's `Average.empty()`: `total = 0.0` (`float32`), `count = 0` (`int32`).
fn empty_total_and_count() -> (Tensor, Tensor) {
    (Tensor::from(0.0f32), Tensor::from(0i32))
}

/// clu's `Average.from_model_output`: the sum and the number of the values where the mask
/// (broadcast over the trailing dimensions) is true.
fn masked_total_and_count(values: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
    check_defined(values, "the metric's values")?;
    if let Some(mask) = mask {
        check_defined(mask, "the metric's mask")?;
    }
    let values = if values.dim() == 0 { values.f_unsqueeze(0)? } else { values.shallow_clone() };
    let kind = values.f_kind()?;
    let Some(mask) = mask else {
        let count = Tensor::try_scalar_tensor(values.numel() as f64, (Kind::Int, values.device()))?;
        return Ok((values.f_sum(kind)?, count));
    };
    if mask.dim() == 0 || mask.size()[0] != values.size()[0] {
        return Err(Error::Value(format!(
            "Argument `mask` must have the same leading dimension as `values`. Received mask of dimension \
             {:?} and values of dimension {:?}.",
            mask.size(),
            values.size()
        )));
    }
    let mut mask = mask.f_to_kind(Kind::Bool)?;
    while mask.dim() < values.dim() {
        mask = mask.f_unsqueeze(-1)?;
    }
    let mask = mask.f_expand_as(&values)?;
    let total = values.try_where_scalarother(&mask, 0.0)?.f_sum(kind)?;
    Ok((total, mask.f_sum(Kind::Int)?))
}

/// clu's `Average.merge`: the sums and the counts added, on `other`'s device.
fn merged(
    (total, count): (Tensor, Tensor),
    (other_total, other_count): (&Tensor, &Tensor),
) -> Result<(Tensor, Tensor)> {
    if total.size() != other_total.size() {
        return Err(Error::Value(format!(
            "Expected same shape: {:?} != {:?}",
            total.size(),
            other_total.size()
        )));
    }
    let total = total.f_to_device(other_total.device())?.f_add(other_total)?;
    let count = count.f_to_device(other_count.device())?.f_add(other_count)?;
    Ok((total, count))
}
