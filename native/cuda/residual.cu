// Scaled residual forward and backward.
// Forward fuses the sub-layer bias add with x1 = coef_a * A + coef_h * h.
// Backward fuses, in one pass over g: the gradient w.r.t. A (bf16, scaled by coef_a),
// the optional coef_h * g, and the two theta reductions <g, A> and <g, h>. Each block
// writes fp32 partial sums to a scratch buffer; a second one-block kernel adds them in
// block order. No float atomics, so the same inputs give bit-identical theta gradients.
// The reductions are never materialised as (T,C) products.
//
// CPU reference:
//   out = coef_a * (A + bias) + coef_h * h
//   ga = coef_a * g;  gh = coef_h * g;  grad_b = a_scale * sum(g * A);  grad_s = sum(g * h)
#include "residual.cuh"
#include "kernel_common.cuh"

namespace hs::cuda {

namespace {
constexpr int kThreads = 256;
constexpr int kMaxBlocks = 1024;
constexpr int kElemsPerThread = 4;

int residual_blocks(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, kThreads * kElemsPerThread), kMaxBlocks)));
}
}  // namespace

__global__ void residual_fwd_kernel(float* a, const float* __restrict__ a_bias, const float* __restrict__ h,
                                    float* __restrict__ out, float coef_a, float coef_h, int64_t n, int C) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = coef_h * h[i];
    if (a != nullptr) {
      float av = a[i];
      if (a_bias != nullptr) {
        av += a_bias[i % C];
        a[i] = av;
      }
      v += coef_a * av;
    }
    out[i] = v;
  }
}

__global__ void residual_bwd_kernel(const float* __restrict__ g, const float* __restrict__ a,
                                    const float* __restrict__ h, bf16* __restrict__ ga, float* __restrict__ gh,
                                    float* __restrict__ partials, float coef_a, float coef_h, int64_t n) {
  __shared__ float scratch[32];
  float sa = 0.f, sh = 0.f;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    sh += gi * h[i];
    if (a != nullptr) {
      sa += gi * a[i];
      ga[i] = to_bf16(coef_a * gi);
    }
    if (gh != nullptr) gh[i] = coef_h * gi;
  }
  sa = block_sum(sa, scratch);
  sh = block_sum(sh, scratch);
  if (threadIdx.x == 0) {
    partials[2 * blockIdx.x] = sa;
    partials[2 * blockIdx.x + 1] = sh;
  }
}

__global__ void residual_bwd_combine_kernel(const float* __restrict__ partials, int blocks, float a_scale,
                                            float* __restrict__ grad_b, float* __restrict__ grad_s) {
  __shared__ float scratch[32];
  float sa = 0.f, sh = 0.f;
  for (int i = threadIdx.x; i < blocks; i += blockDim.x) {
    sa += partials[2 * i];
    sh += partials[2 * i + 1];
  }
  sa = block_sum(sa, scratch);
  sh = block_sum(sh, scratch);
  if (threadIdx.x == 0) {
    *grad_b = a_scale * sa;
    *grad_s = sh;
  }
}

int64_t residual_bwd_partials(int64_t T, int C) { return 2 * int64_t(residual_blocks(T * C)); }

void launch_residual_fwd(const ResidualFwdParams& p, cudaStream_t stream) {
  const int64_t n = p.T * p.C;
  if (n <= 0) return;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(ceil_div(n, kThreads), 65536));
  residual_fwd_kernel<<<blocks, kThreads, 0, stream>>>(p.a, p.a_bias, p.h, p.out, p.coef_a, p.coef_h, n, p.C);
  check_launch("residual_fwd_kernel");
}

void launch_residual_bwd(const ResidualBwdParams& p, cudaStream_t stream) {
  const int64_t n = p.T * p.C;
  if (n <= 0) return;
  if (p.a != nullptr && p.ga == nullptr) fail(code::kInternal, "residual backward: A given without a ga output");
  const int blocks = residual_blocks(n);
  residual_bwd_kernel<<<blocks, kThreads, 0, stream>>>(p.g, p.a, p.h, p.ga, p.gh, p.partials, p.coef_a, p.coef_h, n);
  check_launch("residual_bwd_kernel");
  residual_bwd_combine_kernel<<<1, kThreads, 0, stream>>>(p.partials, blocks, p.a_scale, p.grad_b, p.grad_s);
  check_launch("residual_bwd_combine_kernel");
}

}  // namespace hs::cuda
