// Fused, chunked linear + cross-entropy over the rows that carry a loss: final RMSNorm,
// lm_head GEMM, logsumexp, NLL and dlogits (in place), dh GEMM, RMSNorm backward.
#pragma once
#include "cublaslt.h"
#include "cuda_types.h"

namespace hs::cuda {

struct CrossEntropyFwdParams {
  float* logits;           // (R,V) fp32 logits; with want_grad, each row's first 2V bytes are
                           // overwritten by its bf16 dlogits (bf16 row stride 2V)
  const int32_t* targets;  // (R)
  const float* weights;    // (R) loss weight of each row (1/N or 1/response tokens)
  float* nll;              // (R) -log softmax(logits)[target]
  int64_t R;
  int V;
  float grad_scale;  // d logits / d (GEMM output): 1 / logits_scaling
  bool want_grad;
};
void launch_cross_entropy_fwd(const CrossEntropyFwdParams& p, cudaStream_t stream);

// Row gather / scatter between the full (T,H) residual stream and a chunk of loss rows.
struct GatherRowsParams {
  const float* src;      // (T,H)
  const int32_t* rows;   // (R)
  float* dst;            // (R,H)
  int64_t R;
  int H;
};
void launch_gather_rows_fwd(const GatherRowsParams& p, cudaStream_t stream);
struct ScatterRowsParams {
  const float* src;      // (R,H)
  const int32_t* rows;   // (R) distinct row indices
  float* dst;            // (T,H) dst[rows[i]] = src[i]
  int64_t R;
  int H;
};
void launch_scatter_rows_bwd(const ScatterRowsParams& p, cudaStream_t stream);

// The whole chunk loop. Rows are processed `chunk` at a time; only one chunk of logits
// ((chunk,V) fp32) exists at any moment.
struct FusedCrossEntropyArgs {
  const float* h;            // (T,H) last hidden state, before the final norm
  const int32_t* rows;       // (R) rows of h that carry a loss
  const int32_t* targets;    // (R)
  const float* weights;      // (R)
  int64_t R;
  int H;
  int V;
  const float* final_norm;   // (H)
  float eps;
  const bf16* lm_head;       // (V,H)
  float logit_scale;         // 1 / logits_scaling
  float* nll;                // (R)
  float* dh;                 // (T,H) or null: dL/dh written at `rows` (other rows untouched)
  int64_t chunk;
  // Workspace, each sized for `chunk` rows.
  float* x_rows;             // (chunk,H)
  bf16* xn;                  // (chunk,H)
  float* rstd;               // (chunk)
  float* logits;             // (chunk,V)
  float* dxn;                // (chunk,H)
  float* dx_rows;            // (chunk,H)
};
void run_fused_cross_entropy(Gemm& gemm, const FusedCrossEntropyArgs& a, cudaStream_t stream);

}  // namespace hs::cuda
