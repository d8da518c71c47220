// PyTorch's own distributed engine, c10d, for `flax::distributed` (DESIGN.md §8): a `TCPStore`
// for the rendezvous and a `ProcessGroupGloo` (CPU) or `ProcessGroupNCCL` (CUDA) for the
// collectives, exported by the libtorch_cpu and libtorch_cuda the crate links. Nothing here
// speaks to the network itself.
//
// `ProcessGroupGloo.hpp` includes a few of Gloo's headers, which the PyPI wheel does not ship:
// they are vendored under `third_party/gloo` (see its README for the commit and why it fits).
// The header only declares the class when `USE_C10D_GLOO` is defined, which build.rs does.
// `ProcessGroupNCCL.hpp` likewise needs `USE_C10D_NCCL`, which build.rs defines only with a
// CUDA libtorch and CUDA's and NCCL's headers (see there for the ABI this relies on).
//
// A process group crosses to Rust as an opaque pointer to `FlaxProcessGroup`; every
// collective blocks until it completes on this rank (for NCCL: until the current CUDA stream
// waits for it, as c10d's `wait` does), and c10d's exceptions (a peer that closed its
// connection, a timeout, a tensor the backend cannot send) come back as errors through
// `guarded`.

#include "shim.h"

#include "distributed.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <string>

namespace {

using flax_dist::group_of;
using flax_dist::staged;

// c10d's NCCL process group on CUDA device `device`, as `init_process_group(backend="nccl",
// device_id=...)` makes it: bound to that device (so that a barrier knows which GPU to use)
// and connected at once, so that a missing peer fails here rather than at the first collective.
c10::intrusive_ptr<c10d::Backend> nccl_group(const c10::intrusive_ptr<c10d::Store> &store, int rank, int world_size,
                                             std::chrono::milliseconds timeout, int device) {
#ifdef USE_C10D_NCCL
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
  at::Device cuda(at::kCUDA, static_cast<at::DeviceIndex>(device));
  group->setBoundDeviceId(cuda);
  group->eagerConnectSingleDevice(cuda);
  return group;
#else
  // The Rust side refuses NCCL in such a build before calling, with build.rs's reason.
  TORCH_CHECK(false, "flax-runtime was built without NCCL");
#endif
}

}  // namespace

extern "C" {

// Joins the group: connects to (or, with `is_server`, hosts) the TCPStore at host:port, which
// waits for all `world_size` ranks within `timeout_ms`, then sets up the backend's connections
// through it: Gloo's when `cuda_device` is negative, else NCCL's on that CUDA device. Keys live
// under `prefix`, so a store shared with torchrun's agent stays tidy.
int flax_dist_new(const char *host, int port, int rank, int world_size, int is_server, int64_t timeout_ms,
                  const char *prefix, int cuda_device, void **out, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    options.isServer = is_server != 0;
    options.numWorkers = static_cast<std::size_t>(world_size);
    options.timeout = timeout;
    options.multiTenant = true;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    if (cuda_device < 0) {
      auto gloo = c10d::ProcessGroupGloo::Options::create_default(timeout);
      auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, gloo);
      *out = new flax_dist::FlaxProcessGroup{store, group, std::nullopt};
    } else {
      auto group = nccl_group(store, rank, world_size, timeout, cuda_device);
      at::Device device(at::kCUDA, static_cast<at::DeviceIndex>(cuda_device));
      *out = new flax_dist::FlaxProcessGroup{store, group, device};
    }
  });
}

// Leaves the group. NCCL's destructor aborts its communicators unless the group was shut down
// first, which waits for its pending collectives (what `destroy_process_group` does); Gloo's
// shutdown does nothing.
void flax_dist_free(void *group) {
  auto *g = group_of(group);
  try {
    g->group->shutdown();
  } catch (...) {
    // Leaving must not throw across the C boundary; the destructor still releases the group.
  }
  delete g;
}

// Sums `buffer` over all ranks in place: a dense buffer the caller owns (the Rust side copies
// a tensor it must not write, and flattens a tree's leaves into one such buffer per dtype).
// On NCCL a buffer elsewhere than the group's device is summed there and copied back.
int flax_dist_all_reduce_sum_(void *group, at::Tensor *buffer, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    TORCH_CHECK(buffer->is_contiguous(), "all_reduce_sum_: the buffer must be contiguous");
    auto &g = *group_of(group);
    at::Tensor target = g.device ? buffer->to(*g.device) : *buffer;  // `to` is the buffer itself when it is there
    std::vector<at::Tensor> tensors{target};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    g.group->allreduce(tensors, options)->wait();
    if (!target.is_same(*buffer)) {
      buffer->copy_(target);
    }
  });
}

// `root`'s `input`, as a new tensor on every rank (each rank passes a tensor of that shape and
// dtype), on the device of `input`.
int flax_dist_broadcast(void *group, at::Tensor *input, int root, at::Tensor **out, char *error,
                        size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    auto &g = *group_of(group);
    std::vector<at::Tensor> tensors{staged(g, *input)};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    g.group->broadcast(tensors, options)->wait();
    *out = flax_shim::handle(tensors[0].to(input->device()));
  });
}

// Every rank's `input` stacked along a new leading axis of size world_size (JAX's
// `lax.all_gather`), as a new tensor on every rank, on the device of `input`.
int flax_dist_all_gather(void *group, at::Tensor *input, at::Tensor **out, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    auto &g = *group_of(group);
    auto &pg = *g.group;
    std::vector<at::Tensor> inputs{staged(g, *input)};
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int r = 0; r < pg.getSize(); ++r) {
      outputs[0].push_back(at::empty_like(inputs[0]));
    }
    pg.allgather(outputs, inputs)->wait();
    *out = flax_shim::handle(at::stack(outputs[0]).to(input->device()));
  });
}

// The sum over ranks of the flat `input` (world_size equal chunks), of which this rank gets its
// own chunk (c10d's reduce-scatter on one flat buffer), on the device of `input`.
int flax_dist_reduce_scatter_sum(void *group, at::Tensor *input, at::Tensor **out, char *error,
                                 size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    auto &g = *group_of(group);
    auto &pg = *g.group;
    at::Tensor flat = staged(g, *input).reshape({-1});
    at::Tensor output = at::empty({flat.numel() / pg.getSize()}, flat.options());
    c10d::ReduceScatterOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    pg._reduce_scatter_base(output, flat, options)->wait();
    *out = flax_shim::handle(output.to(input->device()));
  });
}

// Returns once every rank has called it.
int flax_dist_barrier(void *group, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] { group_of(group)->group->barrier()->wait(); });
}

}  // extern "C"
