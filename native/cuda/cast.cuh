// bf16 weights on the device: fp32 -> bf16 conversion (round to nearest even) of the
// uploaded frozen weights, and the synthetic benchmark model's random weights.
#pragma once
#include "cuda_types.h"

namespace hs::cuda {

struct CastParams {
  const float* in;  // (n)
  bf16* out;        // (n)
  int64_t n;
};
void launch_cast_fwd(const CastParams& p, cudaStream_t stream);

// out[i] = bf16_rn(random_weight_value(i, seed)) (random_weights.h): the synthetic
// benchmark model's weights, made on the device.
struct FillRandomParams {
  bf16* out;  // (n)
  int64_t n;
  uint32_t seed;
};
void launch_fill_random_fwd(const FillRandomParams& p, cudaStream_t stream);

}  // namespace hs::cuda
