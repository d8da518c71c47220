//! libtorch's fused multi-tensor optimizer kernels (`torch._fused_sgd_`, `_fused_adam_`,
//! `_fused_adamw_`), which tch does not expose, through the small C++ shim
//! `csrc/fused_optimizers.cpp`: one call updates every parameter and its state, instead of
//! four (SGD) to ten (Adam) kernels per parameter (DESIGN.md §8).
//!
//! The kernels compute what the corresponding Optax chain computes, up to float rounding
//! (fused multiply-adds; Adam's bias corrections, see [`adam`]); they are used only for the
//! configurations and tensors they implement exactly (see [`fusable`]), and
//! [`GradientTransformation::update_and_apply`](super::GradientTransformation::update_and_apply)
//! falls back to the transformation's own kernels elsewhere.

use crate::core::errors::Result;
use crate::core::scalar_ops::ScalarOps;
use std::borrow::Borrow;
use std::ffi::{c_char, c_int, c_void, CStr};
use tch::{Kind, Tensor};

/// A tch tensor handle as the shim takes it (a pointer to libtorch's `at::Tensor`).
type Handle = *const c_void;

extern "C" {
    fn flax_fused_sgd(
        params: *const Handle,
        grads: *const Handle,
        bufs: *const Handle,
        n: c_int,
        momentum: f64,
        lr: f64,
        nesterov: c_int,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;

    fn flax_fused_adam(
        params: *const Handle,
        grads: *const Handle,
        mus: *const Handle,
        nus: *const Handle,
        n: c_int,
        step: Handle,
        lr: f64,
        b1: f64,
        b2: f64,
        weight_decay: f64,
        eps: f64,
        decoupled: c_int,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
}

/// Whether the fused kernels handle these leaves as the per-leaf kernels would: the tensors
/// they write (`written`: the parameters, then each state tree) dense (each covers its
/// memory without gaps or overlaps, in any order of axes: see [`flat_leaves`]), the
/// gradients of any layout; every tensor floating point and on one device, every list as
/// long as the parameters' with the same dtypes and shapes.
pub(crate) fn fusable(written: &[&[&Tensor]], grads: &[&Tensor]) -> bool {
    let Some(params) = written.first() else { return false };
    let Some(first) = params.first() else { return false };
    let device = first.device();
    let floating =
        |t: &Tensor| matches!(t.f_kind(), Ok(Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16));
    let like_params = |group: &[&Tensor], dense: bool| {
        group.len() == params.len()
            && group.iter().zip(params.iter()).all(|(t, p)| {
                floating(t)
                    && (!dense || is_dense(t))
                    && t.device() == device
                    && t.f_kind().ok() == p.f_kind().ok()
                    && t.size() == p.size()
            })
    };
    written.iter().all(|group| like_params(group, true)) && like_params(grads, false)
}

/// Whether `t` covers its memory without gaps or overlaps (libtorch's
/// `is_non_overlapping_and_dense`): its strides, sorted, are the running products of its sizes.
fn is_dense(t: &Tensor) -> bool {
    let (size, stride) = (t.size(), t.stride());
    if size.contains(&0) {
        return true;
    }
    let mut axes: Vec<(i64, i64)> =
        size.iter().zip(&stride).filter(|(&n, _)| n != 1).map(|(&n, &s)| (s, n)).collect();
    axes.sort_unstable();
    let mut expected = 1;
    axes.iter().all(|&(s, n)| {
        let ok = s == expected;
        expected *= n;
        ok
    })
}

/// Whether `a` and `b` (of one shape) lay their elements out in the same order in memory.
fn same_layout(a: &Tensor, b: &Tensor) -> bool {
    let size = a.size();
    let (sa, sb) = (a.stride(), b.stride());
    (0..size.len()).all(|i| size[i] == 1 || sa[i] == sb[i])
}

/// The leaves as the kernels take them, which update element `i` of every list from element
/// `i` of the others in memory order: contiguous tensors as they are; otherwise flat views
/// of memory that lays out every leaf alike. Autograd returns some gradients in another
/// layout than their parameter's (a convolution kernel's in libtorch's, an LSTM kernel's
/// transposed), and some initializers (orthogonal) return transposed parameters; the first
/// time a dense gradient's layout differs, the parameter and its state are moved into that
/// layout, in place (`set_data`: every handle on them sees the new layout), so no later step
/// copies anything. A gradient that is not dense (broadcast) is copied into the parameter's
/// layout.
///
/// `written` is `[params, state…]`; the result has the same lists, then the gradients.
fn flat_leaves(written: &[&[&Tensor]], grads: &[&Tensor]) -> Result<Vec<Vec<Tensor>>> {
    let mut out: Vec<Vec<Tensor>> = (0..=written.len()).map(|_| Vec::with_capacity(grads.len())).collect();
    for (i, g) in grads.iter().enumerate() {
        let leaves: Vec<&Tensor> = written.iter().map(|group| group[i]).chain([*g]).collect();
        if leaves.iter().all(|t| t.is_contiguous()) {
            out.iter_mut().zip(&leaves).for_each(|(list, t)| list.push(t.shallow_clone()));
            continue;
        }
        let target = if is_dense(g) { *g } else { written[0][i] };
        for t in &leaves[..written.len()] {
            if !same_layout(t, target) {
                let moved = Tensor::f_empty_strided(t.size(), target.stride(), (t.kind(), t.device()))?;
                moved.shallow_clone().f_copy_(t)?;
                t.shallow_clone().f_set_data(&moved)?;
            }
        }
        let g = match same_layout(g, target) {
            true => g.shallow_clone(),
            false => {
                let copy = Tensor::f_empty_strided(g.size(), target.stride(), (g.kind(), g.device()))?;
                copy.shallow_clone().f_copy_(g)?;
                copy
            }
        };
        let written_leaves = leaves[..written.len()].iter().map(|t| t.shallow_clone());
        for (list, t) in out.iter_mut().zip(written_leaves.chain([g])) {
            list.push(t.f_as_strided([t.numel() as i64], [1], None)?);
        }
    }
    Ok(out)
}

fn handles<T: Borrow<Tensor>>(tensors: &[T]) -> Vec<Handle> {
    tensors.iter().map(|t| t.borrow().as_ptr() as Handle).collect()
}

/// `torch._fused_sgd_` without weight decay or dampening, in place: for each leaf,
/// `buf = momentum * buf + g` and `p -= lr * (nesterov ? g + momentum * buf : buf)` with
/// momentum buffers, `p -= lr * g` without. Optax's `sgd(lr, momentum, nesterov)` followed by
/// `apply_updates`, from the same buffers.
///
/// # Errors
/// libtorch's, for tensors the kernel refuses (check [`fusable`] first).
pub(crate) fn sgd(
    params: &[&Tensor],
    grads: &[&Tensor],
    bufs: Option<&[&Tensor]>,
    momentum: f64,
    lr: f64,
    nesterov: bool,
) -> Result<()> {
    let n = count_of(params, [grads].into_iter().chain(bufs));
    let _no_grad = tch::no_grad_guard();
    let written: Vec<&[&Tensor]> = [Some(params), bufs].into_iter().flatten().collect();
    let flat = flat_leaves(&written, grads)?;
    let (params, grads) = (handles(&flat[0]), handles(&flat[flat.len() - 1]));
    let bufs = (flat.len() == 3).then(|| handles(&flat[1]));
    let bufs_ptr = bufs.as_ref().map_or(std::ptr::null(), |b| b.as_ptr());
    // SAFETY: every handle points to a live `at::Tensor` borrowed for the call, and each
    // array holds `n` of them (checked by `count_of`).
    call(|error, len| unsafe {
        flax_fused_sgd(
            params.as_ptr(),
            grads.as_ptr(),
            bufs_ptr,
            n,
            momentum,
            lr,
            c_int::from(nesterov),
            error,
            len,
        )
    })
}

/// Adam's hyper-parameters as the fused kernels take them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamConfig {
    pub b1: f64,
    pub b2: f64,
    pub eps: f64,
}

/// `torch._fused_adam_` (or, with `decoupled`, `torch._fused_adamw_`) without amsgrad, in
/// place, at step `count` (Optax's incremented count): the moments as Optax's
/// `scale_by_adam` updates them, then `p -= lr * (mu_hat / (sqrt(nu_hat) + eps))`, after
/// `p *= 1 - lr * weight_decay` when decoupled (Optax's `add_decayed_weights` before the
/// learning rate). libtorch computes the bias corrections `1 - b^count` in double precision
/// where Optax rounds `b` to float32 first: the updates differ from Optax's by up to about
/// 1e-5 relative (for `b2 = 0.999`), far below any training noise.
///
/// # Errors
/// libtorch's, for tensors the kernel refuses (check [`fusable`] first).
#[allow(clippy::too_many_arguments)]
pub(crate) fn adam(
    params: &[&Tensor],
    grads: &[&Tensor],
    mus: &[&Tensor],
    nus: &[&Tensor],
    count: i64,
    lr: f64,
    config: AdamConfig,
    weight_decay: Option<f64>,
) -> Result<()> {
    let n = count_of(params, [grads, mus, nus]);
    let Some(first) = params.first() else { return Ok(()) };
    let step = Tensor::try_full([], count as f64, (Kind::Float, first.device()))?;
    let _no_grad = tch::no_grad_guard();
    let flat = flat_leaves(&[params, mus, nus], grads)?;
    let [params, mus, nus, grads] = [0, 1, 2, 3].map(|i| handles(&flat[i]));
    let (decoupled, weight_decay) = weight_decay.map_or((0, 0.0), |wd| (1, wd));
    let AdamConfig { b1, b2, eps } = config;
    // SAFETY: as in `sgd`; `step` lives until the call returns.
    call(|error, len| unsafe {
        flax_fused_adam(
            params.as_ptr(),
            grads.as_ptr(),
            mus.as_ptr(),
            nus.as_ptr(),
            n,
            step.as_ptr() as Handle,
            lr,
            b1,
            b2,
            weight_decay,
            eps,
            decoupled,
            error,
            len,
        )
    })
}

/// The number of parameters, checking that every other list has as many.
fn count_of<'a>(params: &[&Tensor], others: impl IntoIterator<Item = &'a [&'a Tensor]>) -> c_int {
    assert!(others.into_iter().all(|other| other.len() == params.len()), "leaf lists of different lengths");
    c_int::try_from(params.len()).expect("fewer than 2^31 parameters")
}

/// Runs a shim function under `no_grad` (the kernels write tensors that may require
/// gradients) with a buffer for its error message.
fn call(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<()> {
    #[cfg(test)]
    tests::FUSED_CALLS.with(|calls| calls.set(calls.get() + 1));
    let mut error = [0 as c_char; 1024];
    let _no_grad = tch::no_grad_guard();
    if f(error.as_mut_ptr(), error.len()) == 0 {
        return Ok(());
    }
    // SAFETY: the shim NUL-terminates the message it wrote.
    let message = unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned();
    Err(tch::TchError::Torch(message).into())
}

#[cfg(test)]
mod tests {
    use crate::core::frozen_dict::{FrozenDict, Value};
    use crate::core::rng::PRNGKey;
    use crate::nn::initializers;
    use crate::nn::{self, RNN};
    use crate::optax::{self, GradientTransformation};
    use crate::transforms::autodiff::grad;
    use crate::Result;
    use std::cell::Cell;
    use tch::{Device, Kind, Tensor};

    thread_local! {
        /// The fused kernel calls this thread made.
        pub(super) static FUSED_CALLS: Cell<usize> = const { Cell::new(0) };
    }

    type Variables = FrozenDict;

    /// Two Adam steps and two SGD-with-momentum steps on the default params in `variables`,
    /// each of which must be one fused kernel call, and must change every parameter.
    fn assert_fused(name: &str, variables: Variables, loss: impl Fn(&Variables) -> Result<Tensor>) {
        let with = |p: &FrozenDict| variables.copy([("params", Value::Dict(p.clone()))]);
        let params = variables.get_dict("params").unwrap().clone();
        let loss_of = |p: &FrozenDict| loss(&with(p));
        fn steps<T: GradientTransformation<FrozenDict>>(
            name: &str,
            tx: T,
            mut params: FrozenDict,
            loss: &dyn Fn(&FrozenDict) -> Result<Tensor>,
        ) {
            let mut state = tx.init(&params).unwrap();
            for step in 0..2 {
                let grads = grad(&params, loss).unwrap();
                let before = crate::tree::tree_map(&params, |t| Ok(t.copy())).unwrap();
                let calls = FUSED_CALLS.with(Cell::get);
                (params, state) = tx.update_and_apply(grads, state, params).unwrap();
                assert_eq!(FUSED_CALLS.with(Cell::get), calls + 1, "{name}: step {step} was not fused");
                for (old, new) in crate::tree::leaves(&before).iter().zip(crate::tree::leaves(&params)) {
                    assert!(!old.equal(new), "{name}: step {step} left a parameter unchanged");
                }
            }
        }
        steps(name, optax::adam(1e-2), params.clone(), &loss_of);
        steps(name, optax::sgd(1e-2).momentum(0.9), params, &loss_of);
    }

    fn randn(shape: &[i64], seed: i64) -> Tensor {
        tch::manual_seed(seed);
        Tensor::randn(shape, (Kind::Float, Device::Cpu))
    }

    fn key() -> PRNGKey {
        PRNGKey::new(0)
    }

    /// The squared sum, so every parameter (biases of a normalization included) gets a
    /// gradient that is not zero.
    fn square_sum(y: &Tensor) -> Tensor {
        y.square().sum(Kind::Float)
    }

    /// `multi_transform` and `masked` step their Adam leaves with one fused call, in Optax's
    /// layout (the inner trees are the parameters' state dicts with `{}` at the other leaves).
    #[test]
    fn partitioned_optimizers_fuse_each_partition() {
        let x = randn(&[4, 6], 1);
        let m = nn::Dense::new(3);
        let params = m.init(key(), &x).unwrap().get_dict("params").unwrap().clone();
        let is_kernel = |path: &crate::tree::KeyPath<'_>| path.to_strings() == ["kernel"];
        let multi = optax::multi_transform(
            [("trainable", optax::adam(1e-2).boxed()), ("frozen", optax::set_to_zero().boxed())],
            move |path, _| if is_kernel(path) { "trainable" } else { "frozen" },
        );
        let masked = optax::masked(optax::adam(1e-2), move |path, _| is_kernel(path));
        fn step<T: GradientTransformation<FrozenDict>>(name: &str, tx: T, params: &FrozenDict) {
            let copy = |p: &FrozenDict| crate::tree::tree_map(p, |t| Ok(t.copy())).unwrap();
            let (params, before) = (copy(params), copy(params));
            let grads = crate::tree::tree_map(&params, |t| Ok(t.ones_like())).unwrap();
            let calls = FUSED_CALLS.with(Cell::get);
            let state = tx.init(&params).unwrap();
            let (params, _) = tx.update_and_apply(grads, state, params).unwrap();
            assert_eq!(FUSED_CALLS.with(Cell::get), calls + 1, "{name}");
            assert!(
                !params.tensor(&["kernel"]).unwrap().equal(before.tensor(&["kernel"]).unwrap()),
                "{name}"
            );
        }
        step("multi_transform", multi, &params);
        step("masked", masked, &params);
    }

    #[test]
    fn the_fused_optimizers_run_on_every_layer_family_s_default_params() {
        let x = randn(&[4, 6, 6, 3], 1);
        let m = nn::Dense::new(5);
        assert_fused("Dense", m.init(key(), &x).unwrap(), |v| Ok(square_sum(&m.apply(v, &x)?)));
        let m = nn::Conv::new(4, vec![3, 3]).strides([2, 2]);
        assert_fused("Conv", m.init(key(), &x).unwrap(), |v| Ok(square_sum(&m.apply(v, &x)?)));
        let m = nn::ConvTranspose::new(4, vec![3, 3]);
        assert_fused("ConvTranspose", m.init(key(), &x).unwrap(), |v| Ok(square_sum(&m.apply(v, &x)?)));
        let ids = Tensor::from_slice(&[0i64, 3, 1, 2, 3, 3]).reshape([2, 3]);
        let m = nn::Embed::new(4, 5);
        assert_fused("Embed", m.init(key(), &ids).unwrap(), |v| Ok(square_sum(&m.apply(v, &ids)?)));
        let m = nn::BatchNorm::new();
        let y = |v: &Variables| m.apply(v, &x, Some(true));
        assert_fused("BatchNorm", m.init(key(), &x, Some(false)).unwrap(), |v| Ok(square_sum(&y(v)?)));
        let m = nn::LayerNorm::new();
        assert_fused("LayerNorm", m.init(key(), &x).unwrap(), |v| Ok(square_sum(&m.apply(v, &x)?)));
        let m = nn::GroupNorm::new().num_groups(Some(3));
        assert_fused("GroupNorm", m.init(key(), &x).unwrap(), |v| Ok(square_sum(&m.apply(v, &x)?)));
        let m = nn::RMSNorm::new();
        assert_fused("RMSNorm", m.init(key(), &x).unwrap(), |v| Ok(square_sum(&m.apply(v, &x)?)));
        let seq = randn(&[2, 5, 8], 2);
        let m = nn::MultiHeadDotProductAttention::new(2);
        let y = |v: &Variables| m.apply(v, &seq, &seq, None, Some(true));
        assert_fused("attention", m.init(key(), &seq, &seq, None, Some(true)).unwrap(), |v| {
            Ok(square_sum(&y(v)?))
        });
        let step = randn(&[2, 8], 3);
        let carry =
            nn::LSTMCell::initialize_carry(key(), &[2], 4, &initializers::normal(1.0), Device::Cpu).unwrap();
        let carry_sum =
            |((c, h), y): ((Tensor, Tensor), Tensor)| square_sum(&c) + square_sum(&h) + square_sum(&y);
        let m = nn::LSTMCell::new();
        let v = m.init(key(), &carry, &step).unwrap();
        assert_fused("LSTMCell", v, |v| Ok(carry_sum(m.apply(v, &carry, &step)?)));
        let m = nn::OptimizedLSTMCell::new();
        let v = m.init(key(), &carry, &step).unwrap();
        assert_fused("OptimizedLSTMCell", v, |v| Ok(carry_sum(m.apply(v, &carry, &step)?)));
        let m = nn::GRUCell::new();
        let h = &carry.1;
        let v = m.init(key(), h, &step).unwrap();
        assert_fused("GRUCell", v, |v| Ok(square_sum(&m.apply(v, h, &step)?.1)));
        let m = RNN::new(nn::LSTMCell::new(), 4);
        let v = m.init(key(), &seq, None, None).unwrap();
        assert_fused("RNN(LSTMCell)", v, |v| Ok(square_sum(&m.apply(v, &seq, None, None)?.1)));
        let m = RNN::new(nn::GRUCell::new(), 4);
        let v = m.init(key(), &seq, None, None).unwrap();
        assert_fused("RNN(GRUCell)", v, |v| Ok(square_sum(&m.apply(v, &seq, None, None)?.1)));
    }
}
