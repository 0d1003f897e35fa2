// CPU twins of the CUDA kernels: plain C++ (no CUDA headers), one per launcher, named
// after it: launch_<op>_<fwd|bwd> (<family>.cu) -> <op>_<fwd|bwd>_ref, and the self-test
// check of that kernel is named <op>_<fwd|bwd> (cuda_twins_test holds the three lists
// equal, so a kernel cannot come without its twin and its check). Each computes what
// its kernel computes at the kernel's precision (bf16 inputs given as floats, fp32
// accumulation, bf16 rounding where the kernel rounds), so a kernel-level check can
// hold the kernel to "error against fp64 <= 2 x the twin's error against fp64".
// hopscotch_cuda_selftest runs the kernels against these on the GPU; the native test
// driver cuda_twins_test checks the twins themselves against the CPU engine's kernels
// on every CI run.
#pragma once
#include <cstdint>
#include <vector>

namespace hs::cuda::twin {

// bf16 round-to-nearest-even of a float, returned as a float (what __float2bfloat16_rn
// stores, widened back).
float bf16_round(float x);
std::vector<float> bf16_round(const std::vector<float>& x);

// ---- attention (attention.cu, attention_mma.cu) ----
struct AttnShape {
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float scale = 0.f;
};
// Rounding the kernel applies inside: the FMA kernels keep P and dS in fp32; the
// tensor-core kernels feed bf16 P (and bf16 dS, dP operands) to the MMAs.
struct AttnRounding {
  bool p_bf16 = false;   // forward: P rounded to bf16 before P V
  bool ds_bf16 = false;  // backward: P and dS rounded to bf16 before dV, dK, dQ products
};
// q (Tq, nH*D), k/v (Tk, nKV*D) packed per cu_q / cu_k (bottom-right causal alignment,
// as attention.cuh). o is rounded to bf16 (the kernel writes bf16); lse (Tq, nH).
// Accumulates in T (float = the twin; double = the exact reference).
template <typename T>
void attention_fwd_ref(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                       const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k, const AttnShape& s,
                       const AttnRounding& r, bool round_o, std::vector<float>& o, std::vector<float>& lse);
// dq (Tq, nH*D), dk/dv (Tk, nKV*D) in fp32 from q, k, v, o, dout, lse.
template <typename T>
void attention_bwd_ref(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                       const std::vector<float>& o, const std::vector<float>& dout, const std::vector<float>& lse,
                       const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k, const AttnShape& s,
                       const AttnRounding& r, std::vector<float>& dq, std::vector<float>& dk, std::vector<float>& dv);
// The tensor-core kernels (attention_mma.cu): the same, in fp32 with their bf16 operands
// (P in the forward; P and dS in the backward).
inline void attention_mma_fwd_ref(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                                  const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k,
                                  const AttnShape& s, std::vector<float>& o, std::vector<float>& lse) {
  attention_fwd_ref<float>(q, k, v, cu_q, cu_k, s, AttnRounding{true, true}, true, o, lse);
}
inline void attention_mma_bwd_ref(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                                  const std::vector<float>& o, const std::vector<float>& dout,
                                  const std::vector<float>& lse, const std::vector<int32_t>& cu_q,
                                  const std::vector<int32_t>& cu_k, const AttnShape& s, std::vector<float>& dq,
                                  std::vector<float>& dk, std::vector<float>& dv) {
  attention_bwd_ref<float>(q, k, v, o, dout, lse, cu_q, cu_k, s, AttnRounding{true, true}, dq, dk, dv);
}

// ---- elementwise and row kernels ----
// rmsnorm_fwd_kernel: y = bf16(w * x * rstd), rstd = 1/sqrt(mean(x^2) + eps)
void rmsnorm_fwd_ref(const std::vector<float>& x, const std::vector<float>& w, int64_t T, int C, float eps,
                     std::vector<float>& y, std::vector<float>& rstd);
// swiglu_fwd_kernel: act = bf16(silu(g + bg) * (u + bu)) from (T, 2I) [gate | up]
void swiglu_fwd_ref(const std::vector<float>& gu, const std::vector<float>* bias, int64_t T, int I,
                    std::vector<float>& act);
// residual_fwd_kernel: out = coef_a * (a + bias) + coef_h * h
void residual_fwd_ref(const std::vector<float>& a, const std::vector<float>* bias, const std::vector<float>& h,
                      float coef_a, float coef_h, int64_t T, int C, std::vector<float>& out);
// rmsnorm_bwd_kernel: dx = r w dy - x r^3 / C sum(w dy x) + res_scale * dres
void rmsnorm_bwd_ref(const std::vector<float>& dy, const std::vector<float>& x, const std::vector<float>& w,
                     const std::vector<float>& rstd, const std::vector<float>* dres, float res_scale, int64_t T, int C,
                     std::vector<float>& dx);
// swiglu_bwd_kernel: d gate = bf16(d u s (1 + g (1 - s))), d up = bf16(d silu(g))
void swiglu_bwd_ref(const std::vector<float>& dact, const std::vector<float>& gu, const std::vector<float>* bias,
                    int64_t T, int I, std::vector<float>& dgu);
// residual_bwd_kernel: ga = bf16(coef_a g), gh = coef_h g, grad_b = a_scale <g, A>, grad_s = <g, h>
// (sums in double here: the kernel's fixed-order fp32 sums must come within 1e-5)
void residual_bwd_ref(const std::vector<float>& g, const std::vector<float>& a, const std::vector<float>& h,
                      float coef_a, float coef_h, float a_scale, std::vector<float>& ga, std::vector<float>& gh,
                      double& grad_b, double& grad_s);
// rope_fwd_kernel: q/k: (raw + bias), per-head RMSNorm when norm weights are given, then
// the rotate_half rotation at the token's position; v: raw + bias. All bf16 out.
struct RopeShape {
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float eps = 1e-6f;
};
void rope_fwd_ref(const std::vector<float>& qkv, const std::vector<float>* bias, const std::vector<float>* q_norm,
                  const std::vector<float>* k_norm, const std::vector<int32_t>& pos, const std::vector<float>& inv_freq,
                  const RopeShape& s, std::vector<float>& q, std::vector<float>& k, std::vector<float>& v);
// rope_bwd_kernel: the transpose of rope_fwd_ref (bf16 out, (T, QKV) [dq | dk | dv]).
void rope_bwd_ref(const std::vector<float>& dq, const std::vector<float>& dk, const std::vector<float>& dv,
                  const std::vector<float>& qkv, const std::vector<float>* bias, const std::vector<float>* q_norm,
                  const std::vector<float>* k_norm, const std::vector<int32_t>& pos,
                  const std::vector<float>& inv_freq, const RopeShape& s, std::vector<float>& dqkv);
// cross_entropy_fwd_kernel: nll = logsumexp(z) - z[t]; dz = w * grad_scale * (softmax - onehot)
void cross_entropy_fwd_ref(const std::vector<float>& logits, const std::vector<int32_t>& targets,
                           const std::vector<float>& weights, int64_t R, int V, float grad_scale,
                           std::vector<float>& nll, std::vector<float>& dlogits);
// gather_rows_fwd_kernel: dst[i] = src[rows[i]] ((R, H) from (T, H)); the fused
// cross-entropy's rows that carry a loss.
void gather_rows_fwd_ref(const std::vector<float>& src, const std::vector<int32_t>& rows, int H,
                         std::vector<float>& dst);
// scatter_rows_bwd_kernel: dst[rows[i]] = src[i] (distinct rows; other rows of dst untouched).
void scatter_rows_bwd_ref(const std::vector<float>& src, const std::vector<int32_t>& rows, int H,
                          std::vector<float>& dst);
// embedding_fwd_kernel: out[t] = scale * table[tokens[t]]
void embedding_fwd_ref(const std::vector<int32_t>& tokens, const std::vector<float>& table, int C, float scale,
                       std::vector<float>& out);
// argmax_fwd_kernel: smallest index of each row's maximum
void argmax_fwd_ref(const std::vector<float>& x, int64_t R, int V, std::vector<int32_t>& out);
// cosine_fwd_kernel: a.b / (|a||b|), 0 when a row is zero
void cosine_fwd_ref(const std::vector<float>& a, const std::vector<float>& b, int64_t T, int C,
                    std::vector<float>& out);
// cast_fwd_kernel and fill_random_fwd_kernel
void cast_fwd_ref(const std::vector<float>& in, std::vector<float>& out);
void fill_random_fwd_ref(int64_t n, uint32_t seed, std::vector<float>& out);

}  // namespace hs::cuda::twin
