// A tensor's identity and its in-place version (what Python's `id(t)` on a tensor's
// `TensorImpl` and `t._version` say), which tch does not expose: `nn/loop_invariant.rs` needs
// them to reuse a value computed from a cell's params only while the params are the very same
// tensors, unmodified. Both are plain reads that cannot throw.

#include "shim.h"

extern "C" {

// The address of the `TensorImpl` behind a handle: equal for two handles exactly when they
// are the same tensor (shallow clones included), and stable while either is alive.
const void *flax_tensor_impl(const at::Tensor *t) { return t->unsafeGetTensorImpl(); }

// The tensor's version counter: bumped by every in-place operation on it or on a view of it.
int64_t flax_tensor_version(const at::Tensor *t) { return t->_version(); }

}  // extern "C"
