// Forward-mode AD levels (DESIGN.md §10: the machinery under `jvp`): what Python's
// `torch.autograd.forward_ad.dual_level` enters and exits (`torch._C._enter_dual_level`,
// `_exit_dual_level`). Dual tensors themselves are aten ops (`_make_dual`, `_unpack_dual`) that
// tch already exposes.

#include "shim.h"

#include <torch/csrc/autograd/forward_grad.h>

extern "C" {

// Enters a new forward-AD level and writes its index. libtorch allows one level at a time in
// the whole process ("Nested forward mode AD is not supported at the moment").
int flax_enter_dual_level(uint64_t *level, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] { *level = torch::autograd::ForwardADLevel::get_next_idx(); });
}

// Exits forward-AD level `level`: every tangent recorded at it is cleared.
int flax_exit_dual_level(uint64_t level, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] { torch::autograd::ForwardADLevel::release_idx(level); });
}

}  // extern "C"
