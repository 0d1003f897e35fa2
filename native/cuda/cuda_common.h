// Shared CUDA helpers for the backend: typed error checks (every runtime call and every
// kernel launch goes through them) and small RAII device buffers.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "errors.h"

namespace hs::cuda {

// Throws hs::Error(HOPSCOTCH_ERR_CUDA) naming `what` when `status` is not cudaSuccess.
void check(cudaError_t status, const char* what);
// Checks the launch of `kernel` (cudaGetLastError). Asynchronous faults surface at the
// next synchronising call, which is checked too.
void check_launch(const char* kernel);

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Owns one device allocation. Grows (never shrinks) through reserve().
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;

  // Ensures at least `bytes` bytes; old contents are not kept when it grows.
  void reserve(size_t bytes, const char* what);
  void release();
  size_t bytes() const { return bytes_; }
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace hs::cuda
