// Embedding gather: out[t, :] = scale * table[tokens[t], :], bf16 table -> fp32 rows.
// Nothing is fused and nothing is materialised besides the (T,C) output.
// CPU reference: out[t*C + c] = scale * float(table[tok*C + c]).
#include "embedding.cuh"
#include "kernel_common.cuh"

namespace hs::cuda {

__global__ void embedding_fwd_kernel(const int32_t* __restrict__ tokens, const bf16* __restrict__ table,
                                     float* __restrict__ out, int C, int V, float scale) {
  const int64_t t = blockIdx.x;
  int32_t tok = tokens[t];
  tok = tok < 0 ? 0 : (tok >= V ? V - 1 : tok);  // ids are validated on the host; never read out of bounds
  const bf16* row = table + int64_t(tok) * C;
  float* o = out + t * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) o[c] = scale * to_f32(row[c]);
}

void launch_embedding_fwd(const EmbeddingFwdParams& p, cudaStream_t stream) {
  if (p.T <= 0) return;
  embedding_fwd_kernel<<<static_cast<unsigned>(p.T), 256, 0, stream>>>(p.tokens, p.table, p.out, p.C, p.V, p.scale);
  check_launch("embedding_fwd_kernel");
}

}  // namespace hs::cuda
