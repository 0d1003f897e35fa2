// bf16 GEMM through cuBLASLt, loaded with dlopen at run time (the build machines have
// no cuBLAS). We declare the few cuBLASLt types and entry points we call ourselves and
// check their sizes. Row-major interface:
//   nt: C[M,N] = alpha * A[M,K] * B[N,K]^T + beta * C   (activations x weight^T)
//   nn: C[M,N] = alpha * A[M,K] * B[K,N]   + beta * C   (gradients x weight)
// A and B are bf16, C is fp32 or bf16, accumulation is fp32 (CUBLAS_COMPUTE_32F).
// Each distinct shape/stride/alignment gets one heuristic query and keeps that algo,
// so the same call always runs the same kernel (bit-identical results).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "cuda_common.h"

namespace hs::cuda {

// Loads cuBLASLt once per process. Search order: an already loaded libcublasLt.so.13/.12
// (RTLD_NOLOAD), $HOPSCOTCH_CUBLASLT (a file or a directory), each $LD_LIBRARY_PATH
// directory, the loader's default search, /usr/local/cuda/lib64, then Python
// site-packages (nvidia/cu13/lib, nvidia/cublas/lib). Paths containing /stubs/ are never
// used. Returns nullptr and fills `tried` (every path and why it failed) when not found.
struct CublasLtApi;
const CublasLtApi* cublaslt_api(std::string* where, std::string* tried);
// Throws HOPSCOTCH_ERR_CUDA listing every path tried when cuBLASLt cannot be loaded.
const CublasLtApi& cublaslt_require();
size_t cublaslt_version();

enum class GemmOut { F32, BF16 };

class Gemm {
 public:
  Gemm();
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  void nt(cudaStream_t stream, int64_t M, int64_t N, int64_t K, const __nv_bfloat16* A, int64_t lda,
          const __nv_bfloat16* B, int64_t ldb, void* C, GemmOut c_type, int64_t ldc, float alpha = 1.f,
          float beta = 0.f);
  void nn(cudaStream_t stream, int64_t M, int64_t N, int64_t K, const __nv_bfloat16* A, int64_t lda,
          const __nv_bfloat16* B, int64_t ldb, void* C, GemmOut c_type, int64_t ldc, float alpha = 1.f,
          float beta = 0.f);

 private:
  struct Plan;
  void run(cudaStream_t stream, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
           const void* B, int64_t ldb, void* C, GemmOut c_type, int64_t ldc, float alpha, float beta);
  const CublasLtApi& api_;
  void* handle_ = nullptr;
  DeviceBuffer workspace_;
  std::map<std::vector<int64_t>, std::unique_ptr<Plan>> plans_;
};

}  // namespace hs::cuda
