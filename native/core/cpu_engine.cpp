// The CPU engine: fp32 forward (weights read in their checkpoint dtype and widened
// exactly; Arith::BF16 rounds the GEMMs' activation operand to bf16), theta-only
// backward, fused chunked loss, greedy
// generation with a KV cache, and layer similarity statistics, built from the
// kernels in cpu_kernels.h and the GEMMs in gemm.h. This is the correctness
// reference of the project.
//
// Samples are packed without padding (positions restart at 0 per sample,
// attention is causal inside a sample, cu_seqlens style). Backward produces only
// dL/dtheta: per layer the four scaled-residual reductions <g_out, M>, <g_out, x1>,
// <g1, A>, <g1, h>; weights and the embedding get no gradient.
//
// Memory: BatchOptions.recompute=false keeps each layer's activations from the
// forward; recompute=true keeps only each layer's input and re-runs that layer's
// forward (the same code) just before its backward. LossResult.peak_bytes is the
// peak of all activation and workspace buffers of the call.
//
// Determinism guarantee: for the same inputs, loss, gradients, logits, generated
// tokens and statistics are bit-identical for every thread count and for
// recompute on or off. All parallel work is split over independent outputs only
// (GEMM rows/columns, token rows, (token, head) pairs, (sample, kv head) pairs for
// the attention backward, so dK/dV accumulate without races), every output is
// computed in a fixed operation order, and every cross-row reduction writes one
// partial per row that is summed in row order.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "cpu_kernels.h"
#include "engine.h"
#include "errors.h"
#include "gemm.h"
#include "threadpool.h"

namespace hs {

namespace {

using cpu::Buffer;
using cpu::MemoryMeter;

constexpr int64_t kLossChunkRows = 64;

// Token layout of one call: packed samples (cu_seqlens) or one decode step.
struct Layout {
  int64_t T = 0;
  std::vector<int32_t> tokens;
  std::vector<int32_t> positions;
  std::vector<int32_t> cu_seqlens;  // nseq + 1 offsets (packed mode)
  Buffer<float> cos, sin;           // (T, D/2)
};

// Per-sequence KV cache of one layer (rows of nKV * D, roped keys).
struct LayerCache {
  std::vector<std::vector<float>> k, v;
};

// How the attention of a layer forward gets its keys.
struct CacheMode {
  std::vector<LayerCache>* caches = nullptr;  // per layer (empty entries for skipped layers)
  bool prefill = false;                        // packed prompts: write rows to the caches
  const std::vector<int>* row_seq = nullptr;   // decode: sequence of each row
  const std::vector<int64_t>* row_pos = nullptr;  // decode: position (= cache length) of each row
};

// Activations of one layer that the backward reads.
struct LayerActs {
  Buffer<float> rstd1, q, k, v, qpre, kpre, rstdq, rstdk, o, lse, A, x1, rstd2, g, u, M;
};

// Transient buffers shared by all layers.
struct Scratch {
  Buffer<float> n, act;                                    // forward
  Buffer<float> tmp, dn, da, dg, du, d_o, dq, dk, dv, g1;  // backward
  Buffer<double> partials;
};

class CpuEngine final : public Engine {
 public:
  CpuEngine(const LoadedModel& model, int threads, Arith arith)
      : Engine(model.config),
        cfg_(model.config), w_(*model.weights), pool_(threads), arith_(arith) {
    H_ = cfg_.hidden;
    I_ = cfg_.intermediate;
    nH_ = cfg_.num_heads;
    nKV_ = cfg_.num_kv_heads;
    D_ = cfg_.head_dim;
    V_ = cfg_.vocab;
    QW_ = static_cast<int64_t>(nH_) * D_;
    KW_ = static_cast<int64_t>(nKV_) * D_;
    eps_ = static_cast<float>(cfg_.rms_eps);
    attn_.heads = nH_;
    attn_.kv_heads = nKV_;
    attn_.head_dim = D_;
    attn_.scale = static_cast<float>(cfg_.attention_scale > 0.0 ? cfg_.attention_scale
                                                                : 1.0 / std::sqrt(static_cast<double>(D_)));
    rm_ = static_cast<float>(cfg_.residual_multiplier);
    emb_mult_ = static_cast<float>(cfg_.embedding_multiplier);
    logit_mult_ = static_cast<float>(1.0 / cfg_.logits_scaling);
    inv_freq_ = cpu::rope_inv_freq(cfg_.rope, D_);
    if (nKV_ <= 0 || nH_ % nKV_ != 0 || D_ % 2 != 0)
      fail(code::kConfigInvalid, "make_cpu_engine: num_heads must be a multiple of num_kv_heads and head_dim even");
  }

  const char* device() const override { return "cpu"; }

 protected:
  LossResult run_loss(const std::vector<Sample>& samples, const Theta& theta, const BatchOptions& opts,
                      bool want_grad) override;
  std::vector<float> run_logits(const std::vector<int32_t>& tokens, const Theta& theta,
                                const std::vector<int>& skip) override;
  LayerStats run_layer_stats(const std::vector<Sample>& samples, const Theta& theta, const std::vector<int>& skip,
                             const std::vector<int>& hidden_layers) override;
  // Every prompt of a call in one packed prefill; the decode steps run all active prompts
  // through the GEMMs together.
  size_t generation_group() const override { return 0; }
  std::unique_ptr<Decoder> open_decoder(const Theta& theta, const std::vector<int>& skip) override;

 private:
  friend class CpuDecoder;
  std::vector<bool> skip_mask(const std::vector<int>& skip) const {
    std::vector<bool> m(cfg_.num_layers, false);
    for (int l : skip) m[l] = true;
    return m;
  }
  void build_layout(Layout& lay, MemoryMeter* meter) {
    lay.T = static_cast<int64_t>(lay.tokens.size());
    lay.cos.reset(meter, static_cast<size_t>(lay.T * (D_ / 2)));
    lay.sin.reset(meter, static_cast<size_t>(lay.T * (D_ / 2)));
    cpu::rope_tables(inv_freq_, lay.positions.data(), lay.T, lay.cos.data(), lay.sin.data(), &pool_);
  }
  static Layout pack(const std::vector<Sample>& samples) {
    Layout lay;
    lay.cu_seqlens.push_back(0);
    for (const Sample& s : samples) {
      int32_t p = 0;
      for (int32_t t : s.prompt) lay.tokens.push_back(t), lay.positions.push_back(p++);
      for (int32_t t : s.response) lay.tokens.push_back(t), lay.positions.push_back(p++);
      lay.cu_seqlens.push_back(static_cast<int32_t>(lay.tokens.size()));
    }
    return lay;
  }
  void alloc_acts(LayerActs& a, int64_t T, bool attention, MemoryMeter* meter) const {
    const size_t t = static_cast<size_t>(T);
    if (attention) {
      a.rstd1.reset(meter, t);
      a.q.reset(meter, t * QW_);
      a.k.reset(meter, t * KW_);
      a.v.reset(meter, t * KW_);
      if (cfg_.qk_norm) {
        a.qpre.reset(meter, t * QW_);
        a.kpre.reset(meter, t * KW_);
        a.rstdq.reset(meter, t * nH_);
        a.rstdk.reset(meter, t * nKV_);
      }
      a.o.reset(meter, t * QW_);
      a.lse.reset(meter, t * nH_);
      a.A.reset(meter, t * H_);
    }
    a.x1.reset(meter, t * H_);
    a.rstd2.reset(meter, t);
    a.g.reset(meter, t * I_);
    a.u.reset(meter, t * I_);
    a.M.reset(meter, t * H_);
  }
  void alloc_forward_scratch(Scratch& s, int64_t T, MemoryMeter* meter) const {
    s.n.reset(meter, static_cast<size_t>(T * H_));
    s.act.reset(meter, static_cast<size_t>(T * I_));
  }
  void alloc_backward_scratch(Scratch& s, int64_t T, bool any_attention, MemoryMeter* meter) const {
    const size_t t = static_cast<size_t>(T);
    s.tmp.reset(meter, t * H_);
    s.dn.reset(meter, t * H_);
    s.da.reset(meter, t * I_);
    s.dg.reset(meter, t * I_);
    s.du.reset(meter, t * I_);
    s.g1.reset(meter, t * H_);
    if (any_attention) {
      s.d_o.reset(meter, t * QW_);
      s.dq.reset(meter, t * QW_);
      s.dk.reset(meter, t * KW_);
      s.dv.reset(meter, t * KW_);
    }
    s.partials.reset(meter, 2 * t);
  }

  void linear(const float* x, MatRef W, const float* bias, float* y, int64_t T, int64_t out, int64_t in,
              float mult = 1.f) {
    gemm_nt(T, out, in, x, in, W, in, y, out, false, &pool_, arith_);
    if (!bias && mult == 1.f) return;
    pool_.parallel_for(T, std::max<int64_t>(1, 16384 / out), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* yr = y + r * out;
        if (bias)
          for (int64_t i = 0; i < out; ++i) yr[i] += bias[i];
        if (mult != 1.f)
          for (int64_t i = 0; i < out; ++i) yr[i] *= mult;
      }
    });
  }
  void scale_into(const float* x, float c, float* y, int64_t n) {
    pool_.parallel_for(n, 16384, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) y[i] = c * x[i];
    });
  }

  void embed(const Layout& lay, float* h) {
    pool_.parallel_for(lay.T, std::max<int64_t>(1, 16384 / H_), [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        float* hr = h + t * H_;
        w_.embed.widen(static_cast<int64_t>(lay.tokens[t]) * H_, H_, hr);
        for (int64_t i = 0; i < H_; ++i) hr[i] = hr[i] * emb_mult_;
      }
    });
  }

  void layer_forward(int l, const Layout& lay, const float* h, float* h_next, LayerActs& a, Scratch& s,
                     const Theta& th, bool skipped, const CacheMode* cache);
  void layer_backward(int l, const Layout& lay, const float* h, LayerActs& a, Scratch& s, const Theta& th,
                      bool skipped, const float* g_out, float* g_in, Theta& grad);

  // Embeds lay's tokens and runs every layer forward (keeping nothing for a backward);
  // the last layer's output ends in h. h and h_next hold lay.T x hidden floats.
  void forward_layers(const Layout& lay, const Theta& th, const std::vector<bool>& skipped, const CacheMode* cache,
                      std::vector<float>& h, std::vector<float>& h_next, LayerActs& a, Scratch& s) {
    embed(lay, h.data());
    for (int l = 0; l < cfg_.num_layers; ++l) {
      layer_forward(l, lay, h.data(), h_next.data(), a, s, th, skipped[l], cache);
      std::swap(h, h_next);
    }
  }
  void final_logits_rows(const float* h_final, const std::vector<int64_t>& rows, float* out);

  const ModelConfig& cfg_;
  const Weights& w_;
  ThreadPool pool_;
  Arith arith_;
  int64_t H_, I_, QW_, KW_, V_;
  int nH_, nKV_, D_;
  float eps_, rm_, emb_mult_, logit_mult_;
  cpu::AttentionShape attn_;
  std::vector<float> inv_freq_;
};

void CpuEngine::layer_forward(int l, const Layout& lay, const float* h, float* h_next, LayerActs& a, Scratch& s,
                              const Theta& th, bool skipped, const CacheMode* cache) {
  const LayerWeights& lw = w_.layers[l];
  const int64_t T = lay.T;
  if (!skipped) {
    cpu::rmsnorm_fwd(h, lw.input_norm, s.n.data(), a.rstd1.data(), T, H_, eps_, &pool_);
    float* qd = cfg_.qk_norm ? a.qpre.data() : a.q.data();
    float* kd = cfg_.qk_norm ? a.kpre.data() : a.k.data();
    linear(s.n.data(), lw.q, lw.q_bias, qd, T, QW_, H_);
    linear(s.n.data(), lw.k, lw.k_bias, kd, T, KW_, H_);
    linear(s.n.data(), lw.v, lw.v_bias, a.v.data(), T, KW_, H_);
    if (cfg_.qk_norm) {
      cpu::rmsnorm_fwd(qd, lw.q_norm, a.q.data(), a.rstdq.data(), T * nH_, D_, eps_, &pool_);
      cpu::rmsnorm_fwd(kd, lw.k_norm, a.k.data(), a.rstdk.data(), T * nKV_, D_, eps_, &pool_);
    }
    cpu::rope_fwd(a.q.data(), T, nH_, D_, lay.cos.data(), lay.sin.data(), &pool_);
    cpu::rope_fwd(a.k.data(), T, nKV_, D_, lay.cos.data(), lay.sin.data(), &pool_);
    if (cache && !cache->prefill) {
      // Decode step: append this row's key/value to its sequence cache, attend over the cache.
      LayerCache& lc = (*cache->caches)[l];
      std::vector<const float*> kp(T), vp(T);
      std::vector<int64_t> nk(T);
      for (int64_t r = 0; r < T; ++r) {
        const int sq = (*cache->row_seq)[r];
        const int64_t pos = (*cache->row_pos)[r];
        std::copy_n(a.k.data() + r * KW_, KW_, lc.k[sq].data() + pos * KW_);
        std::copy_n(a.v.data() + r * KW_, KW_, lc.v[sq].data() + pos * KW_);
        kp[r] = lc.k[sq].data();
        vp[r] = lc.v[sq].data();
        nk[r] = pos + 1;
      }
      cpu::attention_cached(a.q.data(), kp.data(), vp.data(), nk.data(), a.o.data(), T, attn_, &pool_);
    } else {
      const int nseq = static_cast<int>(lay.cu_seqlens.size()) - 1;
      if (cache) {
        LayerCache& lc = (*cache->caches)[l];
        for (int sq = 0; sq < nseq; ++sq) {
          const int64_t st = lay.cu_seqlens[sq], len = lay.cu_seqlens[sq + 1] - st;
          std::copy_n(a.k.data() + st * KW_, len * KW_, lc.k[sq].data());
          std::copy_n(a.v.data() + st * KW_, len * KW_, lc.v[sq].data());
        }
      }
      cpu::attention_fwd(a.q.data(), a.k.data(), a.v.data(), a.o.data(), a.lse.data(), lay.cu_seqlens.data(), nseq,
                         attn_, &pool_);
    }
    linear(a.o.data(), lw.o, lw.o_bias, a.A.data(), T, H_, QW_, rm_);
    cpu::scaled_residual_fwd(a.A.data(), h, th.b_att[l], th.s_att[l], a.x1.data(), T * H_, &pool_);
  } else {
    cpu::scaled_residual_fwd(nullptr, h, 0.f, th.s_att[l], a.x1.data(), T * H_, &pool_);
  }
  cpu::rmsnorm_fwd(a.x1.data(), lw.post_norm, s.n.data(), a.rstd2.data(), T, H_, eps_, &pool_);
  linear(s.n.data(), lw.gate, lw.gate_bias, a.g.data(), T, I_, H_);
  linear(s.n.data(), lw.up, lw.up_bias, a.u.data(), T, I_, H_);
  cpu::swiglu_fwd(a.g.data(), a.u.data(), s.act.data(), T * I_, &pool_);
  linear(s.act.data(), lw.down, lw.down_bias, a.M.data(), T, H_, I_, rm_);
  cpu::scaled_residual_fwd(a.M.data(), a.x1.data(), th.b_mlp[l], th.s_mlp[l], h_next, T * H_, &pool_);
}

void CpuEngine::layer_backward(int l, const Layout& lay, const float* h, LayerActs& a, Scratch& s, const Theta& th,
                               bool skipped, const float* g_out, float* g_in, Theta& grad) {
  const LayerWeights& lw = w_.layers[l];
  const int64_t T = lay.T;
  double db = 0.0, ds = 0.0;
  // MLP residual: h_next = b_mlp M + s_mlp x1.
  cpu::scaled_residual_bwd(g_out, a.M.data(), a.x1.data(), th.s_mlp[l], s.g1.data(), T, H_, &db, &ds,
                           s.partials.data(), &pool_);
  grad.b_mlp[l] = static_cast<float>(db);
  grad.s_mlp[l] = static_cast<float>(ds);
  scale_into(g_out, th.b_mlp[l] * rm_, s.tmp.data(), T * H_);
  gemm_nn(T, I_, H_, s.tmp.data(), H_, lw.down, I_, s.da.data(), I_, false, &pool_, arith_);
  cpu::swiglu_bwd(s.da.data(), a.g.data(), a.u.data(), s.dg.data(), s.du.data(), T * I_, &pool_);
  gemm_nn(T, H_, I_, s.dg.data(), I_, lw.gate, H_, s.dn.data(), H_, false, &pool_, arith_);
  gemm_nn(T, H_, I_, s.du.data(), I_, lw.up, H_, s.dn.data(), H_, true, &pool_, arith_);
  cpu::rmsnorm_bwd(s.dn.data(), a.x1.data(), lw.post_norm, a.rstd2.data(), s.g1.data(), T, H_, true, &pool_);
  // Attention residual: x1 = b_att A + s_att h.
  cpu::scaled_residual_bwd(s.g1.data(), skipped ? nullptr : a.A.data(), h, th.s_att[l], g_in, T, H_, &db, &ds,
                           s.partials.data(), &pool_);
  grad.b_att[l] = skipped ? 0.f : static_cast<float>(db);
  grad.s_att[l] = static_cast<float>(ds);
  if (skipped || !g_in) return;
  scale_into(s.g1.data(), th.b_att[l] * rm_, s.tmp.data(), T * H_);
  gemm_nn(T, QW_, H_, s.tmp.data(), H_, lw.o, QW_, s.d_o.data(), QW_, false, &pool_, arith_);
  const int nseq = static_cast<int>(lay.cu_seqlens.size()) - 1;
  cpu::attention_bwd(a.q.data(), a.k.data(), a.v.data(), a.o.data(), a.lse.data(), s.d_o.data(), s.dq.data(),
                     s.dk.data(), s.dv.data(), lay.cu_seqlens.data(), nseq, attn_, &pool_);
  cpu::rope_bwd(s.dq.data(), T, nH_, D_, lay.cos.data(), lay.sin.data(), &pool_);
  cpu::rope_bwd(s.dk.data(), T, nKV_, D_, lay.cos.data(), lay.sin.data(), &pool_);
  if (cfg_.qk_norm) {
    cpu::rmsnorm_bwd(s.dq.data(), a.qpre.data(), lw.q_norm, a.rstdq.data(), s.dq.data(), T * nH_, D_, false, &pool_);
    cpu::rmsnorm_bwd(s.dk.data(), a.kpre.data(), lw.k_norm, a.rstdk.data(), s.dk.data(), T * nKV_, D_, false,
                     &pool_);
  }
  gemm_nn(T, H_, QW_, s.dq.data(), QW_, lw.q, H_, s.dn.data(), H_, false, &pool_, arith_);
  gemm_nn(T, H_, KW_, s.dk.data(), KW_, lw.k, H_, s.dn.data(), H_, true, &pool_, arith_);
  gemm_nn(T, H_, KW_, s.dv.data(), KW_, lw.v, H_, s.dn.data(), H_, true, &pool_, arith_);
  cpu::rmsnorm_bwd(s.dn.data(), h, lw.input_norm, a.rstd1.data(), g_in, T, H_, true, &pool_);
}

LossResult CpuEngine::run_loss(const std::vector<Sample>& samples, const Theta& theta, const BatchOptions& opts,
                               bool want_grad) {
  const int L = cfg_.num_layers;
  const std::vector<bool> skipped = skip_mask(opts.skip);
  MemoryMeter meter;
  Layout lay = pack(samples);
  build_layout(lay, &meter);
  const int64_t T = lay.T;

  // Loss rows: position p predicts token p + 1 when that token is a response token.
  std::vector<int64_t> rows;
  std::vector<int32_t> targets;
  std::vector<int> row_sample;
  int64_t response_tokens = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const int64_t first = lay.cu_seqlens[i] + static_cast<int64_t>(samples[i].prompt.size()) - 1;
    for (size_t j = 0; j < samples[i].response.size(); ++j) {
      rows.push_back(first + static_cast<int64_t>(j));
      targets.push_back(samples[i].response[j]);
      row_sample.push_back(static_cast<int>(i));
    }
    response_tokens += static_cast<int64_t>(samples[i].response.size());
  }
  const int64_t nrows = static_cast<int64_t>(rows.size());
  const double denom = opts.token_mean ? static_cast<double>(response_tokens) : static_cast<double>(samples.size());
  std::vector<float> weights(static_cast<size_t>(nrows), static_cast<float>(1.0 / denom));

  // Forward: with a gradient, keep every layer input, and the layer internals
  // unless recomputing; without one, two hidden-state buffers alternate.
  std::vector<Buffer<float>> hs(want_grad ? L + 1 : 2);
  for (auto& b : hs) b.reset(&meter, static_cast<size_t>(T * H_));
  auto hidden = [&](int l) { return hs[want_grad ? l : l % 2].data(); };
  const bool keep = want_grad && !opts.recompute;
  bool any_attention = false;
  for (int l = 0; l < L; ++l) any_attention = any_attention || !skipped[l];
  std::vector<LayerActs> acts(keep ? L : 1);
  if (keep) {
    for (int l = 0; l < L; ++l) alloc_acts(acts[l], T, !skipped[l], &meter);
  } else {
    alloc_acts(acts[0], T, any_attention, &meter);
  }
  Scratch scratch;
  alloc_forward_scratch(scratch, T, &meter);
  embed(lay, hidden(0));
  for (int l = 0; l < L; ++l)
    layer_forward(l, lay, hidden(l), hidden(l + 1), acts[keep ? l : 0], scratch, theta, skipped[l], nullptr);

  // Final norm and the fused chunked cross-entropy (gradient written in the same pass).
  Buffer<float> hf(&meter, static_cast<size_t>(T * H_)), rstdf(&meter, static_cast<size_t>(T));
  cpu::rmsnorm_fwd(hidden(L), w_.final_norm, hf.data(), rstdf.data(), T, H_, eps_, &pool_);
  Buffer<double> nll(&meter, static_cast<size_t>(nrows));
  Buffer<float> dhf;
  if (want_grad) dhf.reset(&meter, static_cast<size_t>(T * H_));
  cpu::fused_cross_entropy(hf.data(), H_, w_.lm_head, V_, logit_mult_, rows.data(), targets.data(), weights.data(),
                           nrows, nll.data(), want_grad ? dhf.data() : nullptr, kLossChunkRows, &meter, &pool_,
                           arith_);

  LossResult res;
  res.response_tokens = response_tokens;
  res.sample_nll.assign(samples.size(), 0.0);
  double total = 0.0;
  for (int64_t r = 0; r < nrows; ++r) {
    total += nll[r];
    res.sample_nll[row_sample[r]] += nll[r];
  }
  res.loss = total / denom;

  if (want_grad) {
    res.grad = Theta::ones(L);
    alloc_backward_scratch(scratch, T, any_attention, &meter);
    Buffer<float> g(&meter, static_cast<size_t>(T * H_)), g_prev(&meter, static_cast<size_t>(T * H_));
    cpu::rmsnorm_bwd(dhf.data(), hs[L].data(), w_.final_norm, rstdf.data(), g.data(), T, H_, false, &pool_);
    dhf.release();
    hf.release();
    for (int l = L - 1; l >= 0; --l) {
      LayerActs& a = acts[keep ? l : 0];
      if (!keep) layer_forward(l, lay, hs[l].data(), hs[l + 1].data(), a, scratch, theta, skipped[l], nullptr);
      // The embedding gets no gradient: layer 0 stops after its theta reductions.
      layer_backward(l, lay, hs[l].data(), a, scratch, theta, skipped[l], g.data(), l > 0 ? g_prev.data() : nullptr,
                     res.grad);
      std::swap(g, g_prev);
    }
  }
  res.peak_bytes = meter.peak;
  return res;
}

void CpuEngine::final_logits_rows(const float* h_final, const std::vector<int64_t>& rows, float* out) {
  const int64_t n = static_cast<int64_t>(rows.size());
  std::vector<float> x(static_cast<size_t>(n * H_));
  for (int64_t r = 0; r < n; ++r) std::copy_n(h_final + rows[r] * H_, H_, x.data() + r * H_);
  cpu::rmsnorm_fwd(x.data(), w_.final_norm, x.data(), nullptr, n, H_, eps_, &pool_);
  gemm_nt(n, V_, H_, x.data(), H_, w_.lm_head, H_, out, V_, false, &pool_, arith_);
  if (logit_mult_ != 1.f) {
    const float m = logit_mult_;
    pool_.parallel_for(n * V_, 16384, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) out[i] *= m;
    });
  }
}

std::vector<float> CpuEngine::run_logits(const std::vector<int32_t>& tokens, const Theta& theta,
                                         const std::vector<int>& skip) {
  const std::vector<bool> skipped = skip_mask(skip);
  Layout lay;
  lay.tokens = tokens;
  for (size_t i = 0; i < tokens.size(); ++i) lay.positions.push_back(static_cast<int32_t>(i));
  lay.cu_seqlens = {0, static_cast<int32_t>(tokens.size())};
  build_layout(lay, nullptr);
  const int64_t T = lay.T;
  std::vector<float> h(static_cast<size_t>(T * H_)), h_next(h.size());
  LayerActs acts;
  alloc_acts(acts, T, true, nullptr);
  Scratch scratch;
  alloc_forward_scratch(scratch, T, nullptr);
  forward_layers(lay, theta, skipped, nullptr, h, h_next, acts, scratch);
  std::vector<int64_t> rows(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) rows[t] = t;
  std::vector<float> out(static_cast<size_t>(T * V_));
  final_logits_rows(h.data(), rows, out.data());
  return out;
}

// Greedy generation steps over KV caches for the kept layers only, sized prompt +
// max_new_tokens per sequence: the prompts as one packed batch, then one row per
// active prompt per step.
class CpuDecoder final : public Decoder {
 public:
  CpuDecoder(CpuEngine& e, const Theta& theta, const std::vector<int>& skip)
      : e_(e), theta_(theta), skipped_(e.skip_mask(skip)) {}

  void prefill(const std::vector<std::vector<int32_t>>& prompts, int64_t max_new, std::vector<int32_t>& next) override {
    const int n = static_cast<int>(prompts.size());
    const int L = e_.cfg_.num_layers;
    caches_.assign(static_cast<size_t>(L), LayerCache{});
    for (int l = 0; l < L; ++l) {
      if (skipped_[l]) continue;
      caches_[l].k.resize(n);
      caches_[l].v.resize(n);
      for (int i = 0; i < n; ++i) {
        const size_t cap = static_cast<size_t>((static_cast<int64_t>(prompts[i].size()) + max_new) * e_.KW_);
        caches_[l].k[i].assign(cap, 0.f);
        caches_[l].v[i].assign(cap, 0.f);
      }
    }
    std::vector<Sample> as_samples(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) as_samples[i].prompt = prompts[i];
    Layout lay = CpuEngine::pack(as_samples);
    e_.build_layout(lay, nullptr);
    const int64_t T = lay.T;
    std::vector<float> h(static_cast<size_t>(T * e_.H_)), h_next(h.size());
    LayerActs acts;
    e_.alloc_acts(acts, T, true, nullptr);
    Scratch scratch;
    e_.alloc_forward_scratch(scratch, T, nullptr);
    CacheMode mode;
    mode.caches = &caches_;
    mode.prefill = true;
    e_.forward_layers(lay, theta_, skipped_, &mode, h, h_next, acts, scratch);
    std::vector<int64_t> last(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) last[i] = lay.cu_seqlens[i + 1] - 1;
    logit_rows_.resize(static_cast<size_t>(n * e_.V_));
    e_.final_logits_rows(h.data(), last, logit_rows_.data());
    for (int i = 0; i < n; ++i) next[i] = pick(logit_rows_.data() + static_cast<int64_t>(i) * e_.V_);
    // Decode buffers, sized for every prompt of the group at once.
    e_.alloc_acts(acts_, n, true, nullptr);
    e_.alloc_forward_scratch(scratch_, n, nullptr);
    h_.assign(static_cast<size_t>(n * e_.H_), 0.f);
    h_next_.assign(h_.size(), 0.f);
  }

  void decode(const std::vector<int>& seqs, const std::vector<int32_t>& tokens, const std::vector<int64_t>& positions,
              std::vector<int32_t>& next) override {
    const int64_t B = static_cast<int64_t>(seqs.size());
    Layout lay;
    for (int64_t r = 0; r < B; ++r) {
      lay.tokens.push_back(tokens[r]);
      lay.positions.push_back(static_cast<int32_t>(positions[r]));
    }
    e_.build_layout(lay, nullptr);
    CacheMode mode;
    mode.caches = &caches_;
    mode.row_seq = &seqs;
    mode.row_pos = &positions;
    e_.forward_layers(lay, theta_, skipped_, &mode, h_, h_next_, acts_, scratch_);
    std::vector<int64_t> rows(static_cast<size_t>(B));
    for (int64_t r = 0; r < B; ++r) rows[r] = r;
    e_.final_logits_rows(h_.data(), rows, logit_rows_.data());
    for (int64_t r = 0; r < B; ++r) next[r] = pick(logit_rows_.data() + r * e_.V_);
  }

 private:
  // The greedy choice: the smallest index holding the row's maximum.
  int32_t pick(const float* z) const {
    int32_t best = 0;
    for (int64_t j = 1; j < e_.V_; ++j)
      if (z[j] > z[best]) best = static_cast<int32_t>(j);
    return best;
  }

  CpuEngine& e_;
  const Theta& theta_;
  const std::vector<bool> skipped_;
  std::vector<LayerCache> caches_;
  std::vector<float> logit_rows_;
  LayerActs acts_;
  Scratch scratch_;
  std::vector<float> h_, h_next_;
};

std::unique_ptr<Decoder> CpuEngine::open_decoder(const Theta& theta, const std::vector<int>& skip) {
  return std::make_unique<CpuDecoder>(*this, theta, skip);
}

LayerStats CpuEngine::run_layer_stats(const std::vector<Sample>& samples, const Theta& theta,
                                      const std::vector<int>& skip, const std::vector<int>& hidden_layers) {
  const int L = cfg_.num_layers;
  const std::vector<bool> skipped = skip_mask(skip);
  Layout lay = pack(samples);
  build_layout(lay, nullptr);
  const int64_t T = lay.T;
  std::vector<float> h(static_cast<size_t>(T * H_)), h_next(h.size());
  LayerActs acts;
  alloc_acts(acts, T, true, nullptr);
  Scratch scratch;
  alloc_forward_scratch(scratch, T, nullptr);
  LayerStats st;
  st.hidden.resize(hidden_layers.size());
  auto capture = [&](int index, const std::vector<float>& state) {
    for (size_t i = 0; i < hidden_layers.size(); ++i)
      if (hidden_layers[i] == index) st.hidden[i] = state;
  };
  std::vector<double> cosv(static_cast<size_t>(T));
  auto mean_cos = [&](const float* a, const float* b) {
    cpu::row_cosines(a, b, T, H_, cosv.data(), &pool_);
    double s = 0.0;
    for (double c : cosv) s += c;
    return s / static_cast<double>(T);
  };
  embed(lay, h.data());
  for (int l = 0; l < L; ++l) {
    capture(l, h);
    layer_forward(l, lay, h.data(), h_next.data(), acts, scratch, theta, skipped[l], nullptr);
    st.cos_attn.push_back(mean_cos(h.data(), acts.x1.data()));
    st.cos_mlp.push_back(mean_cos(acts.x1.data(), h_next.data()));
    const double cb = mean_cos(h.data(), h_next.data());
    st.cos_block.push_back(cb);
    st.block_influence.push_back(1.0 - cb);
    std::swap(h, h_next);
  }
  capture(L, h);
  return st;
}

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(const LoadedModel& model, int threads, Arith arith) {
  if (!model.weights) fail(code::kArgument, "make_cpu_engine: the model has no weights loaded");
  return std::make_unique<CpuEngine>(model, threads, arith);
}

}  // namespace hs
