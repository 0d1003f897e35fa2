// Flash-style causal GQA attention, forward and backward, fp32 accumulation.
//
// Tiles of 16 queries x 16 keys, 256 threads: in the score step thread (r, c) owns
// query row r and key column c of the tile; in the accumulation steps it owns row r
// and head-dim columns c, c+16, ... (registers, compile-time indexed).
// Forward: online softmax over key tiles; the (Lq x Lk) score and probability matrices
// are never materialised, only the output and the per-row logsumexp.
// Backward, without atomics: (1) delta = rowsum(dO * O); (2) one block per (key tile,
// kv head) accumulates dK and dV over every query head of its group and every query
// tile that sees it; (3) one block per (query tile, head) accumulates dQ over key tiles.
// Each output element is written by exactly one block, in a fixed order: deterministic.
//
// CPU reference (one sequence, one head h with kv head h / (nH / nKV), off = Lk - Lq):
//   s_ij = scale * q_i . k_j for j <= i + off;  p_ij = exp(s_ij - lse_i),
//   lse_i = log sum_j exp(s_ij);  o_i = sum_j p_ij v_j
//   dp_ij = dO_i . v_j;  ds_ij = p_ij (dp_ij - delta_i);  delta_i = dO_i . o_i
//   dq_i = scale * sum_j ds_ij k_j;  dk_j = scale * sum_i ds_ij q_i;  dv_j = sum_i p_ij dO_i
#include "attention.cuh"
#include "kernel_common.cuh"

#include <cstdlib>
#include <string>

namespace hs::cuda {

namespace {
constexpr int B = kAttnTile;
constexpr int kThreads = B * B;  // 256
constexpr int kPs = B + 1;       // padded stride of the 16x16 smem tiles
}  // namespace

AttentionTiles make_attention_tiles(const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k) {
  AttentionTiles t;
  const size_t S = cu_q.size() - 1;
  auto add = [](std::vector<int32_t>& v, size_t s, int32_t n, int32_t step) {
    for (int32_t r = 0; r < n; r += step) {
      v.push_back(static_cast<int32_t>(s));
      v.push_back(r);
    }
  };
  for (size_t s = 0; s < S; ++s) {
    add(t.q_tiles, s, cu_q[s + 1] - cu_q[s], B);
    add(t.k_tiles, s, cu_k[s + 1] - cu_k[s], B);
    add(t.q_tiles64, s, cu_q[s + 1] - cu_q[s], kAttnMmaTile);
    add(t.k_tiles64, s, cu_k[s + 1] - cu_k[s], kAttnMmaTile);
  }
  return t;
}

const char* attention_impl_name(AttentionImpl impl) {
  return impl == AttentionImpl::Mma ? "mma" : impl == AttentionImpl::Fma ? "fma" : "auto";
}

AttentionImpl attention_impl(int head_dim) {
  static const int forced = [] {
    const char* env = std::getenv("HOPSCOTCH_ATTENTION");
    if (env == nullptr) return 0;
    const std::string v = env;
    return v == "fma" ? 1 : v == "mma" ? 2 : 0;
  }();
  static const int major = [] {
    int dev = 0, m = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&m, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return m;
  }();
  const bool mma_ok = (head_dim == 64 || head_dim == 128) && major >= 8;
  if (forced == 1 || !mma_ok) return AttentionImpl::Fma;
  return AttentionImpl::Mma;
}

bool attention_mma_supported(int head_dim) {
  if (head_dim != 64 && head_dim != 128) return false;
  int dev = 0, m = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&m, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return m >= 8;
}

// Loads rows [row0, row0 + 16) of one head (columns col0 .. col0 + D) of a bf16 matrix
// with `stride` elements per row into smem[16][D+1] as fp32; rows >= n are zero.
__device__ __forceinline__ void load_tile(float* dst, const bf16* __restrict__ src, int64_t base_row, int row0, int n,
                                          int64_t stride, int64_t col0, int D) {
  const int ld = D + 1;
  for (int i = threadIdx.x; i < B * D; i += kThreads) {
    const int rr = i / D, d = i - rr * D;
    const int row = row0 + rr;
    dst[rr * ld + d] = row < n ? to_f32(src[(base_row + row) * stride + col0 + d]) : 0.f;
  }
}

__device__ __forceinline__ float dot_rows(const float* a, const float* b, int D) {
  float s = 0.f;
  for (int d = 0; d < D; ++d) s += a[d] * b[d];
  return s;
}

template <int MAXD>
__global__ void __launch_bounds__(kThreads) attention_fwd_kernel(AttentionFwdParams p) {
  extern __shared__ float smem[];
  const int D = p.head_dim, ld = D + 1;
  float* Qs = smem;
  float* Ks = Qs + B * ld;
  float* Vs = Ks + B * ld;
  float* Ps = Vs + B * ld;  // [16][17]

  const int seq = p.q_tiles[2 * blockIdx.x], q0 = p.q_tiles[2 * blockIdx.x + 1];
  const int h = blockIdx.y;
  const int qb = p.cu_q[seq], Lq = p.cu_q[seq + 1] - qb;
  const int kb = p.cu_k[seq], Lk = p.cu_k[seq + 1] - kb;
  const int off = Lk - Lq;
  const int kvh = h / (p.n_heads / p.n_kv_heads);
  const int64_t qstride = int64_t(p.n_heads) * D, kstride = int64_t(p.n_kv_heads) * D;
  const int r = threadIdx.x / B, c = threadIdx.x % B;
  const int qi = q0 + r;
  const bool row_valid = qi < Lq;

  load_tile(Qs, p.q, qb, q0, Lq, qstride, int64_t(h) * D, D);

  constexpr int NA = MAXD / B;
  float acc[NA];
#pragma unroll
  for (int k = 0; k < NA; ++k) acc[k] = 0.f;
  float m = -INFINITY, l = 0.f;

  const int last_row = min(Lq - 1, q0 + B - 1);
  const int kend = min(Lk, last_row + off + 1);
  for (int k0 = 0; k0 < kend; k0 += B) {
    __syncthreads();  // previous tile fully consumed (and Q loaded on the first pass)
    load_tile(Ks, p.k, kb, k0, Lk, kstride, int64_t(kvh) * D, D);
    load_tile(Vs, p.v, kb, k0, Lk, kstride, int64_t(kvh) * D, D);
    __syncthreads();
    const int kj = k0 + c;
    float s = -INFINITY;
    if (row_valid && kj < Lk && kj <= qi + off) s = p.scale * dot_rows(Qs + r * ld, Ks + c * ld, D);
    float tmax = s;
#pragma unroll
    for (int o = B / 2; o > 0; o >>= 1) tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, o));
    const float m_new = fmaxf(m, tmax);
    const float pe = s == -INFINITY ? 0.f : expf(s - m_new);
    const float alpha = m == -INFINITY ? 0.f : expf(m - m_new);
    float psum = pe;
#pragma unroll
    for (int o = B / 2; o > 0; o >>= 1) psum += __shfl_xor_sync(0xffffffffu, psum, o);
    l = l * alpha + psum;
    m = m_new;
    Ps[r * kPs + c] = pe;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < NA; ++k) {
      const int d = c + B * k;
      if (d < D) {
        float a = acc[k] * alpha;
        for (int j = 0; j < B; ++j) a += Ps[r * kPs + j] * Vs[j * ld + d];
        acc[k] = a;
      }
    }
  }
  if (!row_valid) return;
  const float inv = l > 0.f ? 1.f / l : 0.f;
  bf16* orow = p.o + int64_t(qb + qi) * qstride + int64_t(h) * D;
#pragma unroll
  for (int k = 0; k < NA; ++k) {
    const int d = c + B * k;
    if (d < D) orow[d] = to_bf16(acc[k] * inv);
  }
  if (c == 0) p.lse[int64_t(qb + qi) * p.n_heads + h] = m + logf(l);
}

// delta[t, h] = sum_d dout[t, h, d] * o[t, h, d]; one warp per (t, h).
__global__ void attention_bwd_delta_kernel(const bf16* __restrict__ o, const bf16* __restrict__ dout,
                                           float* __restrict__ delta, int64_t rows, int D) {
  const int64_t w = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (w >= rows) return;
  float s = 0.f;
  for (int d = lane; d < D; d += 32) s += to_f32(o[w * D + d]) * to_f32(dout[w * D + d]);
  s = warp_sum(s);
  if (lane == 0) delta[w] = s;
}

template <int MAXD>
__global__ void __launch_bounds__(kThreads) attention_bwd_dkdv_kernel(AttentionBwdParams p) {
  extern __shared__ float smem[];
  const int D = p.head_dim, ld = D + 1;
  float* Ks = smem;
  float* Vs = Ks + B * ld;
  float* Qs = Vs + B * ld;
  float* dOs = Qs + B * ld;
  float* Ps = dOs + B * ld;    // [16][17]
  float* dSs = Ps + B * kPs;   // [16][17]
  float* Ls = dSs + B * kPs;   // [16] lse of the query rows
  float* Dl = Ls + B;          // [16] delta of the query rows

  const int seq = p.k_tiles[2 * blockIdx.x], k0 = p.k_tiles[2 * blockIdx.x + 1];
  const int kvh = blockIdx.y;
  const int qb = p.cu_q[seq], Lq = p.cu_q[seq + 1] - qb;
  const int kb = p.cu_k[seq], Lk = p.cu_k[seq + 1] - kb;
  const int off = Lk - Lq;
  const int group = p.n_heads / p.n_kv_heads;
  const int64_t qstride = int64_t(p.n_heads) * D, kstride = int64_t(p.n_kv_heads) * D;
  const int r = threadIdx.x / B, c = threadIdx.x % B;

  load_tile(Ks, p.k, kb, k0, Lk, kstride, int64_t(kvh) * D, D);
  load_tile(Vs, p.v, kb, k0, Lk, kstride, int64_t(kvh) * D, D);

  constexpr int NA = MAXD / B;
  float dk[NA], dv[NA];
#pragma unroll
  for (int k = 0; k < NA; ++k) dk[k] = dv[k] = 0.f;

  // The first query that sees key k0 is k0 - off.
  const int q_first = (max(0, k0 - off) / B) * B;
  for (int g = 0; g < group; ++g) {
    const int h = kvh * group + g;
    for (int q0 = q_first; q0 < Lq; q0 += B) {
      __syncthreads();
      load_tile(Qs, p.q, qb, q0, Lq, qstride, int64_t(h) * D, D);
      load_tile(dOs, p.dout, qb, q0, Lq, qstride, int64_t(h) * D, D);
      if (threadIdx.x < B) {
        const int qi = q0 + threadIdx.x;
        Ls[threadIdx.x] = qi < Lq ? p.lse[int64_t(qb + qi) * p.n_heads + h] : 0.f;
        Dl[threadIdx.x] = qi < Lq ? p.delta[int64_t(qb + qi) * p.n_heads + h] : 0.f;
      }
      __syncthreads();
      {  // thread (r = query, c = key)
        const int qi = q0 + r, kj = k0 + c;
        float pv = 0.f, ds = 0.f;
        if (qi < Lq && kj < Lk && kj <= qi + off) {
          pv = expf(p.scale * dot_rows(Qs + r * ld, Ks + c * ld, D) - Ls[r]);
          const float dp = dot_rows(dOs + r * ld, Vs + c * ld, D);
          ds = pv * (dp - Dl[r]);
        }
        Ps[r * kPs + c] = pv;
        dSs[r * kPs + c] = ds;
      }
      __syncthreads();
      // thread (r = key row of the tile, c = head-dim lane)
#pragma unroll
      for (int k = 0; k < NA; ++k) {
        const int d = c + B * k;
        if (d < D) {
          float a = dv[k], b = dk[k];
          for (int i = 0; i < B; ++i) {
            a += Ps[i * kPs + r] * dOs[i * ld + d];
            b += dSs[i * kPs + r] * Qs[i * ld + d];
          }
          dv[k] = a;
          dk[k] = b;
        }
      }
    }
  }
  const int kj = k0 + r;
  if (kj >= Lk) return;
  float* dkrow = p.dk + int64_t(kb + kj) * kstride + int64_t(kvh) * D;
  float* dvrow = p.dv + int64_t(kb + kj) * kstride + int64_t(kvh) * D;
#pragma unroll
  for (int k = 0; k < NA; ++k) {
    const int d = c + B * k;
    if (d < D) {
      dkrow[d] = p.scale * dk[k];
      dvrow[d] = dv[k];
    }
  }
}

template <int MAXD>
__global__ void __launch_bounds__(kThreads) attention_bwd_dq_kernel(AttentionBwdParams p) {
  extern __shared__ float smem[];
  const int D = p.head_dim, ld = D + 1;
  float* Qs = smem;
  float* dOs = Qs + B * ld;
  float* Ks = dOs + B * ld;
  float* Vs = Ks + B * ld;
  float* dSs = Vs + B * ld;  // [16][17]

  const int seq = p.q_tiles[2 * blockIdx.x], q0 = p.q_tiles[2 * blockIdx.x + 1];
  const int h = blockIdx.y;
  const int qb = p.cu_q[seq], Lq = p.cu_q[seq + 1] - qb;
  const int kb = p.cu_k[seq], Lk = p.cu_k[seq + 1] - kb;
  const int off = Lk - Lq;
  const int kvh = h / (p.n_heads / p.n_kv_heads);
  const int64_t qstride = int64_t(p.n_heads) * D, kstride = int64_t(p.n_kv_heads) * D;
  const int r = threadIdx.x / B, c = threadIdx.x % B;
  const int qi = q0 + r;
  const bool row_valid = qi < Lq;

  load_tile(Qs, p.q, qb, q0, Lq, qstride, int64_t(h) * D, D);
  load_tile(dOs, p.dout, qb, q0, Lq, qstride, int64_t(h) * D, D);
  const float lse = row_valid ? p.lse[int64_t(qb + qi) * p.n_heads + h] : 0.f;
  const float delta = row_valid ? p.delta[int64_t(qb + qi) * p.n_heads + h] : 0.f;

  constexpr int NA = MAXD / B;
  float dq[NA];
#pragma unroll
  for (int k = 0; k < NA; ++k) dq[k] = 0.f;

  const int last_row = min(Lq - 1, q0 + B - 1);
  const int kend = min(Lk, last_row + off + 1);
  for (int k0 = 0; k0 < kend; k0 += B) {
    __syncthreads();
    load_tile(Ks, p.k, kb, k0, Lk, kstride, int64_t(kvh) * D, D);
    load_tile(Vs, p.v, kb, k0, Lk, kstride, int64_t(kvh) * D, D);
    __syncthreads();
    {
      const int kj = k0 + c;
      float ds = 0.f;
      if (row_valid && kj < Lk && kj <= qi + off) {
        const float pv = expf(p.scale * dot_rows(Qs + r * ld, Ks + c * ld, D) - lse);
        const float dp = dot_rows(dOs + r * ld, Vs + c * ld, D);
        ds = pv * (dp - delta);
      }
      dSs[r * kPs + c] = ds;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < NA; ++k) {
      const int d = c + B * k;
      if (d < D) {
        float a = dq[k];
        for (int j = 0; j < B; ++j) a += dSs[r * kPs + j] * Ks[j * ld + d];
        dq[k] = a;
      }
    }
  }
  if (!row_valid) return;
  float* dqrow = p.dq + int64_t(qb + qi) * qstride + int64_t(h) * D;
#pragma unroll
  for (int k = 0; k < NA; ++k) {
    const int d = c + B * k;
    if (d < D) dqrow[d] = p.scale * dq[k];
  }
}

namespace {

void check_shapes(int n_heads, int n_kv_heads, int D) {
  if (D <= 0 || D > kAttnMaxHeadDim)
    fail(code::kConfigUnsupported, "head_dim " + std::to_string(D) + " exceeds the CUDA attention limit of " +
                                       std::to_string(kAttnMaxHeadDim));
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0)
    fail(code::kConfigInvalid, "num_attention_heads " + std::to_string(n_heads) +
                                   " is not a multiple of num_key_value_heads " + std::to_string(n_kv_heads));
}

template <typename Kernel>
void set_smem(Kernel kernel, size_t bytes, const char* name) {
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)), name);
}

template <int MAXD>
void fwd(const AttentionFwdParams& p, cudaStream_t stream) {
  const size_t smem = sizeof(float) * (3 * B * (p.head_dim + 1) + B * kPs);
  set_smem(attention_fwd_kernel<MAXD>, smem, "cudaFuncSetAttribute(attention_fwd_kernel)");
  attention_fwd_kernel<MAXD><<<dim3(p.num_q_tiles, p.n_heads), kThreads, smem, stream>>>(p);
  check_launch("attention_fwd_kernel");
}

template <int MAXD>
void bwd(const AttentionBwdParams& p, cudaStream_t stream) {
  const size_t smem_kv = sizeof(float) * (4 * B * (p.head_dim + 1) + 2 * B * kPs + 2 * B);
  set_smem(attention_bwd_dkdv_kernel<MAXD>, smem_kv, "cudaFuncSetAttribute(attention_bwd_dkdv_kernel)");
  attention_bwd_dkdv_kernel<MAXD><<<dim3(p.num_k_tiles, p.n_kv_heads), kThreads, smem_kv, stream>>>(p);
  check_launch("attention_bwd_dkdv_kernel");
  const size_t smem_q = sizeof(float) * (4 * B * (p.head_dim + 1) + B * kPs);
  set_smem(attention_bwd_dq_kernel<MAXD>, smem_q, "cudaFuncSetAttribute(attention_bwd_dq_kernel)");
  attention_bwd_dq_kernel<MAXD><<<dim3(p.num_q_tiles, p.n_heads), kThreads, smem_q, stream>>>(p);
  check_launch("attention_bwd_dq_kernel");
}

}  // namespace

namespace {
bool use_mma(AttentionImpl requested, int head_dim, const int32_t* tiles64) {
  if (requested == AttentionImpl::Fma || tiles64 == nullptr) return false;
  if (requested == AttentionImpl::Mma) return attention_mma_supported(head_dim);
  return attention_impl(head_dim) == AttentionImpl::Mma;
}
}  // namespace

void launch_attention_fwd(const AttentionFwdParams& p, cudaStream_t stream) {
  check_shapes(p.n_heads, p.n_kv_heads, p.head_dim);
  if (p.num_q_tiles <= 0) return;
  if (use_mma(p.impl, p.head_dim, p.q_tiles64)) {
    launch_attention_mma_fwd(p, stream);
    return;
  }
  if (p.head_dim <= 64)
    fwd<64>(p, stream);
  else if (p.head_dim <= 128)
    fwd<128>(p, stream);
  else
    fwd<256>(p, stream);
}

void launch_attention_bwd(const AttentionBwdParams& p, cudaStream_t stream) {
  check_shapes(p.n_heads, p.n_kv_heads, p.head_dim);
  if (p.num_q_tiles <= 0) return;
  const int64_t rows = p.Tq * p.n_heads;
  attention_bwd_delta_kernel<<<static_cast<unsigned>(ceil_div(rows * 32, 256)), 256, 0, stream>>>(
      p.o, p.dout, p.delta, rows, p.head_dim);
  check_launch("attention_bwd_delta_kernel");
  if (use_mma(p.impl, p.head_dim, p.q_tiles64) && p.k_tiles64 != nullptr) {
    launch_attention_mma_bwd(p, stream);
    return;
  }
  if (p.head_dim <= 64)
    bwd<64>(p, stream);
  else if (p.head_dim <= 128)
    bwd<128>(p, stream);
  else
    bwd<256>(p, stream);
}

}  // namespace hs::cuda
