// Causal grouped-query attention over packed variable-length sequences (cu_seqlens,
// as flash_attn_varlen_func). Two implementations behind one launcher: the tensor-core
// kernels of attention_mma.cu (head dims 64 and 128, sm_80+) and the fp32 FMA kernels of
// attention.cu (any head dim up to 256: the fallback). HOPSCOTCH_ATTENTION=fma|mma in
// the environment overrides the choice (mma still falls back where it cannot run). Query i of a sequence with Lq queries and Lk keys sees
// keys j <= i + (Lk - Lq) (bottom-right aligned, so a decode step with one query sees
// the whole cache). Requires Lk >= Lq for every sequence.
#pragma once
#include <vector>

#include "cuda_types.h"

namespace hs::cuda {

inline constexpr int kAttnTile = 16;           // queries and keys per tile
inline constexpr int kAttnMaxHeadDim = 256;

inline constexpr int kAttnMmaTile = 64;       // query rows / keys per tile of the tensor-core kernels

enum class AttentionImpl { Auto, Fma, Mma };
// What Auto resolves to for this head dim on the current device (reads
// HOPSCOTCH_ATTENTION once per process).
AttentionImpl attention_impl(int head_dim);
const char* attention_impl_name(AttentionImpl impl);
// Whether the tensor-core kernels can run this head dim on the current device.
bool attention_mma_supported(int head_dim);

// Host-side tile lists: each entry is (sequence, first row of the tile).
struct AttentionTiles {
  std::vector<int32_t> q_tiles;    // pairs, size 2 * num_q_tiles (16-row tiles, FMA kernels)
  std::vector<int32_t> k_tiles;    // pairs, size 2 * num_k_tiles
  std::vector<int32_t> q_tiles64;  // pairs, 64-row tiles (tensor-core kernels)
  std::vector<int32_t> k_tiles64;
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
  const int32_t* q_tiles64;  // (num_q_tiles64, 2)
  int num_q_tiles64;
  int n_heads;
  int n_kv_heads;
  int head_dim;
  float scale;
  AttentionImpl impl;     // Auto unless a check forces one
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
  const int32_t* q_tiles64;
  int num_q_tiles64;
  const int32_t* k_tiles64;
  int num_k_tiles64;
  int64_t Tq;
  int n_heads;
  int n_kv_heads;
  int head_dim;
  float scale;
  AttentionImpl impl;
};
void launch_attention_bwd(const AttentionBwdParams& p, cudaStream_t stream);

// The tensor-core kernels (attention_mma.cu); called by the launchers above.
void launch_attention_mma_fwd(const AttentionFwdParams& p, cudaStream_t stream);
void launch_attention_mma_bwd(const AttentionBwdParams& p, cudaStream_t stream);  // after delta

}  // namespace hs::cuda
