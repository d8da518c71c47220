// libtorch's multi-tensor optimizer kernels, which tch's generated API leaves out
// (DESIGN.md §8): one call updates every parameter of a model, instead of a few kernels per
// parameter. Plain functions over tch's tensor handles; a C++ exception is caught here and
// returned as its message, which the Rust side turns into `flax::Error::Torch`.

#include <ATen/ATen.h>

#include <cstring>
#include <exception>
#include <vector>

namespace {

// tch's `C_tensor` is a pointer to a heap-allocated `at::Tensor`.
std::vector<at::Tensor> tensors(at::Tensor **handles, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) {
    out.push_back(*handles[i]);
  }
  return out;
}

// Runs `body`, copying an exception's message into `error` (NUL-terminated, truncated to
// `error_len`); returns 0 on success, 1 on an exception.
template <typename F>
int guarded(char *error, size_t error_len, F body) {
  try {
    body();
    return 0;
  } catch (const std::exception &e) {
    if (error_len > 0) {
      std::strncpy(error, e.what(), error_len - 1);
      error[error_len - 1] = '\0';
    }
    return 1;
  }
}

}  // namespace

extern "C" {

// `torch._fused_sgd_`: for each i, `buf = momentum * buf + g` (when `momentum` != 0), then
// `p -= lr * (nesterov ? g + momentum * buf : buf)` (or `p -= lr * g` without momentum, when
// `bufs` is null).
int flax_fused_sgd(at::Tensor **params, at::Tensor **grads, at::Tensor **bufs, int n, double momentum,
                   double lr, int nesterov, char *error, size_t error_len) {
  return guarded(error, error_len, [&] {
    auto momentum_buffers = bufs ? tensors(bufs, n) : std::vector<at::Tensor>();
    at::_fused_sgd_(tensors(params, n), tensors(grads, n), momentum_buffers, /*weight_decay=*/0.0, momentum, lr,
                    /*dampening=*/0.0, nesterov != 0, /*maximize=*/false, /*is_first_step=*/false);
  });
}

// `torch._fused_adam_` (`decoupled` = 0) or `torch._fused_adamw_` (1) without amsgrad: for
// each i, `mu = lerp(mu, g, 1 - b1)`, `nu = b2 * nu + (1 - b2) * g * g`, then
// `p -= lr * (mu / bc1) / (sqrt(nu / bc2) + eps)` with `bc = 1 - b^step` (and, decoupled,
// `p *= 1 - lr * weight_decay` first). `step` is one 0-d float tensor on the parameters'
// device, read by every parameter's update.
int flax_fused_adam(at::Tensor **params, at::Tensor **grads, at::Tensor **mus, at::Tensor **nus, int n,
                    at::Tensor *step, double lr, double b1, double b2, double weight_decay, double eps,
                    int decoupled, char *error, size_t error_len) {
  return guarded(error, error_len, [&] {
    std::vector<at::Tensor> steps(n, *step);
    auto p = tensors(params, n), g = tensors(grads, n), m = tensors(mus, n), v = tensors(nus, n);
    if (decoupled) {
      at::_fused_adamw_(p, g, m, v, /*max_exp_avg_sqs=*/{}, steps, lr, b1, b2, weight_decay, eps, /*amsgrad=*/false,
                        /*maximize=*/false);
    } else {
      at::_fused_adam_(p, g, m, v, /*max_exp_avg_sqs=*/{}, steps, lr, b1, b2, weight_decay, eps, /*amsgrad=*/false,
                       /*maximize=*/false);
    }
  });
}

}  // extern "C"
