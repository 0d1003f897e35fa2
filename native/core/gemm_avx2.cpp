// AVX2/FMA kernels for the GEMM (this file alone is built with -mavx2 -mfma -mf16c;
// the driver in gemm.cpp calls it only when the CPU reports all three):
//   - a 6x16 register-tile micro-kernel over packed panels (12 accumulators),
//   - packing of B^T panels from [N,K] weights with 8x8 in-register transposes,
//   - direct small-M paths that stream B unpacked: nt as 8-lane dot products
//     (B rows are contiguous in K), nn as rank-1 updates streaming rows of B.
// B may be fp32, bf16 or f16: every 8-value load of B goes through Load8<T>, which
// widens bf16 by a 16-bit shift and f16 with vcvtph2ps (both exact), so the FMAs
// are the same instructions on the same fp32 values whatever B's storage type.
// Every C element is accumulated by one fixed sequence of operations whatever
// the tile it lands in, so results do not depend on how the caller splits C.
#include "gemm_internal.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>

#include <algorithm>

namespace hs {
namespace gemm_detail {
namespace {

static_assert(kMR == 6 && kNR == 16, "the AVX2 micro-kernel is written for a 6x16 tile");

// Loads of 8 consecutive B values as fp32, and of the first `count` (< 8) with zeros after.
template <WType T> struct Load8;
template <> struct Load8<WType::F32> {
  static __m256 full(const float* p) { return _mm256_loadu_ps(p); }
  static __m256 part(const float* p, int64_t count);
};
template <> struct Load8<WType::BF16> {
  static __m256 full(const uint16_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static __m256 part(const uint16_t* p, int64_t count) {
    alignas(16) uint16_t t[8] = {};
    for (int64_t i = 0; i < count; ++i) t[i] = p[i];
    return full(t);
  }
};
template <> struct Load8<WType::F16> {
  static __m256 full(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static __m256 part(const uint16_t* p, int64_t count) {
    alignas(16) uint16_t t[8] = {};
    for (int64_t i = 0; i < count; ++i) t[i] = p[i];
    return full(t);
  }
};

inline __m256 update(const float* c, __m256 acc, bool add) {
  return add ? _mm256_add_ps(_mm256_loadu_ps(c), acc) : acc;
}

void micro_avx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int mr, int nr, bool add) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();

  for (int i = 0; i < mr; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);

#define HS_GEMM_STEP(koff)                                         \
  {                                                                \
    const __m256 b0 = _mm256_load_ps(b + (koff) * kNR);            \
    const __m256 b1 = _mm256_load_ps(b + (koff) * kNR + 8);        \
    const float* ak = a + (koff) * kMR;                            \
    __m256 ai = _mm256_broadcast_ss(ak + 0);                       \
    c00 = _mm256_fmadd_ps(ai, b0, c00);                            \
    c01 = _mm256_fmadd_ps(ai, b1, c01);                            \
    ai = _mm256_broadcast_ss(ak + 1);                              \
    c10 = _mm256_fmadd_ps(ai, b0, c10);                            \
    c11 = _mm256_fmadd_ps(ai, b1, c11);                            \
    ai = _mm256_broadcast_ss(ak + 2);                              \
    c20 = _mm256_fmadd_ps(ai, b0, c20);                            \
    c21 = _mm256_fmadd_ps(ai, b1, c21);                            \
    ai = _mm256_broadcast_ss(ak + 3);                              \
    c30 = _mm256_fmadd_ps(ai, b0, c30);                            \
    c31 = _mm256_fmadd_ps(ai, b1, c31);                            \
    ai = _mm256_broadcast_ss(ak + 4);                              \
    c40 = _mm256_fmadd_ps(ai, b0, c40);                            \
    c41 = _mm256_fmadd_ps(ai, b1, c41);                            \
    ai = _mm256_broadcast_ss(ak + 5);                              \
    c50 = _mm256_fmadd_ps(ai, b0, c50);                            \
    c51 = _mm256_fmadd_ps(ai, b1, c51);                            \
  }

  int64_t k = 0;
  for (; k + 4 <= kc; k += 4) {
    _mm_prefetch(reinterpret_cast<const char*>(b + 16 * kNR), _MM_HINT_T0);
    HS_GEMM_STEP(0)
    HS_GEMM_STEP(1)
    HS_GEMM_STEP(2)
    HS_GEMM_STEP(3)
    a += 4 * kMR;
    b += 4 * kNR;
  }
  for (; k < kc; ++k) {
    HS_GEMM_STEP(0)
    a += kMR;
    b += kNR;
  }
#undef HS_GEMM_STEP

  if (mr == kMR && nr == kNR) {
    float* r = c;
    _mm256_storeu_ps(r, update(r, c00, add));
    _mm256_storeu_ps(r + 8, update(r + 8, c01, add));
    r += ldc;
    _mm256_storeu_ps(r, update(r, c10, add));
    _mm256_storeu_ps(r + 8, update(r + 8, c11, add));
    r += ldc;
    _mm256_storeu_ps(r, update(r, c20, add));
    _mm256_storeu_ps(r + 8, update(r + 8, c21, add));
    r += ldc;
    _mm256_storeu_ps(r, update(r, c30, add));
    _mm256_storeu_ps(r + 8, update(r + 8, c31, add));
    r += ldc;
    _mm256_storeu_ps(r, update(r, c40, add));
    _mm256_storeu_ps(r + 8, update(r + 8, c41, add));
    r += ldc;
    _mm256_storeu_ps(r, update(r, c50, add));
    _mm256_storeu_ps(r + 8, update(r + 8, c51, add));
    return;
  }
  alignas(32) float tile[kMR][kNR];
  _mm256_store_ps(tile[0], c00), _mm256_store_ps(tile[0] + 8, c01);
  _mm256_store_ps(tile[1], c10), _mm256_store_ps(tile[1] + 8, c11);
  _mm256_store_ps(tile[2], c20), _mm256_store_ps(tile[2] + 8, c21);
  _mm256_store_ps(tile[3], c30), _mm256_store_ps(tile[3] + 8, c31);
  _mm256_store_ps(tile[4], c40), _mm256_store_ps(tile[4] + 8, c41);
  _mm256_store_ps(tile[5], c50), _mm256_store_ps(tile[5] + 8, c51);
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) c[i * ldc + j] = add ? c[i * ldc + j] + tile[i][j] : tile[i][j];
}

// In-register transpose: on return r[k] holds lane k of the eight inputs.
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// B is [N,K]: panel q takes rows q*16.. of B as its 16 columns, 8x8 blocks at a time.
template <WType T>
void pack_b_nt_as(int64_t kc, int64_t nc, int64_t q0, int64_t q1, const ElemT<T>* B, int64_t ldb, float* dst) {
  for (int64_t q = q0; q < q1; ++q) {
    const int64_t n0 = q * kNR;
    const int nr = static_cast<int>(std::min<int64_t>(kNR, nc - n0));
    float* d = dst + q * kNR * kc;
    const ElemT<T>* rows[kNR];
    for (int j = 0; j < kNR; ++j) rows[j] = j < nr ? B + (n0 + j) * ldb : nullptr;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
      for (int h = 0; h < 2; ++h) {
        __m256 r[8];
        for (int j = 0; j < 8; ++j)
          r[j] = rows[8 * h + j] ? Load8<T>::full(rows[8 * h + j] + k) : _mm256_setzero_ps();
        transpose8(r);
        for (int i = 0; i < 8; ++i) _mm256_store_ps(d + (k + i) * kNR + 8 * h, r[i]);
      }
    }
    for (; k < kc; ++k)
      for (int j = 0; j < kNR; ++j) d[k * kNR + j] = rows[j] ? Elem<T>::widen(rows[j][k]) : 0.f;
  }
}

void pack_b_nt_avx2(int64_t kc, int64_t nc, int64_t q0, int64_t q1, MatRef B, int64_t ldb, float* dst) {
  with_wtype(B.type, [&](auto tag) {
    constexpr WType T = decltype(tag)::value;
    pack_b_nt_as<T>(kc, nc, q0, q1, static_cast<const ElemT<T>*>(B.data), ldb, dst);
  });
}

// Lane mask selecting the first `count` (0..8) lanes.
inline __m256i lane_mask(int64_t count) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), idx);
}

__m256 Load8<WType::F32>::part(const float* p, int64_t count) { return _mm256_maskload_ps(p, lane_mask(count)); }

// Fixed-order horizontal sum of 8 lanes.
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Depth of one pass of the direct nt path: a few rows of B and all rows of A
// over this many k stay in L1 while every row of A meets them.
constexpr int64_t kDotKB = 512;

// MB rows of A against NB rows of B (nt) over k in [k0, k1): 8-lane partial sums
// carried in acc (lane l sums k = l mod 8 in increasing order); `last` adds the
// masked tail k1..K.
template <WType T, int MB, int NB>
void dot_block(int64_t k0, int64_t k1, int64_t K, const float* A, int64_t lda, const ElemT<T>* B, int64_t ldb,
               __m256* acc /* [MB][NB] */, bool last) {
  __m256 c[MB][NB];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) c[i][j] = acc[i * NB + j];
  for (int64_t k = k0; k < k1; k += 8) {
    __m256 b[NB];
    for (int j = 0; j < NB; ++j) b[j] = Load8<T>::full(B + j * ldb + k);
    for (int i = 0; i < MB; ++i) {
      const __m256 a = _mm256_loadu_ps(A + i * lda + k);
      for (int j = 0; j < NB; ++j) c[i][j] = _mm256_fmadd_ps(a, b[j], c[i][j]);
    }
  }
  if (last && k1 < K) {
    const __m256i mask = lane_mask(K - k1);
    __m256 b[NB];
    for (int j = 0; j < NB; ++j) b[j] = Load8<T>::part(B + j * ldb + k1, K - k1);
    for (int i = 0; i < MB; ++i) {
      const __m256 a = _mm256_maskload_ps(A + i * lda + k1, mask);
      for (int j = 0; j < NB; ++j) c[i][j] = _mm256_fmadd_ps(a, b[j], c[i][j]);
    }
  }
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) acc[i * NB + j] = c[i][j];
}

// All M (<= kSmallMNT) rows of A against NB rows of B: C[0:M, 0:NB] (+)= dot products.
template <WType T, int NB>
void dot_rows(int64_t M, int64_t K, const float* A, int64_t lda, const ElemT<T>* B, int64_t ldb, float* C,
              int64_t ldc, bool accumulate) {
  __m256 acc[kSmallMNT * NB];
  for (int64_t i = 0; i < M * NB; ++i) acc[i] = _mm256_setzero_ps();
  const int64_t k_full = K / 8 * 8;
  for (int64_t k0 = 0; k0 < k_full || k0 == 0; k0 += kDotKB) {
    const int64_t k1 = std::min(k_full, k0 + kDotKB);
    const bool last = k1 == k_full;
    int64_t m = 0;
    for (; m + 2 <= M; m += 2) dot_block<T, 2, NB>(k0, k1, K, A + m * lda, lda, B, ldb, acc + m * NB, last);
    if (m < M) dot_block<T, 1, NB>(k0, k1, K, A + m * lda, lda, B, ldb, acc + m * NB, last);
    if (last) break;
  }
  for (int64_t i = 0; i < M; ++i)
    for (int j = 0; j < NB; ++j) {
      const float s = hsum(acc[i * NB + j]);
      float& c = C[i * ldc + j];
      c = accumulate ? c + s : s;
    }
}

template <WType T>
void small_nt_as(int64_t M, int64_t n0, int64_t n1, int64_t K, const float* A, int64_t lda, const ElemT<T>* B,
                 int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  for (int64_t m0 = 0; m0 < M; m0 += kSmallMNT) {
    const int64_t mb = std::min(kSmallMNT, M - m0);
    const float* a = A + m0 * lda;
    float* c = C + m0 * ldc;
    int64_t n = n0;
    if (mb == 1)
      for (; n + 8 <= n1; n += 8) dot_rows<T, 8>(mb, K, a, lda, B + n * ldb, ldb, c + n, ldc, accumulate);
    for (; n + 4 <= n1; n += 4) dot_rows<T, 4>(mb, K, a, lda, B + n * ldb, ldb, c + n, ldc, accumulate);
    for (; n < n1; ++n) dot_rows<T, 1>(mb, K, a, lda, B + n * ldb, ldb, c + n, ldc, accumulate);
  }
}

void small_nt_avx2(int64_t M, int64_t n0, int64_t n1, int64_t K, const float* A, int64_t lda, MatRef B,
                   int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  with_wtype(B.type, [&](auto tag) {
    constexpr WType T = decltype(tag)::value;
    small_nt_as<T>(M, n0, n1, K, A, lda, static_cast<const ElemT<T>*>(B.data), ldb, C, ldc, accumulate);
  });
}

// Direct nn path: each row of C is accumulated in a buffer while rows of B stream
// by in order (contiguous reads, one page after another). Per element the sum runs
// over k in increasing order from zero, one FMA per k, then is added to C.
template <WType T>
void small_nn_rows(int64_t M, int64_t n0, int64_t n1, int64_t K, const float* A, int64_t lda, const ElemT<T>* B,
                   int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  constexpr int64_t kAccFloats = 8192;  // 32 KiB of accumulators; M <= 16 keeps width >= 512
  alignas(32) float acc[kAccFloats];
  const int64_t width = kAccFloats / M / 8 * 8;
  for (int64_t j0 = n0; j0 < n1; j0 += width) {
    const int64_t w = std::min(width, n1 - j0);
    const int64_t wv = w / 8 * 8;  // full vectors; the rest is masked
    const int64_t tail = w - wv;
    std::fill(acc, acc + M * width, 0.f);
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
      const ElemT<T>* b0 = B + k * ldb + j0;
      const ElemT<T>* b1 = b0 + ldb;
      const ElemT<T>* b2 = b1 + ldb;
      const ElemT<T>* b3 = b2 + ldb;
      for (int64_t m = 0; m < M; ++m) {
        const float* a = A + m * lda + k;
        const __m256 a0 = _mm256_broadcast_ss(a), a1 = _mm256_broadcast_ss(a + 1);
        const __m256 a2 = _mm256_broadcast_ss(a + 2), a3 = _mm256_broadcast_ss(a + 3);
        float* c = acc + m * width;
        int64_t j = 0;
        for (; j < wv; j += 8) {
          __m256 v = _mm256_load_ps(c + j);
          v = _mm256_fmadd_ps(a0, Load8<T>::full(b0 + j), v);
          v = _mm256_fmadd_ps(a1, Load8<T>::full(b1 + j), v);
          v = _mm256_fmadd_ps(a2, Load8<T>::full(b2 + j), v);
          v = _mm256_fmadd_ps(a3, Load8<T>::full(b3 + j), v);
          _mm256_store_ps(c + j, v);
        }
        if (j < w) {
          __m256 v = _mm256_load_ps(c + j);
          v = _mm256_fmadd_ps(a0, Load8<T>::part(b0 + j, tail), v);
          v = _mm256_fmadd_ps(a1, Load8<T>::part(b1 + j, tail), v);
          v = _mm256_fmadd_ps(a2, Load8<T>::part(b2 + j, tail), v);
          v = _mm256_fmadd_ps(a3, Load8<T>::part(b3 + j, tail), v);
          _mm256_store_ps(c + j, v);
        }
      }
    }
    for (; k < K; ++k) {
      const ElemT<T>* b0 = B + k * ldb + j0;
      for (int64_t m = 0; m < M; ++m) {
        const __m256 a0 = _mm256_broadcast_ss(A + m * lda + k);
        float* c = acc + m * width;
        int64_t j = 0;
        for (; j < wv; j += 8)
          _mm256_store_ps(c + j, _mm256_fmadd_ps(a0, Load8<T>::full(b0 + j), _mm256_load_ps(c + j)));
        if (j < w)
          _mm256_store_ps(c + j, _mm256_fmadd_ps(a0, Load8<T>::part(b0 + j, tail), _mm256_load_ps(c + j)));
      }
    }
    for (int64_t m = 0; m < M; ++m) {
      const float* a = acc + m * width;
      float* c = C + m * ldc + j0;
      for (int64_t j = 0; j < w; ++j) c[j] = accumulate ? c[j] + a[j] : a[j];
    }
  }
}

void small_nn_avx2(int64_t M, int64_t n0, int64_t n1, int64_t K, const float* A, int64_t lda, MatRef B,
                   int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  constexpr int64_t kRows = 16;
  with_wtype(B.type, [&](auto tag) {
    constexpr WType T = decltype(tag)::value;
    const ElemT<T>* b = static_cast<const ElemT<T>*>(B.data);
    for (int64_t m0 = 0; m0 < M; m0 += kRows)
      small_nn_rows<T>(std::min(kRows, M - m0), n0, n1, K, A + m0 * lda, lda, b, ldb, C + m0 * ldc, ldc,
                       accumulate);
  });
}

}  // namespace

const GemmKernels& avx2_kernels() {
  static const GemmKernels k{"avx2-fma", kMR,           kNR,           kKC,          kMC,
                             kNC,        micro_avx2,    pack_b_nt_avx2, small_nt_avx2, small_nn_avx2};
  return k;
}

}  // namespace gemm_detail
}  // namespace hs

#else  // built without AVX2/FMA/F16C (non-x86 target): the driver never selects these kernels.

namespace hs {
namespace gemm_detail {
const GemmKernels& avx2_kernels() { return scalar_kernels(); }
}  // namespace gemm_detail
}  // namespace hs

#endif
