// RMSNorm over the hidden dimension: fp32 in, bf16 out (the next GEMM's operand).
#pragma once
#include "cuda_types.h"

namespace hs::cuda {

struct RmsNormFwdParams {
  const float* x;  // (T,C)
  const float* w;  // (C)
  bf16* y;         // (T,C)  y = w * x * rstd
  float* rstd;     // (T)    1/sqrt(mean(x^2) + eps), kept for the backward
  int64_t T;
  int C;
  float eps;
};
void launch_rmsnorm_fwd(const RmsNormFwdParams& p, cudaStream_t stream);

struct RmsNormBwdParams {
  const float* dy;    // (T,C) dL/dy
  const float* x;     // (T,C) forward input
  const float* w;     // (C)
  const float* rstd;  // (T)
  const float* dres;  // (T,C) or null: a residual gradient added to the result
  float res_scale;    // dx += res_scale * dres
  float* dx;          // (T,C) may not alias dy or dres
  int64_t T;
  int C;
};
void launch_rmsnorm_bwd(const RmsNormBwdParams& p, cudaStream_t stream);

}  // namespace hs::cuda
