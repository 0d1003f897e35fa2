// fp32 -> bf16 conversion (round to nearest even), used to upload the frozen weights.
#pragma once
#include "cuda_types.h"

namespace hs::cuda {

struct CastParams {
  const float* in;  // (n)
  bf16* out;        // (n)
  int64_t n;
};
void launch_cast_fwd(const CastParams& p, cudaStream_t stream);

}  // namespace hs::cuda
