//! `RNN` and `Bidirectional` (Flax's `flax.linen.recurrent`): a cell applied over the time
//! axis of a sequence, with its params shared by every step, and both directions merged.
//!
//! As in Flax, [`RNN`] runs its cell under [`scan`](fn@crate::transforms::scan) (through
//! [`scan_fn`]: the cell is scanned in its own scope and keeps its name), with `params`
//! broadcast to every step and the `params` RNG stream shared (`split_rngs` `{"params":
//! false}`), over the time axis of the inputs. So the cell's params have Flax's paths and
//! `init` gives Flax's values for the same seed:
//! - a cell constructed inside a compact method (`nn::RNN::new(nn::LSTMCell::new(), 4)`
//!   written inline) keeps that method's module as its parent and is auto-named there, a
//!   sibling of the `RNN`: params `{"LSTMCell_0": {…}}`, and `RNN_0` has none;
//! - a cell constructed outside any module (an `RNN` built at top level) is adopted by the
//!   `RNN` as its `cell` submodule: params `{"cell": {…}}`.
//!
//! A cell using randomness (dropout) gets a different key at each step with
//! `.split_rngs([("params", false), ("dropout", true)])`.
//!
//! **Fused path.** When the cell is a plain [`LSTMCell`](crate::nn::LSTMCell) or
//! [`OptimizedLSTMCell`](crate::nn::OptimizedLSTMCell) (default `gate_fn` sigmoid and
//! `activation_fn` tanh, no `dtype` override) or [`GRUCell`](crate::nn::GRUCell) (likewise),
//! the cell's params exist (`apply`, not `init`), there are no `seq_lengths`, the scan options
//! are the defaults, and the inputs, carry and params share one floating dtype, the whole
//! sequence runs as libtorch's fused `lstm`/`gru` operator (oneDNN on CPU, cuDNN on CUDA)
//! instead of one scan step per time step. The weights are packed from Flax's layout on each
//! call, differentiably (gate order `i, f, g, o` for LSTMs, `r, z, n` for GRUs; Flax's biases go
//! in `bias_hh`, `bias_ih` is zero except GRU's input biases), so gradients reach the params as
//! on the per-step path; results equal the per-step path's to float rounding. `init`,
//! `capture_intermediates` and call recording (`tabulate`) keep the per-step path, so every
//! call Flax makes is made. [`fused_run_count`] tells how often the fused path ran; set
//! `fused(false)` to always take the per-step path.
//!
//! Differences from Flax 0.12, on purpose:
//! - `call` always returns `(carry, outputs)` (Flax's `return_carry=True`); Rust has one
//!   return type per method, so `return_carry` is left out: take `.1` for the outputs.
//! - `time_major`, `reverse` and `keep_order` are attributes only (Flax also takes them at
//!   the call): set them on a clone (`rnn.clone().reverse(true)`), which keeps the module's
//!   identity and params.
//! - The cells follow the spec's Flax 0.6.10 API: the carry's feature shape is the `RNN`'s
//!   `cell_size` attribute (Flax 0.12 reads it from the cell's `features`).
//! - `init_key` is left out: the initial carry is the cell's zero carry, which needs no key
//!   (Flax's default `init_fn`); pass `initial_carry` for another one. `unroll` is checked
//!   (at least 1) and has no effect on the eager loop.
//! - With `seq_lengths` and several batch dims, the carry after each sequence's last valid
//!   step is picked per batch element (Flax's `_select_last_carry` handles one batch dim).
//! - A module held in a field of the module that constructs the `RNN` (`RNN::new(self.cell
//!   .clone(), …)`) was adopted by that field and has no parent left here, so the `RNN`
//!   adopts it again as `cell`; in Flax it stays at its first place.

use crate::core::errors::{Error, Result};
use crate::core::filter::CollectionFilter;
use crate::core::module::Module;
use crate::core::repr::FlaxRepr;
use crate::core::rng::PRNGKey;
use crate::core::scalar_ops::ScalarOps;
use crate::core::scope::Scope;
use crate::module;
use crate::nn::dims::Dims;
use crate::nn::fused_rnn as fused;
use crate::nn::loop_invariant;
use crate::nn::module_utils::shape_error;
use crate::transforms::scan::{scan_fn, ScanOptions};
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

    /// The libtorch fused operator that computes exactly this cell over a whole sequence from
    /// its params, if there is one (default: none; `LSTMCell`, `OptimizedLSTMCell` and
    /// `GRUCell` with their default functions and dtype say which). [`RNN`] uses it at `apply`
    /// (see the module docs).
    fn fused(&self) -> Option<FusedCell> {
        None
    }
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
    let steps = Tensor::try_arange_start_step(max_steps - 1, -1, -1, (Kind::Int64, inputs.device()))?
        .f_reshape(steps_shape)?;
    let mut idxs = steps.f_add(&lengths)?.try_remainder(max_steps)?;
    while idxs.dim() < shape.len() {
        idxs = idxs.f_unsqueeze(-1)?;
    }
    let idxs = idxs.f_expand(&shape, false)?;
    Ok(inputs.f_gather(time_axis as i64, &idxs, false)?)
}

/// Which libtorch fused recurrent operator can run a cell's whole sequence (see the module
/// docs): the answer of [`RNNCellBase::fused`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusedCell {
    /// libtorch's `lstm`, for a cell with `LSTMCell`'s params and formulas.
    Lstm,
    /// libtorch's `gru`, for a cell with `GRUCell`'s params and formulas.
    Gru,
}

/// The RNG streams an [`RNN`] splits per step (`true`) or shares between steps (`false`)
/// (Flax's `split_rngs` mapping): `[("params", false), ("dropout", true)].into()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitRngs(pub Vec<(String, bool)>);

impl<S: Into<String>, const N: usize> From<[(S, bool); N]> for SplitRngs {
    fn from(streams: [(S, bool); N]) -> Self {
        SplitRngs(streams.into_iter().map(|(name, split)| (name.into(), split)).collect())
    }
}

impl FlaxRepr for SplitRngs {
    fn flax_repr(&self) -> String {
        let items: Vec<String> =
            self.0.iter().map(|(name, split)| format!("'{name}': {}", split.flax_repr())).collect();
        format!("{{{}}}", items.join(", "))
    }
}

/// The collections an [`RNN`] stacks along an axis, one entry per step (Flax's
/// `variable_axes` mapping): `[("intermediates", 1)].into()`. Empty by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VariableAxes(pub Vec<(String, i64)>);

impl<S: Into<String>, const N: usize> From<[(S, i64); N]> for VariableAxes {
    fn from(axes: [(S, i64); N]) -> Self {
        VariableAxes(axes.into_iter().map(|(name, axis)| (name.into(), axis)).collect())
    }
}

impl FlaxRepr for VariableAxes {
    fn flax_repr(&self) -> String {
        let items: Vec<String> = self.0.iter().map(|(name, axis)| format!("'{name}': {axis}")).collect();
        format!("FrozenDict({{{}}})", items.join(", "))
    }
}

thread_local! {
    static FUSED_RUNS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many sequences [`RNN`] ran through libtorch's fused `lstm`/`gru` operator on this
/// thread so far (see the module docs): a way to check that a model takes the fused path.
pub fn fused_run_count() -> u64 {
    FUSED_RUNS.with(std::cell::Cell::get)
}

/// Runs a cell over the time axis of `(*batch, time, *features)` inputs (`(time, *batch,
/// *features)` with `time_major`) (Flax's `nn.RNN`), as a [`scan`](fn@crate::transforms::scan)
/// of the cell: `cell_size` is the carry's feature shape (an int, or spatial dims and features
/// for convolutional cells), the outputs are stacked along the time axis. With `reverse` the
/// sequence is processed from its end (and the outputs are in processing order unless
/// `keep_order`); with `seq_lengths` the padding after each sequence stays at the end and the
/// carry returned is the one after its last valid step (padded steps still produce outputs,
/// which are not zeroed). The scan's options are Flax's attributes of the same names. See the
/// module docs for the params' paths and the fused path.
#[module]
pub struct RNN<C: RNNCellBase> {
    /// The cell: the parent's auto-named child when constructed in a compact method, else the
    /// `cell` submodule.
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
    /// Flax's scan unrolling factor: checked (at least 1), no effect on the eager loop.
    #[module(default = 1)]
    pub unroll: i64,
    /// Collections stacked along an axis, one entry per step (default: none).
    #[module(default = VariableAxes::default())]
    pub variable_axes: VariableAxes,
    /// Collections shared by every step (default: `params`).
    #[module(default = "params".into())]
    pub variable_broadcast: CollectionFilter,
    /// Collections carried from one step to the next (default: none).
    #[module(default = false.into())]
    pub variable_carry: CollectionFilter,
    /// RNG streams split per step or shared (default: `{"params": false}`).
    #[module(default = [("params", false)].into())]
    pub split_rngs: SplitRngs,
    /// Whether a plain LSTM or GRU cell may run as libtorch's fused operator (default: true;
    /// a Rust addition, see the module docs).
    #[module(default = true)]
    pub fused: bool,
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
        let carry = match initial_carry {
            Some(c) => tree::shallow_clone(c)?,
            None => C::initialize_carry(PRNGKey::new(0), &batch_dims, &size, inputs.device())?,
        };
        let fused = match self.fused_kind(cx, seq_lengths) {
            Some(kind) => fused::run(cx, &self.cell, kind, &carry, &inputs, self.time_major, &batch_dims)?,
            None => None,
        };
        let (carry, outputs) = match (fused, seq_lengths) {
            (Some(done), _) => {
                FUSED_RUNS.with(|n| n.set(n.get() + 1));
                done
            }
            (None, None) => loop_invariant::sequence(|| {
                self.scan(time_axis)
                    .call(cx, &self.cell, carry, &inputs, |cell, cx, c, x: Tensor| cell.step(cx, &c, &x))
            })?,
            (None, Some(lengths)) => {
                // Flax's `slice_carry`: every step's carry is an output too, stacked on a new
                // first axis, and the one after each sequence's last valid step is picked.
                let (_, (carries, outputs)) = loop_invariant::sequence(|| {
                    self.scan(time_axis).out_axes(0).call(
                        cx,
                        &self.cell,
                        carry,
                        &inputs,
                        |cell, cx, c, x: Tensor| {
                            let (next, y) = cell.step(cx, &c, &x)?;
                            let kept = tree::shallow_clone(&next)?;
                            Ok((next, (kept, y)))
                        },
                    )
                })?;
                (select_last_carry(&carries, lengths)?, outputs.f_movedim(0, time_axis as i64)?)
            }
        };
        let outputs = if self.reverse && self.keep_order { flip(&outputs)? } else { outputs };
        Ok((carry, outputs))
    }
}

impl<C: RNNCellBase> RNN<C> {
    /// The scan over the cell, with this module's options, along `time_axis`.
    fn scan(&self, time_axis: usize) -> ScanOptions {
        scan_fn()
            .variable_axes(self.variable_axes.0.iter().map(|(name, axis)| (name.clone(), *axis)))
            .variable_broadcast(self.variable_broadcast.clone())
            .variable_carry(self.variable_carry.clone())
            .split_rngs(self.split_rngs.0.iter().map(|(name, split)| (name.clone(), *split)))
            .in_axes(time_axis as i64)
            .out_axes(time_axis as i64)
            .unroll(self.unroll)
    }

    /// The fused operator to try, when this call qualifies for one (the params' presence and
    /// dtypes are checked when they are read).
    fn fused_kind(&self, cx: &Scope<'_>, seq_lengths: Option<&Tensor>) -> Option<FusedCell> {
        let default_scan = self.variable_axes.0.is_empty()
            && self.variable_broadcast.matches("params")
            && !self.variable_carry.matches("params")
            && self.unroll >= 1;
        let qualifies = self.fused
            && seq_lengths.is_none()
            && default_scan
            && !cx.is_initializing()
            && !cx.is_capturing_intermediates()
            && !cx.is_recording_calls();
        if qualifies {
            self.cell.fused()
        } else {
            None
        }
    }
}

/// The carry after each sequence's last valid step (Flax's `_select_last_carry`): per leaf of
/// `carries` (every step's carry, stacked on a new first axis), the value at `seq_lengths - 1`
/// (a length of 0 picks the last step, as Python's index -1 does).
fn select_last_carry<T: Tree>(carries: &T, seq_lengths: &Tensor) -> Result<T> {
    tree::tree_map(carries, |stacked| {
        let steps = stacked.size()[0];
        let last = seq_lengths.f_to_kind(Kind::Int64)?.try_sub_scalar(1)?.try_remainder(steps.max(1))?;
        let mut index = last;
        while index.dim() + 1 < stacked.dim() {
            index = index.f_unsqueeze(-1)?;
        }
        let mut index_shape = stacked.size();
        index_shape[0] = 1;
        let index = index.f_unsqueeze(0)?.f_expand(&index_shape, false)?;
        Ok(stacked.f_gather(0, &index, false)?.f_squeeze_dim(0)?)
    })
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
    #[module(default = concatenate, exact)]
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
