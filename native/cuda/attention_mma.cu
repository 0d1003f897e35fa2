// Tensor-core causal GQA attention over packed varlen sequences, forward and backward,
// in the manner of flash-attention 2: bf16 mma.sync.m16n8k16 with fp32 accumulation,
// operands fetched from shared memory with ldmatrix, head dims 64 and 128.
//
// Forward (one block per (64-query tile, query head), 4 warps x 16 query rows): the
// warp keeps its Q fragments in registers, streams 64-key tiles of K and V through
// shared memory, computes S = Q K^T on tensor cores, applies the causal/varlen mask,
// runs the online softmax in fp32 (log2 domain, per-row max and partial sums held by
// the 4 lanes of each row group), and multiplies bf16(P) by V reusing S's accumulator
// registers as the A operand. Key tiles beyond the last visible key of the block are
// never visited (causal tile skipping). Writes O (bf16) and the logsumexp per row;
// the (Lq x Lk) S and P are never materialised.
// Backward, no atomics, every output written by one block in a fixed order:
//   dK/dV: one block per (64-key tile, kv head), 4 warps x 16 keys; loops over the
//   query heads of the group and the query tiles that see the keys; recomputes
//   P^T = exp(K Q^T - lse) and dP^T = V dO^T, dS^T = P^T (dP^T - delta), and
//   accumulates dV += P^T dO, dK += dS^T Q in registers.
//   dQ: one block per (64-query tile, head); recomputes P and dP over the visible key
//   tiles and accumulates dQ += dS K.
// delta = rowsum(dO * O) comes from attention.cu's delta kernel.
//
// Precision: bf16 operands (Q, K, V, dO as stored; P and dS rounded to bf16 for the
// second product), fp32 accumulation and softmax. CPU twin: twins.h attention_*_ref
// with AttnRounding{p_bf16, ds_bf16} = true. Fragment and shared-memory index math:
// attention_mma_layout.h (checked on the CPU by native/tools/cuda_twins_test.cpp).
#include "attention.cuh"
#include "attention_mma_layout.h"
#include "kernel_common.cuh"

namespace hs::cuda {

namespace {

using namespace hs::cuda::mma;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
#else
  __trap();
#endif
}

__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const bf16* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
#else
  __trap();
#endif
}

// c += a * b (16x8x16, bf16 in, fp32 accumulate)
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  __trap();
#endif
}

// Two floats -> one register of two bf16 (lo in the low half: the lower column index).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// A fragment (16 rows x 16 k) from two n8 accumulators covering k 0..7 and 8..15.
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const float(&src)[4] = acc_block(r) == 0 ? lo : hi;
    a[r] = pack_bf16(src[acc_elem(r, 0)], src[acc_elem(r, 1)]);
  }
}

// Rows [row0, row0 + rows) of one head (columns col0 .. col0 + D) of a bf16 matrix with
// `stride` elements per row -> swizzled shared tile [rows][D]; rows >= n are zero.
template <int D>
__device__ __forceinline__ void load_tile(bf16* dst, const bf16* __restrict__ src, int64_t base_row, int row0, int n,
                                          int64_t stride, int64_t col0, int rows) {
  constexpr int CH = D / 8;
  for (int idx = threadIdx.x; idx < rows * CH; idx += kThreads) {
    const int r = idx / CH, c = idx % CH;
    uint4 val = make_uint4(0u, 0u, 0u, 0u);
    if (row0 + r < n) val = *reinterpret_cast<const uint4*>(src + (base_row + row0 + r) * stride + col0 + c * 8);
    *reinterpret_cast<uint4*>(dst + swz(r, c * 8, D)) = val;
  }
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

}  // namespace

template <int D>
__global__ void __launch_bounds__(kThreads) attention_mma_fwd_kernel(AttentionFwdParams p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);  // [64][D]
  bf16* Ks = Qs + kRows * D;                      // [64][D]
  bf16* Vs = Ks + kKeys * D;                      // [64][D]

  const int seq = p.q_tiles64[2 * blockIdx.x], q0 = p.q_tiles64[2 * blockIdx.x + 1];
  const int h = blockIdx.y;
  const int qb = p.cu_q[seq], Lq = p.cu_q[seq + 1] - qb;
  const int kb = p.cu_k[seq], Lk = p.cu_k[seq + 1] - kb;
  const int off = Lk - Lq;
  const int kvh = h / (p.n_heads / p.n_kv_heads);
  const int64_t qstride = int64_t(p.n_heads) * D, kstride = int64_t(p.n_kv_heads) * D;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wrow = warp * 16;  // the warp's first row within the tile

  load_tile<D>(Qs, p.q, qb, q0, Lq, qstride, int64_t(h) * D, kRows);
  __syncthreads();
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) ldsm_x4(qf[ks], Qs + swz(wrow + ldsm_a_row(lane), ks * 16 + ldsm_a_col(lane), D));

  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const float sl2 = p.scale * kLog2e;

  const int last_row = min(Lq - 1, q0 + kRows - 1);
  const int kend = min(Lk, last_row + off + 1);
  for (int k0 = 0; k0 < kend; k0 += kKeys) {
    __syncthreads();  // the previous K/V tile is consumed
    load_tile<D>(Ks, p.k, kb, k0, Lk, kstride, int64_t(kvh) * D, kKeys);
    load_tile<D>(Vs, p.v, kb, k0, Lk, kstride, int64_t(kvh) * D, kKeys);
    __syncthreads();

    float s[kKeys / 8][4];
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
#pragma unroll
      for (int n2 = 0; n2 < kKeys / 16; ++n2) {
        uint32_t b[4];
        ldsm_x4(b, Ks + swz(n2 * 16 + ldsm_bn_row(lane), ks * 16 + ldsm_bn_col(lane), D));
        mma_bf16(s[2 * n2], qf[ks], b[0], b[1]);
        mma_bf16(s[2 * n2 + 1], qf[ks], b[2], b[3]);
      }
    }
    // Mask and scale (log2 domain), then the online softmax per row.
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int qi = q0 + wrow + c_row(lane, i), kj = k0 + n * 8 + c_col(lane, i);
        const bool ok = qi < Lq && kj < Lk && kj <= qi + off;
        s[n][i] = ok ? s[n][i] * sl2 : -INFINITY;
        mx[i >> 1] = fmaxf(mx[i >> 1], s[n][i]);
      }
    }
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = quad_max(mx[r]);
      alpha[r] = mx[r] == -INFINITY ? 1.f : exp2f(m[r] - mx[r]);
      m[r] = mx[r];
      l[r] *= alpha[r];
    }
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = i >> 1;
        const float e = m[r] == -INFINITY ? 0.f : exp2f(s[n][i] - m[r]);
        s[n][i] = e;
        l[r] += e;
      }
    }
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      o[n][0] *= alpha[0];
      o[n][1] *= alpha[0];
      o[n][2] *= alpha[1];
      o[n][3] *= alpha[1];
    }
    // O += bf16(P) V
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      uint32_t pa[4];
      acc_to_a(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int n2 = 0; n2 < D / 16; ++n2) {
        uint32_t b[4];
        ldsm_x4_t(b, Vs + swz(kk * 16 + ldsm_bt_row(lane), n2 * 16 + ldsm_bt_col(lane), D));
        mma_bf16(o[2 * n2], pa, b[0], b[1]);
        mma_bf16(o[2 * n2 + 1], pa, b[2], b[3]);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] = quad_sum(l[r]);
    const int qi = q0 + wrow + c_row(lane, 2 * r);
    if (qi >= Lq) continue;
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
    bf16* orow = p.o + int64_t(qb + qi) * qstride + int64_t(h) * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      const __nv_bfloat162 v = __floats2bfloat162_rn(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
      *reinterpret_cast<__nv_bfloat162*>(orow + n * 8 + c_col(lane, 0)) = v;
    }
    if ((lane & 3) == 0) p.lse[int64_t(qb + qi) * p.n_heads + h] = l[r] > 0.f ? (m[r] + log2f(l[r])) * kLn2 : 0.f;
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) attention_mma_bwd_dkdv_kernel(AttentionBwdParams p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Ks = reinterpret_cast<bf16*>(smem_raw);  // [64][D] keys of the block
  bf16* Vs = Ks + kRows * D;
  bf16* Qs = Vs + kRows * D;                      // [64][D] queries of the current tile
  bf16* dOs = Qs + kKeys * D;
  float* Ls = reinterpret_cast<float*>(dOs + kKeys * D);  // [64] lse * log2(e) of the tile's rows
  float* Dl = Ls + kKeys;                                  // [64] delta of the tile's rows

  const int seq = p.k_tiles64[2 * blockIdx.x], k0 = p.k_tiles64[2 * blockIdx.x + 1];
  const int kvh = blockIdx.y;
  const int qb = p.cu_q[seq], Lq = p.cu_q[seq + 1] - qb;
  const int kb = p.cu_k[seq], Lk = p.cu_k[seq + 1] - kb;
  const int off = Lk - Lq;
  const int group = p.n_heads / p.n_kv_heads;
  const int64_t qstride = int64_t(p.n_heads) * D, kstride = int64_t(p.n_kv_heads) * D;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wrow = warp * 16;  // the warp's first key within the tile
  const float sl2 = p.scale * kLog2e;

  load_tile<D>(Ks, p.k, kb, k0, Lk, kstride, int64_t(kvh) * D, kRows);
  load_tile<D>(Vs, p.v, kb, k0, Lk, kstride, int64_t(kvh) * D, kRows);

  float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n)
#pragma unroll
    for (int i = 0; i < 4; ++i) dk[n][i] = dv[n][i] = 0.f;

  const int q_first = (max(0, k0 - off) / kKeys) * kKeys;
  for (int g = 0; g < group; ++g) {
    const int h = kvh * group + g;
    for (int q0 = q_first; q0 < Lq; q0 += kKeys) {
      __syncthreads();
      load_tile<D>(Qs, p.q, qb, q0, Lq, qstride, int64_t(h) * D, kKeys);
      load_tile<D>(dOs, p.dout, qb, q0, Lq, qstride, int64_t(h) * D, kKeys);
      for (int i = threadIdx.x; i < kKeys; i += kThreads) {
        const int qi = q0 + i;
        Ls[i] = qi < Lq ? p.lse[int64_t(qb + qi) * p.n_heads + h] * kLog2e : 0.f;
        Dl[i] = qi < Lq ? p.delta[int64_t(qb + qi) * p.n_heads + h] : 0.f;
      }
      __syncthreads();
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int qh = half * 32;  // 32 queries at a time
        float s[4][4], dp[4][4];
#pragma unroll
        for (int n = 0; n < 4; ++n)
#pragma unroll
          for (int i = 0; i < 4; ++i) s[n][i] = dp[n][i] = 0.f;
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) {
          uint32_t ka[4], va[4];
          ldsm_x4(ka, Ks + swz(wrow + ldsm_a_row(lane), ks * 16 + ldsm_a_col(lane), D));
          ldsm_x4(va, Vs + swz(wrow + ldsm_a_row(lane), ks * 16 + ldsm_a_col(lane), D));
#pragma unroll
          for (int n2 = 0; n2 < 2; ++n2) {
            uint32_t b[4];
            ldsm_x4(b, Qs + swz(qh + n2 * 16 + ldsm_bn_row(lane), ks * 16 + ldsm_bn_col(lane), D));
            mma_bf16(s[2 * n2], ka, b[0], b[1]);
            mma_bf16(s[2 * n2 + 1], ka, b[2], b[3]);
            ldsm_x4(b, dOs + swz(qh + n2 * 16 + ldsm_bn_row(lane), ks * 16 + ldsm_bn_col(lane), D));
            mma_bf16(dp[2 * n2], va, b[0], b[1]);
            mma_bf16(dp[2 * n2 + 1], va, b[2], b[3]);
          }
        }
        // element (key row, query col): P^T and dS^T
#pragma unroll
        for (int n = 0; n < 4; ++n) {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int kj = k0 + wrow + c_row(lane, i), col = qh + n * 8 + c_col(lane, i), qi = q0 + col;
            const bool ok = qi < Lq && kj < Lk && kj <= qi + off;
            const float pv = ok ? exp2f(s[n][i] * sl2 - Ls[col]) : 0.f;
            s[n][i] = pv;
            dp[n][i] = pv * (dp[n][i] - Dl[col]);
          }
        }
#pragma unroll
        for (int kk = 0; kk < 2; ++kk) {
          uint32_t pa[4], da[4];
          acc_to_a(pa, s[2 * kk], s[2 * kk + 1]);
          acc_to_a(da, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
          for (int n2 = 0; n2 < D / 16; ++n2) {
            uint32_t b[4];
            ldsm_x4_t(b, dOs + swz(qh + kk * 16 + ldsm_bt_row(lane), n2 * 16 + ldsm_bt_col(lane), D));
            mma_bf16(dv[2 * n2], pa, b[0], b[1]);
            mma_bf16(dv[2 * n2 + 1], pa, b[2], b[3]);
            ldsm_x4_t(b, Qs + swz(qh + kk * 16 + ldsm_bt_row(lane), n2 * 16 + ldsm_bt_col(lane), D));
            mma_bf16(dk[2 * n2], da, b[0], b[1]);
            mma_bf16(dk[2 * n2 + 1], da, b[2], b[3]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int kj = k0 + wrow + c_row(lane, 2 * r);
    if (kj >= Lk) continue;
    float* dkrow = p.dk + int64_t(kb + kj) * kstride + int64_t(kvh) * D;
    float* dvrow = p.dv + int64_t(kb + kj) * kstride + int64_t(kvh) * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      const int c = n * 8 + c_col(lane, 0);
      *reinterpret_cast<float2*>(dkrow + c) = make_float2(p.scale * dk[n][2 * r], p.scale * dk[n][2 * r + 1]);
      *reinterpret_cast<float2*>(dvrow + c) = make_float2(dv[n][2 * r], dv[n][2 * r + 1]);
    }
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) attention_mma_bwd_dq_kernel(AttentionBwdParams p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);  // [64][D]
  bf16* dOs = Qs + kRows * D;
  bf16* Ks = dOs + kRows * D;
  bf16* Vs = Ks + kKeys * D;

  const int seq = p.q_tiles64[2 * blockIdx.x], q0 = p.q_tiles64[2 * blockIdx.x + 1];
  const int h = blockIdx.y;
  const int qb = p.cu_q[seq], Lq = p.cu_q[seq + 1] - qb;
  const int kb = p.cu_k[seq], Lk = p.cu_k[seq + 1] - kb;
  const int off = Lk - Lq;
  const int kvh = h / (p.n_heads / p.n_kv_heads);
  const int64_t qstride = int64_t(p.n_heads) * D, kstride = int64_t(p.n_kv_heads) * D;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wrow = warp * 16;
  const float sl2 = p.scale * kLog2e;

  load_tile<D>(Qs, p.q, qb, q0, Lq, qstride, int64_t(h) * D, kRows);
  load_tile<D>(dOs, p.dout, qb, q0, Lq, qstride, int64_t(h) * D, kRows);
  float lse2[2], dl[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int qi = q0 + wrow + c_row(lane, 2 * r);
    lse2[r] = qi < Lq ? p.lse[int64_t(qb + qi) * p.n_heads + h] * kLog2e : 0.f;
    dl[r] = qi < Lq ? p.delta[int64_t(qb + qi) * p.n_heads + h] : 0.f;
  }
  float dq[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;

  const int last_row = min(Lq - 1, q0 + kRows - 1);
  const int kend = min(Lk, last_row + off + 1);
  for (int k0 = 0; k0 < kend; k0 += kKeys) {
    __syncthreads();
    load_tile<D>(Ks, p.k, kb, k0, Lk, kstride, int64_t(kvh) * D, kKeys);
    load_tile<D>(Vs, p.v, kb, k0, Lk, kstride, int64_t(kvh) * D, kKeys);
    __syncthreads();
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int kh = half * 32;  // 32 keys at a time
      float s[4][4], dp[4][4];
#pragma unroll
      for (int n = 0; n < 4; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) s[n][i] = dp[n][i] = 0.f;
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        uint32_t qa[4], da[4];
        ldsm_x4(qa, Qs + swz(wrow + ldsm_a_row(lane), ks * 16 + ldsm_a_col(lane), D));
        ldsm_x4(da, dOs + swz(wrow + ldsm_a_row(lane), ks * 16 + ldsm_a_col(lane), D));
#pragma unroll
        for (int n2 = 0; n2 < 2; ++n2) {
          uint32_t b[4];
          ldsm_x4(b, Ks + swz(kh + n2 * 16 + ldsm_bn_row(lane), ks * 16 + ldsm_bn_col(lane), D));
          mma_bf16(s[2 * n2], qa, b[0], b[1]);
          mma_bf16(s[2 * n2 + 1], qa, b[2], b[3]);
          ldsm_x4(b, Vs + swz(kh + n2 * 16 + ldsm_bn_row(lane), ks * 16 + ldsm_bn_col(lane), D));
          mma_bf16(dp[2 * n2], da, b[0], b[1]);
          mma_bf16(dp[2 * n2 + 1], da, b[2], b[3]);
        }
      }
#pragma unroll
      for (int n = 0; n < 4; ++n) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int r = i >> 1;
          const int qi = q0 + wrow + c_row(lane, i), kj = k0 + kh + n * 8 + c_col(lane, i);
          const bool ok = qi < Lq && kj < Lk && kj <= qi + off;
          const float pv = ok ? exp2f(s[n][i] * sl2 - lse2[r]) : 0.f;
          dp[n][i] = pv * (dp[n][i] - dl[r]);
        }
      }
#pragma unroll
      for (int kk = 0; kk < 2; ++kk) {
        uint32_t a[4];
        acc_to_a(a, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
        for (int n2 = 0; n2 < D / 16; ++n2) {
          uint32_t b[4];
          ldsm_x4_t(b, Ks + swz(kh + kk * 16 + ldsm_bt_row(lane), n2 * 16 + ldsm_bt_col(lane), D));
          mma_bf16(dq[2 * n2], a, b[0], b[1]);
          mma_bf16(dq[2 * n2 + 1], a, b[2], b[3]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int qi = q0 + wrow + c_row(lane, 2 * r);
    if (qi >= Lq) continue;
    float* dqrow = p.dq + int64_t(qb + qi) * qstride + int64_t(h) * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
      *reinterpret_cast<float2*>(dqrow + n * 8 + c_col(lane, 0)) =
          make_float2(p.scale * dq[n][2 * r], p.scale * dq[n][2 * r + 1]);
  }
}

namespace {

template <typename Kernel>
void set_smem(Kernel kernel, size_t bytes, const char* name) {
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)), name);
}

template <int D>
void mma_fwd(const AttentionFwdParams& p, cudaStream_t stream) {
  const size_t smem = sizeof(bf16) * size_t(kRows + 2 * kKeys) * D;
  set_smem(attention_mma_fwd_kernel<D>, smem, "cudaFuncSetAttribute(attention_mma_fwd_kernel)");
  attention_mma_fwd_kernel<D><<<dim3(p.num_q_tiles64, p.n_heads), kThreads, smem, stream>>>(p);
  check_launch("attention_mma_fwd_kernel");
}

template <int D>
void mma_bwd(const AttentionBwdParams& p, cudaStream_t stream) {
  const size_t smem_kv = sizeof(bf16) * size_t(2 * kRows + 2 * kKeys) * D + sizeof(float) * 2 * kKeys;
  set_smem(attention_mma_bwd_dkdv_kernel<D>, smem_kv, "cudaFuncSetAttribute(attention_mma_bwd_dkdv_kernel)");
  attention_mma_bwd_dkdv_kernel<D><<<dim3(p.num_k_tiles64, p.n_kv_heads), kThreads, smem_kv, stream>>>(p);
  check_launch("attention_mma_bwd_dkdv_kernel");
  const size_t smem_q = sizeof(bf16) * size_t(2 * kRows + 2 * kKeys) * D;
  set_smem(attention_mma_bwd_dq_kernel<D>, smem_q, "cudaFuncSetAttribute(attention_mma_bwd_dq_kernel)");
  attention_mma_bwd_dq_kernel<D><<<dim3(p.num_q_tiles64, p.n_heads), kThreads, smem_q, stream>>>(p);
  check_launch("attention_mma_bwd_dq_kernel");
}

void check_mma_args(int head_dim, const void* q, const void* k, const void* v, const char* what) {
  if (head_dim != 64 && head_dim != 128)
    fail(code::kInternal, std::string(what) + ": head_dim " + std::to_string(head_dim) + " is not 64 or 128");
  for (const void* ptr : {q, k, v})
    if ((reinterpret_cast<uintptr_t>(ptr) & 15u) != 0)
      fail(code::kInternal, std::string(what) + ": q, k and v must be 16-byte aligned");
}

}  // namespace

void launch_attention_mma_fwd(const AttentionFwdParams& p, cudaStream_t stream) {
  check_mma_args(p.head_dim, p.q, p.k, p.v, "attention_mma_fwd");
  if (p.num_q_tiles64 <= 0) return;
  if (p.head_dim == 64)
    mma_fwd<64>(p, stream);
  else
    mma_fwd<128>(p, stream);
}

void launch_attention_mma_bwd(const AttentionBwdParams& p, cudaStream_t stream) {
  check_mma_args(p.head_dim, p.q, p.k, p.v, "attention_mma_bwd");
  if (p.num_q_tiles64 <= 0 || p.num_k_tiles64 <= 0) return;
  if (p.head_dim == 64)
    mma_bwd<64>(p, stream);
  else
    mma_bwd<128>(p, stream);
}

}  // namespace hs::cuda
