// Tests and timings for the fp32 GEMM (native/core/gemm.h).
//
//   gemm_test           correctness of gemm_nt / gemm_nn for every kernel the CPU runs
//                       (scalar, AVX2/FMA, AVX-512) against a double-precision naive
//                       reference (odd shapes, padded leading dimensions, accumulate
//                       on/off), exact results on integer data, untouched padding,
//                       bit-identity across 1/2/3 threads, the kernel dispatch order
//                       and the HOPSCOTCH_CPU_KERNEL=avx2|scalar overrides.
//   gemm_test --bench [M N K ...]
//                       GFLOP/s for representative (or the given) shapes: every kernel
//                       at 1 thread, the active kernel at 2 threads, with the fraction
//                       of the core's measured FMA peak (256- and 512-bit FMA loops).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <time.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HS_TEST_X86 1
#endif

#include "errors.h"
#include "gemm.h"
#include "gemm_internal.h"
#include "half.h"
#include "threadpool.h"

using hs::ThreadPool;
using hs::gemm_detail::GemmKernels;

namespace {

int g_passed = 0, g_failed = 0;

void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAIL %s\n", what.c_str());
  }
}

enum class Op { kNT, kNN };
const char* op_name(Op op) { return op == Op::kNT ? "nt" : "nn"; }

struct Case {
  int64_t M, N, K;
  int64_t pad_a = 0, pad_b = 0, pad_c = 0;  // extra leading-dimension columns
  bool accumulate = false;
};

// Storage for one problem: A, B, C with padding columns filled with a sentinel.
struct Problem {
  Op op;
  Case cs;
  int64_t lda, ldb, ldc, b_rows, b_cols;
  std::vector<float> A, B, C0;

  Problem(Op op_, const Case& c, bool integer_data, uint32_t seed) : op(op_), cs(c) {
    lda = c.K + c.pad_a;
    b_rows = op == Op::kNT ? c.N : c.K;
    b_cols = op == Op::kNT ? c.K : c.N;
    ldb = b_cols + c.pad_b;
    ldc = c.N + c.pad_c;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    // Padding of A and B is NaN: reading it would poison a result.
    A.assign(static_cast<size_t>(std::max<int64_t>(1, c.M * lda)), nan);
    B.assign(static_cast<size_t>(std::max<int64_t>(1, b_rows * ldb)), nan);
    C0.assign(static_cast<size_t>(std::max<int64_t>(1, c.M * ldc)), -777.f);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> real(-1.f, 1.f);
    std::uniform_int_distribution<int> small(-2, 2);
    auto draw = [&] { return integer_data ? static_cast<float>(small(rng)) : real(rng); };
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t k = 0; k < c.K; ++k) A[m * lda + k] = draw();
    for (int64_t r = 0; r < b_rows; ++r)
      for (int64_t q = 0; q < b_cols; ++q) B[r * ldb + q] = draw();
    // Without accumulate the old C must be ignored: make it NaN.
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < c.N; ++n) C0[m * ldc + n] = c.accumulate ? draw() : nan;
  }

  float b_at(int64_t k, int64_t n) const { return op == Op::kNT ? B[n * ldb + k] : B[k * ldb + n]; }

  // Reference value and the magnitude sum(|a||b|) + |c0| that scales its rounding error.
  void reference(std::vector<double>& ref, std::vector<double>& scale) const {
    ref.assign(static_cast<size_t>(cs.M * cs.N), 0.0);
    scale.assign(ref.size(), 0.0);
    for (int64_t m = 0; m < cs.M; ++m)
      for (int64_t n = 0; n < cs.N; ++n) {
        double s = 0, mag = 0;
        for (int64_t k = 0; k < cs.K; ++k) {
          const double p = static_cast<double>(A[m * lda + k]) * b_at(k, n);
          s += p;
          mag += std::fabs(p);
        }
        if (cs.accumulate) {
          s += C0[m * ldc + n];
          mag += std::fabs(C0[m * ldc + n]);
        }
        ref[m * cs.N + n] = s;
        scale[m * cs.N + n] = mag;
      }
  }

  std::vector<float> run(const GemmKernels* kern, ThreadPool* pool) const {
    std::vector<float> C = C0;
    if (kern == nullptr) {
      if (op == Op::kNT)
        hs::gemm_nt(cs.M, cs.N, cs.K, A.data(), lda, B.data(), ldb, C.data(), ldc, cs.accumulate, pool);
      else
        hs::gemm_nn(cs.M, cs.N, cs.K, A.data(), lda, B.data(), ldb, C.data(), ldc, cs.accumulate, pool);
    } else if (op == Op::kNT) {
      hs::gemm_detail::gemm_nt_with(*kern, cs.M, cs.N, cs.K, A.data(), lda, B.data(), ldb, C.data(), ldc,
                                    cs.accumulate, pool);
    } else {
      hs::gemm_detail::gemm_nn_with(*kern, cs.M, cs.N, cs.K, A.data(), lda, B.data(), ldb, C.data(), ldc,
                                    cs.accumulate, pool);
    }
    return C;
  }
};

std::string describe(Op op, const Case& c, const char* kernel, const char* data) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s %s M=%lld N=%lld K=%lld pad=(%lld,%lld,%lld) acc=%d %s", kernel, op_name(op),
                static_cast<long long>(c.M), static_cast<long long>(c.N), static_cast<long long>(c.K),
                static_cast<long long>(c.pad_a), static_cast<long long>(c.pad_b), static_cast<long long>(c.pad_c),
                c.accumulate ? 1 : 0, data);
  return buf;
}

// Compares C against the reference; also requires the padding columns of C untouched.
void verify(const Problem& p, const std::vector<float>& C, const std::vector<double>& ref,
            const std::vector<double>& scale, bool exact, const std::string& what) {
  // Rounding of an fp32 sum grows with K; random-sign data stays far below this bound,
  // while one missing or doubled term (about 1/K of the magnitude) exceeds it for K <= 16384.
  const double rel = 2e-6 * std::sqrt(static_cast<double>(p.cs.K) + 1.0) + 1e-6;
  double worst = 0;
  int64_t bad = 0, pad_bad = 0;
  for (int64_t m = 0; m < p.cs.M; ++m) {
    for (int64_t n = 0; n < p.cs.N; ++n) {
      const double got = C[m * p.ldc + n], want = ref[m * p.cs.N + n];
      const double err = std::fabs(got - want);
      const double tol = exact ? 0.0 : rel * scale[m * p.cs.N + n] + 1e-30;
      if (!(err <= tol)) ++bad;
      if (scale[m * p.cs.N + n] > 0) worst = std::max(worst, err / scale[m * p.cs.N + n]);
    }
    for (int64_t n = p.cs.N; n < p.ldc; ++n)
      if (std::memcmp(&C[m * p.ldc + n], &p.C0[m * p.ldc + n], sizeof(float)) != 0) ++pad_bad;
  }
  if (bad) std::printf("  %s: %lld wrong elements, worst relative error %.3g\n", what.c_str(),
                       static_cast<long long>(bad), worst);
  check(bad == 0, what + " values");
  check(pad_bad == 0, what + " C padding untouched");
}

std::vector<Case> correctness_cases() {
  std::vector<Case> cases = {
      {1, 1, 1},       {7, 13, 5},       {65, 129, 257},  {1, 4096, 4096}, {1, 1000, 3001},
      {2, 777, 1025},  {3, 100, 64},     {5, 67, 300},    {8, 520, 129},   {9, 33, 17},
      {6, 16, 256},    {12, 32, 512},    {13, 17, 300},   {16, 64, 64},    {100, 7, 600},
      {31, 300, 1},    {150, 90, 513},   {145, 4100, 40}, {300, 500, 700}, {64, 1, 9},
      // Edges of the AVX-512 register tile (16 x 16), of its K blocks (256) and its B block width.
      {17, 33, 129},   {24, 64, 128},    {37, 95, 257},   {25, 4127, 20},
  };
  std::vector<Case> out;
  for (const Case& base : cases) {
    for (int variant = 0; variant < 3; ++variant) {
      Case c = base;
      if (variant >= 1) c.accumulate = true;
      if (variant == 2) c.pad_a = 3, c.pad_b = 5, c.pad_c = 7;
      out.push_back(c);
    }
  }
  return out;
}

void test_correctness(const std::vector<std::pair<const char*, const GemmKernels*>>& kernels) {
  ThreadPool pool2(2), pool3(3);
  uint32_t seed = 1;
  for (const Case& c : correctness_cases()) {
    for (Op op : {Op::kNT, Op::kNN}) {
      for (bool integer_data : {false, true}) {
        const Problem p(op, c, integer_data, seed++);
        std::vector<double> ref, scale;
        p.reference(ref, scale);
        const char* data = integer_data ? "int-data" : "real-data";
        for (const auto& [name, kern] : kernels) {
          const std::string what = describe(op, c, name, data);
          const std::vector<float> c1 = p.run(kern, nullptr);
          verify(p, c1, ref, scale, integer_data, what);
          // Thread count must not change a single bit.
          const std::vector<float> c2 = p.run(kern, &pool2);
          const std::vector<float> c3 = p.run(kern, &pool3);
          check(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)) == 0, what + " bit-identical 1 vs 2 threads");
          check(std::memcmp(c1.data(), c3.data(), c1.size() * sizeof(float)) == 0, what + " bit-identical 1 vs 3 threads");
        }
      }
    }
  }
}

// The direct small-M kernels, called on their own with more rows than the driver
// gives them and a column sub-range, on integer data (exact).
void test_small_kernels_direct(const std::vector<std::pair<const char*, const GemmKernels*>>& kernels) {
  for (Op op : {Op::kNT, Op::kNN}) {
    const Problem p(op, Case{37, 150, 70, 2, 3, 4, true}, true, 4242);
    std::vector<double> ref, scale;
    p.reference(ref, scale);
    const int64_t n0 = 5, n1 = 141;
    for (const auto& [name, kern] : kernels) {
      std::vector<float> C = p.C0;
      auto fn = op == Op::kNT ? kern->small_nt : kern->small_nn;
      fn(p.cs.M, n0, n1, p.cs.K, p.A.data(), p.lda, p.B.data(), p.ldb, C.data(), p.ldc, true);
      int64_t bad = 0;
      for (int64_t m = 0; m < p.cs.M; ++m)
        for (int64_t n = 0; n < p.ldc; ++n) {
          const float got = C[m * p.ldc + n];
          if (n >= n0 && n < n1) {
            if (got != static_cast<float>(ref[m * p.cs.N + n])) ++bad;
          } else if (std::memcmp(&got, &p.C0[m * p.ldc + n], sizeof(float)) != 0) {
            ++bad;
          }
        }
      check(bad == 0, std::string(name) + " small_" + op_name(op) + " kernel with M=37 on columns [5,141)");
    }
  }
}

// 16-bit weights: a bf16 or f16 B must give bit-for-bit what its fp32 widening gives
// (every kernel, every correctness shape, direct small-M paths included, 1 and 2
// threads); and Arith::BF16 must equal fp32 arithmetic on A rounded to bf16 first.
// Padding of the 16-bit B is NaN too, so reading it would show.
void test_half_weights(const std::vector<std::pair<const char*, const GemmKernels*>>& kernels) {
  ThreadPool pool2(2);
  uint32_t seed = 777;
  for (const Case& c : correctness_cases()) {
    for (Op op : {Op::kNT, Op::kNN}) {
      const Problem p(op, c, false, seed++);
      std::mt19937 rng(seed);
      for (hs::WType type : {hs::WType::BF16, hs::WType::F16}) {
        std::vector<uint16_t> b16(p.B.size());
        for (size_t i = 0; i < b16.size(); ++i) {
          if (std::isnan(p.B[i])) {
            b16[i] = type == hs::WType::BF16 ? 0x7FC0 : 0x7E00;
          } else if (type == hs::WType::BF16) {
            b16[i] = hs::f32_to_bf16(p.B[i]);
          } else {
            // Random finite f16: any sign and mantissa, exponents 0 (subnormal) to 17.
            const uint32_t r = rng();
            b16[i] = static_cast<uint16_t>((r & 0x83FFu) | (((r >> 16) % 18u) << 10));
          }
        }
        std::vector<float> wide(b16.size());
        for (size_t i = 0; i < b16.size(); ++i)
          wide[i] = type == hs::WType::BF16 ? hs::bf16_to_f32(b16[i]) : hs::f16_to_f32(b16[i]);
        std::vector<float> a_round(p.A);
        for (float& x : a_round)
          if (!std::isnan(x)) x = hs::round_bf16(x);
        for (const auto& [name, kern] : kernels) {
          const std::string what = describe(op, c, name, hs::wtype_name(type));
          auto run = [&](hs::MatRef B, const float* A, ThreadPool* pool, hs::Arith arith) {
            std::vector<float> C = p.C0;
            if (op == Op::kNT)
              hs::gemm_detail::gemm_nt_with(*kern, c.M, c.N, c.K, A, p.lda, B, p.ldb, C.data(), p.ldc, c.accumulate,
                                            pool, arith);
            else
              hs::gemm_detail::gemm_nn_with(*kern, c.M, c.N, c.K, A, p.lda, B, p.ldb, C.data(), p.ldc, c.accumulate,
                                            pool, arith);
            return C;
          };
          const hs::MatRef b_half(b16.data(), type), b_wide(wide.data());
          const auto want = run(b_wide, p.A.data(), nullptr, hs::Arith::F32);
          const auto got1 = run(b_half, p.A.data(), nullptr, hs::Arith::F32);
          const auto got2 = run(b_half, p.A.data(), &pool2, hs::Arith::F32);
          check(std::memcmp(want.data(), got1.data(), want.size() * sizeof(float)) == 0,
                what + " equals its fp32 widening");
          check(std::memcmp(want.data(), got2.data(), want.size() * sizeof(float)) == 0,
                what + " equals its fp32 widening (2 threads)");
          if (type == hs::WType::BF16) {
            const auto want_r = run(b_wide, a_round.data(), nullptr, hs::Arith::F32);
            const auto got_r = run(b_half, p.A.data(), &pool2, hs::Arith::BF16);
            check(std::memcmp(want_r.data(), got_r.data(), want_r.size() * sizeof(float)) == 0,
                  what + " Arith::BF16 equals fp32 on bf16-rounded A");
          }
        }
      }
    }
  }
}

// bf16/f16 conversions against values worked out by hand.
void test_half_conversions() {
  check(hs::bf16_to_f32(0x3F80) == 1.0f && hs::bf16_to_f32(0xC040) == -3.0f, "bf16 -> f32");
  check(hs::f16_to_f32(0x3C00) == 1.0f && hs::f16_to_f32(0xC200) == -3.0f, "f16 -> f32 normal");
  check(hs::f16_to_f32(0x0001) == std::ldexp(1.0f, -24) && hs::f16_to_f32(0x03FF) == std::ldexp(1023.0f, -24),
        "f16 -> f32 subnormal");
  check(std::isinf(hs::f16_to_f32(0x7C00)) && std::isnan(hs::f16_to_f32(0x7E00)), "f16 -> f32 inf/nan");
  // Nearest even: 1 + 2^-8 is a tie between 1 and 1 + 2^-7 -> 1; 1 + 3*2^-8 -> 1 + 2^-6.
  check(hs::f32_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3F80, "f32 -> bf16 tie to even (down)");
  check(hs::f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3F82, "f32 -> bf16 tie to even (up)");
  check(hs::f32_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)) == 0x3F81, "f32 -> bf16 above tie");
  check(std::isnan(hs::bf16_to_f32(hs::f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))), "f32 -> bf16 NaN");
  check(std::isinf(hs::bf16_to_f32(hs::f32_to_bf16(3.4e38f))), "f32 -> bf16 overflows to inf");
}

// The kernel the dispatch should pick on this CPU under HOPSCOTCH_CPU_KERNEL=`cap`.
std::string expected_kernel(const std::string& cap) {
  if (cap == "scalar") return "scalar";
  if (cap != "avx2" && hs::gemm_detail::cpu_has_avx512()) return "avx512";
  if (hs::gemm_detail::cpu_has_avx2_fma()) return "avx2-fma";
  return "scalar";
}

void test_public_entry_points() {
  // The public functions run the active kernel table.
  const GemmKernels& active = hs::gemm_detail::active_kernels();
  check(std::string(hs::gemm_kernel_name()) == active.name, "gemm_kernel_name matches the active kernels");
  const char* env = std::getenv("HOPSCOTCH_CPU_KERNEL");
  const std::string expected = expected_kernel(env ? env : "");
  check(hs::gemm_kernel_name() == expected,
        "gemm_kernel_name is " + expected + " (got " + hs::gemm_kernel_name() + ")");
  ThreadPool pool2(2);
  for (Op op : {Op::kNT, Op::kNN}) {
    const Problem p(op, Case{37, 91, 203, 1, 2, 3, true}, false, 99);
    const std::vector<float> pub = p.run(nullptr, &pool2);
    const std::vector<float> direct = p.run(&active, nullptr);
    check(std::memcmp(pub.data(), direct.data(), pub.size() * sizeof(float)) == 0,
          std::string("public gemm_") + op_name(op) + " equals the active kernel");
  }
}

void test_argument_errors() {
  float a[4] = {}, b[4] = {}, c[4] = {};
  auto expect_error = [](const std::string& what, auto&& fn) {
    bool thrown = false;
    try {
      fn();
    } catch (const hs::Error& e) {
      thrown = std::string(e.code()) == hs::code::kArgument;
    }
    check(thrown, what + " throws HOPSCOTCH_ERR_ARGUMENT");
  };
  expect_error("lda < K", [&] { hs::gemm_nt(2, 2, 2, a, 1, b, 2, c, 2, false, nullptr); });
  expect_error("ldb < N (nn)", [&] { hs::gemm_nn(2, 2, 2, a, 2, b, 1, c, 2, false, nullptr); });
  expect_error("ldc < N", [&] { hs::gemm_nn(2, 2, 2, a, 2, b, 2, c, 1, false, nullptr); });
  expect_error("negative M", [&] { hs::gemm_nt(-1, 2, 2, a, 2, b, 2, c, 2, false, nullptr); });
  // K = 0 clears C (or keeps it when accumulating).
  float cz[4] = {1, 2, 3, 4};
  hs::gemm_nt(2, 2, 0, a, 1, b, 1, cz, 2, true, nullptr);
  check(cz[0] == 1 && cz[3] == 4, "K=0 with accumulate keeps C");
  hs::gemm_nt(2, 2, 0, a, 1, b, 1, cz, 2, false, nullptr);
  check(cz[0] == 0 && cz[3] == 0, "K=0 without accumulate zeroes C");
}

// Runs this binary again with HOPSCOTCH_CPU_KERNEL=`cap` and checks the kernel it picks.
void test_env_override(const char* self, const std::string& cap) {
  const std::string cmd = "HOPSCOTCH_CPU_KERNEL=" + cap + " '" + self + "' --print-kernel";
  FILE* f = popen(cmd.c_str(), "r");
  char buf[64] = {};
  const bool read = f && std::fgets(buf, sizeof buf, f) != nullptr;
  if (f) pclose(f);
  std::string got = read ? std::string(buf) : std::string();
  while (!got.empty() && (got.back() == '\n' || got.back() == '\r')) got.pop_back();
  const std::string want = expected_kernel(cap);
  check(got == want, "HOPSCOTCH_CPU_KERNEL=" + cap + " selects " + want + " (got '" + got + "')");
}

// ---- timings ----

double cpu_mhz() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("cpu MHz", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return std::atof(line.c_str() + colon + 1);
    }
  return 0;
}

double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#ifdef HS_TEST_X86
// Measured AVX2 FMA throughput of this core: 12 independent 8-lane FMA chains
// (more than latency x issue width), timed in thread CPU time. This is the real
// per-core peak at the clock the core actually runs (turbo included).
__attribute__((target("avx2,fma"))) double measured_fma_peak_gflops() {
  __m256 a0 = _mm256_set1_ps(0.1f), a1 = _mm256_set1_ps(0.2f), a2 = _mm256_set1_ps(0.3f);
  __m256 a3 = _mm256_set1_ps(0.4f), a4 = _mm256_set1_ps(0.5f), a5 = _mm256_set1_ps(0.6f);
  __m256 a6 = _mm256_set1_ps(0.7f), a7 = _mm256_set1_ps(0.8f), a8 = _mm256_set1_ps(0.9f);
  __m256 a9 = _mm256_set1_ps(1.0f), a10 = _mm256_set1_ps(1.1f), a11 = _mm256_set1_ps(1.2f);
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
  const int64_t iters = 50'000'000;
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const double t0 = thread_seconds();
    for (int64_t i = 0; i < iters; ++i) {
      a0 = _mm256_fmadd_ps(a0, x, y), a1 = _mm256_fmadd_ps(a1, x, y), a2 = _mm256_fmadd_ps(a2, x, y);
      a3 = _mm256_fmadd_ps(a3, x, y), a4 = _mm256_fmadd_ps(a4, x, y), a5 = _mm256_fmadd_ps(a5, x, y);
      a6 = _mm256_fmadd_ps(a6, x, y), a7 = _mm256_fmadd_ps(a7, x, y), a8 = _mm256_fmadd_ps(a8, x, y);
      a9 = _mm256_fmadd_ps(a9, x, y), a10 = _mm256_fmadd_ps(a10, x, y), a11 = _mm256_fmadd_ps(a11, x, y);
      __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5));
      __asm__ volatile("" : "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
    }
    best = std::min(best, thread_seconds() - t0);
  }
  return 12.0 * 8 * 2 * iters / best * 1e-9;
}

// The same with 16-lane zmm FMAs. Cores that split a 512-bit FMA into two 256-bit
// halves (AMD Zen 4) reach the same figure as the loop above.
__attribute__((target("avx512f"))) double measured_fma512_peak_gflops() {
  __m512 a0 = _mm512_set1_ps(0.1f), a1 = _mm512_set1_ps(0.2f), a2 = _mm512_set1_ps(0.3f);
  __m512 a3 = _mm512_set1_ps(0.4f), a4 = _mm512_set1_ps(0.5f), a5 = _mm512_set1_ps(0.6f);
  __m512 a6 = _mm512_set1_ps(0.7f), a7 = _mm512_set1_ps(0.8f), a8 = _mm512_set1_ps(0.9f);
  __m512 a9 = _mm512_set1_ps(1.0f), a10 = _mm512_set1_ps(1.1f), a11 = _mm512_set1_ps(1.2f);
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
  const int64_t iters = 25'000'000;
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const double t0 = thread_seconds();
    for (int64_t i = 0; i < iters; ++i) {
      a0 = _mm512_fmadd_ps(a0, x, y), a1 = _mm512_fmadd_ps(a1, x, y), a2 = _mm512_fmadd_ps(a2, x, y);
      a3 = _mm512_fmadd_ps(a3, x, y), a4 = _mm512_fmadd_ps(a4, x, y), a5 = _mm512_fmadd_ps(a5, x, y);
      a6 = _mm512_fmadd_ps(a6, x, y), a7 = _mm512_fmadd_ps(a7, x, y), a8 = _mm512_fmadd_ps(a8, x, y);
      a9 = _mm512_fmadd_ps(a9, x, y), a10 = _mm512_fmadd_ps(a10, x, y), a11 = _mm512_fmadd_ps(a11, x, y);
      __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));
      __asm__ volatile("" : "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
    }
    best = std::min(best, thread_seconds() - t0);
  }
  return 12.0 * 16 * 2 * iters / best * 1e-9;
}
#else
double measured_fma_peak_gflops() { return 0; }
double measured_fma512_peak_gflops() { return 0; }
#endif

double process_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// GFLOP/s of one call (best of several). For pool runs *per_cpu_second receives the
// GFLOP per CPU-second summed over all threads (per-core efficiency, robust to load).
double time_gflops(Op op, int64_t M, int64_t N, int64_t K, const GemmKernels& kern, ThreadPool* pool,
                   double* per_cpu_second = nullptr) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> A(static_cast<size_t>(M * K)), B(static_cast<size_t>(N * K)), C(static_cast<size_t>(M * N));
  for (float& x : A) x = dist(rng);
  for (float& x : B) x = dist(rng);
  auto once = [&] {
    if (op == Op::kNT)
      hs::gemm_detail::gemm_nt_with(kern, M, N, K, A.data(), K, B.data(), K, C.data(), N, false, pool);
    else
      hs::gemm_detail::gemm_nn_with(kern, M, N, K, A.data(), K, B.data(), N, C.data(), N, false, pool);
  };
  once();  // warm-up: packing buffers, pages, caches
  // Single-threaded runs are timed in this thread's CPU time, so other processes on a
  // busy machine do not distort them; multi-threaded runs use wall time.
  auto now = [pool] {
    if (pool == nullptr) return thread_seconds();
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  };
  double best = 1e30, total = 0, best_cpu = 1e30;
  int reps = 0;
  while ((total < 0.4 || reps < 3) && reps < 200) {
    const double t0 = now(), c0 = process_seconds();
    once();
    const double s = now() - t0, cpu = process_seconds() - c0;
    best = std::min(best, s);
    best_cpu = std::min(best_cpu, cpu);
    total += s;
    ++reps;
  }
  if (per_cpu_second) *per_cpu_second = 2.0 * M * N * K / best_cpu * 1e-9;
  return 2.0 * M * N * K / best * 1e-9;
}

struct Shape {
  int64_t M, N, K;
};

int bench(const std::vector<Shape>& custom) {
  const double mhz = cpu_mhz();
  const bool avx2 = hs::gemm_detail::cpu_has_avx2_fma();
  const bool avx512 = hs::gemm_detail::cpu_has_avx512();
  const double peak256 = avx2 ? measured_fma_peak_gflops() : 0.0;
  const double peak512 = avx512 ? measured_fma512_peak_gflops() : 0.0;
  std::printf("active kernel: %s; /proc/cpuinfo clock %.0f MHz -> nominal FMA peak %.1f GFLOP/s per core "
              "with 256-bit FMAs (32 flop/cycle), %.1f with 512-bit (64 flop/cycle)\n",
              hs::gemm_kernel_name(), mhz, mhz * 1e-3 * 32.0, mhz * 1e-3 * 64.0);
  std::printf("measured FMA loops: 256-bit %.1f GFLOP/s (= %.0f MHz x 32), 512-bit %.1f GFLOP/s (= %.1f flop/cycle "
              "at that clock)\n",
              peak256, peak256 / 32.0 * 1e3, peak512, peak256 > 0 ? peak512 / (peak256 / 32.0) : 0.0);
  const double peak_core = std::max(peak256, peak512) > 0 ? std::max(peak256, peak512) : mhz * 1e-3 * 32.0;
  std::printf("GFLOP/s; 1-thread figures use thread CPU time, %%pk is of the faster measured FMA loop (%.1f);\n"
              "'2 threads' is the active kernel in wall time, '2t per-cpu' GFLOP per CPU-second of both threads\n",
              peak_core);
  std::vector<const GemmKernels*> kernels;
  if (avx512) kernels.push_back(&hs::gemm_detail::avx512_kernels());
  if (avx2) kernels.push_back(&hs::gemm_detail::avx2_kernels());
  kernels.push_back(&hs::gemm_detail::scalar_kernels());
  const GemmKernels& active = hs::gemm_detail::active_kernels();
  ThreadPool pool2(2);
  std::vector<Shape> shapes = {{512, 2048, 2048}, {4096, 512, 512}, {64, 4096, 4096}, {8, 4096, 4096},
                               {1, 4096, 4096},   {1, 14336, 4096}, {1, 4096, 14336}};
  if (!custom.empty()) shapes = custom;
  std::printf("%-3s %17s", "op", "MxNxK");
  for (const GemmKernels* k : kernels) std::printf(" %10s %5s", k->name, "%pk");
  std::printf(" %10s %5s %10s\n", "2 threads", "%pk", "2t per-cpu");
  for (Op op : {Op::kNT, Op::kNN}) {
    for (const Shape& s : shapes) {
      char shape[48];
      std::snprintf(shape, sizeof shape, "%lldx%lldx%lld", static_cast<long long>(s.M),
                    static_cast<long long>(s.N), static_cast<long long>(s.K));
      std::printf("%-3s %17s", op_name(op), shape);
      for (const GemmKernels* k : kernels) {
        const double g = time_gflops(op, s.M, s.N, s.K, *k, nullptr);
        std::printf(" %10.1f %4.1f%%", g, 100.0 * g / peak_core);
        std::fflush(stdout);
      }
      double g2cpu = 0;
      const double g2 = time_gflops(op, s.M, s.N, s.K, active, &pool2, &g2cpu);
      std::printf(" %10.1f %4.1f%% %10.1f\n", g2, 100.0 * g2 / (2 * peak_core), g2cpu);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--print-kernel") == 0) {
    std::printf("%s\n", hs::gemm_kernel_name());
    return 0;
  }
  if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) {
    // Optional: --bench M N K [M N K ...] times just those shapes.
    std::vector<Shape> custom;
    for (int i = 2; i + 2 < argc; i += 3)
      custom.push_back({std::atoll(argv[i]), std::atoll(argv[i + 1]), std::atoll(argv[i + 2])});
    return bench(custom);
  }

  std::vector<std::pair<const char*, const GemmKernels*>> kernels = {{"scalar", &hs::gemm_detail::scalar_kernels()}};
  if (hs::gemm_detail::cpu_has_avx2_fma()) kernels.push_back({"avx2-fma", &hs::gemm_detail::avx2_kernels()});
  else std::printf("note: CPU lacks AVX2/FMA, not testing the AVX2 kernel\n");
  if (hs::gemm_detail::cpu_has_avx512()) kernels.push_back({"avx512", &hs::gemm_detail::avx512_kernels()});
  else std::printf("note: CPU (or OS) lacks AVX-512, not testing the AVX-512 kernel\n");

  test_correctness(kernels);
  test_small_kernels_direct(kernels);
  test_half_conversions();
  test_half_weights(kernels);
  test_public_entry_points();
  test_argument_errors();
  test_env_override(argv[0], "scalar");
  test_env_override(argv[0], "avx2");

  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
