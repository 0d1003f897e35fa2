// Causal grouped-query attention over packed variable-length sequences (cu_seqlens,
// as flash_attn_varlen_func). Query i of a sequence with Lq queries and Lk keys sees
// keys j <= i + (Lk - Lq) (bottom-right aligned, so a decode step with one query sees
// the whole cache). Requires Lk >= Lq for every sequence.
#pragma once
#include <vector>

#include "cuda_types.h"

namespace hs::cuda {

inline constexpr int kAttnTile = 16;           // queries and keys per tile
inline constexpr int kAttnMaxHeadDim = 256;

// Host-side tile lists: each entry is (sequence, first row of the tile).
struct AttentionTiles {
  std::vector<int32_t> q_tiles;  // pairs, size 2 * num_q_tiles
  std::vector<int32_t> k_tiles;  // pairs, size 2 * num_k_tiles
};
AttentionTiles make_attention_tiles(const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k);

struct AttentionFwdParams {
  const bf16* q;          // (Tq, nH*D)
  const bf16* k;          // (Tk, nKV*D)
  const bf16* v;          // (Tk, nKV*D)
  bf16* o;                // (Tq, nH*D)
  float* lse;             // (Tq, nH) natural-log logsumexp of the scaled scores
  const int32_t* cu_q;    // (S+1)
  const int32_t* cu_k;    // (S+1)
  const int32_t* q_tiles; // (num_q_tiles, 2)
  int num_q_tiles;
  int n_heads;
  int n_kv_heads;
  int head_dim;
  float scale;
};
void launch_attention_fwd(const AttentionFwdParams& p, cudaStream_t stream);

struct AttentionBwdParams {
  const bf16* q;          // (Tq, nH*D)
  const bf16* k;          // (Tk, nKV*D)
  const bf16* v;          // (Tk, nKV*D)
  const bf16* o;          // (Tq, nH*D)
  const bf16* dout;       // (Tq, nH*D)
  const float* lse;       // (Tq, nH)
  float* delta;           // (Tq, nH) scratch: rowsum(dout * o)
  float* dq;              // (Tq, nH*D)
  float* dk;              // (Tk, nKV*D)
  float* dv;              // (Tk, nKV*D)
  const int32_t* cu_q;
  const int32_t* cu_k;
  const int32_t* q_tiles;
  int num_q_tiles;
  const int32_t* k_tiles;
  int num_k_tiles;
  int64_t Tq;
  int n_heads;
  int n_kv_heads;
  int head_dim;
  float scale;
};
void launch_attention_bwd(const AttentionBwdParams& p, cudaStream_t stream);

}  // namespace hs::cuda
