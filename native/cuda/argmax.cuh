// Row-wise argmax (greedy decoding).
#pragma once
#include "cuda_types.h"

namespace hs::cuda {

struct ArgmaxFwdParams {
  const float* x;  // (R,V)
  int32_t* out;    // (R) smallest index holding the row maximum
  int64_t R;
  int V;
};
void launch_argmax_fwd(const ArgmaxFwdParams& p, cudaStream_t stream);

}  // namespace hs::cuda
