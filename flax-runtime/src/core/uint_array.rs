//! Arrays of the unsigned dtypes libtorch (through tch 0.26) cannot hold: `uint16`, `uint32`
//! and `uint64`.
//!
//! Flax checkpoints hold such arrays, the commonest being a PRNG key (`jax.random.PRNGKey(0)`
//! is a `uint32[2]` array) kept as a `TrainState` field. They are kept host-side, as their
//! dtype, shape and raw little-endian bytes, so that they restore from Flax's msgpack and write
//! back byte for byte. They are state-dict leaves but not tensor leaves, like Python scalars:
//! tensor maps (optimizers, device moves) copy them through unchanged.

use crate::core::errors::{Error, Result};
use std::fmt;

/// An unsigned integer dtype wider than 8 bits, which tch 0.26 has no kind for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UintDtype {
    /// numpy's `uint16`.
    Uint16,
    /// numpy's `uint32` (JAX's PRNG key data).
    Uint32,
    /// numpy's `uint64`.
    Uint64,
}

impl UintDtype {
    /// Every unsigned dtype, for looking one up by name.
    pub const ALL: [UintDtype; 3] = [UintDtype::Uint16, UintDtype::Uint32, UintDtype::Uint64];

    /// numpy's name for the dtype, as Flax's msgpack format stores it.
    pub fn name(self) -> &'static str {
        match self {
            UintDtype::Uint16 => "uint16",
            UintDtype::Uint32 => "uint32",
            UintDtype::Uint64 => "uint64",
        }
    }

    /// The size of one element in bytes.
    pub fn itemsize(self) -> usize {
        match self {
            UintDtype::Uint16 => 2,
            UintDtype::Uint32 => 4,
            UintDtype::Uint64 => 8,
        }
    }

    /// The dtype numpy calls `name`, if it is one of these.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|dtype| dtype.name().as_bytes() == name)
    }
}

impl fmt::Display for UintDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A host-side `uint16`/`uint32`/`uint64` array: a dtype, a shape and the little-endian,
/// C-order element bytes, always exactly as many as the shape needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UintArray {
    dtype: UintDtype,
    shape: Vec<i64>,
    data: Vec<u8>,
}

impl UintArray {
    /// An array of `dtype` and `shape` from its little-endian, C-order element bytes.
    ///
    /// # Errors
    /// [`Error::Value`] when a dimension is negative or `data` is not exactly the bytes the
    /// shape needs.
    pub fn new(dtype: UintDtype, shape: Vec<i64>, data: Vec<u8>) -> Result<Self> {
        match byte_len(&shape, dtype.itemsize()) {
            Some(len) if len == data.len() => Ok(UintArray { dtype, shape, data }),
            Some(len) => Err(Error::Value(format!(
                "a {dtype} array of shape {shape:?} needs {len} bytes, not {}",
                data.len()
            ))),
            None => Err(Error::Value(format!("{shape:?} is not the shape of an array that fits in memory"))),
        }
    }

    /// The 1-D `uint32` array of `values`, e.g. the raw data of a PRNG key.
    pub fn from_u32(values: &[u32]) -> Self {
        UintArray {
            dtype: UintDtype::Uint32,
            shape: vec![values.len() as i64],
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// The dtype.
    pub fn dtype(&self) -> UintDtype {
        self.dtype
    }

    /// The shape (`[]` for a 0-d array).
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    /// The little-endian, C-order element bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.data.len() / self.dtype.itemsize()
    }

    /// The elements in C order, widened to `u64` (exactly: every dtype here fits).
    pub fn values(&self) -> Vec<u64> {
        self.data
            .chunks_exact(self.dtype.itemsize())
            .map(|bytes| {
                let mut wide = [0u8; 8];
                wide[..bytes.len()].copy_from_slice(bytes);
                u64::from_le_bytes(wide)
            })
            .collect()
    }
}

/// The bytes of a C-order array of `shape` with `itemsize`-byte elements, or `None` when a
/// dimension is negative or the size overflows `isize` (numpy's limit). Zero-sized dimensions
/// are counted as one while checking, so that a zero cannot hide an overflowing shape.
pub(crate) fn byte_len(shape: &[i64], itemsize: usize) -> Option<usize> {
    let capacity = shape.iter().try_fold(itemsize, |acc, &d| {
        usize::try_from(d.max(1)).ok().and_then(|d| acc.checked_mul(d)).filter(|&n| n <= isize::MAX as usize)
    })?;
    if shape.iter().any(|&d| d < 0) {
        return None;
    }
    Some(if shape.contains(&0) { 0 } else { capacity })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_little_endian_and_widened() {
        let bytes = [1, 0, 0xff, 0xff, 0, 1];
        let a = UintArray::new(UintDtype::Uint16, vec![3], bytes.to_vec()).unwrap();
        assert_eq!((a.values(), a.numel()), (vec![1, 65535, 256], 3));
        let key = UintArray::from_u32(&[0, 42]);
        assert_eq!((key.dtype(), key.shape(), key.values()), (UintDtype::Uint32, &[2][..], vec![0, 42]));
        let max = UintArray::new(UintDtype::Uint64, vec![], vec![0xff; 8]).unwrap();
        assert_eq!(max.values(), [u64::MAX]);
    }

    #[test]
    fn data_must_fill_the_shape_exactly() {
        assert!(UintArray::new(UintDtype::Uint32, vec![0, 5], vec![]).is_ok());
        let err = UintArray::new(UintDtype::Uint32, vec![2], vec![0; 4]).unwrap_err();
        assert!(matches!(&err, Error::Value(m) if m.contains("needs 8 bytes, not 4")), "{err}");
        assert!(UintArray::new(UintDtype::Uint16, vec![-1], vec![]).is_err());
        assert!(UintArray::new(UintDtype::Uint64, vec![0, 1 << 62, 1 << 62], vec![]).is_err());
    }

    #[test]
    fn dtypes_by_name() {
        assert_eq!(UintDtype::from_name(b"uint64"), Some(UintDtype::Uint64));
        assert_eq!(UintDtype::from_name(b"uint8"), None);
        assert_eq!(UintDtype::Uint16.to_string(), "uint16");
    }
}
