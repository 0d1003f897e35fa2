// Attention input preparation: q/k/v bias, per-head RMSNorm of q and k (Qwen3 qk-norm)
// and rotary position embedding (HF rotate_half convention), fp32 in, bf16 out.
#pragma once
#include "cuda_types.h"

namespace hs::cuda {

inline constexpr int kRopeMaxHeadDim = 256;

struct RopeFwdParams {
  const float* qkv;       // (T, (nH+2*nKV)*D) raw projections [q heads | k heads | v heads]
  const float* bias;      // ((nH+2*nKV)*D) or null
  const float* q_norm;    // (D) or null (qk-norm off)
  const float* k_norm;    // (D) or null
  const int32_t* pos;     // (T) position of each token inside its sequence
  const float* inv_freq;  // (D/2)
  bf16* q;                // (T, nH*D)
  bf16* k;                // (T, nKV*D) may point into a KV cache
  bf16* v;                // (T, nKV*D) may point into a KV cache
  int64_t T;
  int n_heads;
  int n_kv_heads;
  int head_dim;
  float eps;
};
void launch_rope_fwd(const RopeFwdParams& p, cudaStream_t stream);

struct RopeBwdParams {
  const float* dq;        // (T, nH*D)  gradient w.r.t. the rotated q
  const float* dk;        // (T, nKV*D)
  const float* dv;        // (T, nKV*D)
  const float* qkv;       // (T, (nH+2*nKV)*D) forward raw projections (for the qk-norm backward)
  const float* bias;      // or null
  const float* q_norm;    // (D) or null
  const float* k_norm;    // (D) or null
  const int32_t* pos;     // (T)
  const float* inv_freq;  // (D/2)
  bf16* dqkv;             // (T, (nH+2*nKV)*D) gradient w.r.t. the raw projections
  int64_t T;
  int n_heads;
  int n_kv_heads;
  int head_dim;
  float eps;
};
void launch_rope_bwd(const RopeBwdParams& p, cudaStream_t stream);

}  // namespace hs::cuda
