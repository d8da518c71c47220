// A tensor's identity, its in-place version (what Python's `id(t)` on a tensor's `TensorImpl`
// and `t._version` say) and whether anything else shares its data, which tch does not expose:
// `nn/loop_invariant.rs` needs the first two to reuse a value computed from a cell's params
// only while the params are the very same tensors, unmodified; the optimizers need the third
// to update in place only what nothing else sees. All are plain reads that cannot throw.

#include "shim.h"

extern "C" {

// The address of the `TensorImpl` behind a handle: equal for two handles exactly when they
// are the same tensor (shallow clones included), and stable while either is alive.
const void *flax_tensor_impl(const at::Tensor *t) { return t->unsafeGetTensorImpl(); }

// The tensor's version counter: bumped by every in-place operation on it or on a view of it.
int64_t flax_tensor_version(const at::Tensor *t) { return t->_version(); }

// Whether writing the tensor in place could change what something else sees: another handle
// on its `TensorImpl` (a shallow clone), another tensor on its storage (a view, a tensor
// autograd saved), or no storage to count (functorch's wrappers). Weak references (the shim's
// caches) do not count.
int flax_tensor_shared(const at::Tensor *t) {
  if (t->use_count() > 1 || !t->has_storage()) {
    return 1;
  }
  return t->storage().use_count() > 1 ? 1 : 0;
}

}  // extern "C"
