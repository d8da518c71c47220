//! `RNN` and `Bidirectional` (Flax's `flax.linen.recurrent`): a cell applied over the time
//! axis of a sequence, with its params shared by every step, and both directions merged.
//!
//! Flax runs the cell under `nn.scan` (params broadcast); here the cell is called once per
//! step, which shares its params in the same way and derives the same param keys. Differences
//! from the spec's Flax 0.6.10, on purpose:
//! - `call` always returns `(carry, outputs)` (Flax's `return_carry=True`); Rust has one
//!   return type per method, so `return_carry` is left out: take `.1` for the outputs.
//! - `time_major`, `reverse` and `keep_order` are attributes only (Flax also takes them at
//!   the call): set them on a clone (`rnn.clone().reverse(true)`), which keeps the module's
//!   identity and params.
//! - `init_key` is left out: the initial carry is the cell's zero carry, which needs no key
//!   (Flax's default `init_fn`); pass `initial_carry` for another one. `unroll` and the
//!   `scan` lifting options have no counterpart.
//! - A cell given to an `RNN` is always its `cell` submodule (`RNN_0/cell/…`); Flax makes a
//!   cell constructed inside a parent's compact method a sibling of the `RNN` (`LSTMCell_0`).

use crate::core::errors::{Error, Result};
use crate::core::module::Module;
use crate::core::repr::FlaxRepr;
use crate::core::rng::PRNGKey;
use crate::core::scope::Scope;
use crate::module;
use crate::nn::dims::Dims;
use crate::nn::module_utils::shape_error;
use crate::tree::{self, Tree};
use std::fmt;
use tch::{Device, Kind, Tensor};

/// A cell that [`RNN`] can run over a sequence (Flax's `RNNCellBase`).
pub trait RNNCellBase: Module {
    /// The state carried from one step to the next (`(c, h)` for LSTMs, `h` for GRUs).
    type Carry: Tree + fmt::Debug;

    /// One step: the cell's `call`, from `carry` and the step's inputs to `(carry, output)`.
    fn step(&self, cx: &mut Scope<'_>, carry: &Self::Carry, inputs: &Tensor)
        -> Result<(Self::Carry, Tensor)>;

    /// The zero carry for `batch_dims` and `size` (Flax's `initialize_carry` with its default
    /// `zeros` `init_fn`; `rng` is what Flax passes, unused by zeros).
    fn initialize_carry(
        rng: PRNGKey,
        batch_dims: &[i64],
        size: &[i64],
        device: Device,
    ) -> Result<Self::Carry>;
}

/// Flips sequences along the time axis (Flax's `flip_sequences`), keeping padding at the end:
/// with `seq_lengths` (`(*batch)`), only the first `seq_lengths[b]` steps of each sequence are
/// reversed, as `(T - 1 - t + len) % T` indexes them.
pub fn flip_sequences(
    inputs: &Tensor,
    seq_lengths: Option<&Tensor>,
    num_batch_dims: usize,
    time_major: bool,
) -> Result<Tensor> {
    let time_axis = if time_major { 0 } else { num_batch_dims };
    let Some(lengths) = seq_lengths else {
        return Ok(inputs.f_flip([time_axis as i64])?);
    };
    let shape = inputs.size();
    let max_steps = shape[time_axis];
    let lengths = lengths.f_to_kind(Kind::Int64)?.f_unsqueeze(time_axis as i64)?;
    let mut steps_shape = vec![1; num_batch_dims + 1];
    steps_shape[time_axis] = max_steps;
    let steps = Tensor::f_arange_start_step(max_steps - 1, -1, -1, (Kind::Int64, inputs.device()))?
        .f_reshape(steps_shape)?;
    let mut idxs = steps.f_add(&lengths)?.f_remainder(max_steps)?;
    while idxs.dim() < shape.len() {
        idxs = idxs.f_unsqueeze(-1)?;
    }
    let idxs = idxs.f_expand(&shape, false)?;
    Ok(inputs.f_gather(time_axis as i64, &idxs, false)?)
}

/// Runs a cell over the time axis of `(*batch, time, *features)` inputs (`(time, *batch,
/// *features)` with `time_major`) (Flax's `nn.RNN`): `cell_size` is the carry's feature
/// shape (an int, or spatial dims and features for convolutional cells), the outputs are
/// stacked along the time axis. With `reverse` the sequence is processed from its end (and
/// the outputs are in processing order unless `keep_order`); with `seq_lengths` the padding
/// after each sequence stays at the end and the carry returned is the one after its last
/// valid step (padded steps still produce outputs, which are not zeroed).
#[module]
pub struct RNN<C: RNNCellBase> {
    /// The cell, the `cell` submodule.
    #[submodule]
    pub cell: C,
    /// The carry's feature shape.
    pub cell_size: Dims,
    /// Whether time is the first axis.
    #[module(default = false)]
    pub time_major: bool,
    /// Whether to process the sequences from their ends.
    #[module(default = false)]
    pub reverse: bool,
    /// With `reverse`, whether to return the outputs in the inputs' order.
    #[module(default = false)]
    pub keep_order: bool,
}

#[module]
impl<C: RNNCellBase> RNN<C> {
    /// Runs the cell over `inputs` from `initial_carry` (default: zeros); returns `(carry,
    /// outputs)`.
    #[compact]
    pub fn call(
        &self,
        cx: &mut Scope,
        inputs: &Tensor,
        initial_carry: Option<&C::Carry>,
        seq_lengths: Option<&Tensor>,
    ) -> Result<(C::Carry, Tensor)> {
        let shape = inputs.size();
        let size = self.cell_size.to_tuple();
        let feature_axes = match self.cell_size {
            Dims::Int(_) => 1,
            Dims::Seq(_) => size.len(),
        };
        if shape.len() < feature_axes + 1 {
            return Err(shape_error(
                cx,
                format!(
                    "RNN needs inputs with a time axis and {feature_axes} feature axes, got shape {}",
                    shape.flax_repr()
                ),
            ));
        }
        let time_axis = if self.time_major { 0 } else { shape.len() - feature_axes - 1 };
        let batch_dims: Vec<i64> = if self.time_major {
            shape[1..shape.len() - feature_axes].to_vec()
        } else {
            shape[..time_axis].to_vec()
        };
        let flip = |x: &Tensor| flip_sequences(x, seq_lengths, batch_dims.len(), self.time_major);
        let inputs = if self.reverse { flip(inputs)? } else { inputs.shallow_clone() };
        let mut carry = match initial_carry {
            Some(c) => tree::tree_map(c, |t| Ok(t.shallow_clone()))?,
            None => C::initialize_carry(PRNGKey::new(0), &batch_dims, &size, inputs.device())?,
        };
        let steps = shape[time_axis];
        let mut outputs = Vec::with_capacity(steps as usize);
        let mut carries = Vec::new();
        for t in 0..steps {
            let (next, y) = self.cell.step(cx, &carry, &inputs.f_select(time_axis as i64, t)?)?;
            if seq_lengths.is_some() {
                carries.push(tree::leaves(&next).into_iter().map(Tensor::shallow_clone).collect::<Vec<_>>());
            }
            outputs.push(y);
            carry = next;
        }
        let outputs = Tensor::f_stack(&outputs, time_axis as i64)?;
        if let Some(lengths) = seq_lengths {
            carry = select_last_carry(&carry, &carries, lengths)?;
        }
        let outputs = if self.reverse && self.keep_order { flip(&outputs)? } else { outputs };
        Ok((carry, outputs))
    }
}

/// The carry after each sequence's last valid step (Flax's `_select_last_carry`): per leaf,
/// the steps' values stacked on a new first axis, picked at `seq_lengths - 1` (a length of 0
/// picks the last step, as Python's index -1 does).
fn select_last_carry<T: Tree>(template: &T, carries: &[Vec<Tensor>], seq_lengths: &Tensor) -> Result<T> {
    let steps = carries.len() as i64;
    let last = seq_lengths.f_to_kind(Kind::Int64)?.f_sub_scalar(1)?.f_remainder(steps.max(1))?;
    let leaves = tree::leaves(template).len();
    let mut picked = Vec::with_capacity(leaves);
    for j in 0..leaves {
        let per_step: Vec<&Tensor> = carries.iter().map(|c| &c[j]).collect();
        let stacked = Tensor::f_stack(&per_step, 0)?;
        let mut index = last.shallow_clone();
        while index.dim() + 1 < stacked.dim() {
            index = index.f_unsqueeze(-1)?;
        }
        let mut index_shape = stacked.size();
        index_shape[0] = 1;
        let index = index.f_unsqueeze(0)?.f_expand(&index_shape, false)?;
        picked.push(stacked.f_gather(0, &index, false)?.f_squeeze_dim(0)?);
    }
    tree::tree_unflatten(template, picked)
}

/// Flax's default `merge_fn` of [`Bidirectional`]: concatenation along the last axis.
pub fn concatenate(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(Tensor::f_cat(&[a, b], -1)?)
}

/// How [`Bidirectional`] merges the two directions' outputs.
pub type MergeFn = fn(&Tensor, &Tensor) -> Result<Tensor>;

impl FlaxRepr for MergeFn {
    fn flax_repr(&self) -> String {
        "<function>".to_owned()
    }
}

/// The carry of a [`Bidirectional`]: `(forward carry, backward carry)`.
pub type BidirectionalCarry<F, B> = (<F as RNNCellBase>::Carry, <B as RNNCellBase>::Carry);

/// Runs `forward_rnn` over the sequence and `backward_rnn` over it reversed (outputs back in
/// the inputs' order), and merges the outputs with `merge_fn` (Flax's `nn.Bidirectional`).
/// The carry is `(forward carry, backward carry)`. The submodules are `forward_rnn` and
/// `backward_rnn`; their own `time_major`, `reverse` and `keep_order` are overridden.
#[module]
pub struct Bidirectional<F: RNNCellBase, B: RNNCellBase> {
    /// The forward RNN.
    #[submodule]
    pub forward_rnn: RNN<F>,
    /// The backward RNN.
    #[submodule]
    pub backward_rnn: RNN<B>,
    /// How the outputs are merged (default: [`concatenate`]).
    #[module(default = concatenate)]
    pub merge_fn: MergeFn,
    /// Whether time is the first axis.
    #[module(default = false)]
    pub time_major: bool,
}

#[module]
impl<F: RNNCellBase, B: RNNCellBase> Bidirectional<F, B> {
    /// Both directions over `inputs`; returns `((forward carry, backward carry), merged
    /// outputs)`.
    #[compact]
    pub fn call(
        &self,
        cx: &mut Scope,
        inputs: &Tensor,
        initial_carry: Option<&BidirectionalCarry<F, B>>,
        seq_lengths: Option<&Tensor>,
    ) -> Result<(BidirectionalCarry<F, B>, Tensor)> {
        let forward = self.forward_rnn.clone().time_major(self.time_major).reverse(false);
        let backward = self.backward_rnn.clone().time_major(self.time_major).reverse(true).keep_order(true);
        let (carry_forward, outputs_forward) =
            forward.call(cx, inputs, initial_carry.map(|(f, _)| f), seq_lengths)?;
        let (carry_backward, outputs_backward) =
            backward.call(cx, inputs, initial_carry.map(|(_, b)| b), seq_lengths)?;
        let outputs = (self.merge_fn)(&outputs_forward, &outputs_backward)?;
        Ok(((carry_forward, carry_backward), outputs))
    }
}

/// The carry shape `batch_dims + size` of a cell whose carry has one feature axis.
pub(crate) fn vector_carry_shape(batch_dims: &[i64], size: &[i64]) -> Result<Vec<i64>> {
    match size {
        [features] => Ok([batch_dims, &[*features]].concat()),
        _ => Err(Error::Value(format!(
            "this cell's carry has one feature axis: cell_size must be an int, got {}",
            size.flax_repr()
        ))),
    }
}
