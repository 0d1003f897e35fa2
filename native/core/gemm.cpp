// Placeholder portable GEMM (correct, unblocked); replaced by the blocked version.
#include "gemm.h"

#include "threadpool.h"

namespace hs {

void gemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
             float* C, int64_t ldc, bool accumulate, ThreadPool* pool) {
  auto body = [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m)
      for (int64_t n = 0; n < N; ++n) {
        float s = 0.f;
        for (int64_t k = 0; k < K; ++k) s += A[m * lda + k] * B[n * ldb + k];
        C[m * ldc + n] = accumulate ? C[m * ldc + n] + s : s;
      }
  };
  if (pool) pool->parallel_for(M, 1, body); else body(0, M);
}

void gemm_nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
             float* C, int64_t ldc, bool accumulate, ThreadPool* pool) {
  auto body = [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      float* c = C + m * ldc;
      if (!accumulate)
        for (int64_t n = 0; n < N; ++n) c[n] = 0.f;
      for (int64_t k = 0; k < K; ++k) {
        float a = A[m * lda + k];
        const float* b = B + k * ldb;
        for (int64_t n = 0; n < N; ++n) c[n] += a * b[n];
      }
    }
  };
  if (pool) pool->parallel_for(M, 1, body); else body(0, M);
}

const char* gemm_kernel_name() { return "scalar"; }

}  // namespace hs
