// The float32 precision of libtorch's CUDA matrix products and convolutions, which Flax's
// `precision` attribute (JAX's `lax.Precision`) selects: PyTorch's
// `torch.backends.cuda.matmul.fp32_precision` and `torch.backends.cudnn.conv.fp32_precision`
// ("ieee": full float32, "tf32": TensorFloat-32). Only the CUDA backend is touched, so CPU
// results stay float32 as in JAX on CPU (the legacy `setFloat32MatmulPrecision` would also
// switch oneDNN's CPU matmuls to bf16 or tf32). Names are libtorch's `str2op` /
// `str2precision` / `precision2str` strings.

#include "shim.h"

#include <string>

extern "C" {

// Writes the current precision of CUDA `op` ("matmul" or "conv") into `out`.
int flax_cuda_fp32_precision(const char *op, char *out, size_t out_len, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    auto precision = at::globalContext().float32Precision(at::Float32Backend::CUDA, at::str2op(op));
    flax_shim::copy_message(at::precision2str(precision).c_str(), out, out_len);
  });
}

// Sets the precision of CUDA `op` ("matmul" or "conv") to `precision` ("ieee", "tf32", …).
int flax_set_cuda_fp32_precision(const char *op, const char *precision, char *error, size_t error_len) {
  return flax_shim::guarded(error, error_len, [&] {
    at::globalContext().setFloat32Precision(at::Float32Backend::CUDA, at::str2op(op),
                                            at::str2precision(precision));
  });
}

}  // extern "C"
