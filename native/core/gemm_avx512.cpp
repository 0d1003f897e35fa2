// AVX-512 kernels for the fp32 GEMM (this file alone is built with
// -mavx512f -mavx512vl -mavx512bw -mavx512dq -mfma; the driver in gemm.cpp calls
// it only when the CPU reports those features and the OS saves zmm state):
// a kTileRows x kTileCols register-tile micro-kernel over packed panels, one
// 16-lane zmm accumulator per row and 16 columns, masked loads/stores on edges.
// The tile is 16 columns wide, the same B panel layout as the AVX2 kernels, so
// B^T packing is shared with them; the direct small-M paths (decode, bound by
// memory bandwidth) are theirs too.
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

// Register tile: 16 rows x 16 columns = 16 zmm accumulators; per k one B load and
// 16 broadcast FMAs. Measured on Zen 4 (512-bit FMAs run as two 256-bit halves)
// against 12x32, 14x32, 6x32, 24x16 and 28x16 tiles: this one was fastest.
constexpr int kTileRows = 16;
constexpr int kTileVecs = 1;  // 16-lane vectors per row of the tile
constexpr int kTileCols = 16 * kTileVecs;
// Blocks: a kc x 16 B micro-panel (16 KiB) stays in L1 while the A block
// (mc x kc, 144 KiB) streams from L2; a kc x nc B block (4 MiB) sits in L3.
constexpr int64_t kBlockK = 256;
constexpr int64_t kBlockM = 144;
constexpr int64_t kBlockN = 4096;

static_assert(kTileRows <= kMaxMR && kTileCols <= kMaxNR, "tile exceeds the driver's bounds");
static_assert(kBlockM % kTileRows == 0 && kBlockN % kTileCols == 0, "blocks must hold whole tiles");
static_assert(kTileCols == kNR, "B panels are packed by the AVX2 packing routine (kNR columns)");

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

}  // namespace

const GemmKernels& avx512_kernels() {
  static const GemmKernels k{"avx512",     kTileRows,    kTileCols,
                             kBlockK,      kBlockM,      kBlockN,
                             micro_avx512, avx2_kernels().pack_b_nt, avx2_kernels().small_nt,
                             avx2_kernels().small_nn};
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
