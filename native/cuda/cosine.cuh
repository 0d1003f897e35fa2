// Per-token cosine similarity of two (T,C) fp32 matrices (layer similarity statistics).
#pragma once
#include "cuda_types.h"

namespace hs::cuda {

struct CosineFwdParams {
  const float* a;  // (T,C)
  const float* b;  // (T,C)
  float* out;      // (T) a.b / (|a| |b|), 0 when either row is zero
  int64_t T;
  int C;
};
void launch_cosine_fwd(const CosineFwdParams& p, cudaStream_t stream);

}  // namespace hs::cuda
