// AVX-512 kernels for the fp32 GEMM (this file alone is built with
// -mavx512f -mavx512vl -mavx512bw -mavx512dq -mfma; the driver in gemm.cpp calls
// it only when the CPU reports those features and the OS saves zmm state):
//   - a kTileRows x kTileCols register-tile micro-kernel over packed panels, with
//     one 16-lane zmm accumulator per row and 16 columns, masked stores on edges,
//   - packing of B^T panels from [N,K] weights with 8x8 in-register transposes.
// The direct small-M paths (decode) are memory-bound and reuse the AVX2 ones.
// Every C element is accumulated by one fixed sequence of operations (one FMA
// per k, in increasing k, from zero, then added to C) whatever the tile it lands
// in, so results do not depend on how the caller splits C.
#include "gemm_internal.h"

#if defined(__AVX512F__) && defined(__AVX512VL__) && defined(__FMA__)

#include <immintrin.h>

#include <algorithm>

namespace hs {
namespace gemm_detail {
namespace {

// Register tile: 12 rows x 32 columns = 24 zmm accumulators, 2 for B, 1 broadcast.
#ifndef HS_X_ROWS
#define HS_X_ROWS 12
#define HS_X_VECS 2
#define HS_X_KC 128
#define HS_X_MC 144
#endif
constexpr int kTileRows = HS_X_ROWS;
constexpr int kTileVecs = HS_X_VECS;                // 16-lane vectors per row of the tile
constexpr int kTileCols = 16 * kTileVecs;
// Blocks: a kc x 32 B micro-panel (16 KiB at kc = 128) stays in L1 while the A
// block (mc x kc, 72 KiB) streams from L2; a kc x nc B block (2 MiB) sits in L3.
constexpr int64_t kBlockK = HS_X_KC;
constexpr int64_t kBlockM = HS_X_MC;
constexpr int64_t kBlockN = 4096 / kTileCols * kTileCols;

static_assert(kTileRows <= kMaxMR && kTileCols <= kMaxNR, "tile exceeds the driver's bounds");
static_assert(kBlockM % kTileRows == 0 && kBlockN % kTileCols == 0, "blocks must hold whole tiles");

template <int MR, int NV>
void micro_tile(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int mr, int nr, bool add) {
  constexpr int NR = 16 * NV;
  __m512 acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_ps();

#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) bv[j] = _mm512_load_ps(b + k * NR + 16 * j);
    const float* ak = a + k * MR;
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_set1_ps(ak[i]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(ai, bv[j], acc[i][j]);
    }
  }

  if (nr == NR) {
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      if (i >= mr) break;
      float* r = c + i * ldc;
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) {
        const __m512 v = add ? _mm512_add_ps(_mm512_loadu_ps(r + 16 * j), acc[i][j]) : acc[i][j];
        _mm512_storeu_ps(r + 16 * j, v);
      }
    }
    return;
  }
  __mmask16 mask[NV];
  for (int j = 0; j < NV; ++j) {
    const int w = std::clamp(nr - 16 * j, 0, 16);
    mask[j] = static_cast<__mmask16>((1u << w) - 1u);
  }
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    if (i >= mr) break;
    float* r = c + i * ldc;
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      const __m512 v = add ? _mm512_add_ps(_mm512_maskz_loadu_ps(mask[j], r + 16 * j), acc[i][j]) : acc[i][j];
      _mm512_mask_storeu_ps(r + 16 * j, mask[j], v);
    }
  }
}

void micro_avx512(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int mr, int nr, bool add) {
  micro_tile<kTileRows, kTileVecs>(kc, a, b, c, ldc, mr, nr, add);
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

// B is [N,K]: panel q takes rows q*kTileCols.. of B as its columns, 8x8 blocks at a time.
void pack_b_nt_avx512(int64_t kc, int64_t nc, int64_t q0, int64_t q1, const float* B, int64_t ldb, float* dst) {
  constexpr int NR = kTileCols;
  for (int64_t q = q0; q < q1; ++q) {
    const int64_t n0 = q * NR;
    const int nr = static_cast<int>(std::min<int64_t>(NR, nc - n0));
    float* d = dst + q * NR * kc;
    const float* rows[NR];
    for (int j = 0; j < NR; ++j) rows[j] = j < nr ? B + (n0 + j) * ldb : nullptr;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
      for (int h = 0; h < NR / 8; ++h) {
        __m256 r[8];
        for (int j = 0; j < 8; ++j)
          r[j] = rows[8 * h + j] ? _mm256_loadu_ps(rows[8 * h + j] + k) : _mm256_setzero_ps();
        transpose8(r);
        for (int i = 0; i < 8; ++i) _mm256_store_ps(d + (k + i) * NR + 8 * h, r[i]);
      }
    }
    for (; k < kc; ++k)
      for (int j = 0; j < NR; ++j) d[k * NR + j] = rows[j] ? rows[j][k] : 0.f;
  }
}

}  // namespace

const GemmKernels& avx512_kernels() {
  static const GemmKernels k{"avx512", kTileRows,        kTileCols,   kBlockK, kBlockM, kBlockN, micro_avx512,
                             pack_b_nt_avx512, avx2_kernels().small_nt, avx2_kernels().small_nn};
  return k;
}

}  // namespace gemm_detail
}  // namespace hs

#else  // built without AVX-512 (non-x86 target): the driver never selects these kernels.

namespace hs {
namespace gemm_detail {
const GemmKernels& avx512_kernels() { return avx2_kernels(); }
}  // namespace gemm_detail
}  // namespace hs

#endif
