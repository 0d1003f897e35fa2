// SwiGLU forward and backward, elementwise over (T, I). Fused: bias add, activation,
// product and bf16 cast; the backward recomputes sigmoid(gate) instead of storing it.
//
// CPU reference (g = gate + b_g, u = up + b_u, s = 1 / (1 + exp(-g))):
//   act  = g * s * u
//   dg   = dact * u * s * (1 + g * (1 - s)),   du = dact * g * s
#include "swiglu.cuh"
#include "kernel_common.cuh"

namespace hs::cuda {

__global__ void swiglu_fwd_kernel(const float* __restrict__ gu, const float* __restrict__ bias,
                                  bf16* __restrict__ act, int64_t n, int I) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = idx / I;
    const int i = static_cast<int>(idx - t * I);
    float g = gu[t * 2 * I + i], u = gu[t * 2 * I + I + i];
    if (bias != nullptr) {
      g += bias[i];
      u += bias[I + i];
    }
    const float s = 1.f / (1.f + expf(-g));
    act[idx] = to_bf16(g * s * u);
  }
}

__global__ void swiglu_bwd_kernel(const float* __restrict__ dact, const float* __restrict__ gu,
                                  const float* __restrict__ bias, bf16* __restrict__ dgu, int64_t n, int I) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = idx / I;
    const int i = static_cast<int>(idx - t * I);
    float g = gu[t * 2 * I + i], u = gu[t * 2 * I + I + i];
    if (bias != nullptr) {
      g += bias[i];
      u += bias[I + i];
    }
    const float s = 1.f / (1.f + expf(-g));
    const float d = dact[idx];
    dgu[t * 2 * I + i] = to_bf16(d * u * s * (1.f + g * (1.f - s)));
    dgu[t * 2 * I + I + i] = to_bf16(d * g * s);
  }
}

namespace {
unsigned grid_for(int64_t n) { return static_cast<unsigned>(std::min<int64_t>(ceil_div(n, 256), 65536)); }
}  // namespace

void launch_swiglu_fwd(const SwigluFwdParams& p, cudaStream_t stream) {
  const int64_t n = p.T * p.I;
  if (n <= 0) return;
  swiglu_fwd_kernel<<<grid_for(n), 256, 0, stream>>>(p.gu, p.bias, p.act, n, p.I);
  check_launch("swiglu_fwd_kernel");
}

void launch_swiglu_bwd(const SwigluBwdParams& p, cudaStream_t stream) {
  const int64_t n = p.T * p.I;
  if (n <= 0) return;
  swiglu_bwd_kernel<<<grid_for(n), 256, 0, stream>>>(p.dact, p.gu, p.bias, p.dgu, n, p.I);
  check_launch("swiglu_bwd_kernel");
}

}  // namespace hs::cuda
