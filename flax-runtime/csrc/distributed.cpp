// PyTorch's own distributed engine, c10d, for `flax::distributed` (DESIGN.md §8): a `TCPStore`
// for the rendezvous and a `ProcessGroupGloo` for the collectives, both exported by the
// libtorch_cpu the crate links. Nothing here speaks to the network itself.
//
// `ProcessGroupGloo.hpp` includes a few of Gloo's headers, which the PyPI wheel does not ship:
// they are vendored under `third_party/gloo` (see its README for the commit and why it fits).
// The header only declares the class when `USE_C10D_GLOO` is defined, which build.rs does.
//
// A process group crosses to Rust as an opaque pointer to `FlaxProcessGroup`; every
// collective blocks until it completes on this rank, and c10d's exceptions (a peer that closed
// its connection, a timeout, a tensor Gloo cannot send) come back as errors through `guarded`.

#include "shim.h"

#include "distributed.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <string>

namespace {

using flax_dist::group_of;

// Gloo sends a tensor's storage as it lies: a dense, contiguous copy is reduced in place and
// returned, so the caller's tensor (which may be a view) is never written.
at::Tensor dense_copy(const at::Tensor &t) { return t.contiguous().clone(at::MemoryFormat::Contiguous); }

}  // namespace

extern "C" {

// Joins the group: connects to (or, with `is_server`, hosts) the TCPStore at host:port, which
// waits for all `world_size` ranks within `timeout_ms`, then sets up Gloo's pairwise
// connections through it. Keys live under `prefix`, so a store shared with torchrun's agent
// stays tidy.
int flax_dist_gloo_new(const char *host, int port, int rank, int world_size, int is_server, int64_t timeout_ms,
                       const char *prefix, void **out, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    options.isServer = is_server != 0;
    options.numWorkers = static_cast<std::size_t>(world_size);
    options.timeout = timeout;
    options.multiTenant = true;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    auto store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    auto gloo = c10d::ProcessGroupGloo::Options::create_default(timeout);
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, gloo);
    *out = new flax_dist::FlaxProcessGroup{store, group};
  });
}

void flax_dist_free(void *group) { delete group_of(group); }

// Sums `buffer` over all ranks in place: a dense buffer the caller owns (the Rust side copies
// a tensor it must not write, and flattens a tree's leaves into one such buffer per dtype).
int flax_dist_all_reduce_sum_(void *group, at::Tensor *buffer, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    TORCH_CHECK(buffer->is_contiguous(), "all_reduce_sum_: the buffer must be contiguous");
    std::vector<at::Tensor> tensors{*buffer};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    group_of(group)->group->allreduce(tensors, options)->wait();
  });
}

// `root`'s `input`, as a new tensor on every rank (each rank passes a tensor of that shape and
// dtype).
int flax_dist_broadcast(void *group, at::Tensor *input, int root, at::Tensor **out, char *error,
                        size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    std::vector<at::Tensor> tensors{dense_copy(*input)};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    group_of(group)->group->broadcast(tensors, options)->wait();
    *out = flax_shim::handle(tensors[0]);
  });
}

// Every rank's `input` stacked along a new leading axis of size world_size (JAX's
// `lax.all_gather`), as a new tensor on every rank.
int flax_dist_all_gather(void *group, at::Tensor *input, at::Tensor **out, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    auto &pg = *group_of(group)->group;
    std::vector<at::Tensor> inputs{dense_copy(*input)};
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int r = 0; r < pg.getSize(); ++r) {
      outputs[0].push_back(at::empty_like(inputs[0]));
    }
    pg.allgather(outputs, inputs)->wait();
    *out = flax_shim::handle(at::stack(outputs[0]));
  });
}

// The sum over ranks of the flat `input` (world_size equal chunks), of which this rank gets its
// own chunk (c10d's reduce-scatter on one flat buffer).
int flax_dist_reduce_scatter_sum(void *group, at::Tensor *input, at::Tensor **out, char *error,
                                 size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    auto &pg = *group_of(group)->group;
    at::Tensor flat = dense_copy(*input).reshape({-1});
    at::Tensor output = at::empty({flat.numel() / pg.getSize()}, flat.options());
    c10d::ReduceScatterOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    pg._reduce_scatter_base(output, flat, options)->wait();
    *out = flax_shim::handle(output);
  });
}

// Returns once every rank has called it.
int flax_dist_barrier(void *group, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] { group_of(group)->group->barrier()->wait(); });
}

}  // extern "C"
