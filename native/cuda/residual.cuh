// Scaled residual of a Hopscotch block: out = coef_a * A + coef_h * h, and its backward
// with the two theta reductions of the sub-layer fused in.
#pragma once
#include "cuda_types.h"

namespace hs::cuda {

struct ResidualFwdParams {
  float* a;             // (T,C) sub-layer output before the residual; null for a skipped
                        // attention. The bias (if any) is added in place, so `a` then
                        // holds the value the backward's <g, A> reduction needs.
  const float* a_bias;  // (C) or null (o_proj / down_proj bias)
  const float* h;       // (T,C) residual input
  float* out;           // (T,C) may not alias a or h
  float coef_a;         // b * residual_multiplier
  float coef_h;         // s
  int64_t T;
  int C;
};
void launch_residual_fwd(const ResidualFwdParams& p, cudaStream_t stream);

// Scratch floats the backward needs for its per-block partial sums.
int64_t residual_bwd_partials(int64_t T, int C);

struct ResidualBwdParams {
  const float* g;   // (T,C) dL/d out
  const float* a;   // (T,C) forward A (bias included); null for a skipped attention
  const float* h;   // (T,C) forward residual input
  bf16* ga;         // (T,C) coef_a * g: gradient w.r.t. A, the next GEMM's operand; null if a is null
  float* gh;        // (T,C) coef_h * g, or null (a kept layer adds it in the RMSNorm backward)
  float* partials;  // (residual_bwd_partials(T,C)) scratch
  float* grad_b;    // device scalar: a_scale * <g, A>   (0 when a is null)
  float* grad_s;    // device scalar: <g, h>
  float coef_a;
  float coef_h;
  float a_scale;    // residual_multiplier: dL/db = <g, rm * A>
  int64_t T;
  int C;
};
void launch_residual_bwd(const ResidualBwdParams& p, cudaStream_t stream);

}  // namespace hs::cuda
