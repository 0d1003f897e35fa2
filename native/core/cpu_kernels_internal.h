// Internals of the blocked attention kernels shared by the portable driver
// (cpu_kernels.cpp) and the AVX2/FMA building blocks (cpu_kernels_avx2.cpp).
//
// The driver works on dense tiles (a block of query rows against a block of keys)
// and needs only two primitives, chosen once at run time:
//   - a small dense product C[M,N] (+)= A[M,K] * B[K,N], every C element summed
//     over k in increasing order in one accumulator, so a result never depends on
//     which tile or thread computed it;
//   - an in-place exp over a row of values (exactly 0 for -inf).
#pragma once
#include <cstdint>

namespace hs::cpu::detail {

struct AttentionKernels {
  const char* name;
  // C[M,N] (ldc) = A[M,K] (lda) * B[K,N] (ldb), or C += ... when `accumulate`.
  void (*matmul)(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                 float* C, int64_t ldc, bool accumulate);
  // x[i] = exp(x[i]) for i < n; -inf (and anything below the fp32 range) gives 0.
  void (*exp_inplace)(float* x, int64_t n);
};

const AttentionKernels& scalar_attention_kernels();
// Only call when the CPU supports AVX2 and FMA.
const AttentionKernels& avx2_attention_kernels();
// AVX2/FMA when supported unless HOPSCOTCH_CPU_KERNEL=scalar; decided once, on first use.
const AttentionKernels& active_attention_kernels();

}  // namespace hs::cpu::detail
