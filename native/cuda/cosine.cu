// Row-wise cosine similarity, one block per row; the three sums are fused in one pass
// and nothing but the (T) result is written.
// CPU reference: cos = sum(a*b) / (sqrt(sum(a*a)) * sqrt(sum(b*b))), 0 if a denominator is 0.
#include "cosine.cuh"
#include "kernel_common.cuh"

namespace hs::cuda {

__global__ void cosine_fwd_kernel(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ out,
                                  int C) {
  __shared__ float scratch[32];
  const float* ar = a + int64_t(blockIdx.x) * C;
  const float* br = b + int64_t(blockIdx.x) * C;
  float ab = 0.f, aa = 0.f, bb = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    ab += ar[c] * br[c];
    aa += ar[c] * ar[c];
    bb += br[c] * br[c];
  }
  ab = block_sum(ab, scratch);
  aa = block_sum(aa, scratch);
  bb = block_sum(bb, scratch);
  if (threadIdx.x == 0) {
    const float den = sqrtf(aa) * sqrtf(bb);
    out[blockIdx.x] = den > 0.f ? ab / den : 0.f;
  }
}

void launch_cosine_fwd(const CosineFwdParams& p, cudaStream_t stream) {
  if (p.T <= 0) return;
  cosine_fwd_kernel<<<static_cast<unsigned>(p.T), 256, 0, stream>>>(p.a, p.b, p.out, p.C);
  check_launch("cosine_fwd_kernel");
}

}  // namespace hs::cuda
