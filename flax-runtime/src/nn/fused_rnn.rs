//! The fused path of [`RNN`](crate::nn::RNN): a whole sequence through libtorch's `lstm` or
//! `gru` operator (oneDNN on CPU, cuDNN on CUDA), with the weights packed from Flax's layout.
//!
//! Flax's LSTM cell computes, per gate `k` in `i, f, g, o`, `W_ik x + W_hk h + b_hk` (`Dense`
//! kernels `(in, hidden)`, biases only on the `h*` layers); libtorch's computes
//! `W_ih x + b_ih + W_hh h + b_hh`, the four gates stacked in the same order along the first axis of `W_ih
//! (4H, in)` and `W_hh (4H, H)`. So `W_ih = [ii | if | ig | io]ᵀ`, `W_hh = [hi | hf | hg |
//! ho]ᵀ`, `b_ih = 0` and `b_hh = [b_hi, b_hf, b_hg, b_ho]`; the carry `(c, h)` is libtorch's
//! `(h0, c0)` with a leading layer axis of one.
//!
//! Flax's GRU cell: `r = σ(W_ir x + b_ir + W_hr h)`, `z = σ(W_iz x + b_iz + W_hz h)`, `n =
//! tanh(W_in x + b_in + r · (W_hn h + b_hn))`, `h' = (1 - z) · n + z · h`; libtorch's: `r =
//! σ(W_ir x + b_ir + W_hr h + b_hr)`, `z` alike, `n = tanh(W_in x + b_in + r · (W_hn h +
//! b_hn))`, `h' = (1 - z) · n + z · h`, gates stacked `r, z, n`. The same with `b_ih = [b_ir,
//! b_iz, b_in]` and `b_hh = [0, 0, b_hn]`.
//!
//! Packing is made of differentiable tensor operations (`cat`, transpose), so gradients flow
//! back to Flax's kernels and biases.

use crate::core::custom_function::grad_enabled;
use crate::core::errors::Result;
use crate::core::frozen_dict::FrozenDict;
use crate::core::scope::Scope;
use crate::nn::rnn::{FusedCell, RNNCellBase};
use crate::transforms::lifted::in_frame_of;
use crate::tree;
use tch::{Kind, Tensor};

/// libtorch's weights of one layer, one direction.
struct Packed {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    input_size: i64,
    hidden: i64,
}

/// The whole sequence of `inputs` (flipped already when the RNN is reversed) through the fused
/// operator of `kind`, from `carry`: `(carry, outputs)` as the per-step scan gives them, or
/// `None` when this call does not fit the operator (params missing or of another shape or
/// dtype, carry not of the batch's shape, …), for the per-step path to handle.
pub(crate) fn run<C: RNNCellBase>(
    cx: &mut Scope<'_>,
    cell: &C,
    kind: FusedCell,
    carry: &C::Carry,
    inputs: &Tensor,
    time_major: bool,
    batch_dims: &[i64],
) -> Result<Option<(C::Carry, Tensor)>> {
    let packed = in_frame_of(cx, cell.module_handle(), C::TYPE_NAME, |cx| match cx.frame_dict("params") {
        Some(params) => pack(kind, params),
        None => Ok(None),
    })?;
    let Some(p) = packed else { return Ok(None) };
    let shape = inputs.size();
    let float = matches!(inputs.kind(), Kind::Float | Kind::Double);
    if !float
        || inputs.kind() != p.w_ih.kind()
        || inputs.device() != p.w_ih.device()
        || shape.last() != Some(&p.input_size)
        || shape.len() != batch_dims.len() + 2
    {
        return Ok(None);
    }
    let carry_shape = [batch_dims, &[p.hidden]].concat();
    let leaves = tree::leaves(carry);
    let expected_leaves = match kind {
        FusedCell::Lstm => 2,
        FusedCell::Gru => 1,
    };
    // A float32 carry (the default zero carry) with float64 inputs and params is promoted to
    // float64 by the per-step path too; any other mix of dtypes stays there.
    let fits = |t: &Tensor| {
        let kind_fits =
            t.kind() == inputs.kind() || (t.kind() == Kind::Float && inputs.kind() == Kind::Double);
        t.size() == carry_shape && kind_fits && t.device() == inputs.device()
    };
    if leaves.len() != expected_leaves || !leaves.iter().all(|t| fits(t)) {
        return Ok(None);
    }
    let leaves: Vec<Tensor> =
        leaves.iter().map(|t| t.f_to_kind(inputs.kind())).collect::<std::result::Result<_, _>>()?;
    let batch: i64 = batch_dims.iter().product();
    let steps = if time_major { shape[0] } else { shape[batch_dims.len()] };
    if batch == 0 || steps == 0 {
        return Ok(None);
    }
    let features = p.input_size;
    let x = if time_major {
        inputs.f_reshape([steps, batch, features])?
    } else {
        inputs.f_reshape([batch, steps, features])?
    };
    let layered = |t: &Tensor| t.f_reshape([1, batch, p.hidden]);
    let weights = [&p.w_ih, &p.w_hh, &p.b_ih, &p.b_hh];
    let train = grad_enabled()
        && (x.requires_grad()
            || weights.iter().any(|w| w.requires_grad())
            || leaves.iter().any(|t| t.requires_grad()));
    let batch_first = !time_major;
    let (outputs, new_leaves) = match kind {
        FusedCell::Lstm => {
            let hx = [layered(&leaves[1])?, layered(&leaves[0])?];
            let (out, hn, cn) =
                x.f_lstm(&[&hx[0], &hx[1]], &weights, true, 1, 0.0, train, false, batch_first)?;
            (out, vec![cn.f_reshape(&carry_shape)?, hn.f_reshape(&carry_shape)?])
        }
        FusedCell::Gru => {
            let (out, hn) =
                x.f_gru(&layered(&leaves[0])?, &weights, true, 1, 0.0, train, false, batch_first)?;
            (out, vec![hn.f_reshape(&carry_shape)?])
        }
    };
    let out_shape = if time_major {
        [&[steps], batch_dims, &[p.hidden]].concat()
    } else {
        [batch_dims, &[steps, p.hidden]].concat()
    };
    let outputs = outputs.f_reshape(&out_shape)?;
    Ok(Some((tree::tree_unflatten(carry, new_leaves)?, outputs)))
}

/// The `name/kernel` and `name/bias` arrays of a cell's params.
fn array<'a>(params: &'a FrozenDict, name: &str, leaf: &str) -> Option<&'a Tensor> {
    params.get_dict(name)?.get(leaf)?.as_tensor()
}

/// libtorch's weights from the cell's params, `None` when they are not all there with
/// consistent shapes, one floating dtype and one device.
fn pack(kind: FusedCell, params: &FrozenDict) -> Result<Option<Packed>> {
    let (inputs, hiddens, input_biases, hidden_biases): (&[&str], &[&str], &[&str], &[&str]) = match kind {
        FusedCell::Lstm => {
            (&["ii", "if", "ig", "io"], &["hi", "hf", "hg", "ho"], &[], &["hi", "hf", "hg", "ho"])
        }
        FusedCell::Gru => (&["ir", "iz", "in"], &["hr", "hz", "hn"], &["ir", "iz", "in"], &["hn"]),
    };
    let collect = |names: &[&str], leaf: &str| -> Option<Vec<&Tensor>> {
        names.iter().map(|name| array(params, name, leaf)).collect()
    };
    let (Some(w_i), Some(w_h), Some(b_i), Some(b_h)) = (
        collect(inputs, "kernel"),
        collect(hiddens, "kernel"),
        collect(input_biases, "bias"),
        collect(hidden_biases, "bias"),
    ) else {
        return Ok(None);
    };
    let first = w_h[0];
    let (dtype, device) = (first.kind(), first.device());
    let all = w_i.iter().chain(&w_h).chain(&b_i).chain(&b_h);
    if !matches!(dtype, Kind::Float | Kind::Double)
        || all.clone().any(|t| !t.defined() || t.kind() != dtype || t.device() != device)
    {
        return Ok(None);
    }
    let hidden = match first.size()[..] {
        [rows, cols] if rows == cols => cols,
        _ => return Ok(None),
    };
    let input_size = match w_i[0].size()[..] {
        [rows, _] => rows,
        _ => return Ok(None),
    };
    let shapes_ok = w_i.iter().all(|k| k.size() == [input_size, hidden])
        && w_h.iter().all(|k| k.size() == [hidden, hidden])
        && b_i.iter().chain(&b_h).all(|b| b.size() == [hidden]);
    if !shapes_ok {
        return Ok(None);
    }
    let gates = inputs.len() as i64;
    let zeros = |n: i64| Tensor::f_zeros([n], (dtype, device));
    let w_ih = Tensor::f_cat(&w_i, 1)?.f_tr()?;
    let w_hh = Tensor::f_cat(&w_h, 1)?.f_tr()?;
    let (b_ih, b_hh) = match kind {
        FusedCell::Lstm => (zeros(gates * hidden)?, Tensor::f_cat(&b_h, 0)?),
        FusedCell::Gru => (Tensor::f_cat(&b_i, 0)?, Tensor::f_cat(&[&zeros(2 * hidden)?, b_h[0]], 0)?),
    };
    Ok(Some(Packed { w_ih, w_hh, b_ih, b_hh, input_size, hidden }))
}
