// Group normalization of channels-last inputs (Flax's `nn.GroupNorm` on `(batch, ..., features)`),
// forward and backward in two passes over the data each, as one autograd node: what libtorch's
// `group_norm` does for `(batch, features, positions)` inputs, which on channels-last data is
// either its slow channels-last kernel (6x its NCHW kernel on an AVX-512 CPU, and its backward
// crashes when only the params need gradients, libtorch 2.13) or a transposed copy each way.
//
// Statistics are Flax's: per example and group, `mean = E[x]`, `var = max(E[x²] - E[x]², 0)`
// (its default `use_fast_variance`), accumulated in double; `y = (x - mean) · rsqrt(var + ε) ·
// scale + bias` computed as `x · a[c] + b[c]`. The backward pass is the exact gradient of that
// (the clamp aside, as libtorch's own kernel); with `create_graph` it is instead computed by
// differentiating the same formula written in ATen operators, so higher derivatives are right.
//
// Not applicable (the caller takes another path) inside a functorch transform, where libtorch
// refuses custom autograd functions, and on dual tensors (forward-mode AD), which custom C++
// functions do not support.

#include "shim.h"

#include <ATen/Parallel.h>
#include <ATen/functorch/DynamicLayer.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <vector>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The hot loops, compiled for AVX-512, AVX2 and the baseline, chosen at load time (GCC's and
// Clang's function multiversioning) as libtorch's own CPU kernels are.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__APPLE__)
#define FLAX_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FLAX_MULTIVERSION
#endif

// Per channel over `rows` rows of `channels`: `s[c] += Σ x`, `q[c] += Σ x²`.
template <typename T>
inline void sums_impl(const T *x, int64_t rows, int64_t channels, double *s, double *q) {
  for (int64_t r = 0; r < rows; ++r) {
    const T *row = x + r * channels;
    for (int64_t c = 0; c < channels; ++c) {
      double v = row[c];
      s[c] += v;
      q[c] += v * v;
    }
  }
}
FLAX_MULTIVERSION void sums(const float *x, int64_t r, int64_t c, double *s, double *q) { sums_impl(x, r, c, s, q); }
FLAX_MULTIVERSION void sums(const double *x, int64_t r, int64_t c, double *s, double *q) { sums_impl(x, r, c, s, q); }

// Per channel over the rows: `s[c] += Σ dy`, `p[c] += Σ dy · x`.
template <typename T>
inline void grad_sums_impl(const T *dy, const T *x, int64_t rows, int64_t channels, double *s, double *p) {
  for (int64_t r = 0; r < rows; ++r) {
    const T *g = dy + r * channels;
    const T *row = x + r * channels;
    for (int64_t c = 0; c < channels; ++c) {
      s[c] += g[c];
      p[c] += static_cast<double>(g[c]) * row[c];
    }
  }
}
FLAX_MULTIVERSION void grad_sums(const float *dy, const float *x, int64_t r, int64_t c, double *s, double *p) {
  grad_sums_impl(dy, x, r, c, s, p);
}
FLAX_MULTIVERSION void grad_sums(const double *dy, const double *x, int64_t r, int64_t c, double *s, double *p) {
  grad_sums_impl(dy, x, r, c, s, p);
}

// `out = u[c] · v + w[c] · x + z[c]` row by row (`x` may be null: no second term).
template <typename T>
inline void affine_impl(const T *v, const T *x, T *out, int64_t rows, int64_t channels, const T *u, const T *w,
                        const T *z) {
  for (int64_t r = 0; r < rows; ++r) {
    const T *vr = v + r * channels;
    T *o = out + r * channels;
    if (x == nullptr) {
      for (int64_t c = 0; c < channels; ++c) o[c] = u[c] * vr[c] + z[c];
    } else {
      const T *xr = x + r * channels;
      for (int64_t c = 0; c < channels; ++c) o[c] = u[c] * vr[c] + w[c] * xr[c] + z[c];
    }
  }
}
FLAX_MULTIVERSION void affine(const float *v, const float *x, float *o, int64_t r, int64_t c, const float *u,
                              const float *w, const float *z) {
  affine_impl(v, x, o, r, c, u, w, z);
}
FLAX_MULTIVERSION void affine(const double *v, const double *x, double *o, int64_t r, int64_t c, const double *u,
                              const double *w, const double *z) {
  affine_impl(v, x, o, r, c, u, w, z);
}

// Shape of a channels-last input viewed as `(batch, rows, channels)`.
struct Dims {
  int64_t batch, rows, channels, groups;
  int64_t group_size() const { return channels / groups; }
  double count() const { return static_cast<double>(rows) * group_size(); }
};

Dims dims_of(const at::Tensor &x, int64_t groups) {
  int64_t batch = x.size(0), channels = x.size(-1);
  int64_t rows = batch == 0 || channels == 0 ? 0 : x.numel() / (batch * channels);
  return {batch, rows, channels, groups};
}

// Forward: `y`, and the per-(example, group) `mean` and `rstd` (double, `(batch, groups)`).
template <typename T>
void forward_kernel(const at::Tensor &x, const at::Tensor &scale, const at::Tensor &bias, const Dims &d, double eps,
                    at::Tensor &y, at::Tensor &mean, at::Tensor &rstd) {
  const T *xp = x.const_data_ptr<T>();
  const T *sp = scale.const_data_ptr<T>();
  const T *bp = bias.const_data_ptr<T>();
  T *yp = y.mutable_data_ptr<T>();
  double *mp = mean.mutable_data_ptr<double>();
  double *rp = rstd.mutable_data_ptr<double>();
  at::parallel_for(0, d.batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> s(d.channels), q(d.channels);
    std::vector<T> a(d.channels), b(d.channels);
    for (int64_t n = begin; n < end; ++n) {
      std::fill(s.begin(), s.end(), 0.0);
      std::fill(q.begin(), q.end(), 0.0);
      const T *xn = xp + n * d.rows * d.channels;
      sums(xn, d.rows, d.channels, s.data(), q.data());
      for (int64_t g = 0; g < d.groups; ++g) {
        double sum = 0, sq = 0;
        for (int64_t c = g * d.group_size(); c < (g + 1) * d.group_size(); ++c) {
          sum += s[c];
          sq += q[c];
        }
        double m = sum / d.count();
        double var = std::max(sq / d.count() - m * m, 0.0);
        double r = 1.0 / std::sqrt(var + eps);
        mp[n * d.groups + g] = m;
        rp[n * d.groups + g] = r;
        for (int64_t c = g * d.group_size(); c < (g + 1) * d.group_size(); ++c) {
          a[c] = static_cast<T>(r * sp[c]);
          b[c] = static_cast<T>(bp[c] - m * r * sp[c]);
        }
      }
      affine(xn, static_cast<const T *>(nullptr), yp + n * d.rows * d.channels, d.rows, d.channels, a.data(),
             a.data(), b.data());
    }
  });
}

// Backward: `dx` (if defined), and per example the channel sums for `dscale` and `dbias`.
template <typename T>
void backward_kernel(const at::Tensor &dy, const at::Tensor &x, const at::Tensor &scale, const at::Tensor &mean,
                     const at::Tensor &rstd, const Dims &d, at::Tensor &dx, at::Tensor &dscale_n, at::Tensor &dbias_n) {
  const T *gp = dy.const_data_ptr<T>();
  const T *xp = x.const_data_ptr<T>();
  const T *sp = scale.const_data_ptr<T>();
  const double *mp = mean.const_data_ptr<double>();
  const double *rp = rstd.const_data_ptr<double>();
  T *dxp = dx.defined() ? dx.mutable_data_ptr<T>() : nullptr;
  double *dsp = dscale_n.mutable_data_ptr<double>();
  double *dbp = dbias_n.mutable_data_ptr<double>();
  at::parallel_for(0, d.batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> s(d.channels), p(d.channels);
    std::vector<T> u(d.channels), w(d.channels), z(d.channels);
    for (int64_t n = begin; n < end; ++n) {
      std::fill(s.begin(), s.end(), 0.0);
      std::fill(p.begin(), p.end(), 0.0);
      const int64_t offset = n * d.rows * d.channels;
      grad_sums(gp + offset, xp + offset, d.rows, d.channels, s.data(), p.data());
      for (int64_t g = 0; g < d.groups; ++g) {
        const double m = mp[n * d.groups + g], r = rp[n * d.groups + g];
        // Σ dxhat and Σ dxhat · x over the group, where dxhat = dy · scale.
        double sum_dxhat = 0, sum_dxhat_x = 0;
        for (int64_t c = g * d.group_size(); c < (g + 1) * d.group_size(); ++c) {
          sum_dxhat += sp[c] * s[c];
          sum_dxhat_x += sp[c] * p[c];
          dsp[n * d.channels + c] = (p[c] - m * s[c]) * r;
          dbp[n * d.channels + c] = s[c];
        }
        // dx = r · (dxhat - mean(dxhat) - xhat · mean(dxhat · xhat)), as u · dy + w · x + z.
        const double sum_dxhat_xhat = r * (sum_dxhat_x - m * sum_dxhat);
        const double wg = -r * r * sum_dxhat_xhat / d.count();
        const double zg = -r * sum_dxhat / d.count() - wg * m;
        for (int64_t c = g * d.group_size(); c < (g + 1) * d.group_size(); ++c) {
          u[c] = static_cast<T>(r * sp[c]);
          w[c] = static_cast<T>(wg);
          z[c] = static_cast<T>(zg);
        }
      }
      if (dxp != nullptr) {
        affine(gp + offset, xp + offset, dxp + offset, d.rows, d.channels, u.data(), w.data(), z.data());
      }
    }
  });
}

// Flax's formula in ATen operators (differentiable): the double-backward path.
at::Tensor composite(const at::Tensor &x, const at::Tensor &scale, const at::Tensor &bias, int64_t groups,
                     double eps) {
  const Dims d = dims_of(x, groups);
  auto xv = x.reshape({d.batch, d.rows, d.groups, d.group_size()});
  auto mean = xv.mean({1, 3}, /*keepdim=*/true);
  auto var = (xv.square().mean({1, 3}, true) - mean.square()).clamp_min(0);
  auto y = (xv - mean) * (var + eps).rsqrt() * scale.reshape({d.groups, d.group_size()}) +
           bias.reshape({d.groups, d.group_size()});
  return y.reshape(x.sizes());
}

struct GroupNormChannelsLast : torch::autograd::Function<GroupNormChannelsLast> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, const at::Tensor &scale,
                            const at::Tensor &bias, int64_t groups, double eps) {
    const Dims d = dims_of(x, groups);
    auto y = at::empty_like(x, at::MemoryFormat::Contiguous);
    auto stats = x.options().dtype(at::kDouble);
    auto mean = at::empty({d.batch, d.groups}, stats), rstd = at::empty({d.batch, d.groups}, stats);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "flax_group_norm_channels_last",
                               [&] { forward_kernel<scalar_t>(x, scale, bias, d, eps, y, mean, rstd); });
    ctx->save_for_backward({x, scale, bias});
    ctx->saved_data["mean"] = mean;
    ctx->saved_data["rstd"] = rstd;
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["eps"] = eps;
    return y;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &scale = saved[1], &bias = saved[2];
    const int64_t groups = ctx->saved_data["groups"].toInt();
    const double eps = ctx->saved_data["eps"].toDouble();
    auto dy = grads[0].contiguous();
    if (at::GradMode::is_enabled()) {
      return differentiable_backward(ctx, x, scale, bias, groups, eps, dy);
    }
    const Dims d = dims_of(x, groups);
    at::Tensor dx;
    if (ctx->needs_input_grad(0)) {
      dx = at::empty_like(x, at::MemoryFormat::Contiguous);
    }
    auto per_example = x.options().dtype(at::kDouble);
    auto dscale_n = at::empty({d.batch, d.channels}, per_example);
    auto dbias_n = at::empty({d.batch, d.channels}, per_example);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "flax_group_norm_channels_last_backward", [&] {
      backward_kernel<scalar_t>(dy, x, scale, ctx->saved_data["mean"].toTensor(), ctx->saved_data["rstd"].toTensor(),
                                d, dx, dscale_n, dbias_n);
    });
    at::Tensor dscale, dbias;
    if (ctx->needs_input_grad(1)) dscale = dscale_n.sum(0).to(scale.scalar_type());
    if (ctx->needs_input_grad(2)) dbias = dbias_n.sum(0).to(bias.scalar_type());
    return {dx, dscale, dbias, at::Tensor(), at::Tensor()};
  }

  // With `create_graph`: the gradients of the formula in ATen operators, recorded.
  static variable_list differentiable_backward(AutogradContext *ctx, const at::Tensor &x, const at::Tensor &scale,
                                               const at::Tensor &bias, int64_t groups, double eps,
                                               const at::Tensor &dy) {
    std::vector<at::Tensor> wrt;
    std::vector<int> slots;
    for (int i = 0; i < 3; ++i) {
      if (ctx->needs_input_grad(i)) {
        wrt.push_back(i == 0 ? x : i == 1 ? scale : bias);
        slots.push_back(i);
      }
    }
    variable_list out(5);
    if (wrt.empty()) return out;
    auto y = composite(x, scale, bias, groups, eps);
    auto g = torch::autograd::grad({y}, wrt, {dy}, /*retain_graph=*/true, /*create_graph=*/true,
                                   /*allow_unused=*/true);
    for (size_t k = 0; k < slots.size(); ++k) out[slots[k]] = g[k];
    return out;
  }
};

}  // namespace

extern "C" {

// Group normalization of `x` (`(batch, ..., channels)`, contiguous, float or double, on the
// CPU) over `groups` groups of channels, with `scale` and `bias` of shape `(channels,)` (of
// x's dtype), recorded as one autograd node. Writes null to `out` when not applicable here: a
// functorch transform is active, or an input is a dual tensor (forward-mode AD).
int flax_group_norm_channels_last(at::Tensor *x, at::Tensor *scale, at::Tensor *bias, int64_t groups, double eps,
                                  at::Tensor **out, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    *out = nullptr;
    if (at::functorch::maybeCurrentDynamicLayer().has_value()) return;
    for (const at::Tensor *t : {x, scale, bias}) {
      if (t->_fw_grad(/*level=*/0).defined()) return;
    }
    TORCH_CHECK(x->dim() >= 2 && x->is_contiguous() && x->device().is_cpu(),
                "flax_group_norm_channels_last: needs a contiguous CPU input of rank >= 2");
    TORCH_CHECK(x->size(-1) % groups == 0, "flax_group_norm_channels_last: groups must divide the channels");
    *out = flax_shim::handle(GroupNormChannelsLast::apply(*x, *scale, *bias, groups, eps));
  });
}

}  // extern "C"
