//! Self-attention's query, key and value projections as one matrix product in inference.
//!
//! Flax keeps the three projections as separate `DenseGeneral` submodules (`query`, `key`,
//! `value`), so the attention layers run three `(rows, in) x (in, heads · head_dim)` products
//! on the same input. PyTorch's `nn.MultiheadAttention` and the users who write
//! `nn.Linear(d, 3 · d)` run one, three times as wide, and at batch 1 that shape is where the
//! oneDNN path of [`packed_linear`](crate::nn::packed_linear) wins over MKL on CPUs with AVX-512
//! (1.12x at 64 x 256 x 768 on a Zen 4, where 64 x 256 x 256 stays on MKL at 0.84x); without
//! AVX-512 the one product is MKL's, level with the three.
//! Where no gradient is needed and the keys and values come from the query's own input, the
//! three kernels (and biases) are concatenated once into `(in, 3 · heads · head_dim)` and
//! cached, and the projections are the three slices of one product (packed oneDNN where
//! `packed_linear` takes it, else one `addmm`). The params stay Flax's: three submodules, the
//! same names and shapes; only how they are multiplied changes, so the results are the same
//! float32 products summed in another order (equal to float rounding).
//!
//! When: on the CPU, float32 inputs and params (and `dtype` unset or float32); `inputs_q` and
//! `inputs_kv` the same tensor; no gradient to record (grad mode off, or neither the input nor
//! the params require one); no functorch transform running; the module's calls not observed
//! (`tabulate`'s call records and `capture_intermediates` see the three `DenseGeneral` calls,
//! so they run as calls); the params present with the shapes the projections declare.
//! Anything else runs the three submodules, which also raise Flax's errors.
//!
//! The cache follows the params, not their values, as `packed_linear`'s does: an entry is
//! used only for the very tensors it was made from (their `TensorImpl`) at the same in-place
//! version, data address, shape and strides; it holds weak references to their storages, so
//! it keeps no param alive, and the entries of dead params are dropped when the next one is
//! made. The cost is one concatenated copy of each attention layer's three kernels (and, on
//! the packed path, oneDNN's packed copy of it) while its params live. Setting
//! `FLAX_FUSED_QKV=0` in the environment (read once) turns the path off, as
//! `FLAX_PACKED_LINEAR=0` turns off the packed weights.

use crate::core::custom_function::grad_enabled;
use crate::core::errors::Result;
use crate::core::scope::Scope;
use crate::core::tensor_identity::{identity, Snapshot, WeakStorage};
use crate::nn::linear::linear;
use crate::nn::precision::{with_precision, Precision};
use std::sync::{Mutex, OnceLock};
use tch::{Device, Kind, Tensor};

/// The names of the three projection submodules, in the order they are returned.
const PROJECTIONS: [&str; 3] = ["query", "key", "value"];

/// Whether the fused path is on (`FLAX_FUSED_QKV` is not `0`), read once.
fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("FLAX_FUSED_QKV").map_or(true, |v| v != "0"))
}

/// One tensor a cached value was made from, as it was then.
struct Source {
    identity: usize,
    snapshot: Snapshot,
    storage: WeakStorage,
}

impl Source {
    fn new(t: &Tensor) -> Option<Self> {
        Some(Source {
            identity: identity(t) as usize,
            snapshot: Snapshot::of(t),
            storage: WeakStorage::new(t)?,
        })
    }

    /// Whether `t` is this very tensor, alive and unmodified since.
    fn is(&self, t: &Tensor) -> bool {
        self.identity == identity(t) as usize && self.snapshot == Snapshot::of(t) && self.storage.alive()
    }
}

/// The concatenated kernel `(in, 3 · out)` and bias `(3 · out,)` of one attention layer.
struct Entry {
    sources: Vec<Source>,
    kernel: Tensor,
    bias: Option<Tensor>,
}

static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

#[cfg(test)]
thread_local! {
    /// How many fused products ran on this thread (the tests check that the path is taken).
    static FUSED_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The kernels' and biases' concatenation, from the cache or made (and cached) now.
fn concatenated(kernels: &[Tensor], biases: Option<&[Tensor]>) -> Result<(Tensor, Option<Tensor>)> {
    let sources: Vec<&Tensor> = kernels.iter().chain(biases.into_iter().flatten()).collect();
    let mut cache = CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let hit = cache
        .iter()
        .find(|e| e.sources.len() == sources.len() && e.sources.iter().zip(&sources).all(|(s, t)| s.is(t)));
    if let Some(entry) = hit {
        return Ok((entry.kernel.shallow_clone(), entry.bias.as_ref().map(Tensor::shallow_clone)));
    }
    let in_features = kernels[0].size()[0];
    let flat: Vec<Tensor> =
        kernels.iter().map(|k| k.f_reshape([in_features, -1])).collect::<tch::Result<_>>()?;
    let kernel = Tensor::f_cat(&flat, 1)?;
    let bias = biases
        .map(|b| Tensor::f_cat(&b.iter().map(|b| b.f_reshape([-1])).collect::<tch::Result<Vec<_>>>()?, 0))
        .transpose()?;
    let recorded: Option<Vec<Source>> = sources.iter().map(|t| Source::new(t)).collect();
    cache.retain(|e| e.sources.iter().all(|s| s.storage.alive()));
    if let Some(sources) = recorded {
        // One entry per param set: a stale one for the same query kernel is replaced.
        let query = identity(&kernels[0]) as usize;
        cache.retain(|e| e.sources[0].identity != query);
        cache.push(Entry {
            sources,
            kernel: kernel.shallow_clone(),
            bias: bias.as_ref().map(Tensor::shallow_clone),
        });
    }
    Ok((kernel, bias))
}

/// The query, key and value projections of `x` (`[batch…, length, in]`) to `[batch…, length,
/// heads, head_dim]` each, by one product over the `query`, `key` and `value` submodules'
/// params of the running attention module; `None` where the fused path does not apply (see
/// the module doc), for the caller to run the submodules.
pub(crate) fn fused_qkv(
    cx: &Scope<'_>,
    x: &Tensor,
    heads: i64,
    head_dim: i64,
    use_bias: bool,
    precision: Option<Precision>,
) -> Result<Option<[Tensor; 3]>> {
    let Some(&in_features) = x.size().last() else { return Ok(None) };
    if !enabled()
        || cx.observes_calls()
        || x.device() != Device::Cpu
        || x.kind() != Kind::Float
        || crate::core::batching::functorch_depth() != 0
    {
        return Ok(None);
    }
    let param = |child: &str, name: &str, shape: &[i64]| {
        cx.child_variable("params", child, name)
            .filter(|t| t.kind() == Kind::Float && t.device() == Device::Cpu && t.size() == shape)
    };
    let read = |name: &str, shape: &[i64]| -> Option<Vec<Tensor>> {
        PROJECTIONS.iter().map(|child| param(child, name, shape)).collect()
    };
    let Some(kernels) = read("kernel", &[in_features, heads, head_dim]) else { return Ok(None) };
    let biases = if use_bias {
        match read("bias", &[heads, head_dim]) {
            Some(b) => Some(b),
            None => return Ok(None),
        }
    } else {
        None
    };
    let tracked = grad_enabled()
        && (x.requires_grad() || kernels.iter().chain(biases.iter().flatten()).any(Tensor::requires_grad));
    if tracked {
        return Ok(None);
    }
    let (kernel, bias) = concatenated(&kernels, biases.as_deref())?;
    let y = with_precision(precision, || linear(x, &kernel, &kernel, bias.as_ref()))?;
    #[cfg(test)]
    FUSED_CALLS.with(|n| n.set(n.get() + 1));
    let mut shape = x.size();
    shape.pop();
    shape.extend([3, heads, head_dim]);
    let y = y.f_reshape(shape)?;
    let rank = y.dim() as i64;
    let slice = |i: i64| y.f_select(rank - 3, i);
    Ok(Some([slice(0)?, slice(1)?, slice(2)?]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::apply::ApplyOptions;
    use crate::core::scalar_ops::ScalarOps;
    use crate::nn::{MultiHeadDotProductAttention, SelfAttention};
    use crate::prelude::*;
    use crate::tree::tree_map;

    fn fused_calls() -> usize {
        FUSED_CALLS.with(std::cell::Cell::get)
    }

    /// Equal up to the rounding of float32 sums taken in another order: within 1e-5 of the
    /// largest output.
    fn assert_close(a: &Tensor, b: &Tensor) {
        let scale = b.abs().max().double_value(&[]).max(1.0);
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(diff <= 1e-5 * scale, "differ by {diff} (scale {scale})");
    }

    /// The layer on `x` by the fused path (`x` as keys and values) and by the three
    /// submodules (a copy of `x`: equal values, another tensor), checking which path ran.
    fn both_paths(
        m: &MultiHeadDotProductAttention,
        variables: &Variables,
        x: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let before = fused_calls();
        let fused = m.apply(variables, x, x, None, None)?;
        assert_eq!(fused_calls(), before + 1, "the fused path ran");
        let separate = m.apply(variables, x, &x.copy(), None, None)?;
        assert_eq!(fused_calls(), before + 1, "other keys and values run the submodules");
        Ok((fused, separate))
    }

    #[test]
    fn self_attention_inference_runs_one_product_equal_to_the_three_projections() -> Result<()> {
        // The benchmark's shape (packed oneDNN product), a small one (one `addmm`), no biases.
        for (shape, heads, use_bias) in
            [([1, 64, 256], 4, true), ([2, 5, 12], 3, true), ([3, 4, 8], 2, false)]
        {
            let x = Tensor::randn(shape, (Kind::Float, Device::Cpu));
            let m = MultiHeadDotProductAttention::new(heads).use_bias(use_bias);
            let variables = m.init(PRNGKey::new(0), &x, &x, None, None)?;
            let variables = if use_bias { with_random_biases(&variables)? } else { variables };
            let (fused, separate) = both_paths(&m, &variables, &x)?;
            assert_close(&fused, &separate);
        }
        let x = Tensor::randn([2, 6, 8], (Kind::Float, Device::Cpu));
        let m = SelfAttention::new(2);
        let variables = m.init(PRNGKey::new(0), &x, None, None)?;
        let before = fused_calls();
        let y = m.apply(&variables, &x, None, None)?;
        assert_eq!(fused_calls(), before + 1);
        let as_mhdpa = MultiHeadDotProductAttention::new(2).apply(&variables, &x, &x.copy(), None, None)?;
        assert_close(&y, &as_mhdpa);
        Ok(())
    }

    /// `variables` with every bias drawn at random (initialized biases are zeros, which would
    /// not show a bias added to the wrong projection).
    fn with_random_biases(variables: &Variables) -> Result<Variables> {
        for name in PROJECTIONS {
            let bias = variables.tensor(&["params", name, "bias"]).expect("a bias");
            bias.shallow_clone().f_copy_(&Tensor::randn(bias.size(), (Kind::Float, Device::Cpu)))?;
        }
        Ok(variables.clone())
    }

    #[test]
    fn the_concatenated_kernels_follow_in_place_and_new_params() -> Result<()> {
        let x = Tensor::randn([1, 16, 32], (Kind::Float, Device::Cpu));
        let m = MultiHeadDotProductAttention::new(4);
        let variables = with_random_biases(&m.init(PRNGKey::new(0), &x, &x, None, None)?)?;
        let (first, _) = both_paths(&m, &variables, &x)?;
        // A param updated in place (as the fused optimizers do) is seen.
        let value = variables.tensor(&["params", "value", "kernel"]).expect("a kernel");
        let _ = value.shallow_clone().try_mul_scalar_(-2.0)?;
        let (updated, separate) = both_paths(&m, &variables, &x)?;
        assert_close(&updated, &separate);
        assert!((&updated - &first).abs().max().double_value(&[]) > 1e-3, "the update is seen");
        // New params (an optimizer returning new tensors) get their own concatenation.
        let fresh = m.init(PRNGKey::new(1), &x, &x, None, None)?;
        let (fused, separate) = both_paths(&m, &fresh, &x)?;
        assert_close(&fused, &separate);
        Ok(())
    }

    #[test]
    fn recorded_gradients_and_observed_calls_run_the_three_submodules() -> Result<()> {
        let x = Tensor::randn([2, 5, 8], (Kind::Float, Device::Cpu));
        let m = MultiHeadDotProductAttention::new(2);
        let variables = m.init(PRNGKey::new(0), &x, &x, None, None)?;
        let before = fused_calls();
        // Params that require gradients, with grad mode on: autograd records the projections.
        let tracked = tree_map(&variables, |t| Ok(t.detach().set_requires_grad(true)))?;
        let y = m.apply(&tracked, &x, &x, None, None)?;
        assert!(y.requires_grad());
        assert_eq!(fused_calls(), before);
        let _ = tch::no_grad(|| m.apply(&tracked, &x, &x, None, None))?;
        assert_eq!(fused_calls(), before + 1, "without grad mode they fuse");
        // Captured intermediates hold each projection's own call.
        let options = ApplyOptions::new().capture_intermediates(true);
        let (_, state) = m.apply_with(&variables, options, &x, &x, None, None)?;
        assert_eq!(fused_calls(), before + 1);
        for name in PROJECTIONS {
            assert!(state.get_path(&["intermediates", name, "__call__"]).is_some(), "{name} captured");
        }
        // float64 inputs and params are not fused.
        let double = tree_map(&variables, |t| Ok(t.to_kind(Kind::Double)))?;
        let _ = m.apply(&double, &x.to_kind(Kind::Double), &x.to_kind(Kind::Double), None, None)?;
        assert_eq!(fused_calls(), before + 1);
        Ok(())
    }
}
