// Internals of the GEMM shared by the portable driver (gemm.cpp) and the SIMD
// kernels (gemm_avx2.cpp, gemm_avx512.cpp): register-tile shapes, block sizes, the
// packed-panel layouts, and the table of kernels a driver runs with.
//
// Each kernel table names its register tile MR x NR and its block sizes; the
// driver packs for that tile. Packed layouts (both fp32, zero-padded to a full
// tile, so kernels never branch on edges):
//   A block of mc x kc -> ceil(mc/MR) panels, panel p holds rows p*MR.. as
//                         [k][MR] (MR consecutive floats per k).
//   B block of kc x nc -> ceil(nc/NR) panels, panel q holds columns q*NR.. as
//                         [k][NR] (NR consecutive floats per k).
// B (the weight) may be bf16 or f16: packing and the direct small-M paths widen it
// to fp32 as they read it (exactly), so a kernel's arithmetic is the same for
// every storage type.
// Every kernel sums each C element over k in increasing order into one
// accumulator starting at zero, then adds that to C (or stores it), so the
// result for an element never depends on which tile or thread computed it.
#pragma once
#include <cstdint>
#include <type_traits>

#include "gemm.h"
#include "half.h"

namespace hs {

class ThreadPool;

namespace gemm_detail {

// Tile and blocks of the scalar and AVX2/FMA kernels.
inline constexpr int kMR = 6;    // rows of C per register tile
inline constexpr int kNR = 16;   // columns of C per register tile (two 8-lane vectors)
inline constexpr int64_t kKC = 256;   // depth of a packed block (B micro-panel stays in L1)
inline constexpr int64_t kMC = 144;   // rows of a packed A block (stays in L2)
inline constexpr int64_t kNC = 4080;  // columns of a packed B block (stays in L3)

// Upper bounds over all kernel tables (sizes of stack buffers in the driver).
inline constexpr int kMaxMR = 32;
inline constexpr int kMaxNR = 32;

// Up to this many rows of C the drivers skip packing and stream B directly
// (the small-M kernels accept any M, these are only the switch-over points).
inline constexpr int64_t kSmallMNT = 16;
inline constexpr int64_t kSmallMNN = 8;

// Columns of C per work item in the direct small-M paths (the split unit for threads).
inline constexpr int64_t kSmallNBlock = 64;

// Storage element of a weight type and its exact widening to fp32.
template <WType T> struct Elem;
template <> struct Elem<WType::F32> {
  using type = float;
  static float widen(float x) { return x; }
};
template <> struct Elem<WType::BF16> {
  using type = uint16_t;
  static float widen(uint16_t x) { return bf16_to_f32(x); }
};
template <> struct Elem<WType::F16> {
  using type = uint16_t;
  static float widen(uint16_t x) { return f16_to_f32(x); }
};
template <WType T> using ElemT = typename Elem<T>::type;
template <WType T> using WTag = std::integral_constant<WType, T>;

// Calls fn(WTag<t>{}) for the run-time type t (one template instance per type).
template <typename Fn>
decltype(auto) with_wtype(WType t, Fn&& fn) {
  switch (t) {
    case WType::BF16: return fn(WTag<WType::BF16>{});
    case WType::F16: return fn(WTag<WType::F16>{});
    default: return fn(WTag<WType::F32>{});
  }
}

struct GemmKernels {
  const char* name;
  int mr, nr;            // register tile: rows x columns of C (mr <= kMaxMR, nr <= kMaxNR)
  int64_t kc, mc, nc;    // block depth, rows of an A block (multiple of mr), columns of a B block (multiple of nr)
  // C[mr x nr] (ldc) (+)= packed A panel (kc x MR) * packed B panel (kc x NR).
  // mr <= MR, nr <= NR; `add` false stores instead of adding.
  void (*micro)(int64_t kc, const float* a_panel, const float* b_panel, float* c, int64_t ldc, int mr,
                int nr, bool add);
  // Packs B panels q0..q1 of a kc x nc block of B^T where B is [N,K]: `B` points at
  // the block's first row/column, panel q covers B rows q*NR.., zero-padded past nc.
  void (*pack_b_nt)(int64_t kc, int64_t nc, int64_t q0, int64_t q1, MatRef B, int64_t ldb, float* dst);
  // Direct nt path: C[0:M, n0:n1] (+)= A[0:M, :] * B[n0:n1, :]^T, B is [N,K] row-major.
  void (*small_nt)(int64_t M, int64_t n0, int64_t n1, int64_t K, const float* A, int64_t lda, MatRef B,
                   int64_t ldb, float* C, int64_t ldc, bool accumulate);
  // Direct nn path: C[0:M, n0:n1] (+)= A[0:M, :] * B[:, n0:n1], B is [K,N] row-major.
  void (*small_nn)(int64_t M, int64_t n0, int64_t n1, int64_t K, const float* A, int64_t lda, MatRef B,
                   int64_t ldb, float* C, int64_t ldc, bool accumulate);
};

const GemmKernels& scalar_kernels();
// Only call when the CPU supports AVX2, FMA and F16C (see cpu_has_avx2_fma).
const GemmKernels& avx2_kernels();
bool cpu_has_avx2_fma();
// Only call when cpu_has_avx512() (AVX-512 F/VL/BW/DQ, FMA, and zmm state saved by the OS).
const GemmKernels& avx512_kernels();
bool cpu_has_avx512();

// The kernels gemm_nt/gemm_nn use: AVX-512 when supported, else AVX2/FMA when
// supported, else scalar; HOPSCOTCH_CPU_KERNEL=avx2 or =scalar caps the choice.
// Decided once, on first use.
const GemmKernels& active_kernels();

// The public entry points with an explicit kernel table (tests run both kernels).
void gemm_nt_with(const GemmKernels& kernels, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                  MatRef B, int64_t ldb, float* C, int64_t ldc, bool accumulate, ThreadPool* pool,
                  Arith arith = Arith::F32);
void gemm_nn_with(const GemmKernels& kernels, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                  MatRef B, int64_t ldb, float* C, int64_t ldc, bool accumulate, ThreadPool* pool,
                  Arith arith = Arith::F32);

}  // namespace gemm_detail
}  // namespace hs
