//! `Padding`: Flax's `PaddingLike` for convolutions and pooling, its canonical form for a
//! given rank (`canonicalize_padding`), XLA's SAME rule (`lax.padtype_to_pads`), and the
//! wrap-around padding of `CIRCULAR` (`jnp.pad(mode='wrap')`).

use crate::core::errors::{Error, Result};
use crate::core::repr::FlaxRepr;
use crate::core::scalar_ops::ScalarOps;
use std::str::FromStr;
use tch::{Kind, Tensor};

/// How a convolution or a pooling window treats the borders of its input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Padding {
    /// `'SAME'`: the output has `ceil(in / stride)` positions; the padding is split evenly,
    /// the odd one out going to the high side (so it is asymmetric for some strides).
    Same,
    /// `'VALID'`: no padding.
    Valid,
    /// `'CIRCULAR'`: periodic boundary conditions (convolutions only).
    Circular,
    /// `'CAUSAL'`: left padding of a 1-D convolution, so that the output has the input's length.
    Causal,
    /// An int: that padding before and after every spatial dimension.
    Int(i64),
    /// One `(low, high)` pair per spatial dimension. Flax's sequence of ints `(p, q)` is
    /// `[(p, p), (q, q)]` (`From<[i64; N]>` converts it). Negative values crop.
    Explicit(Vec<(i64, i64)>),
}

impl Padding {
    /// Whether the padding is given as numbers (an int or pairs) rather than by name.
    pub(crate) fn is_explicit(&self) -> bool {
        matches!(self, Padding::Int(_) | Padding::Explicit(_))
    }

    /// Flax's `canonicalize_padding` of a numeric padding: one `(low, high)` pair per
    /// dimension for `rank` dimensions, or Flax's `ValueError` message.
    pub(crate) fn pairs(&self, rank: usize) -> Result<Vec<(i64, i64)>, String> {
        match self {
            Padding::Int(p) => Ok(vec![(*p, *p); rank]),
            Padding::Explicit(pairs) if pairs.len() == rank => Ok(pairs.clone()),
            _ => Err(format!(
                "Invalid padding format: {}, should be str, int, or a sequence of len {rank} where each \
                 element is an int or pair of ints.",
                self.flax_repr()
            )),
        }
    }
}

/// XLA's `SAME` padding (`lax.padtype_to_pads`): `ceil(in / stride)` outputs, the total
/// padding split with the extra element on the high side.
pub(crate) fn same_pads(in_shape: &[i64], window: &[i64], strides: &[i64]) -> Vec<(i64, i64)> {
    in_shape
        .iter()
        .zip(window)
        .zip(strides)
        .map(|((&n, &w), &s)| {
            let out = (n + s - 1) / s;
            let total = ((out - 1) * s + w - n).max(0);
            (total / 2, total - total / 2)
        })
        .collect()
}

/// The number of windows of `extent` elements at `stride` over `input` elements padded by
/// `(low, high)` (XLA's shape rule: 0 when none fits).
pub(crate) fn window_count(input: i64, extent: i64, stride: i64, (low, high): (i64, i64)) -> i64 {
    let padded = input + low + high;
    if padded < extent {
        0
    } else {
        (padded - extent) / stride + 1
    }
}

/// The padding libtorch's kernels (which pad both sides alike) can run `pads` with, on an
/// input of spatial shape `input`: `low` on both sides gives the same windows from the start
/// and at least as many, the extra ones being cut off with [`narrow_spatial`]. `None` when the
/// input has to be padded explicitly: a negative `low`, a `high` that adds windows, or a
/// `low` above `max_low` (libtorch's pooling takes at most half the window).
pub(crate) fn symmetric_padding(
    input: &[i64],
    extents: &[i64],
    strides: &[i64],
    pads: &[(i64, i64)],
    max_low: Option<&[i64]>,
) -> Option<Vec<i64>> {
    let fits = (0..input.len()).all(|i| {
        let (low, high) = pads[i];
        low >= 0
            && max_low.is_none_or(|m| low <= m[i])
            && window_count(input[i], extents[i], strides[i], (low, low))
                >= window_count(input[i], extents[i], strides[i], (low, high))
    });
    fits.then(|| pads.iter().map(|&(low, _)| low).collect())
}

/// `pads` as libtorch's `constant_pad_nd`/`pad` list them: last dimension first.
pub(crate) fn torch_pad_list(pads: &[(i64, i64)]) -> Vec<i64> {
    pads.iter().rev().flat_map(|&(low, high)| [low, high]).collect()
}

/// Keeps the first `shape[i]` positions of spatial dimension `first + i` of `y` (a view).
pub(crate) fn narrow_spatial(mut y: Tensor, first: usize, shape: &[i64]) -> Result<Tensor> {
    for (i, &len) in shape.iter().enumerate() {
        if y.size()[first + i] != len {
            y = y.f_narrow((first + i) as i64, 0, len)?;
        }
    }
    Ok(y)
}

/// `jnp.pad(x, …, mode='wrap')` along `dim`: `low` elements from the end before the start and
/// `high` from the start after the end, wrapping as often as needed.
pub(crate) fn pad_wrap(x: &Tensor, dim: i64, low: i64, high: i64) -> Result<Tensor> {
    if low == 0 && high == 0 {
        return Ok(x.shallow_clone());
    }
    let size = x.size()[dim as usize];
    if size == 0 {
        // jnp.pad's ValueError, before libtorch's remainder by zero.
        return Err(Error::Value(format!(
            "can't extend empty axis {dim} using modes other than 'constant' or 'empty'"
        )));
    }
    let index =
        Tensor::try_arange_start(-low, size + high, (Kind::Int64, x.device()))?.try_remainder(size)?;
    Ok(x.f_index_select(dim, &index)?)
}

impl From<i64> for Padding {
    fn from(p: i64) -> Self {
        Padding::Int(p)
    }
}

impl<const N: usize> From<[(i64, i64); N]> for Padding {
    fn from(pairs: [(i64, i64); N]) -> Self {
        Padding::Explicit(pairs.to_vec())
    }
}

impl From<Vec<(i64, i64)>> for Padding {
    fn from(pairs: Vec<(i64, i64)>) -> Self {
        Padding::Explicit(pairs)
    }
}

impl<const N: usize> From<[i64; N]> for Padding {
    fn from(pads: [i64; N]) -> Self {
        Padding::Explicit(pads.iter().map(|&p| (p, p)).collect())
    }
}

impl FromStr for Padding {
    type Err = Error;

    /// Flax's strings: `SAME` and `VALID` in any case (as `lax` reads them), `CIRCULAR` and
    /// `CAUSAL` as written.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "CIRCULAR" => Ok(Padding::Circular),
            "CAUSAL" => Ok(Padding::Causal),
            _ if s.eq_ignore_ascii_case("same") => Ok(Padding::Same),
            _ if s.eq_ignore_ascii_case("valid") => Ok(Padding::Valid),
            _ => Err(Error::Value(format!(
                "Unrecognized padding type: expected 'VALID', 'SAME', 'CIRCULAR' or 'CAUSAL', got {s}."
            ))),
        }
    }
}

impl FlaxRepr for Padding {
    fn flax_repr(&self) -> String {
        match self {
            Padding::Same => "'SAME'".into(),
            Padding::Valid => "'VALID'".into(),
            Padding::Circular => "'CIRCULAR'".into(),
            Padding::Causal => "'CAUSAL'".into(),
            Padding::Int(p) => p.to_string(),
            Padding::Explicit(pairs) => pairs.flax_repr(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_is_asymmetric_for_some_strides() {
        assert_eq!(same_pads(&[7, 8], &[3, 3], &[2, 2]), [(1, 1), (0, 1)]);
        assert_eq!(same_pads(&[5], &[4], &[1]), [(1, 2)]);
        assert_eq!(same_pads(&[4], &[1], &[2]), [(0, 0)]);
    }

    #[test]
    fn canonical_forms_follow_flax() {
        assert_eq!(Padding::Int(2).pairs(2).unwrap(), [(2, 2), (2, 2)]);
        assert_eq!(Padding::from([1, 0]).pairs(2).unwrap(), [(1, 1), (0, 0)]);
        let err = Padding::from([(1, 1)]).pairs(2).unwrap_err();
        assert!(err.starts_with("Invalid padding format: ((1, 1),), should be str, int,"), "{err}");
        assert_eq!("same".parse::<Padding>().unwrap(), Padding::Same);
        assert!("REFLECTED".parse::<Padding>().is_err());
        assert_eq!(Padding::Same.flax_repr(), "'SAME'");
    }

    #[test]
    fn wrap_padding_repeats_periodically() {
        let x = Tensor::from_slice(&[1i64, 2, 3]);
        let padded = pad_wrap(&x, 0, 4, 2).unwrap();
        assert_eq!(Vec::<i64>::try_from(padded).unwrap(), [3, 1, 2, 3, 1, 2, 3, 1, 2]);
    }
}
