// fp32 CPU kernels of the decoder block and the loss: RMSNorm, RoPE (default,
// linear and llama3 frequencies), causal varlen GQA attention, SwiGLU, the
// theta-scaled residual with its four fused reductions, and the fused chunked
// cross-entropy. These are the reference the CUDA kernels are checked against.
//
// Layouts: activations are packed tokens, row-major (T, C). Attention takes
// q (T, nH*D), k/v (T, nKV*D) and int32 cu_seqlens (nseq + 1 offsets), as in
// flash-attention's varlen API; query head h reads kv head h / (nH / nKV).
//
// Determinism: every kernel splits work only over independent outputs (rows,
// (row, head) pairs, (sample, kv-head) pairs) and computes each output with the
// same operation order whatever the split, so results are bit-identical for any
// thread count. Reductions across rows write one partial per row; the caller sums
// the partials in index order.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "config.h"
#include "gemm.h"

namespace hs {

class ThreadPool;

namespace cpu {

// Counts the bytes of activation/workspace buffers alive at once (peak reporting).
struct MemoryMeter {
  size_t current = 0;
  size_t peak = 0;
  void add(size_t bytes) {
    current += bytes;
    if (current > peak) peak = current;
  }
  void remove(size_t bytes) { current -= bytes; }
};

// A zero-initialised array whose bytes are counted by a MemoryMeter while it lives.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(MemoryMeter* meter, size_t n) { reset(meter, n); }
  ~Buffer() { release(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : data_(std::move(o.data_)), meter_(o.meter_) { o.meter_ = nullptr; }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::move(o.data_);
      meter_ = o.meter_;
      o.meter_ = nullptr;
    }
    return *this;
  }
  void reset(MemoryMeter* meter, size_t n) {
    release();
    data_.assign(n, T());
    meter_ = meter;
    if (meter_) meter_->add(n * sizeof(T));
  }
  void release() {
    if (meter_) meter_->remove(data_.size() * sizeof(T));
    meter_ = nullptr;
    std::vector<T>().swap(data_);
  }
  T* data() { return data_.data(); }
  const T* data() const { return data_.data(); }
  size_t size() const { return data_.size(); }
  bool empty() const { return data_.empty(); }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  std::vector<T>& vec() { return data_; }

 private:
  std::vector<T> data_;
  MemoryMeter* meter_ = nullptr;
};

// ---- RMSNorm: y = w * (x * rsqrt(mean(x^2) + eps)), rows of `dim` ----
// (rows, dim) x, y; (rows) rstd. w may be null (no weight).
void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t dim, float eps,
                 ThreadPool* pool);
// dx (=, or += when accumulate) J^T dy, using the rstd saved by the forward.
void rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd, float* dx, int64_t rows,
                 int64_t dim, bool accumulate, ThreadPool* pool);

// ---- RoPE (Hugging Face rotate_half convention) ----
// Inverse frequencies (head_dim / 2) in fp32 as transformers computes them, with
// linear scaling (inv_freq / factor) or llama3 scaling (_compute_llama3_parameters).
std::vector<float> rope_inv_freq(const RopeConfig& rope, int head_dim);
// (T, D/2) cos and sin tables for the given per-token positions.
void rope_tables(const std::vector<float>& inv_freq, const int32_t* positions, int64_t T, float* cos_t,
                 float* sin_t, ThreadPool* pool);
// In place on x (T, heads*D): x1' = x1 c - x2 s, x2' = x2 c + x1 s.
void rope_fwd(float* x, int64_t T, int heads, int head_dim, const float* cos_t, const float* sin_t,
              ThreadPool* pool);
// In place on dx: the transpose of rope_fwd.
void rope_bwd(float* dx, int64_t T, int heads, int head_dim, const float* cos_t, const float* sin_t,
              ThreadPool* pool);

// ---- Causal varlen GQA attention ----
struct AttentionShape {
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  float scale = 0.f;
};
// (T, nH*D) q, o; (T, nKV*D) k, v; (T, nH) lse; cu_seqlens (nseq + 1).
void attention_fwd(const float* q, const float* k, const float* v, float* o, float* lse, const int32_t* cu_seqlens,
                   int nseq, const AttentionShape& shape, ThreadPool* pool);
// Flash-style backward: recomputes probabilities from lse; D_i = dO_i . O_i,
// dS = P * (dP - D). dq, dk, dv are overwritten. Parallel over (sample, kv head).
void attention_bwd(const float* q, const float* k, const float* v, const float* o, const float* lse,
                   const float* d_o, float* dq, float* dk, float* dv, const int32_t* cu_seqlens, int nseq,
                   const AttentionShape& shape, ThreadPool* pool);
// Decode: row r (nH*D) of q attends to the first n_keys[r] rows of its own cache
// k_cache[r] / v_cache[r] (rows of nKV*D). Writes o (rows, nH*D).
void attention_cached(const float* q, const float* const* k_cache, const float* const* v_cache,
                      const int64_t* n_keys, float* o, int64_t rows, const AttentionShape& shape, ThreadPool* pool);

// ---- SwiGLU: a = silu(g) * u ----
void swiglu_fwd(const float* g, const float* u, float* a, int64_t n, ThreadPool* pool);
void swiglu_bwd(const float* da, const float* g, const float* u, float* dg, float* du, int64_t n, ThreadPool* pool);

// ---- Scaled residual: out = b * branch + s * resid (branch null: out = s * resid) ----
void scaled_residual_fwd(const float* branch, const float* resid, float b, float s, float* out, int64_t n,
                         ThreadPool* pool);
// Per-row partial dot products <g, branch> and <g, resid> summed into *dot_branch,
// *dot_resid in row order (branch null: dot_branch = 0), and d_resid = s * g.
// `row_partials` is scratch of 2 * rows doubles.
void scaled_residual_bwd(const float* g, const float* branch, const float* resid, float s, float* d_resid,
                         int64_t rows, int64_t dim, double* dot_branch, double* dot_resid, double* row_partials,
                         ThreadPool* pool);

// ---- Fused chunked cross-entropy over selected rows ----
// For each loss row r: z = (x[rows[r]] . lm_head^T) * logit_mult (V values, one chunk
// of `chunk` rows at a time), nll[r] = logsumexp(z) - z[targets[r]]. When dx is not
// null, dx[rows[r]] (+)= (weights[r] * (softmax(z) - onehot)) * logit_mult x lm_head
// (other rows untouched). Never holds more than chunk x V logits.
void fused_cross_entropy(const float* x, int64_t hidden, MatRef lm_head, int64_t vocab, float logit_mult,
                         const int64_t* rows, const int32_t* targets, const float* weights, int64_t nrows,
                         double* nll, float* dx, int64_t chunk, MemoryMeter* meter, ThreadPool* pool,
                         Arith arith = Arith::F32);

// Dot product and squared norms in double (cosine similarities).
void row_cosines(const float* a, const float* b, int64_t rows, int64_t dim, double* cos_out, ThreadPool* pool);

}  // namespace cpu
}  // namespace hs
