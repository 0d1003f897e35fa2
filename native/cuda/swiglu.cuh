// SwiGLU activation of the fused gate/up projection: act = silu(gate) * up.
#pragma once
#include "cuda_types.h"

namespace hs::cuda {

struct SwigluFwdParams {
  const float* gu;    // (T, 2I) raw [gate | up] projections
  const float* bias;  // (2I) or null (mlp_bias)
  bf16* act;          // (T, I)
  int64_t T;
  int I;
};
void launch_swiglu_fwd(const SwigluFwdParams& p, cudaStream_t stream);

struct SwigluBwdParams {
  const float* dact;  // (T, I)
  const float* gu;    // (T, 2I) forward raw projections
  const float* bias;  // (2I) or null
  bf16* dgu;          // (T, 2I) [d gate | d up]
  int64_t T;
  int I;
};
void launch_swiglu_bwd(const SwigluBwdParams& p, cudaStream_t stream);

}  // namespace hs::cuda
