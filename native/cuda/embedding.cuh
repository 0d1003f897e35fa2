// Token embedding lookup (weights are frozen, so there is no backward).
#pragma once
#include "cuda_types.h"

namespace hs::cuda {

struct EmbeddingFwdParams {
  const int32_t* tokens;  // (T)
  const bf16* table;      // (V,C)
  float* out;             // (T,C)
  int64_t T;
  int C;
  int V;
  float scale;  // Granite embedding_multiplier, 1 elsewhere
};
void launch_embedding_fwd(const EmbeddingFwdParams& p, cudaStream_t stream);

}  // namespace hs::cuda
