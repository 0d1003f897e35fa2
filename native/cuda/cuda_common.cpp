// Error checks and device buffers shared by the CUDA backend.
#include "cuda_common.h"

#include <utility>

namespace hs::cuda {

void check(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  (void)cudaGetLastError();  // clear a sticky launch error so later calls report their own
  fail(code::kCuda, std::string(what) + " failed: " + cudaGetErrorName(status) + " (" +
                        cudaGetErrorString(status) + ")");
}

void check_launch(const char* kernel) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    fail(code::kCuda, std::string("launch of ") + kernel + " failed: " + cudaGetErrorName(status) + " (" +
                          cudaGetErrorString(status) + ")");
}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
  o.ptr_ = nullptr;
  o.bytes_ = 0;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    release();
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::reserve(size_t bytes, const char* what) {
  if (bytes <= bytes_ && ptr_ != nullptr) return;
  release();
  if (bytes == 0) return;
  void* p = nullptr;
  const cudaError_t status = cudaMalloc(&p, bytes);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    (void)cudaMemGetInfo(&free_b, &total_b);
    fail(code::kCuda, std::string("cudaMalloc of ") + std::to_string(bytes) + " bytes for " + what +
                          " failed: " + cudaGetErrorString(status) + " (" + std::to_string(free_b >> 20) +
                          " MiB free of " + std::to_string(total_b >> 20) + " MiB)");
  }
  ptr_ = p;
  bytes_ = bytes;
}

void DeviceBuffer::release() {
  if (ptr_ != nullptr) (void)cudaFree(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}

}  // namespace hs::cuda
