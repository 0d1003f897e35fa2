// GEMM for the CPU engine: cache-blocked, packed panels, AVX-512 / AVX2+FMA
// micro-kernels chosen at run time with a portable scalar fallback.
// Activations (A) are fp32; the weight operand (B) is fp32, bf16 or f16 as the
// checkpoint stores it, widened to fp32 where it is packed or streamed (exact), so
// a bf16/f16 weight gives bit-for-bit the result of an fp32 copy of it.
// Work is split over rows/columns of C only (never over K), and each C element
// is summed over K in the same order for every split, so results are
// bit-identical for any thread count.
#pragma once
#include <cstdint>

namespace hs {

class ThreadPool;

// Element type of a weight operand.
enum class WType : uint8_t { F32, BF16, F16 };
const char* wtype_name(WType t);
inline int64_t wtype_size(WType t) { return t == WType::F32 ? 4 : 2; }

// A row-major weight matrix as stored (fp32, or 16-bit bf16/f16), or null.
struct MatRef {
  const void* data = nullptr;
  WType type = WType::F32;
  MatRef() = default;
  MatRef(const float* p) : data(p), type(WType::F32) {}  // NOLINT: fp32 pointers convert implicitly
  MatRef(const uint16_t* p, WType t) : data(p), type(t) {}
  explicit operator bool() const { return data != nullptr; }
  bool operator==(const MatRef& o) const { return data == o.data && type == o.type; }
  bool operator!=(const MatRef& o) const { return !(*this == o); }
  // The element `i` places further on.
  MatRef at(int64_t i) const;
  // The fp32 data; only for type F32 (throws otherwise).
  const float* f32() const;
  // Element i, widened to fp32.
  float get(int64_t i) const;
  // Elements [i, i + n) widened to fp32.
  void widen(int64_t i, int64_t n, float* out) const;
};

// Arithmetic of a weight GEMM. F32: fp32 products, fp32 sums. BF16: A is rounded to
// bf16 (nearest even) before it is multiplied; with a bf16 B every product is then
// exact in fp32 and the sums stay fp32 (the numerics of a bf16 x bf16 dot product
// with fp32 accumulation). Sums run in the same fixed order either way.
enum class Arith : uint8_t { F32, BF16 };

// C[M,N] (ldc) (+)= A[M,K] (lda) * B^T where B is [N,K] (ldb): activations x weight^T.
void gemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, MatRef B, int64_t ldb, float* C,
             int64_t ldc, bool accumulate, ThreadPool* pool, Arith arith = Arith::F32);
// C[M,N] (ldc) (+)= A[M,K] (lda) * B where B is [K,N] (ldb): gradients x weight.
void gemm_nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, MatRef B, int64_t ldb, float* C,
             int64_t ldc, bool accumulate, ThreadPool* pool, Arith arith = Arith::F32);

// Which micro-kernel runs ("avx512", "avx2-fma" or "scalar"); HOPSCOTCH_CPU_KERNEL=avx2|scalar caps the choice.
const char* gemm_kernel_name();

}  // namespace hs
