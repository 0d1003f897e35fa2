// fp32 GEMM for the CPU engine: cache-blocked, packed panels, an AVX2/FMA
// micro-kernel chosen at run time with a portable scalar fallback.
// Work is split over rows/columns of C only (never over K), and each C element
// is summed over K in the same order for every split, so results are
// bit-identical for any thread count.
#pragma once
#include <cstdint>

namespace hs {

class ThreadPool;

// C[M,N] (ldc) (+)= A[M,K] (lda) * B^T where B is [N,K] (ldb): activations x weight^T.
void gemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
             float* C, int64_t ldc, bool accumulate, ThreadPool* pool);
// C[M,N] (ldc) (+)= A[M,K] (lda) * B where B is [K,N] (ldb): gradients x weight.
void gemm_nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
             float* C, int64_t ldc, bool accumulate, ThreadPool* pool);

// Which micro-kernel runs ("avx2-fma" or "scalar"); HOPSCOTCH_CPU_KERNEL=scalar forces the fallback.
const char* gemm_kernel_name();

}  // namespace hs
