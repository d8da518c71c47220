//! Named mapped axes (JAX's `axis_name`) and the collectives over them: `pmean` and `psum`
//! inside a `vmap` whose `axis_name` is given, as Flax's `BatchNorm(axis_name=…)` averages its
//! statistics over the mapped axis.

use crate::core::batching;
use crate::core::errors::{Error, Result};
use crate::core::scope::Scope;
use tch::Tensor;

/// How a named axis is mapped in this run.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum MappedAxis {
    /// Batched on libtorch's vmap level `level`: collectives reduce over it.
    Batched(i64),
    /// Run one member at a time (a `vmap` during `init`): a collective sees one member, so
    /// it returns its input (`pmean`) as if the axis had size 1.
    Looped,
}

impl<'v> Scope<'v> {
    /// Binds `name` to a mapped axis for the code running in this scope.
    pub(crate) fn bind_axis(&mut self, name: String, axis: MappedAxis) {
        self.config.axes.push((name, axis));
    }

    fn axis(&self, name: &str) -> Result<&MappedAxis> {
        self.config.axes.iter().rev().find(|(n, _)| n == name).map(|(_, axis)| axis).ok_or_else(|| {
            Error::Value(format!("unbound axis name: {name} (no enclosing vmap has axis_name=\"{name}\")"))
        })
    }

    /// The mean of `t` over the mapped axis `axis_name` (JAX's `lax.pmean`): the same value
    /// for every member of the enclosing `vmap(axis_name=…)`. Differentiable.
    ///
    /// During `init`, which runs a `vmap`'s members one at a time, each member sees only its
    /// own value (the variables `init` creates do not depend on it).
    pub fn pmean(&self, t: &Tensor, axis_name: &str) -> Result<Tensor> {
        match self.axis(axis_name)? {
            MappedAxis::Batched(level) => batching::mean_over_axis(t, *level),
            MappedAxis::Looped => Ok(t.shallow_clone()),
        }
    }

    /// The sum of `t` over the mapped axis `axis_name` (JAX's `lax.psum`); see
    /// [`pmean`](Self::pmean) for `init`.
    pub fn psum(&self, t: &Tensor, axis_name: &str) -> Result<Tensor> {
        match self.axis(axis_name)? {
            MappedAxis::Batched(level) => batching::sum_over_axis(t, *level),
            MappedAxis::Looped => Ok(t.shallow_clone()),
        }
    }
}
