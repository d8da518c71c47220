//! `Dims`: Flax's `int | Sequence[int]` attributes (`strides`, `input_dilation`,
//! `kernel_dilation`, …), one value for every spatial dimension or one per dimension.

use crate::core::repr::FlaxRepr;

/// One size for every spatial dimension (`All`, Flax's plain `int`) or one per dimension
/// (`Each`, a sequence). `2.into()`, `[2, 1].into()` and `vec![2, 1].into()` build them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dims {
    /// The same value for every dimension.
    All(i64),
    /// One value per dimension, in order.
    Each(Vec<i64>),
}

impl Dims {
    /// The value of each of `n` dimensions (Flax's `maybe_broadcast`), or a description of
    /// why a sequence does not fit `n` dimensions.
    pub(crate) fn broadcast(&self, n: usize) -> Result<Vec<i64>, String> {
        match self {
            Dims::All(v) => Ok(vec![*v; n]),
            Dims::Each(values) if values.len() == n => Ok(values.clone()),
            Dims::Each(values) => {
                Err(format!("expected an int or a sequence of {n} ints, got {}", values.flax_repr()))
            }
        }
    }
}

impl From<i64> for Dims {
    fn from(value: i64) -> Self {
        Dims::All(value)
    }
}

impl<const N: usize> From<[i64; N]> for Dims {
    fn from(values: [i64; N]) -> Self {
        Dims::Each(values.to_vec())
    }
}

impl From<&[i64]> for Dims {
    fn from(values: &[i64]) -> Self {
        Dims::Each(values.to_vec())
    }
}

impl From<Vec<i64>> for Dims {
    fn from(values: Vec<i64>) -> Self {
        Dims::Each(values)
    }
}

impl FlaxRepr for Dims {
    fn flax_repr(&self) -> String {
        match self {
            Dims::All(v) => v.to_string(),
            Dims::Each(values) => values.flax_repr(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasts_like_flax() {
        assert_eq!(Dims::from(2).broadcast(3).unwrap(), [2, 2, 2]);
        assert_eq!(Dims::from([1, 2]).broadcast(2).unwrap(), [1, 2]);
        assert!(Dims::from([1, 2]).broadcast(3).unwrap_err().contains("sequence of 3 ints, got (1, 2)"));
        assert_eq!(Dims::from(vec![3]).flax_repr(), "(3,)");
        assert_eq!(Dims::from(1).flax_repr(), "1");
    }
}
