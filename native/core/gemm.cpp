// GEMM driver for the CPU engine (GotoBLAS/BLIS loop order) and the portable
// scalar kernels; picks the kernel table (AVX-512, AVX2/FMA, scalar) at run time.
// B (the weight) is fp32, bf16 or f16; it is widened to fp32 where it is packed or
// streamed, so the arithmetic never depends on its storage type.
//
//   for jc in N step NC:                      B block columns
//     for pc in K step KC:                    depth blocks, always in increasing order
//       pack B[pc:pc+kc, jc:jc+nc] into NR-wide panels (shared, parallel over panels)
//       parallel over tasks (row block of C x range of B panels):
//         pack A[ic:ic+mc, pc:pc+kc] into MR-tall panels (thread-local)
//         for each B panel, for each A panel: micro-kernel on an MR x NR tile of C
// (MR, NR and the block sizes come from the kernel table.)
//
// Threads only ever split rows/columns of C; K is never split, and each depth
// block is added to C in the same order, so the result is bit-identical for any
// thread count. For few rows (decode) a direct path streams B without packing.
// Arith::BF16 rounds A to bf16 where it is packed (or, on the direct path, in a
// small copy of its few rows); nothing else changes.
#include "gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

#include "errors.h"
#include "gemm_internal.h"
#include "threadpool.h"

namespace hs {
namespace gemm_detail {
namespace {

// Below this many flops a call runs on the calling thread: the pool's hand-off
// costs more than it saves. The split never changes the result.
constexpr double kParallelMinFlops = 2.0e6;

// A grow-only, 64-byte aligned float buffer; one per thread for packed panels.
class PackBuffer {
 public:
  PackBuffer() = default;
  PackBuffer(const PackBuffer&) = delete;
  PackBuffer& operator=(const PackBuffer&) = delete;
  ~PackBuffer() { std::free(data_); }

  float* get(size_t count) {
    if (count > capacity_) {
      const size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
      void* p = std::aligned_alloc(64, bytes);
      if (!p) fail(code::kInternal, "gemm: cannot allocate " + std::to_string(bytes) + " bytes of packing buffer");
      std::free(data_);
      data_ = static_cast<float*>(p);
      capacity_ = bytes / sizeof(float);
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  size_t capacity_ = 0;
};

thread_local PackBuffer t_pack_a;
thread_local PackBuffer t_pack_b;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_args(const char* fn, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const void* B,
                int64_t ldb, int64_t b_width, const float* C, int64_t ldc) {
  if (M < 0 || N < 0 || K < 0)
    fail(code::kArgument, std::string(fn) + ": negative size M=" + std::to_string(M) + " N=" + std::to_string(N) +
                              " K=" + std::to_string(K));
  if (lda < std::max<int64_t>(1, K))
    fail(code::kArgument, std::string(fn) + ": lda=" + std::to_string(lda) + " is less than K=" + std::to_string(K));
  if (ldb < std::max<int64_t>(1, b_width))
    fail(code::kArgument, std::string(fn) + ": ldb=" + std::to_string(ldb) + " is less than the row width " +
                              std::to_string(b_width) + " of B");
  if (ldc < std::max<int64_t>(1, N))
    fail(code::kArgument, std::string(fn) + ": ldc=" + std::to_string(ldc) + " is less than N=" + std::to_string(N));
  if (M > 0 && N > 0) {
    if (!C) fail(code::kArgument, std::string(fn) + ": C is null");
    if (K > 0 && (!A || !B)) fail(code::kArgument, std::string(fn) + ": A or B is null");
  }
}

template <typename Fn>
void run_split(ThreadPool* pool, bool parallel, int64_t n, const Fn& fn) {
  if (pool && parallel && pool->threads() > 1 && n > 1)
    pool->parallel_for(n, 1, fn);
  else
    fn(0, n);
}

// A[ic:ic+mc, pc:pc+kc] -> MR-tall panels, zero-padded to a multiple of MR rows;
// ROUND rounds every value to bf16 (Arith::BF16).
template <int MR, bool ROUND>
void pack_a_tile(int64_t mc, int64_t kc, const float* A, int64_t lda, float* dst) {
  auto v = [](float x) { return ROUND ? round_bf16(x) : x; };
  for (int64_t i0 = 0; i0 < mc; i0 += MR) {
    const int rows = static_cast<int>(std::min<int64_t>(MR, mc - i0));
    const float* src[MR];
    for (int r = 0; r < MR; ++r) src[r] = A + (i0 + std::min(r, rows - 1)) * lda;
    if (rows == MR) {
      for (int64_t k = 0; k < kc; ++k)
        for (int r = 0; r < MR; ++r) dst[k * MR + r] = v(src[r][k]);
    } else {
      for (int64_t k = 0; k < kc; ++k)
        for (int r = 0; r < MR; ++r) dst[k * MR + r] = r < rows ? v(src[r][k]) : 0.f;
    }
    dst += MR * kc;
  }
}

// The same for a tile height known only at run time (no kernel table uses one today).
void pack_a_any(int mr, int64_t mc, int64_t kc, const float* A, int64_t lda, float* dst, bool round) {
  for (int64_t i0 = 0; i0 < mc; i0 += mr) {
    const int rows = static_cast<int>(std::min<int64_t>(mr, mc - i0));
    for (int64_t k = 0; k < kc; ++k)
      for (int r = 0; r < mr; ++r) {
        const float x = r < rows ? A[(i0 + r) * lda + k] : 0.f;
        dst[k * mr + r] = round ? round_bf16(x) : x;
      }
    dst += mr * kc;
  }
}

template <bool ROUND>
void pack_a_as(int mr, int64_t mc, int64_t kc, const float* A, int64_t lda, float* dst) {
  switch (mr) {
    case 6: return pack_a_tile<6, ROUND>(mc, kc, A, lda, dst);
    case 12: return pack_a_tile<12, ROUND>(mc, kc, A, lda, dst);
    case 14: return pack_a_tile<14, ROUND>(mc, kc, A, lda, dst);
    case 16: return pack_a_tile<16, ROUND>(mc, kc, A, lda, dst);
    case 24: return pack_a_tile<24, ROUND>(mc, kc, A, lda, dst);
    case 28: return pack_a_tile<28, ROUND>(mc, kc, A, lda, dst);
    default: return pack_a_any(mr, mc, kc, A, lda, dst, ROUND);
  }
}

void pack_a(int mr, int64_t mc, int64_t kc, const float* A, int64_t lda, float* dst, bool round) {
  if (round)
    pack_a_as<true>(mr, mc, kc, A, lda, dst);
  else
    pack_a_as<false>(mr, mc, kc, A, lda, dst);
}

// Panels q0..q1 of a kc x nc block of B when B is [K,N], zero-padded past nc.
// Rows of B are read in order (one page at a time), panels are written NR floats per row.
template <WType T>
void pack_b_nn_as(int NR, int64_t kc, int64_t nc, int64_t q0, int64_t q1, const ElemT<T>* B, int64_t ldb,
                  float* dst) {
  for (int64_t k = 0; k < kc; ++k) {
    const ElemT<T>* row = B + k * ldb;
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t n0 = q * NR;
      float* d = dst + q * NR * kc + k * NR;
      if (n0 + NR <= nc) {
        if constexpr (T == WType::F32)
          std::memcpy(d, row + n0, NR * sizeof(float));
        else
          for (int64_t j = 0; j < NR; ++j) d[j] = Elem<T>::widen(row[n0 + j]);
      } else {
        const int64_t nr = nc - n0;
        for (int64_t j = 0; j < NR; ++j) d[j] = j < nr ? Elem<T>::widen(row[n0 + j]) : 0.f;
      }
    }
  }
}

void pack_b_nn(int NR, int64_t kc, int64_t nc, int64_t q0, int64_t q1, MatRef B, int64_t ldb, float* dst) {
  with_wtype(B.type, [&](auto tag) {
    constexpr WType T = decltype(tag)::value;
    pack_b_nn_as<T>(NR, kc, nc, q0, q1, static_cast<const ElemT<T>*>(B.data), ldb, dst);
  });
}

// Panels q0..q1 of a kc x nc block of B^T when B is [N,K]: rows of B become columns.
template <WType T>
void pack_b_nt_scalar_as(int64_t kc, int64_t nc, int64_t q0, int64_t q1, const ElemT<T>* B, int64_t ldb,
                         float* dst) {
  for (int64_t q = q0; q < q1; ++q) {
    const int64_t n0 = q * kNR;
    const int nr = static_cast<int>(std::min<int64_t>(kNR, nc - n0));
    float* d = dst + q * kNR * kc;
    for (int j = 0; j < nr; ++j) {
      const ElemT<T>* src = B + (n0 + j) * ldb;
      for (int64_t k = 0; k < kc; ++k) d[k * kNR + j] = Elem<T>::widen(src[k]);
    }
    for (int j = nr; j < kNR; ++j)
      for (int64_t k = 0; k < kc; ++k) d[k * kNR + j] = 0.f;
  }
}

void pack_b_nt_scalar(int64_t kc, int64_t nc, int64_t q0, int64_t q1, MatRef B, int64_t ldb, float* dst) {
  with_wtype(B.type, [&](auto tag) {
    constexpr WType T = decltype(tag)::value;
    pack_b_nt_scalar_as<T>(kc, nc, q0, q1, static_cast<const ElemT<T>*>(B.data), ldb, dst);
  });
}

void gemm_packed(const GemmKernels& kern, bool b_is_nk, int64_t M, int64_t N, int64_t K, const float* A,
                 int64_t lda, MatRef B, int64_t ldb, float* C, int64_t ldc, bool accumulate, ThreadPool* pool,
                 bool round_a) {
  const int threads = pool ? pool->threads() : 1;
  const bool parallel = threads > 1 && 2.0 * M * N * K >= kParallelMinFlops;
  const int MR = kern.mr, NR = kern.nr;
  const int64_t KC = kern.kc, MC = kern.mc, NC = kern.nc;

  // Row blocks of near-equal size (a multiple of MR) balance the threads.
  const int64_t m_blocks = ceil_div(M, MC);
  const int64_t mc_step = ceil_div(ceil_div(M, m_blocks), MR) * MR;

  float* b_pack = t_pack_b.get(static_cast<size_t>(KC * ceil_div(std::min(N, NC), NR) * NR));

  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    const int64_t n_panels = ceil_div(nc, NR);
    // Split B panels into chunks so there are a few tasks per thread.
    const int64_t n_chunks = parallel ? std::min(n_panels, ceil_div(4 * threads, m_blocks)) : 1;
    const int64_t tasks = m_blocks * n_chunks;

    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      const bool add = accumulate || pc > 0;

      run_split(pool, parallel, n_panels, [&](int64_t q0, int64_t q1) {
        if (b_is_nk)
          kern.pack_b_nt(kc, nc, q0, q1, B.at(jc * ldb + pc), ldb, b_pack);
        else
          pack_b_nn(NR, kc, nc, q0, q1, B.at(pc * ldb + jc), ldb, b_pack);
      });

      run_split(pool, parallel, tasks, [&](int64_t t0, int64_t t1) {
        float* a_pack = t_pack_a.get(static_cast<size_t>(mc_step * KC));
        int64_t packed_block = -1;
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t ib = t / n_chunks, chunk = t % n_chunks;
          const int64_t ic = ib * mc_step;
          if (ic >= M) continue;
          const int64_t mc = std::min(mc_step, M - ic);
          if (ib != packed_block) {
            pack_a(MR, mc, kc, A + ic * lda + pc, lda, a_pack, round_a);
            packed_block = ib;
          }
          const int64_t q_begin = n_panels * chunk / n_chunks, q_end = n_panels * (chunk + 1) / n_chunks;
          for (int64_t q = q_begin; q < q_end; ++q) {
            const int64_t n0 = jc + q * NR;
            const int nr = static_cast<int>(std::min<int64_t>(NR, N - n0));
            const float* b_panel = b_pack + q * NR * kc;
            for (int64_t i0 = 0; i0 < mc; i0 += MR) {
              const int mr = static_cast<int>(std::min<int64_t>(MR, mc - i0));
              kern.micro(kc, a_pack + i0 * kc, b_panel, C + (ic + i0) * ldc + n0, ldc, mr, nr, add);
            }
          }
        }
      });
    }
  }
}

void fill_or_keep(int64_t M, int64_t N, float* C, int64_t ldc, bool accumulate) {
  if (accumulate) return;
  for (int64_t m = 0; m < M; ++m) std::fill(C + m * ldc, C + m * ldc + N, 0.f);
}

void gemm_dispatch(const GemmKernels& kern, bool b_is_nk, int64_t M, int64_t N, int64_t K, const float* A,
                   int64_t lda, MatRef B, int64_t ldb, float* C, int64_t ldc, bool accumulate, ThreadPool* pool,
                   Arith arith) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    fill_or_keep(M, N, C, ldc, accumulate);
    return;
  }
  const bool round_a = arith == Arith::BF16;
  if (M <= (b_is_nk ? kSmallMNT : kSmallMNN)) {
    std::vector<float> rounded;
    if (round_a) {
      // The few rows of A, rounded to bf16 once for all column blocks.
      rounded.resize(static_cast<size_t>(M * K));
      for (int64_t m = 0; m < M; ++m)
        for (int64_t k = 0; k < K; ++k) rounded[m * K + k] = round_bf16(A[m * lda + k]);
      A = rounded.data();
      lda = K;
    }
    const bool parallel = pool && pool->threads() > 1 && 2.0 * M * N * K >= kParallelMinFlops;
    auto small = b_is_nk ? kern.small_nt : kern.small_nn;
    run_split(pool, parallel, ceil_div(N, kSmallNBlock), [&](int64_t b0, int64_t b1) {
      small(M, b0 * kSmallNBlock, std::min(N, b1 * kSmallNBlock), K, A, lda, B, ldb, C, ldc, accumulate);
    });
    return;
  }
  gemm_packed(kern, b_is_nk, M, N, K, A, lda, B, ldb, C, ldc, accumulate, pool, round_a);
}

// ---- portable scalar kernels ----

void micro_scalar(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int mr, int nr, bool add) {
  // Two passes of kMR x 8 columns: 48 accumulators stay in registers (a full
  // kMR x kNR tile would spill on a baseline x86-64 or AArch64 register file).
  constexpr int kHalf = kNR / 2;
  for (int j0 = 0; j0 < nr; j0 += kHalf) {
    float acc[kMR][kHalf] = {};
    for (int64_t k = 0; k < kc; ++k) {
      const float* ak = a + k * kMR;
      const float* bk = b + k * kNR + j0;
      for (int i = 0; i < kMR; ++i) {
        const float ai = ak[i];
        for (int j = 0; j < kHalf; ++j) acc[i][j] += ai * bk[j];
      }
    }
    const int w = std::min(kHalf, nr - j0);
    for (int i = 0; i < mr; ++i)
      for (int j = 0; j < w; ++j) {
        float& cij = c[i * ldc + j0 + j];
        cij = add ? cij + acc[i][j] : acc[i][j];
      }
  }
}

template <WType T>
void small_nt_scalar_as(int64_t M, int64_t n0, int64_t n1, int64_t K, const float* A, int64_t lda,
                        const ElemT<T>* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  for (int64_t m = 0; m < M; ++m) {
    const float* a = A + m * lda;
    for (int64_t n = n0; n < n1; ++n) {
      const ElemT<T>* b = B + n * ldb;
      float s = 0.f;
      for (int64_t k = 0; k < K; ++k) s += a[k] * Elem<T>::widen(b[k]);
      float& c = C[m * ldc + n];
      c = accumulate ? c + s : s;
    }
  }
}

void small_nt_scalar(int64_t M, int64_t n0, int64_t n1, int64_t K, const float* A, int64_t lda, MatRef B,
                     int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  with_wtype(B.type, [&](auto tag) {
    constexpr WType T = decltype(tag)::value;
    small_nt_scalar_as<T>(M, n0, n1, K, A, lda, static_cast<const ElemT<T>*>(B.data), ldb, C, ldc, accumulate);
  });
}

template <WType T>
void small_nn_scalar_as(int64_t M, int64_t n0, int64_t n1, int64_t K, const float* A, int64_t lda,
                        const ElemT<T>* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  constexpr int64_t kChunk = 64;
  float acc[kChunk];
  for (int64_t m = 0; m < M; ++m) {
    const float* a = A + m * lda;
    for (int64_t j0 = n0; j0 < n1; j0 += kChunk) {
      const int64_t w = std::min(kChunk, n1 - j0);
      std::fill(acc, acc + w, 0.f);
      for (int64_t k = 0; k < K; ++k) {
        const float ak = a[k];
        const ElemT<T>* b = B + k * ldb + j0;
        for (int64_t j = 0; j < w; ++j) acc[j] += ak * Elem<T>::widen(b[j]);
      }
      float* c = C + m * ldc + j0;
      for (int64_t j = 0; j < w; ++j) c[j] = accumulate ? c[j] + acc[j] : acc[j];
    }
  }
}

void small_nn_scalar(int64_t M, int64_t n0, int64_t n1, int64_t K, const float* A, int64_t lda, MatRef B,
                     int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  with_wtype(B.type, [&](auto tag) {
    constexpr WType T = decltype(tag)::value;
    small_nn_scalar_as<T>(M, n0, n1, K, A, lda, static_cast<const ElemT<T>*>(B.data), ldb, C, ldc, accumulate);
  });
}

// HOPSCOTCH_CPU_KERNEL caps the kernel choice: "scalar" or "avx2" (anything else: no cap).
std::string kernel_cap() {
  const char* v = std::getenv("HOPSCOTCH_CPU_KERNEL");
  return v ? std::string(v) : std::string();
}

}  // namespace

const GemmKernels& scalar_kernels() {
  static const GemmKernels k{"scalar",         kMR,           kNR,
                             kKC,              kMC,           kNC,
                             micro_scalar,     pack_b_nt_scalar, small_nt_scalar,
                             small_nn_scalar};
  return k;
}

bool cpu_has_avx2_fma() {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && cpu_has_avx2_fma()))
    return false;
  // The OS must save the opmask and zmm registers across context switches: XCR0 bits
  // 1-2 (SSE/AVX state), 5 (opmask), 6 (upper halves of zmm0-15), 7 (zmm16-31).
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27))) return false;  // OSXSAVE
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  constexpr unsigned kNeeded = 0x2u | 0x4u | 0x20u | 0x40u | 0x80u;
  return (xcr0_lo & kNeeded) == kNeeded;
#else
  return false;
#endif
}

const GemmKernels& active_kernels() {
  static const GemmKernels& k = [] () -> const GemmKernels& {
    const std::string cap = kernel_cap();
    if (cap == "scalar") return scalar_kernels();
    if (cap != "avx2" && cpu_has_avx512()) return avx512_kernels();
    if (cpu_has_avx2_fma()) return avx2_kernels();
    return scalar_kernels();
  }();
  return k;
}

void gemm_nt_with(const GemmKernels& kernels, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                  MatRef B, int64_t ldb, float* C, int64_t ldc, bool accumulate, ThreadPool* pool, Arith arith) {
  check_args("gemm_nt", M, N, K, A, lda, B.data, ldb, K, C, ldc);
  gemm_dispatch(kernels, true, M, N, K, A, lda, B, ldb, C, ldc, accumulate, pool, arith);
}

void gemm_nn_with(const GemmKernels& kernels, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                  MatRef B, int64_t ldb, float* C, int64_t ldc, bool accumulate, ThreadPool* pool, Arith arith) {
  check_args("gemm_nn", M, N, K, A, lda, B.data, ldb, N, C, ldc);
  gemm_dispatch(kernels, false, M, N, K, A, lda, B, ldb, C, ldc, accumulate, pool, arith);
}

}  // namespace gemm_detail

const char* wtype_name(WType t) {
  switch (t) {
    case WType::BF16: return "BF16";
    case WType::F16: return "F16";
    default: return "F32";
  }
}

MatRef MatRef::at(int64_t i) const {
  MatRef r = *this;
  if (data) r.data = static_cast<const uint8_t*>(data) + i * wtype_size(type);
  return r;
}

const float* MatRef::f32() const {
  if (data && type != WType::F32)
    fail(code::kInternal, std::string("MatRef::f32 on a ") + wtype_name(type) + " matrix");
  return static_cast<const float*>(data);
}

float MatRef::get(int64_t i) const {
  switch (type) {
    case WType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(data)[i]);
    case WType::F16: return f16_to_f32(static_cast<const uint16_t*>(data)[i]);
    default: return static_cast<const float*>(data)[i];
  }
}

void MatRef::widen(int64_t i, int64_t n, float* out) const {
  switch (type) {
    case WType::BF16: {
      const uint16_t* p = static_cast<const uint16_t*>(data) + i;
      for (int64_t j = 0; j < n; ++j) out[j] = bf16_to_f32(p[j]);
      return;
    }
    case WType::F16: {
      const uint16_t* p = static_cast<const uint16_t*>(data) + i;
      for (int64_t j = 0; j < n; ++j) out[j] = f16_to_f32(p[j]);
      return;
    }
    default:
      std::memcpy(out, static_cast<const float*>(data) + i, static_cast<size_t>(n) * sizeof(float));
  }
}

void gemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, MatRef B, int64_t ldb, float* C,
             int64_t ldc, bool accumulate, ThreadPool* pool, Arith arith) {
  gemm_detail::gemm_nt_with(gemm_detail::active_kernels(), M, N, K, A, lda, B, ldb, C, ldc, accumulate, pool,
                            arith);
}

void gemm_nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, MatRef B, int64_t ldb, float* C,
             int64_t ldc, bool accumulate, ThreadPool* pool, Arith arith) {
  gemm_detail::gemm_nn_with(gemm_detail::active_kernels(), M, N, K, A, lda, B, ldb, C, ldc, accumulate, pool,
                            arith);
}

const char* gemm_kernel_name() { return gemm_detail::active_kernels().name; }

}  // namespace hs
