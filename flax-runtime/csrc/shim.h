// Helpers shared by the shim's translation units (batching, custom autograd functions,
// forward-mode AD): tch's tensor handles and the exception boundary. Every extern "C"
// function of the shim returns 0 on success and 1 after copying a C++ exception's message
// into the caller's buffer, which the Rust side turns into `flax::Error::Torch`.

#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <exception>
#include <vector>

namespace flax_shim {

// tch's `C_tensor` is a pointer to a heap-allocated `at::Tensor`.
inline std::vector<at::Tensor> tensors(at::Tensor *const *handles, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) {
    out.push_back(*handles[i]);
  }
  return out;
}

// A new tch handle that the Rust side takes ownership of (`Tensor::from_ptr`).
inline at::Tensor *handle(at::Tensor t) { return new at::Tensor(std::move(t)); }

inline void copy_message(const char *message, char *error, size_t error_len) {
  if (error_len > 0) {
    std::strncpy(error, message, error_len - 1);
    error[error_len - 1] = '\0';
  }
}

// Runs `body`, copying an exception's message (without libtorch's C++ backtrace) into `error`
// (NUL-terminated, truncated to `error_len`); returns 0 on success, 1 on an exception.
template <typename F>
int guarded(char *error, size_t error_len, F body) {
  try {
    body();
    return 0;
  } catch (const c10::Error &e) {
    copy_message(e.what_without_backtrace(), error, error_len);
    return 1;
  } catch (const std::exception &e) {
    copy_message(e.what(), error, error_len);
    return 1;
  } catch (...) {
    copy_message("unknown C++ exception", error, error_len);
    return 1;
  }
}

}  // namespace flax_shim
