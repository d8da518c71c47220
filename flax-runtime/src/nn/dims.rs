//! `Dims`: Flax's `int | Sequence[int]` attributes (`strides`, `kernel_dilation`,
//! DenseGeneral's `features` and `axis`, …), keeping which of the two was given.

use crate::core::repr::FlaxRepr;

/// A bare int (`Int`) or a sequence of ints (`Seq`), as a Flax attribute typed
/// `int | Sequence[int]` holds it. Each layer reads it as Flax does: convolutions broadcast
/// an int to every spatial dimension (`Dims::broadcast`), `DenseGeneral` takes it as a
/// one-element tuple (`Dims::to_tuple`). `2.into()`, `[2, 1].into()` and
/// `vec![2, 1].into()` build them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dims {
    /// A bare int.
    Int(i64),
    /// A sequence of ints.
    Seq(Vec<i64>),
}

impl Dims {
    /// The value of each of `n` dimensions (Flax's `maybe_broadcast`), or a description of
    /// why a sequence does not fit `n` dimensions.
    pub(crate) fn broadcast(&self, n: usize) -> Result<Vec<i64>, String> {
        match self {
            Dims::Int(v) => Ok(vec![*v; n]),
            Dims::Seq(values) if values.len() == n => Ok(values.clone()),
            Dims::Seq(values) => {
                Err(format!("expected an int or a sequence of {n} ints, got {}", values.flax_repr()))
            }
        }
    }

    /// The values as a tuple, an int being a one-element one (Flax's `_canonicalize_tuple`).
    pub(crate) fn to_tuple(&self) -> Vec<i64> {
        match self {
            Dims::Int(v) => vec![*v],
            Dims::Seq(values) => values.clone(),
        }
    }
}

impl From<i64> for Dims {
    fn from(value: i64) -> Self {
        Dims::Int(value)
    }
}

impl<const N: usize> From<[i64; N]> for Dims {
    fn from(values: [i64; N]) -> Self {
        Dims::Seq(values.to_vec())
    }
}

impl From<&[i64]> for Dims {
    fn from(values: &[i64]) -> Self {
        Dims::Seq(values.to_vec())
    }
}

impl From<Vec<i64>> for Dims {
    fn from(values: Vec<i64>) -> Self {
        Dims::Seq(values)
    }
}

impl FlaxRepr for Dims {
    fn flax_repr(&self) -> String {
        match self {
            Dims::Int(v) => v.to_string(),
            Dims::Seq(values) => values.flax_repr(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_flax() {
        assert_eq!(Dims::from(2).broadcast(3).unwrap(), [2, 2, 2]);
        assert_eq!(Dims::from([1, 2]).broadcast(2).unwrap(), [1, 2]);
        assert!(Dims::from([1, 2]).broadcast(3).unwrap_err().contains("sequence of 3 ints, got (1, 2)"));
        assert_eq!(Dims::from(4).to_tuple(), [4]);
        assert_eq!(Dims::from([4, 5]).to_tuple(), [4, 5]);
        assert_eq!(Dims::from(vec![3]).flax_repr(), "(3,)");
        assert_eq!(Dims::from(1).flax_repr(), "1");
    }
}
