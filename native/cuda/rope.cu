// Rotary embedding with the fused q/k/v bias add and Qwen3 qk-norm, forward and backward.
// One block per token, one warp per head; a lane owns rotation pairs (i, i + D/2).
// Fused: bias add + per-head RMSNorm + rotation + bf16 cast (forward); inverse rotation
// + per-head RMSNorm backward + bf16 cast (backward). The backward recomputes the norm
// statistics from the raw projections; no normalised copy of q or k is materialised.
//
// CPU reference (per token at position p, per q/k head x of length D, h = D/2):
//   x      = raw + bias;  if qk-norm: x = w * x / sqrt(sum(x^2)/D + eps)
//   a_i    = float(p) * inv_freq[i],  c = cos(a_i), s = sin(a_i)
//   out[i] = x[i] * c - x[i+h] * s,   out[i+h] = x[i+h] * c + x[i] * s
// Backward: g[i] = dy[i] * c + dy[i+h] * s,  g[i+h] = dy[i+h] * c - dy[i] * s, then the
// RMSNorm backward dx = r * w * g - x * r^3 / D * sum(w * g * x) (x before the norm).
#include "rope.cuh"
#include "kernel_common.cuh"

namespace hs::cuda {

namespace {
constexpr int kWarps = 4;
constexpr int kMaxPairs = kRopeMaxHeadDim / 2 / 32;  // rotation pairs per lane
}  // namespace

__global__ void rope_fwd_kernel(RopeFwdParams p) {
  const int64_t t = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int D = p.head_dim, half = D / 2;
  const int n_total = p.n_heads + 2 * p.n_kv_heads;
  const int64_t row = int64_t(n_total) * D;
  const float position = float(p.pos[t]);
  for (int hh = warp; hh < n_total; hh += kWarps) {
    const float* src = p.qkv + t * row + int64_t(hh) * D;
    const float* b = p.bias != nullptr ? p.bias + int64_t(hh) * D : nullptr;
    if (hh >= p.n_heads + p.n_kv_heads) {  // v head: bias + cast
      bf16* dst = p.v + t * int64_t(p.n_kv_heads) * D + int64_t(hh - p.n_heads - p.n_kv_heads) * D;
      for (int d = lane; d < D; d += 32) dst[d] = to_bf16(src[d] + (b ? b[d] : 0.f));
      continue;
    }
    const bool is_q = hh < p.n_heads;
    const float* nw = is_q ? p.q_norm : p.k_norm;
    float x0[kMaxPairs], x1[kMaxPairs];
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < kMaxPairs; ++k) {
      const int i = lane + 32 * k;
      x0[k] = x1[k] = 0.f;
      if (i < half) {
        x0[k] = src[i] + (b ? b[i] : 0.f);
        x1[k] = src[i + half] + (b ? b[i + half] : 0.f);
        ss += x0[k] * x0[k] + x1[k] * x1[k];
      }
    }
    if (nw != nullptr) {
      ss = warp_sum(ss);
      const float r = rsqrtf(ss / float(D) + p.eps);
#pragma unroll
      for (int k = 0; k < kMaxPairs; ++k) {
        const int i = lane + 32 * k;
        if (i < half) {
          x0[k] = nw[i] * (x0[k] * r);
          x1[k] = nw[i + half] * (x1[k] * r);
        }
      }
    }
    bf16* dst = is_q ? p.q + t * int64_t(p.n_heads) * D + int64_t(hh) * D
                     : p.k + t * int64_t(p.n_kv_heads) * D + int64_t(hh - p.n_heads) * D;
#pragma unroll
    for (int k = 0; k < kMaxPairs; ++k) {
      const int i = lane + 32 * k;
      if (i < half) {
        float s, c;
        sincosf(position * p.inv_freq[i], &s, &c);
        dst[i] = to_bf16(x0[k] * c - x1[k] * s);
        dst[i + half] = to_bf16(x1[k] * c + x0[k] * s);
      }
    }
  }
}

__global__ void rope_bwd_kernel(RopeBwdParams p) {
  const int64_t t = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int D = p.head_dim, half = D / 2;
  const int n_total = p.n_heads + 2 * p.n_kv_heads;
  const int64_t row = int64_t(n_total) * D;
  const float position = float(p.pos[t]);
  for (int hh = warp; hh < n_total; hh += kWarps) {
    bf16* dst = p.dqkv + t * row + int64_t(hh) * D;
    if (hh >= p.n_heads + p.n_kv_heads) {  // v head: the bias add passes the gradient through
      const float* g = p.dv + t * int64_t(p.n_kv_heads) * D + int64_t(hh - p.n_heads - p.n_kv_heads) * D;
      for (int d = lane; d < D; d += 32) dst[d] = to_bf16(g[d]);
      continue;
    }
    const bool is_q = hh < p.n_heads;
    const float* dy = is_q ? p.dq + t * int64_t(p.n_heads) * D + int64_t(hh) * D
                           : p.dk + t * int64_t(p.n_kv_heads) * D + int64_t(hh - p.n_heads) * D;
    const float* nw = is_q ? p.q_norm : p.k_norm;
    float g0[kMaxPairs], g1[kMaxPairs];
#pragma unroll
    for (int k = 0; k < kMaxPairs; ++k) {
      const int i = lane + 32 * k;
      g0[k] = g1[k] = 0.f;
      if (i < half) {
        float s, c;
        sincosf(position * p.inv_freq[i], &s, &c);
        const float d0 = dy[i], d1 = dy[i + half];
        g0[k] = d0 * c + d1 * s;
        g1[k] = d1 * c - d0 * s;
      }
    }
    if (nw != nullptr) {
      const float* src = p.qkv + t * row + int64_t(hh) * D;
      const float* b = p.bias != nullptr ? p.bias + int64_t(hh) * D : nullptr;
      float x0[kMaxPairs], x1[kMaxPairs];
      float ss = 0.f, dot = 0.f;
#pragma unroll
      for (int k = 0; k < kMaxPairs; ++k) {
        const int i = lane + 32 * k;
        x0[k] = x1[k] = 0.f;
        if (i < half) {
          x0[k] = src[i] + (b ? b[i] : 0.f);
          x1[k] = src[i + half] + (b ? b[i + half] : 0.f);
          ss += x0[k] * x0[k] + x1[k] * x1[k];
          dot += nw[i] * g0[k] * x0[k] + nw[i + half] * g1[k] * x1[k];
        }
      }
      ss = warp_sum(ss);
      dot = warp_sum(dot);
      const float r = rsqrtf(ss / float(D) + p.eps);
      const float kx = dot * r * r * r / float(D);
#pragma unroll
      for (int k = 0; k < kMaxPairs; ++k) {
        const int i = lane + 32 * k;
        if (i < half) {
          g0[k] = r * nw[i] * g0[k] - x0[k] * kx;
          g1[k] = r * nw[i + half] * g1[k] - x1[k] * kx;
        }
      }
    }
#pragma unroll
    for (int k = 0; k < kMaxPairs; ++k) {
      const int i = lane + 32 * k;
      if (i < half) {
        dst[i] = to_bf16(g0[k]);
        dst[i + half] = to_bf16(g1[k]);
      }
    }
  }
}

namespace {
void check_head_dim(int D) {
  if (D <= 0 || D % 2 != 0 || D > kRopeMaxHeadDim)
    fail(code::kConfigUnsupported, "head_dim " + std::to_string(D) + " is not supported by the CUDA rotary kernel "
                                   "(even, at most " + std::to_string(kRopeMaxHeadDim) + ")");
}
}  // namespace

void launch_rope_fwd(const RopeFwdParams& p, cudaStream_t stream) {
  check_head_dim(p.head_dim);
  if (p.T <= 0) return;
  rope_fwd_kernel<<<static_cast<unsigned>(p.T), 32 * kWarps, 0, stream>>>(p);
  check_launch("rope_fwd_kernel");
}

void launch_rope_bwd(const RopeBwdParams& p, cudaStream_t stream) {
  check_head_dim(p.head_dim);
  if (p.T <= 0) return;
  rope_bwd_kernel<<<static_cast<unsigned>(p.T), 32 * kWarps, 0, stream>>>(p);
  check_launch("rope_bwd_kernel");
}

}  // namespace hs::cuda
