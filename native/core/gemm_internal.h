// Internals of the fp32 GEMM shared by the portable driver (gemm.cpp) and the
// AVX2/FMA kernels (gemm_avx2.cpp): the register-tile shape, the packed-panel
// layouts, and the table of kernels a driver runs with.
//
// Packed layouts (both zero-padded to a full tile, so kernels never branch on edges):
//   A block of mc x kc -> ceil(mc/kMR) panels, panel p holds rows p*kMR.. as
//                         [k][kMR] (kMR consecutive floats per k).
//   B block of kc x nc -> ceil(nc/kNR) panels, panel q holds columns q*kNR.. as
//                         [k][kNR] (kNR consecutive floats per k).
// Every kernel sums each C element over k in increasing order into one
// accumulator starting at zero, then adds that to C (or stores it), so the
// result for an element never depends on which tile or thread computed it.
#pragma once
#include <cstdint>

namespace hs {

class ThreadPool;

namespace gemm_detail {

inline constexpr int kMR = 6;    // rows of C per register tile
inline constexpr int kNR = 16;   // columns of C per register tile (two 8-lane vectors)
inline constexpr int64_t kKC = 256;   // depth of a packed block (B micro-panel stays in L1)
inline constexpr int64_t kMC = 144;   // rows of a packed A block (stays in L2)
inline constexpr int64_t kNC = 4080;  // columns of a packed B block (stays in L3)

// Up to this many rows of C the drivers skip packing and stream B directly
// (the small-M kernels accept any M, these are only the switch-over points).
inline constexpr int64_t kSmallMNT = 16;
inline constexpr int64_t kSmallMNN = 8;

// Columns of C per work item in the direct small-M paths (the split unit for threads).
inline constexpr int64_t kSmallNBlock = 64;

struct GemmKernels {
  const char* name;
  // C[mr x nr] (ldc) (+)= packed A panel (kc x kMR) * packed B panel (kc x kNR).
  // mr <= kMR, nr <= kNR; `add` false stores instead of adding.
  void (*micro)(int64_t kc, const float* a_panel, const float* b_panel, float* c, int64_t ldc, int mr,
                int nr, bool add);
  // Packs B panels q0..q1 of a kc x nc block of B^T where B is [N,K]: `B` points at
  // the block's first row/column, panel q covers B rows q*kNR.., zero-padded past nc.
  void (*pack_b_nt)(int64_t kc, int64_t nc, int64_t q0, int64_t q1, const float* B, int64_t ldb, float* dst);
  // Direct nt path: C[0:M, n0:n1] (+)= A[0:M, :] * B[n0:n1, :]^T, B is [N,K] row-major.
  void (*small_nt)(int64_t M, int64_t n0, int64_t n1, int64_t K, const float* A, int64_t lda,
                   const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate);
  // Direct nn path: C[0:M, n0:n1] (+)= A[0:M, :] * B[:, n0:n1], B is [K,N] row-major.
  void (*small_nn)(int64_t M, int64_t n0, int64_t n1, int64_t K, const float* A, int64_t lda,
                   const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate);
};

const GemmKernels& scalar_kernels();
// Only call when the CPU supports AVX2 and FMA (see cpu_has_avx2_fma).
const GemmKernels& avx2_kernels();
bool cpu_has_avx2_fma();

// The kernels gemm_nt/gemm_nn use: AVX2/FMA when supported unless
// HOPSCOTCH_CPU_KERNEL=scalar; decided once, on first use.
const GemmKernels& active_kernels();

// The public entry points with an explicit kernel table (tests run both kernels).
void gemm_nt_with(const GemmKernels& kernels, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate, ThreadPool* pool);
void gemm_nn_with(const GemmKernels& kernels, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate, ThreadPool* pool);

}  // namespace gemm_detail
}  // namespace hs
