// The process group the distributed shim's translation units share: what crosses to Rust as
// an opaque pointer, and where its collectives stage their tensors.

#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <optional>

namespace flax_dist {

struct FlaxProcessGroup {
  c10::intrusive_ptr<c10d::Store> store;
  // `ProcessGroupGloo` or `ProcessGroupNCCL`, through c10d's common interface.
  c10::intrusive_ptr<c10d::Backend> group;
  // The device the collectives run on: none for Gloo, which takes tensors where they lie (as
  // before NCCL existed here), and the rank's CUDA device for NCCL, which takes only those.
  std::optional<at::Device> device;
};

inline FlaxProcessGroup *group_of(void *group) { return static_cast<FlaxProcessGroup *>(group); }

// A dense, contiguous copy of `t` on the group's device (a collective's backend sends a
// tensor's storage as it lies, and may write it): the caller's tensor, which may be a view or
// live on another device, is never written. The collective's result goes back to `t`'s device.
inline at::Tensor staged(const FlaxProcessGroup &group, const at::Tensor &t) {
  return t.to(group.device.value_or(t.device()), t.scalar_type(), /*non_blocking=*/false, /*copy=*/true,
              at::MemoryFormat::Contiguous);
}

}  // namespace flax_dist
