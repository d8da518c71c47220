// Issue 17's matrix-product probe: libtorch's fp32 GEMM as `Dense` runs it (`addmm`/`mm`,
// MKL's `sgemm` on the CPU) against oneDNN's matmul inside the same libtorch
// (`at::native::mkldnn_matmul`, exported by the PyPI libtorch though no header declares it;
// fp32 in fp32 unless `torch.backends.mkldnn` matmul precision is lowered), on the shapes of
// a transformer (tokens x d_model x {3 d_model, 4 d_model}, and back), the quickstart's
// `Dense` (64 x 3136 x 256) and batch-1 inference (64 x 256 x 256): forward `Y = X·K + b`
// (oneDNN: the bias copied into `Y`, then summed in as a post-op), `dX = dY·Kᵀ` and
// `dK = Xᵀ·dY`, with Flax's `(in, out)` kernel (both libraries take the transposed operands
// as strided views, no copies).
//
// Each round times both kernels back to back (alternating) by the process's CPU time, which
// on a shared machine counts the work done, not the waits for a core; the table gives the
// median and the minimum over rounds and the median of the per-round ratios (MKL time /
// oneDNN time: above 1, oneDNN is faster). With 2 threads, CPU time is the sum over both.
//
// Build and run from the repository root (one thread pinned, then two):
//   T=.venv/lib/python3.11/site-packages/torch
//   g++ -O2 -std=c++17 -w -D_GLIBCXX_USE_CXX11_ABI=1 scripts/bench/matmul_kernels.cpp \
//     -I$T/include -I$T/include/torch/csrc/api/include -L$T/lib -Wl,-rpath,$T/lib \
//     -ltorch_cpu -lc10 -ltorch -o /tmp/matmul_kernels
//   taskset -c 0 /tmp/matmul_kernels 1 11; OMP_WAIT_POLICY=PASSIVE /tmp/matmul_kernels 2 11

#include <ATen/ATen.h>
#include <torch/torch.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace at::native {
TORCH_API void mkldnn_matmul(const at::Tensor &mat1, const at::Tensor &mat2, const at::Tensor &result, float beta,
                             float alpha);
}

static double cpu_us() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

template <class F>
static double per_call(F f, int reps) {
  double start = cpu_us();
  for (int i = 0; i < reps; ++i) f();
  return (cpu_us() - start) / reps;
}

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F, class G>
static void compare(const char *what, int64_t n, int64_t in, int64_t out, F mkl, G dnnl, int rounds) {
  double flop = 2.0 * n * in * out;
  int reps = std::max(3, static_cast<int>(2e8 / flop));
  mkl();
  dnnl();
  std::vector<double> a, b, ratio;
  for (int r = 0; r < rounds; ++r) {
    double x = per_call(mkl, reps), y = per_call(dnnl, reps);
    a.push_back(x);
    b.push_back(y);
    ratio.push_back(x / y);
  }
  double amin = *std::min_element(a.begin(), a.end()), bmin = *std::min_element(b.begin(), b.end());
  std::printf("| %ld x %ld x %ld | %s | %.0f (%.0f) | %.0f (%.0f) | %.0f / %.0f | %.2f |\n", n, in, out, what,
              median(a), amin, median(b), bmin, flop / amin / 1e3, flop / bmin / 1e3, median(ratio));
}

int main(int argc, char **argv) {
  at::set_num_threads(argc > 1 ? std::atoi(argv[1]) : 1);
  int rounds = argc > 2 ? std::atoi(argv[2]) : 11;
  const int64_t shapes[][3] = {{1024, 256, 768}, {1024, 256, 1024}, {1024, 1024, 256},
                               {1024, 256, 256},  {64, 3136, 256},   {64, 256, 256}};
  std::printf("| tokens x in x out | product | MKL µs median (min) | oneDNN µs median (min) | GFLOP/s at min, MKL / "
              "oneDNN | MKL / oneDNN time |\n|---|---|---:|---:|---:|---:|\n");
  for (const auto &s : shapes) {
    int64_t n = s[0], in = s[1], out = s[2];
    auto x = torch::randn({n, in}), k = torch::randn({in, out}), b = torch::randn({out}), dy = torch::randn({n, out});
    auto y = torch::empty({n, out}), dx = torch::empty({n, in}), dk = torch::empty({in, out});
    compare(
        "Y = X·K + b", n, in, out, [&] { at::addmm_out(y, b, x, k); },
        [&] {
          y.copy_(b.expand({n, out}));
          at::native::mkldnn_matmul(x, k, y, 1.f, 1.f);
        },
        rounds);
    compare(
        "dX = dY·Kᵀ", n, in, out, [&] { at::mm_out(dx, dy, k.t()); },
        [&] { at::native::mkldnn_matmul(dy, k.t(), dx, 0.f, 1.f); }, rounds);
    compare(
        "dK = Xᵀ·dY", n, in, out, [&] { at::mm_out(dk, x.t(), dy); },
        [&] { at::native::mkldnn_matmul(x.t(), dy, dk, 0.f, 1.f); }, rounds);
  }
}
