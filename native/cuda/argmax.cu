// Greedy token choice: one block per row finds the maximum and its smallest index
// (ties resolve to the lowest id, as std::max_element does on the CPU). Only the index
// leaves the device. NaN logits never win (comparisons with NaN are false).
#include "argmax.cuh"
#include "kernel_common.cuh"

namespace hs::cuda {

namespace {
constexpr int kThreads = 512;

__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
  return v > bv || (v == bv && i < bi);
}
}  // namespace

__global__ void argmax_fwd_kernel(const float* __restrict__ x, int32_t* __restrict__ out, int V) {
  __shared__ float sv[32];
  __shared__ int si[32];
  const float* row = x + int64_t(blockIdx.x) * V;
  float bv = -INFINITY;
  int bi = V;  // sentinel: larger than every index
  for (int c = threadIdx.x; c < V; c += blockDim.x)
    if (better(row[c], c, bv, bi)) {
      bv = row[c];
      bi = c;
    }
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (better(ov, oi, bv, bi)) {
      bv = ov;
      bi = oi;
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sv[warp] = bv;
    si[warp] = bi;
  }
  __syncthreads();
  if (warp == 0) {
    const int nw = blockDim.x >> 5;
    bv = lane < nw ? sv[lane] : -INFINITY;
    bi = lane < nw ? si[lane] : V;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (better(ov, oi, bv, bi)) {
        bv = ov;
        bi = oi;
      }
    }
    if (lane == 0) out[blockIdx.x] = bi < V ? bi : 0;
  }
}

void launch_argmax_fwd(const ArgmaxFwdParams& p, cudaStream_t stream) {
  if (p.R <= 0) return;
  argmax_fwd_kernel<<<static_cast<unsigned>(p.R), kThreads, 0, stream>>>(p.x, p.out, p.V);
  check_launch("argmax_fwd_kernel");
}

}  // namespace hs::cuda
