// functorch's vmap levels (DESIGN.md §10): the dynamic-layer stack and BatchedTensor wrapping
// that `torch.vmap` drives from Python (`torch/_functorch/vmap.py` with the bindings of
// `torch/csrc/functorch/init.cpp`, which live in libtorch_python and so are rebuilt here from
// the functions libtorch_cpu exports). aten's own `_add_batch_dim`/`_remove_batch_dim` (tch's
// `Tensor::internal_add_batch_dim`) are the legacy `Batched` key, not functorch's
// `FuncTorchBatched`: they are not used.

#include "shim.h"

#include <ATen/functorch/BatchedTensorImpl.h>
#include <ATen/functorch/DynamicLayer.h>

#include <string>

using at::functorch::DynamicLayer;
using at::functorch::TransformType;

namespace {

// The live vmap layer `level`, or an exception.
const DynamicLayer &vmap_layer(int64_t level) {
  for (const auto &layer : at::functorch::getDynamicLayerStack()) {
    if (layer.layerId() == level) {
      TORCH_CHECK(layer.key() == TransformType::Vmap, "functorch level ", level, " is not a vmap level");
      return layer;
    }
  }
  TORCH_CHECK(false, "vmap level ", level, " is not live (its vmap has returned)");
}

// The mapped axis of `level` as the logical dimension 0 of `t`, the levels above it kept
// (the tensor is no longer batched at `level`): `t`'s value at every index of that axis. A
// tensor not batched at `level` is the same at every index and is expanded.
at::Tensor expose(const at::Tensor &t, int64_t level, int64_t batch_size) {
  auto *batched = at::functorch::maybeGetBatchedImpl(t);
  if (batched == nullptr || batched->level() < level) {
    std::vector<int64_t> sizes = t.sizes().vec();
    sizes.insert(sizes.begin(), batch_size);
    return t.unsqueeze(0).expand(sizes);
  }
  if (batched->level() == level) {
    return batched->value().movedim(batched->bdim(), 0);
  }
  // Batched at an inner level above `level`: expose inside, then re-wrap; the new dimension 0
  // shifts that level's batch dimension by one.
  auto inner = expose(batched->value(), level, batch_size);
  return at::functorch::makeBatched(inner, batched->bdim() + 1, batched->level());
}

}  // namespace

extern "C" {

// `torch._C._functorch._vmap_increment_nesting(batch_size, randomness)`: pushes a vmap layer
// and writes its level. `randomness`: 0 error, 1 different, 2 same.
int flax_vmap_push(int64_t batch_size, int randomness, int64_t *level, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    TORCH_CHECK(batch_size > 0, "vmap: batch size must be positive, got ", batch_size);
    at::functorch::RandomnessType kind = at::functorch::RandomnessType::Error;
    switch (randomness) {
      case 0: kind = at::functorch::RandomnessType::Error; break;
      case 1: kind = at::functorch::RandomnessType::Different; break;
      case 2: kind = at::functorch::RandomnessType::Same; break;
      default: TORCH_CHECK(false, "vmap: unknown randomness ", randomness);
    }
    *level = at::functorch::initAndPushDynamicLayer(TransformType::Vmap, c10::SymInt(batch_size), kind);
  });
}

// `_vmap_decrement_nesting` for `level`: pops the layers down to and including it (those above
// it were left by a guard dropped out of order); nothing when it is no longer on the stack.
int flax_vmap_pop(int64_t level, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    const auto &stack = at::functorch::getDynamicLayerStack();
    bool live = false;
    for (const auto &layer : stack) {
      live = live || layer.layerId() == level;
    }
    if (!live) {
      return;
    }
    while (true) {
      auto popped = at::functorch::popDynamicLayerAndDeleteMetadata();
      if (popped.layerId() == level) {
        break;
      }
    }
  });
}

// The number of functorch layers on this thread's stack.
int64_t flax_functorch_depth() { return static_cast<int64_t>(at::functorch::getDynamicLayerStack().size()); }

// The innermost vmap level, or 0 outside any.
int64_t flax_vmap_current_level() {
  const auto &stack = at::functorch::getDynamicLayerStack();
  for (auto it = stack.rbegin(); it != stack.rend(); ++it) {
    if (it->key() == TransformType::Vmap) {
      return it->layerId();
    }
  }
  return 0;
}

// `_add_batch_dim(t, dim, level)`: `t` seen per example, its dimension `dim` mapped at
// `level`, which must be the innermost layer.
int flax_vmap_add_batch_dim(at::Tensor *t, int64_t dim, int64_t level, at::Tensor **out, char *error,
                            size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    const auto &layer = vmap_layer(level);
    auto top = at::functorch::maybeCurrentDynamicLayer();
    TORCH_CHECK(top.has_value() && top->layerId() == level, "vmap: can only add a batch dimension at the ",
                "innermost level");
    int64_t wrapped = c10::maybe_wrap_dim(dim, t->dim());
    auto size = t->size(wrapped);
    auto batch_size = layer.batchSize().guard_int(__FILE__, __LINE__);
    TORCH_CHECK(size == batch_size, "vmap: the mapped dimension ", dim, " of an input has size ", size,
                " but the batch size is ", batch_size);
    *out = flax_shim::handle(at::functorch::addBatchDim(*t, wrapped, level));
  });
}

// `_remove_batch_dim(t, level, batch_size, out_dim)`: the whole batch, the mapped axis at
// `out_dim`; a tensor not batched at `level` is expanded along it (the same for every example).
int flax_vmap_remove_batch_dim(at::Tensor *t, int64_t level, int64_t out_dim, at::Tensor **out, char *error,
                               size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    const auto &layer = vmap_layer(level);
    auto batch_size = layer.batchSize().guard_int(__FILE__, __LINE__);
    auto *batched = at::functorch::maybeGetBatchedImpl(*t);
    if (batched == nullptr || batched->level() < level) {
      int64_t wrapped = c10::maybe_wrap_dim(out_dim, t->dim() + 1);
      std::vector<int64_t> sizes = t->sizes().vec();
      sizes.insert(sizes.begin() + wrapped, batch_size);
      *out = flax_shim::handle(t->unsqueeze(wrapped).expand(sizes));
      return;
    }
    TORCH_CHECK(batched->level() == level, "vmap: a tensor batched at inner level ", batched->level(),
                " escaped that level's vmap (remove its batch dimension there first)");
    const auto &value = batched->value();
    int64_t wrapped = c10::maybe_wrap_dim(out_dim, value.dim());
    *out = flax_shim::handle(value.movedim(batched->bdim(), wrapped));
  });
}

// The mapped axis of the live vmap `level` as the logical dimension 0 of `t` (see `expose`):
// the primitive under collectives over a named axis (`lax.psum`, `pmean`, `all_gather`).
int flax_vmap_expose_axis(at::Tensor *t, int64_t level, at::Tensor **out, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    const auto &layer = vmap_layer(level);
    auto batch_size = layer.batchSize().guard_int(__FILE__, __LINE__);
    *out = flax_shim::handle(expose(*t, level, batch_size));
  });
}

// Whether `t` is batched at `level` (directly or under inner levels).
int flax_vmap_is_batched_at(at::Tensor *t, int64_t level) {
  auto *batched = at::functorch::maybeGetBatchedImpl(*t);
  while (batched != nullptr && batched->level() > level) {
    batched = at::functorch::maybeGetBatchedImpl(batched->value());
  }
  return batched != nullptr && batched->level() == level;
}

}  // extern "C"
