// Custom autograd functions whose forward and backward are Rust closures (DESIGN.md §10: the
// machinery under `custom_vjp` and `remat`), and `torch::autograd::grad` with output gradients,
// which tch's `run_backward` lacks.
//
// A `torch::autograd::Function` calls the Rust forward through a function pointer (once, during
// `apply`) and keeps the Rust backward in its context as an `IValue` capsule of a
// `CustomClassHolder`: the closure lives exactly as long as the autograd node, and the holder's
// destructor calls Rust's drop function. Residuals go through `save_for_backward`, so a residual
// that is also an output does not keep its own node alive. A Rust error or panic comes back as a
// nonzero return with a message and is thrown here as a C++ exception: from `apply` it reaches
// the caller through `guarded`, from backward it travels through the autograd engine to whoever
// called backward (tch's `f_run_backward` returns it as an error).

#include "shim.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <stdexcept>
#include <string>

extern "C" {
// Rust appends a tensor (a handle it gives up, or null for an undefined tensor) to a C++ list.
void flax_tensor_list_push(void *list, at::Tensor *owned) {
  auto *tensors = static_cast<std::vector<at::Tensor> *>(list);
  if (owned == nullptr) {
    tensors->emplace_back();
  } else {
    tensors->push_back(std::move(*owned));
    delete owned;
  }
}

// The Rust side's functions. Tensor arrays handed to Rust are new handles that Rust owns;
// results come back through `flax_tensor_list_push` on the given lists.
typedef int (*flax_forward_fn)(void *closure, at::Tensor **inputs, int n, void *outputs, void *residuals,
                               char *error, size_t error_len);
typedef int (*flax_backward_fn)(void *closure, at::Tensor **residuals, int n_residuals, at::Tensor **grads,
                                int n_grads, void *input_grads, char *error, size_t error_len);
typedef void (*flax_drop_fn)(void *closure);
// Appends a tensor handle (owned by Rust from then on, null for undefined) to a Rust list.
typedef void (*flax_rust_push_fn)(void *list, at::Tensor *owned);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct RustBackward : torch::CustomClassHolder {
  RustBackward(void *closure, flax_backward_fn call, flax_drop_fn drop) : closure(closure), call(call), drop(drop) {}
  RustBackward(const RustBackward &) = delete;
  RustBackward &operator=(const RustBackward &) = delete;
  ~RustBackward() override { drop(closure); }
  void *closure;
  flax_backward_fn call;
  flax_drop_fn drop;
};

struct RustForward {
  void *closure;
  flax_forward_fn call;
};

// New handles of `tensors`, for Rust to own.
std::vector<at::Tensor *> new_handles(const std::vector<at::Tensor> &tensors) {
  std::vector<at::Tensor *> out;
  out.reserve(tensors.size());
  for (const auto &t : tensors) {
    out.push_back(flax_shim::handle(t));
  }
  return out;
}

struct RustFunction : torch::autograd::Function<RustFunction> {
  static variable_list forward(AutogradContext *ctx, at::TensorList inputs, RustForward *fwd,
                               c10::intrusive_ptr<RustBackward> bwd) {
    std::vector<at::Tensor> outputs, residuals;
    auto handles = new_handles(inputs.vec());
    char error[2048] = {0};
    if (fwd->call(fwd->closure, handles.data(), static_cast<int>(handles.size()), &outputs, &residuals, error,
                  sizeof error) != 0) {
      throw std::runtime_error(error);
    }
    ctx->save_for_backward(residuals);
    ctx->saved_data["n_inputs"] = static_cast<int64_t>(inputs.size());
    ctx->saved_data["backward"] = c10::IValue::make_capsule(std::move(bwd));
    return outputs;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grad_outputs) {
    auto n_inputs = ctx->saved_data["n_inputs"].toInt();
    auto capsule = ctx->saved_data["backward"].toCapsule();
    auto *bwd = static_cast<RustBackward *>(capsule.get());
    auto residuals = new_handles(ctx->get_saved_variables());
    auto grads = new_handles(grad_outputs);
    std::vector<at::Tensor> input_grads;
    char error[2048] = {0};
    if (bwd->call(bwd->closure, residuals.data(), static_cast<int>(residuals.size()), grads.data(),
                  static_cast<int>(grads.size()), &input_grads, error, sizeof error) != 0) {
      throw std::runtime_error(error);
    }
    TORCH_CHECK(static_cast<int64_t>(input_grads.size()) == n_inputs, "custom_vjp: the backward function returned ",
                input_grads.size(), " gradients for ", n_inputs, " inputs");
    // No gradient for the two non-tensor arguments of `forward`.
    input_grads.emplace_back();
    input_grads.emplace_back();
    return input_grads;
  }
};

}  // namespace

extern "C" {

// Applies a custom function to `inputs`: the outputs (pushed to `outputs` through `push`) are
// the Rust forward's, recorded as one autograd node whose backward is the Rust backward. The
// backward closure's ownership passes to the shim on every path: `drop` is called once, when
// the node (or, if no node is kept, this call) is done with it.
int flax_custom_function_apply(at::Tensor **inputs, int n, void *fwd_closure, flax_forward_fn fwd,
                               void *bwd_closure, flax_backward_fn bwd, flax_drop_fn drop, void *outputs,
                               flax_rust_push_fn push, char *error, size_t error_len) {
  c10::intrusive_ptr<RustBackward> holder;
  try {
    holder = c10::make_intrusive<RustBackward>(bwd_closure, bwd, drop);
  } catch (...) {
    drop(bwd_closure);
    flax_shim::copy_message("out of memory", error, error_len);
    return 1;
  }
  return flax_shim::guarded(error, error_len, [&] {
    auto args = flax_shim::tensors(inputs, n);
    RustForward forward{fwd_closure, fwd};
    auto results = RustFunction::apply(at::TensorList(args), &forward, std::move(holder));
    for (auto &t : results) {
      push(outputs, flax_shim::handle(std::move(t)));
    }
  });
}

// `torch::autograd::grad(outputs, inputs, grad_outputs, retain_graph, create_graph,
// allow_unused=true)`: the gradients of `inputs` (null handles for those the outputs do not
// depend on), pushed to `grads`. A null `grad_outputs[i]` is ones, as for a scalar loss.
int flax_autograd_grad(at::Tensor **outputs, at::Tensor **grad_outputs, int n_outputs, at::Tensor **inputs,
                       int n_inputs, int retain_graph, int create_graph, void *grads, flax_rust_push_fn push,
                       char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    auto outs = flax_shim::tensors(outputs, n_outputs);
    std::vector<at::Tensor> seeds;
    seeds.reserve(n_outputs);
    for (int i = 0; i < n_outputs; ++i) {
      seeds.push_back(grad_outputs[i] == nullptr ? at::Tensor() : *grad_outputs[i]);
    }
    auto results = torch::autograd::grad(outs, flax_shim::tensors(inputs, n_inputs), seeds, retain_graph != 0,
                                         create_graph != 0, /*allow_unused=*/true);
    for (auto &t : results) {
      push(grads, t.defined() ? flax_shim::handle(std::move(t)) : nullptr);
    }
  });
}

// libtorch's grad mode on this thread (`torch.is_grad_enabled()`).
int flax_grad_mode_enabled() { return at::GradMode::is_enabled() ? 1 : 0; }

}  // extern "C"
