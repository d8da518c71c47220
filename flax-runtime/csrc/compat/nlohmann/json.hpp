// A stand-in for nlohmann/json, which libtorch's `ATen/functorch/Interpreter.h` includes but the
// torch wheel does not ship. That header needs the library only for `Interpreter::serialize` and
// `deserialize` (and `to_json`/`from_json` templates), which the shim never calls: inline and
// template functions are emitted only where used, so nothing here is ever compiled into the
// shim's object code. If it were called, it would throw instead of serializing.

#pragma once

#include <stdexcept>
#include <string>

namespace nlohmann {

class json {
 public:
  json() = default;
  template <typename T>
  explicit json(const T &) {
    unavailable();
  }
  std::string dump() const { unavailable(); }
  static json parse(const std::string &) { unavailable(); }
  template <typename T>
  T get() const {
    unavailable();
  }

 private:
  [[noreturn]] static void unavailable() {
    throw std::logic_error("JSON serialization of functorch interpreters is not available in flax's shim");
  }
};

}  // namespace nlohmann
