//! A tree's leaves packed into one contiguous buffer per dtype, so that a collective over a
//! whole tree is one collective per dtype, not one per leaf (what DDP's buckets and JAX's
//! fused all-reduces do): per-message latency, not bandwidth, dominates small leaves.

use crate::core::errors::Result;
use crate::tree::{self, KeyPath, Tree};
use tch::{Kind, Tensor};

/// Where each leaf lies in the buffers: its buffer, its offset along the buffer's last axis,
/// and its shape without the leading `rows` axis.
struct Slot {
    buffer: usize,
    offset: i64,
    shape: Vec<i64>,
}

/// The buffers of one tree, `[rows, n]` each (`[n]` when `rows` is `None`), and where each
/// leaf went.
pub(super) struct Flat {
    /// One per dtype, in the order the dtypes first occur among the leaves.
    pub(super) buffers: Vec<Tensor>,
    slots: Vec<Slot>,
}

impl Flat {
    /// Packs the leaves of `tree`. With `rows = Some(r)` every leaf's leading dimension must
    /// be `r` (checked by the caller): leaf row `i` goes to buffer row `i`, so that chunk `i`
    /// of a buffer holds row `i` of every leaf (what reduce-scatter splits).
    pub(super) fn pack<T: Tree>(tree: &T, rows: Option<i64>) -> Result<Self> {
        let mut kinds: Vec<Kind> = Vec::new();
        let mut parts: Vec<Vec<Tensor>> = Vec::new();
        let mut offsets: Vec<i64> = Vec::new();
        let mut slots = Vec::new();
        tree.visit_leaves([], &mut KeyPath::new(), &mut |_, leaf, []| {
            let kind = leaf.f_kind()?;
            let buffer = kinds.iter().position(|k| *k == kind).unwrap_or_else(|| {
                kinds.push(kind);
                parts.push(Vec::new());
                offsets.push(0);
                kinds.len() - 1
            });
            let (part, shape) = match rows {
                Some(r) => (leaf.f_reshape([r, -1])?, leaf.size()[1..].to_vec()),
                None => (leaf.f_reshape([-1])?, leaf.size()),
            };
            slots.push(Slot { buffer, offset: offsets[buffer], shape });
            offsets[buffer] += part.size().last().copied().unwrap_or(0);
            parts[buffer].push(part);
            Ok(())
        })?;
        let axis = if rows.is_some() { 1 } else { 0 };
        let buffers = parts.iter().map(|p| Ok(Tensor::f_cat(p, axis)?)).collect::<Result<_>>()?;
        Ok(Flat { buffers, slots })
    }

    /// A tree shaped like `template` whose leaves are views of `buffers` (the packed buffers
    /// after a collective, each `[lead.., n]`): each leaf gets the buffer's leading axes
    /// `lead` before its own shape.
    pub(super) fn unpack<T: Tree>(&self, template: &T, buffers: &[Tensor]) -> Result<T> {
        let leaves = self.slots.iter().map(|slot| {
            let buffer = &buffers[slot.buffer];
            let size = buffer.size();
            let (last, lead) = size.split_last().expect("a packed buffer has at least one axis");
            let numel: i64 = slot.shape.iter().product();
            debug_assert!(slot.offset + numel <= *last);
            let shape: Vec<i64> = lead.iter().chain(&slot.shape).copied().collect();
            Ok(buffer.f_narrow(-1, slot.offset, numel)?.f_reshape(shape)?)
        });
        tree::tree_unflatten(template, leaves.collect::<Result<Vec<_>>>()?)
    }
}
