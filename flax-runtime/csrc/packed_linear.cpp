// Inference matrix products on weights packed once for oneDNN (`nn/packed_linear.rs`).
//
// libtorch's `addmm` is MKL's `sgemm`, which on the development machine's AMD CPU takes MKL's
// generic code path and re-packs the weight matrix at every call. oneDNN's inner product inside
// the same libtorch (`mkldnn::_linear_pointwise`, PyTorch's own inference path for
// `torch.compile`d and `ipex`-frozen models) runs JIT-compiled AVX-512 kernels on a weight laid
// out once in its blocked format (`mkldnn::_reorder_linear_weight`). Neither op is in tch's
// generated API nor in the wheel's headers as functions, so both are called through the
// dispatcher by their schema names.
//
// The packed weights are cached per parameter tensor: keyed by the `TensorImpl` the caller
// names (the param itself, even when the weight passed is a reshaped view of it), valid for the
// number of rows the packing was chosen for while that tensor is at the same in-place version,
// with the same storage, offset, shape and strides. One entry per param, so memory stays at one
// packed copy of each kernel whatever batch sizes a server sees: another row count repacks and
// replaces the entry (a copy of the kernel, the packing MKL does at every call anyway). A weak reference to the `TensorImpl` keeps
// its address from being reused by another tensor while the entry exists, without keeping the
// param's storage alive; entries whose param died are swept on insertion.

#include "shim.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/util/intrusive_ptr.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>

namespace {

// The oneDNN linear ops, looked up once; none when this libtorch lacks them, oneDNN is
// disabled (`torch.backends.mkldnn`), or the environment sets `FLAX_PACKED_LINEAR=0`.
struct Ops {
  std::optional<c10::OperatorHandle> reorder;
  std::optional<c10::OperatorHandle> linear;
};

const Ops &ops() {
  static const Ops found = [] {
    Ops o;
    const char *setting = std::getenv("FLAX_PACKED_LINEAR");
    if (!at::globalContext().userEnabledMkldnn() || (setting != nullptr && std::string(setting) == "0")) {
      return o;
    }
    auto &dispatcher = c10::Dispatcher::singleton();
    auto reorder = dispatcher.findSchema({"mkldnn::_reorder_linear_weight", ""});
    auto linear = dispatcher.findSchema({"mkldnn::_linear_pointwise", ""});
    if (reorder && linear && reorder->hasKernelForDispatchKey(c10::DispatchKey::CPU) &&
        linear->hasKernelForDispatchKey(c10::DispatchKey::CPU)) {
      o.reorder = reorder;
      o.linear = linear;
    }
    return o;
  }();
  return found;
}

// A dense float32 CPU tensor seen by no transform (vmap's batched tensors, functorch's grad
// wrappers, functionalization, Python subclasses, lazy conjugation or negation) and carrying
// no forward-mode tangent: what the oneDNN ops compute on directly.
bool plain(const at::Tensor &t) {
  static const c10::DispatchKeySet wrappers({
      c10::DispatchKey::FuncTorchBatched,
      c10::DispatchKey::FuncTorchGradWrapper,
      c10::DispatchKey::Functionalize,
      c10::DispatchKey::Python,
      c10::DispatchKey::Conjugate,
      c10::DispatchKey::Negative,
      c10::DispatchKey::ZeroTensor,
  });
  return t.defined() && t.layout() == at::kStrided && t.device().is_cpu() && t.scalar_type() == at::kFloat &&
         !t.key_set().has_any(wrappers) && !t._fw_grad(/*level=*/0).defined();
}

// One packed weight and what it was packed from.
struct Entry {
  c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> source;
  int64_t version;
  const void *data;
  std::vector<int64_t> sizes;
  std::vector<int64_t> strides;
  int64_t offset;
  int64_t rows;
  at::Tensor packed;

  bool matches(const at::Tensor &key, int64_t for_rows) const {
    return !source.expired() && rows == for_rows && version == key._version() && data == key.storage().data() &&
           offset == key.storage_offset() && sizes == key.sizes().vec() && strides == key.strides().vec();
  }
};

std::mutex cache_mutex;
std::unordered_map<const c10::TensorImpl *, Entry> cache;

// The weight `(in, out)` packed by oneDNN for `rows` input rows, cached for `key`.
at::Tensor packed_weight(const at::Tensor &key, const at::Tensor &weight, int64_t rows) {
  const c10::TensorImpl *id = key.unsafeGetTensorImpl();
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto found = cache.find(id);
    if (found != cache.end() && found->second.matches(key, rows)) {
      return found->second.packed;
    }
  }
  torch::jit::Stack stack{weight.t(), c10::IValue(rows)};
  ops().reorder->callBoxed(&stack);
  at::Tensor packed = stack.at(0).toTensor();
  std::lock_guard<std::mutex> lock(cache_mutex);
  for (auto it = cache.begin(); it != cache.end();) {
    it = it->second.source.expired() ? cache.erase(it) : std::next(it);
  }
  cache.insert_or_assign(id, Entry{c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>(key.getIntrusivePtr()),
                                   key._version(), key.storage().data(), key.sizes().vec(),
                                   key.strides().vec(), key.storage_offset(), rows, packed});
  return packed;
}

}  // namespace

extern "C" {

// `x @ weight + bias` (`x`: `(rows, in)`, `weight`: `(in, out)`, `bias`: `(out,)` or null) on
// oneDNN with `weight` packed once and cached for the tensor `key`. Writes null into `out`
// (nothing computed) where the oneDNN path does not apply: the ops missing from this libtorch,
// an operand that is not a plain float32 CPU tensor, or one autograd would have to track.
int flax_packed_linear(const at::Tensor *x, const at::Tensor *key, const at::Tensor *weight, const at::Tensor *bias,
                       at::Tensor **out, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    *out = nullptr;
    bool operands_plain = plain(*x) && plain(*key) && plain(*weight) && (bias == nullptr || plain(*bias));
    bool tracked = at::GradMode::is_enabled() &&
                   (x->requires_grad() || weight->requires_grad() || (bias != nullptr && bias->requires_grad()));
    if (!ops().linear || !operands_plain || tracked || x->dim() != 2 || weight->dim() != 2) {
      return;
    }
    at::Tensor packed = packed_weight(*key, *weight, x->size(0));
    torch::jit::Stack stack{*x,
                            packed,
                            bias == nullptr ? c10::IValue() : c10::IValue(*bias),
                            c10::IValue(std::string("none")),
                            c10::IValue(c10::List<std::optional<at::Scalar>>()),
                            c10::IValue()};
    ops().linear->callBoxed(&stack);
    *out = flax_shim::handle(stack.at(0).toTensor());
  });
}

// Drops every cached packed weight (their memory goes back at once, not when the params die).
void flax_packed_linear_clear() {
  std::lock_guard<std::mutex> lock(cache_mutex);
  cache.clear();
}

// How many packed weights the cache holds for the tensor `key`, valid or stale (the tests check
// that it packs, reuses and replaces them).
size_t flax_packed_linear_count(const at::Tensor *key) {
  std::lock_guard<std::mutex> lock(cache_mutex);
  size_t n = 0;
  for (const auto &[id, entry] : cache) {
    n += id == key->unsafeGetTensorImpl() && !entry.source.expired();
  }
  return n;
}

}  // extern "C"
