//! `frozen_dict!`: a [`FrozenDict`](crate::FrozenDict) written as Python's dict literal.
//!
//! Flax code builds variable dictionaries inline — `model.apply({'params': params}, x)`,
//! `{'params': params, 'batch_stats': stats}` — and a port should not need a helper function
//! or a `from_iter` over `(String, Value)` pairs for each of them.

/// Builds a [`FrozenDict`](crate::FrozenDict) from `"key": value` pairs, in the order written,
/// as Flax's `{'params': params}`; each value is anything that converts into a
/// [`Value`](crate::Value): a `FrozenDict` (or a reference to one, cloned: its tensors are
/// shared, not copied), a `Tensor`, a number, a string, or a nested `frozen_dict!`.
///
/// ```
/// use flax::{frozen_dict, FrozenDict};
/// use tch::Tensor;
///
/// let params = frozen_dict! { "Dense_0": frozen_dict! { "kernel": Tensor::ones([3, 2], tch::kind::FLOAT_CPU) } };
/// let variables = frozen_dict! { "params": &params, "batch_stats": FrozenDict::new() };
/// assert_eq!(variables.keys().collect::<Vec<_>>(), ["params", "batch_stats"]);
/// assert_eq!(variables.tensor(&["params", "Dense_0", "kernel"]).unwrap().size(), [3, 2]);
/// ```
#[macro_export]
macro_rules! frozen_dict {
    ($($key:literal : $value:expr),* $(,)?) => {
        <$crate::FrozenDict as ::std::iter::FromIterator<(::std::string::String, $crate::Value)>>::from_iter([
            $((::std::string::String::from($key), $crate::Value::from($value))),*
        ])
    };
}
