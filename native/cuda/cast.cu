// fp32 -> bf16 weight conversion. Fuses nothing; elementwise, grid-stride.
// CPU reference: round-to-nearest-even of each float (cuda_bf16's __float2bfloat16_rn);
// fill_random: random_weight_value (random_weights.h), rounded the same way.
#include "cast.cuh"
#include "kernel_common.cuh"
#include "random_weights.h"

namespace hs::cuda {

__global__ void cast_fwd_kernel(const float* __restrict__ in, bf16* __restrict__ out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = to_bf16(in[i]);
}

void launch_cast_fwd(const CastParams& p, cudaStream_t stream) {
  if (p.n <= 0) return;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>(ceil_div(p.n, threads), 4096);
  cast_fwd_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p.in, p.out, p.n);
  check_launch("cast_fwd_kernel");
}

__global__ void fill_random_fwd_kernel(bf16* __restrict__ out, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = to_bf16(random_weight_value(static_cast<uint32_t>(i), seed));
}

void launch_fill_random_fwd(const FillRandomParams& p, cudaStream_t stream) {
  if (p.n <= 0) return;
  if (p.n > (int64_t(1) << 32)) fail(code::kArgument, "fill_random: n exceeds 2^32 elements");
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>(ceil_div(p.n, threads), 8192);
  fill_random_fwd_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p.out, p.n, p.seed);
  check_launch("fill_random_fwd_kernel");
}

}  // namespace hs::cuda
