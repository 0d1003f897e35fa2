// Fused linear cross-entropy, chunked over loss rows (gradients computed in the forward).
// Per chunk: gather rows of h -> final RMSNorm (bf16) -> logits = xn lm_head^T / ls
// (cuBLASLt, fp32 out) -> per row: max, logsumexp, nll = lse - logit[target], and
// dlogits = w * (softmax - onehot) / ls written in place over the logits as bf16 ->
// dxn = dlogits lm_head (cuBLASLt) -> RMSNorm backward -> scatter into dh.
// Never materialised: the (T,V) logits, probabilities or dlogits; a (chunk,V) fp32
// buffer is the largest object. Rows without a loss skip the vocabulary work entirely.
//
// CPU reference per row (z = logits row): lse = max(z) + log(sum(exp(z - max(z))));
//   nll = lse - z[t];  dz_j = w / ls * (exp(z_j - lse) - [j == t])
#include "cross_entropy.cuh"
#include "kernel_common.cuh"
#include "rmsnorm.cuh"

namespace hs::cuda {

namespace {
constexpr int kThreads = 512;
}

__global__ void __launch_bounds__(kThreads) cross_entropy_fwd_kernel(float* logits, const int32_t* __restrict__ targets,
                                                                     const float* __restrict__ weights,
                                                                     float* __restrict__ nll, int V, float grad_scale,
                                                                     bool want_grad) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  float* x = logits + row * V;
  float mx = -INFINITY;
  for (int c = threadIdx.x; c < V; c += blockDim.x) mx = fmaxf(mx, x[c]);
  mx = block_max(mx, scratch);
  float s = 0.f;
  for (int c = threadIdx.x; c < V; c += blockDim.x) s += expf(x[c] - mx);
  s = block_sum(s, scratch);
  const float lse = mx + logf(s);
  const int tgt = targets[row];
  if (threadIdx.x == 0) nll[row] = lse - x[tgt];
  if (!want_grad) return;
  const float w = weights[row] * grad_scale;
  bf16* out = reinterpret_cast<bf16*>(x);
  // In place: bf16 element c lies inside fp32 element c/2 <= c. Every thread reads its
  // fp32 value before the barrier, and writes only below the current window's end, so
  // no value is overwritten before it is read.
  for (int base = 0; base < V; base += blockDim.x) {
    const int c = base + threadIdx.x;
    const float v = c < V ? x[c] : 0.f;
    __syncthreads();
    if (c < V) out[c] = to_bf16(w * (expf(v - lse) - (c == tgt ? 1.f : 0.f)));
  }
}

__global__ void gather_rows_fwd_kernel(const float* __restrict__ src, const int32_t* __restrict__ rows,
                                       float* __restrict__ dst, int H) {
  const int64_t i = blockIdx.x;
  const float* s = src + int64_t(rows[i]) * H;
  float* d = dst + i * H;
  for (int c = threadIdx.x; c < H; c += blockDim.x) d[c] = s[c];
}

__global__ void scatter_rows_bwd_kernel(const float* __restrict__ src, const int32_t* __restrict__ rows,
                                        float* __restrict__ dst, int H) {
  const int64_t i = blockIdx.x;
  const float* s = src + i * H;
  float* d = dst + int64_t(rows[i]) * H;
  for (int c = threadIdx.x; c < H; c += blockDim.x) d[c] = s[c];
}

void launch_cross_entropy_fwd(const CrossEntropyFwdParams& p, cudaStream_t stream) {
  if (p.R <= 0) return;
  cross_entropy_fwd_kernel<<<static_cast<unsigned>(p.R), kThreads, 0, stream>>>(p.logits, p.targets, p.weights, p.nll,
                                                                                 p.V, p.grad_scale, p.want_grad);
  check_launch("cross_entropy_fwd_kernel");
}

void launch_gather_rows_fwd(const GatherRowsParams& p, cudaStream_t stream) {
  if (p.R <= 0) return;
  gather_rows_fwd_kernel<<<static_cast<unsigned>(p.R), 256, 0, stream>>>(p.src, p.rows, p.dst, p.H);
  check_launch("gather_rows_fwd_kernel");
}

void launch_scatter_rows_bwd(const ScatterRowsParams& p, cudaStream_t stream) {
  if (p.R <= 0) return;
  scatter_rows_bwd_kernel<<<static_cast<unsigned>(p.R), 256, 0, stream>>>(p.src, p.rows, p.dst, p.H);
  check_launch("scatter_rows_bwd_kernel");
}

void run_fused_cross_entropy(Gemm& gemm, const FusedCrossEntropyArgs& a, cudaStream_t stream) {
  if (a.chunk <= 0) fail(code::kInternal, "fused cross-entropy: chunk must be positive");
  const bool want_grad = a.dh != nullptr;
  for (int64_t r0 = 0; r0 < a.R; r0 += a.chunk) {
    const int64_t n = std::min(a.chunk, a.R - r0);
    launch_gather_rows_fwd({a.h, a.rows + r0, a.x_rows, n, a.H}, stream);
    launch_rmsnorm_fwd({a.x_rows, a.final_norm, a.xn, a.rstd, n, a.H, a.eps}, stream);
    gemm.nt(stream, n, a.V, a.H, a.xn, a.H, a.lm_head, a.H, a.logits, GemmOut::F32, a.V, a.logit_scale, 0.f);
    launch_cross_entropy_fwd({a.logits, a.targets + r0, a.weights + r0, a.nll + r0, n, a.V, a.logit_scale, want_grad},
                             stream);
    if (!want_grad) continue;
    // dlogits: bf16 rows of stride 2V inside the fp32 logits buffer.
    gemm.nn(stream, n, a.H, a.V, reinterpret_cast<const bf16*>(a.logits), 2 * int64_t(a.V), a.lm_head, a.H, a.dxn,
            GemmOut::F32, a.H, 1.f, 0.f);
    launch_rmsnorm_bwd({a.dxn, a.x_rows, a.final_norm, a.rstd, nullptr, 0.f, a.dx_rows, n, a.H}, stream);
    launch_scatter_rows_bwd({a.dx_rows, a.rows + r0, a.dh, n, a.H}, stream);
  }
}

}  // namespace hs::cuda
