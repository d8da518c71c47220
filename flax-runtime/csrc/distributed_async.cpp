// Collectives that return before they complete, for the sharded mode's prefetch
// (`src/distributed/prefetch.rs`): the all-gather of the next unit's parameters runs on the
// backend's own threads (Gloo's, or NCCL's stream) while this rank computes the current unit,
// as PyTorch's FSDP prefetches.
//
// A started collective crosses to Rust as an opaque pointer to `FlaxWork`: c10d's `Work`
// handle and the output tensor it writes. The output may be read only after
// `flax_dist_work_wait` returned 0. The `Work` keeps its input and output alive while Gloo
// runs it, so freeing a handle that was never waited on is memory-safe: the collective still
// completes (or fails after the group's timeout) on Gloo's thread. Collectives match across
// ranks by the order they are started in, as the blocking ones do.
//
// Waiting returns c10d's exception as an error, as the blocking collectives do: a peer that
// closed its connection fails at once, a peer that stopped answering fails when Gloo's
// timeout (the group's, `ProcessGroupOptions::with_timeout`) passes, never a hang.

#include "shim.h"

#include "distributed.h"

#include <vector>

namespace {

struct FlaxWork {
  c10::intrusive_ptr<c10d::Work> work;
  at::Tensor output;
};

FlaxWork *work_of(void *work) { return static_cast<FlaxWork *>(work); }

}  // namespace

extern "C" {

// Starts gathering every rank's `input` into a new `[world_size, input's shape...]` tensor
// (row r: rank r's input), written to `*output` at once, on the group's device (see
// `staged`); `*work` receives the handle to wait on. The input is copied first, so the caller
// may change or free its tensor meanwhile.
int flax_dist_all_gather_start(void *group, at::Tensor *input, void **work, at::Tensor **output, char *error,
                               size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    auto &g = *flax_dist::group_of(group);
    auto &pg = *g.group;
    std::vector<at::Tensor> inputs{flax_dist::staged(g, *input)};
    std::vector<int64_t> shape{pg.getSize()};
    shape.insert(shape.end(), inputs[0].sizes().begin(), inputs[0].sizes().end());
    at::Tensor stacked = at::empty(shape, inputs[0].options());
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int r = 0; r < pg.getSize(); ++r) {
      outputs[0].push_back(stacked.select(0, r));
    }
    auto started = pg.allgather(outputs, inputs);
    *work = new FlaxWork{started, stacked};
    *output = flax_shim::handle(stacked);
  });
}

// Blocks until the collective `work` completes on this rank; c10d's exception as an error when
// it failed (a peer gone, Gloo's timeout passed). Waiting again after success returns at once.
int flax_dist_work_wait(void *work, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] { work_of(work)->work->wait(); });
}

// Releases the handle (the collective itself, if still running, completes on Gloo's thread).
void flax_dist_work_free(void *work) { delete work_of(work); }

}  // extern "C"
