//! A seeded, shuffling batch iterator over any [`Tree`] of tensors that share their leading
//! (example) dimension.

use crate::core::errors::{Error, Result};
use crate::core::rng::PRNGKey;
use crate::core::scalar_ops::ScalarOps;
use crate::random::permutation;
use crate::tree::{self, Tree};
use tch::{Device, Kind, Tensor};

/// What happens to the last examples when the number of examples is not a multiple of the
/// batch size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Remainder {
    /// They are left out (`drop_remainder=True`): every batch is full, as in training.
    #[default]
    Drop,
    /// They form a smaller last batch.
    Keep,
    /// They form a last batch padded with zeros to the full size, and every batch carries a
    /// mask of its real examples: every example is evaluated and every batch has the same
    /// shape (the spec's "Processing the entire dataset", L2293-2480).
    Pad,
}

/// One batch: the data's tree with `batch_size` (or fewer) examples, and, under
/// [`Remainder::Pad`], the `bool[batch_size]` mask of the real (not padding) examples
/// (give it to the metrics as the model output `mask`).
#[derive(Debug)]
pub struct Batch<T> {
    /// The examples, in the data's structure.
    pub data: T,
    /// Which examples are real, under [`Remainder::Pad`]; `None` otherwise.
    pub mask: Option<Tensor>,
}

/// An iterator over the batches of one pass (epoch) through a data set.
///
/// ```
/// use flax::data::{Batches, Remainder};
/// use flax::tch::{Device, Kind, Tensor};
/// use flax::PRNGKey;
///
/// # fn main() -> flax::Result<()> {
/// let data = (Tensor::arange(10, (Kind::Float, Device::Cpu)), Tensor::arange(10, (Kind::Int64, Device::Cpu)));
/// // Training: a new order every epoch (`jax.random.permutation`), full batches only.
/// let key = PRNGKey::new(0).fold_in(1);
/// let epoch = Batches::new(&data, 4)?.shuffle(key)?;
/// assert_eq!(epoch.len(), 2);
/// // Evaluation: every example once, the last batch padded and masked.
/// let batches: Vec<_> = Batches::new(&data, 4)?.remainder(Remainder::Pad).collect::<flax::Result<_>>()?;
/// let last = &batches[2];
/// assert_eq!(last.data.0.size(), [4]);
/// assert_eq!(Vec::<bool>::try_from(last.mask.as_ref().unwrap())?, [true, true, false, false]);
/// # Ok(())
/// # }
/// ```
///
/// With [`Batches::shuffle`], batch `i` holds the examples `perm[i * batch_size..(i + 1) *
/// batch_size]` of `perm = jax.random.permutation(key, len)`: the batches of the spec's
/// epoch loop (L3488-3549) for the same key. Batches are copies (`index_select`) when
/// shuffled, views of the data otherwise; they are made on the data's device.
#[derive(Debug)]
pub struct Batches<'d, T> {
    data: &'d T,
    len: i64,
    batch_size: i64,
    order: Option<Tensor>,
    remainder: Remainder,
    device: Device,
    next: i64,
}

impl<'d, T: Tree> Batches<'d, T> {
    /// The batches of `data` in order, `batch_size` examples each, the remainder dropped.
    ///
    /// # Errors
    /// [`Error::Value`] when `batch_size` is not positive, `data` has no tensor, or its
    /// tensors differ in their leading dimension (or have none).
    pub fn new(data: &'d T, batch_size: i64) -> Result<Self> {
        if batch_size <= 0 {
            return Err(Error::Value(format!("batch_size must be positive, got {batch_size}")));
        }
        let leaves = tree::leaves(data);
        let first =
            leaves.first().ok_or_else(|| Error::Value("the data has no tensors to batch".to_owned()))?;
        let len = leading_dim(first)?;
        for leaf in &leaves[1..] {
            if leading_dim(leaf)? != len {
                return Err(Error::Value(format!(
                    "every tensor of the data must have the same leading dimension: found shapes {:?} and {:?}",
                    first.size(),
                    leaf.size()
                )));
            }
        }
        let device = first.device();
        Ok(Batches { data, len, batch_size, order: None, remainder: Remainder::Drop, device, next: 0 })
    }

    /// Visits the examples in the order `jax.random.permutation(key, len)`. Use a new key
    /// per epoch (`key.fold_in(epoch)`).
    ///
    /// # Errors
    /// libtorch's.
    pub fn shuffle(mut self, key: PRNGKey) -> Result<Self> {
        self.order = Some(permutation(key, self.len, self.device)?);
        Ok(self)
    }

    /// What to do with the examples left over after the last full batch (default
    /// [`Remainder::Drop`]).
    pub fn remainder(mut self, remainder: Remainder) -> Self {
        self.remainder = remainder;
        self
    }

    /// The examples of the next batch, from `start`, `n` of them.
    fn select(&self, start: i64, n: i64) -> Result<T> {
        match &self.order {
            Some(order) => {
                let index = order.f_narrow(0, start, n)?;
                tree::tree_map(self.data, |leaf| Ok(leaf.f_index_select(0, &index)?))
            }
            None => tree::tree_map(self.data, |leaf| Ok(leaf.f_narrow(0, start, n)?)),
        }
    }

    /// The batch starting at `start`, padded and masked under [`Remainder::Pad`].
    fn batch(&self, start: i64) -> Result<Batch<T>> {
        let n = self.batch_size.min(self.len - start);
        let data = self.select(start, n)?;
        if self.remainder != Remainder::Pad {
            return Ok(Batch { data, mask: None });
        }
        let padding = self.batch_size - n;
        let mask = Tensor::try_arange(self.batch_size, (Kind::Int64, self.device))?.try_lt(n)?;
        let data = if padding == 0 {
            data
        } else {
            tree::tree_map(&data, |leaf| {
                // constant_pad_nd lists (before, after) pairs from the last dimension.
                let mut pad = vec![0; 2 * leaf.dim()];
                pad[2 * leaf.dim() - 1] = padding;
                Ok(leaf.f_constant_pad_nd(pad.as_slice())?)
            })?
        };
        Ok(Batch { data, mask: Some(mask) })
    }
}

impl<T: Tree> Iterator for Batches<'_, T> {
    type Item = Result<Batch<T>>;

    fn next(&mut self) -> Option<Self::Item> {
        let remaining = self.len - self.next;
        let full = remaining >= self.batch_size;
        if remaining <= 0 || (!full && self.remainder == Remainder::Drop) {
            return None;
        }
        let batch = self.batch(self.next);
        self.next += self.batch_size;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = (self.len - self.next).max(0);
        let batches = match self.remainder {
            Remainder::Drop => remaining / self.batch_size,
            Remainder::Keep | Remainder::Pad => (remaining + self.batch_size - 1) / self.batch_size,
        };
        (batches as usize, Some(batches as usize))
    }
}

impl<T: Tree> ExactSizeIterator for Batches<'_, T> {}

/// The leading (example) dimension of a data tensor.
fn leading_dim(t: &Tensor) -> Result<i64> {
    t.size().first().copied().ok_or_else(|| {
        Error::Value("a tensor of the data is 0-dimensional: it has no examples to batch".to_owned())
    })
}
