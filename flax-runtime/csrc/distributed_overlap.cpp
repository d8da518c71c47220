// Gradients averaged across ranks while the backward pass still runs, as PyTorch's DDP does:
// the leaves are grouped into buckets of about `bucket_cap_bytes` in reverse order (the order
// backward produces their gradients), a hook on each leaf copies its gradient into its bucket's
// flat buffer (on the group's device, see `staged`), and a full bucket's all-reduce starts at
// once on the backend's own threads (Gloo's, or NCCL's stream) while autograd computes the
// gradients of earlier layers. Buckets start in index order on every
// rank (a bucket that fills early waits for the ones before it), so all ranks issue the same
// collectives in the same order; buckets left incomplete by leaves the loss does not use start
// after backward with zeros for those leaves, as JAX's gradient of an unused input is zero.

#include "distributed.h"
#include "shim.h"

#include <torch/csrc/autograd/autograd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

namespace {

struct Bucket {
  at::Tensor flat;               // the bucket's gradients, back to back
  int pending = 0;               // leaves whose gradient has not arrived yet
  c10::intrusive_ptr<c10d::Work> work;  // the all-reduce, once started
};

struct Overlap {
  c10d::Backend *group;
  std::optional<at::Device> device;  // the group's, for the buckets
  std::vector<Bucket> buckets;
  std::vector<int> bucket_of;       // per leaf
  std::vector<int64_t> offset_of;   // per leaf, in its bucket
  size_t next_to_start = 0;

  // Starts every full bucket whose predecessors have all started.
  void start_ready() {
    while (next_to_start < buckets.size() && buckets[next_to_start].pending == 0) {
      start(buckets[next_to_start++]);
    }
  }

  void start(Bucket &bucket) {
    std::vector<at::Tensor> tensors{bucket.flat};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    bucket.work = group->allreduce(tensors, options);
  }

  void arrive(int leaf, const at::Tensor &grad) {
    Bucket &bucket = buckets[bucket_of[leaf]];
    bucket.flat.narrow(0, offset_of[leaf], grad.numel()).view(grad.sizes()).copy_(grad);
    bucket.pending -= 1;
    start_ready();
  }
};

// Buckets of consecutive leaves (from the last) of one dtype and at most `cap` bytes each (a
// larger leaf is a bucket alone).
void plan_buckets(Overlap &overlap, const std::vector<at::Tensor> &leaves, int64_t cap) {
  int n = static_cast<int>(leaves.size());
  overlap.bucket_of.assign(n, -1);
  overlap.offset_of.assign(n, 0);
  std::vector<int64_t> numel;
  std::vector<at::ScalarType> dtype;
  int64_t bytes = 0;
  for (int i = n - 1; i >= 0; --i) {
    const at::Tensor &leaf = leaves[i];
    int64_t leaf_bytes = leaf.numel() * static_cast<int64_t>(leaf.element_size());
    bool fits = !numel.empty() && dtype.back() == leaf.scalar_type() && bytes + leaf_bytes <= cap;
    if (!fits) {
      numel.push_back(0);
      dtype.push_back(leaf.scalar_type());
      overlap.buckets.emplace_back();
      bytes = 0;
    }
    int b = static_cast<int>(overlap.buckets.size()) - 1;
    overlap.bucket_of[i] = b;
    overlap.offset_of[i] = numel[b];
    numel[b] += leaf.numel();
    bytes += leaf_bytes;
    overlap.buckets[b].pending += 1;
  }
  at::Device device = overlap.device.value_or(leaves[0].device());
  for (size_t b = 0; b < overlap.buckets.size(); ++b) {
    overlap.buckets[b].flat = at::zeros({numel[b]}, leaves[0].options().dtype(dtype[b]).device(device));
  }
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

extern "C" {

// The gradient of the scalar `loss` with respect to each of the `n` `leaves` (which require
// grad), summed over all ranks and divided by the world size (`lax.pmean` of the gradients),
// with the all-reduces overlapping the backward pass. `grads_out` receives `n` new handles;
// `wait_seconds` the time spent waiting for all-reduces after backward returned.
int flax_dist_value_and_grad_pmean(void *group, at::Tensor *loss, at::Tensor *const *leaves, int n,
                                   int64_t bucket_cap_bytes, at::Tensor **grads_out, double *wait_seconds,
                                   char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    auto overlap = std::make_shared<Overlap>();
    auto &g = *flax_dist::group_of(group);
    overlap->group = g.group.get();
    overlap->device = g.device;
    std::vector<at::Tensor> inputs = flax_shim::tensors(leaves, n);
    plan_buckets(*overlap, inputs, bucket_cap_bytes);
    std::vector<unsigned> hooks;
    for (int i = 0; i < n; ++i) {
      hooks.push_back(inputs[i].register_hook([overlap, i](const at::Tensor &grad) { overlap->arrive(i, grad); }));
    }
    try {
      torch::autograd::grad({*loss}, inputs, {}, /*retain_graph=*/false, /*create_graph=*/false,
                            /*allow_unused=*/true);
    } catch (...) {
      for (int i = 0; i < n; ++i) inputs[i].remove_hook(hooks[i]);
      throw;
    }
    for (int i = 0; i < n; ++i) inputs[i].remove_hook(hooks[i]);
    for (auto &bucket : overlap->buckets) bucket.pending = 0;  // unused leaves: zeros
    overlap->start_ready();
    auto start = std::chrono::steady_clock::now();
    for (auto &bucket : overlap->buckets) bucket.work->wait();
    *wait_seconds = seconds_since(start);
    double world = static_cast<double>(overlap->group->getSize());
    for (auto &bucket : overlap->buckets) bucket.flat.div_(world);
    for (int i = 0; i < n; ++i) {
      Bucket &bucket = overlap->buckets[overlap->bucket_of[i]];
      at::Tensor grad = bucket.flat.narrow(0, overlap->offset_of[i], inputs[i].numel()).view(inputs[i].sizes());
      grads_out[i] = flax_shim::handle(grad.to(inputs[i].device()));  // the bucket's view when already there
    }
  });
}

}  // extern "C"
