// AVX2/FMA building blocks of the blocked attention (this file alone is built
// with -mavx2 -mfma; cpu_kernels.cpp calls it only when the CPU reports both):
//   - a dense tile product with 4x16 / 4x8 register tiles and a scalar column
//     tail, each C element accumulated over k in increasing order by one FMA
//     chain (the same chain whatever the tile, so results do not depend on how
//     the caller splits C);
//   - an 8-lane exp (Cephes expf range reduction and polynomial, about 1 ulp).
#include "cpu_kernels_internal.h"

#if defined(__AVX2__) && defined(__FMA__)

#include <immintrin.h>

#include <cmath>

namespace hs::cpu::detail {
namespace {

// Rows r0..r0+R of C, columns n0..n0+16.
template <int R>
inline void tile16(int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                   bool accumulate) {
  __m256 c0[R], c1[R];
  for (int r = 0; r < R; ++r) {
    c0[r] = accumulate ? _mm256_loadu_ps(C + r * ldc) : _mm256_setzero_ps();
    c1[r] = accumulate ? _mm256_loadu_ps(C + r * ldc + 8) : _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < K; ++k) {
    const __m256 b0 = _mm256_loadu_ps(B + k * ldb);
    const __m256 b1 = _mm256_loadu_ps(B + k * ldb + 8);
    for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_broadcast_ss(A + r * lda + k);
      c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(C + r * ldc, c0[r]);
    _mm256_storeu_ps(C + r * ldc + 8, c1[r]);
  }
}

template <int R>
inline void tile8(int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                  bool accumulate) {
  __m256 c0[R];
  for (int r = 0; r < R; ++r) c0[r] = accumulate ? _mm256_loadu_ps(C + r * ldc) : _mm256_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const __m256 b0 = _mm256_loadu_ps(B + k * ldb);
    for (int r = 0; r < R; ++r) c0[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(A + r * lda + k), b0, c0[r]);
  }
  for (int r = 0; r < R; ++r) _mm256_storeu_ps(C + r * ldc, c0[r]);
}

template <int R>
inline void rows(int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                 int64_t ldc, bool accumulate) {
  int64_t n = 0;
  for (; n + 16 <= N; n += 16) tile16<R>(K, A, lda, B + n, ldb, C + n, ldc, accumulate);
  for (; n + 8 <= N; n += 8) tile8<R>(K, A, lda, B + n, ldb, C + n, ldc, accumulate);
  for (; n < N; ++n)
    for (int r = 0; r < R; ++r) {
      float acc = accumulate ? C[r * ldc + n] : 0.f;
      for (int64_t k = 0; k < K; ++k) acc = std::fma(A[r * lda + k], B[k * ldb + n], acc);
      C[r * ldc + n] = acc;
    }
}

void matmul_avx2(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                 float* C, int64_t ldc, bool accumulate) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) rows<4>(N, K, A + m * lda, lda, B, ldb, C + m * ldc, ldc, accumulate);
  for (; m < M; ++m) rows<1>(N, K, A + m * lda, lda, B, ldb, C + m * ldc, ldc, accumulate);
}

inline __m256 exp8(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f);
  const __m256 lo = _mm256_set1_ps(-87.3365447504f);  // below this expf is subnormal: flush to 0
  const __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);  // false for NaN, so NaN propagates
  x = _mm256_min_ps(hi, _mm256_max_ps(lo, x));                 // max/min(c, NaN) return NaN
  // x = n ln2 + r, |r| <= ln2 / 2, with ln2 split in two for an exact n ln2.
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 r2 = _mm256_mul_ps(r, r);
  p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  // Scale by 2^n through the exponent field (n in [-126, 127] after the clamp).
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  p = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(underflow, p);
}

void exp_inplace_avx2(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, exp8(_mm256_loadu_ps(x + i)));
  if (i < n) {
    alignas(32) float tail[8];
    for (int j = 0; j < 8; ++j) tail[j] = i + j < n ? x[i + j] : 0.f;
    _mm256_store_ps(tail, exp8(_mm256_load_ps(tail)));
    for (int64_t j = 0; i + j < n; ++j) x[i + j] = tail[j];
  }
}

}  // namespace

const AttentionKernels& avx2_attention_kernels() {
  static const AttentionKernels k{"avx2-fma", matmul_avx2, exp_inplace_avx2};
  return k;
}

}  // namespace hs::cpu::detail

#else  // built without AVX2/FMA (non-x86 target): the driver never selects these kernels.

namespace hs::cpu::detail {
const AttentionKernels& avx2_attention_kernels() { return scalar_attention_kernels(); }
}  // namespace hs::cpu::detail

#endif
