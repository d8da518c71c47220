// The process group the distributed shim's translation units share: what crosses to Rust as
// an opaque pointer.

#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

namespace flax_dist {

struct FlaxProcessGroup {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};

inline FlaxProcessGroup *group_of(void *group) { return static_cast<FlaxProcessGroup *>(group); }

}  // namespace flax_dist
