// CudaEngine: the hs::Engine contract on one GPU.
//
// Precision: the large matrices (q/k/v/o, gate/up/down, embedding, lm_head) are bf16 on
// the device; norms and biases stay fp32. GEMMs take bf16 operands and accumulate in
// fp32 (cuBLASLt COMPUTE_32F). The residual stream (h, x1, h_next), GEMM outputs,
// gradients and theta reductions are fp32; the operands fed to the next GEMM (normed
// activations, attention output, SwiGLU output, gradients entering a GEMM) are bf16.
//
// Memory: a backward keeps only each layer's input h_l and recomputes the layer's
// internals right before its backward (layer-wise recomputation), so one layer's worth
// of activations exists at a time. A skipped layer's attention is never computed, and
// generation keeps no KV cache for it.
//
// Per layer l (theta = b_att, s_att, b_mlp, s_mlp; rm = residual_multiplier):
//   A = rm * (o(attn(rope(qkv(rmsnorm(h))))) + o_bias);  x1 = b_att A + s_att h
//   M = rm * (down(swiglu(gu(rmsnorm(x1)))) + down_bias); h' = b_mlp M + s_mlp x1
// The rm factor is folded into the residual coefficients (coef = b * rm) and into the
// b-gradient (a_scale = rm), so the stored A and M are the un-multiplied values.
#include "cuda_engine.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "argmax.cuh"
#include "attention.cuh"
#include "cast.cuh"
#include "cosine.cuh"
#include "cpu_kernels.h"
#include "cross_entropy.cuh"
#include "cublaslt.h"
#include "cuda_common.h"
#include "embedding.cuh"
#include "residual.cuh"
#include "rmsnorm.cuh"
#include "rope.cuh"
#include "swiglu.cuh"

namespace hs::cuda {

namespace {

constexpr size_t kLogitsChunkBytes = size_t(256) << 20;  // one (chunk, V) fp32 logits block
constexpr size_t kUploadChunk = size_t(16) << 20;        // fp32 elements staged per weight upload

struct DeviceLayer {
  bool has_attn = false;
  DeviceBuffer w_qkv;      // bf16 (QKV, H): [q rows | k rows | v rows]
  DeviceBuffer w_o;        // bf16 (H, nH*D)
  DeviceBuffer w_gu;       // bf16 (2I, H): [gate rows | up rows]
  DeviceBuffer w_down;     // bf16 (H, I)
  DeviceBuffer qkv_bias;   // fp32 (QKV) or empty
  DeviceBuffer o_bias;     // fp32 (H) or empty
  DeviceBuffer q_norm;     // fp32 (D) or empty
  DeviceBuffer k_norm;     // fp32 (D) or empty
  DeviceBuffer in_norm;    // fp32 (H)
  DeviceBuffer post_norm;  // fp32 (H)
  DeviceBuffer gu_bias;    // fp32 (2I) or empty
  DeviceBuffer down_bias;  // fp32 (H) or empty
};

template <typename T>
const T* ptr_or_null(const DeviceBuffer& b) {
  return b.bytes() > 0 ? b.as<T>() : nullptr;
}

// A packed batch on the host: tokens, positions, sequence boundaries, loss rows.
struct HostBatch {
  std::vector<int32_t> tokens, pos, cu;
  std::vector<int32_t> loss_rows, loss_targets, loss_sample;
  std::vector<float> loss_weights;
};

// Attention batch description on the device.
struct DeviceSeqs {
  DeviceBuffer cu_q, cu_k, q_tiles, k_tiles;
  int num_q_tiles = 0, num_k_tiles = 0;
};

template <typename T>
void upload(DeviceBuffer& dst, const std::vector<T>& src, cudaStream_t stream, const char* what) {
  dst.reserve(std::max<size_t>(src.size(), 1) * sizeof(T), what);
  if (!src.empty())
    check(cudaMemcpyAsync(dst.get(), src.data(), src.size() * sizeof(T), cudaMemcpyHostToDevice, stream), what);
}

}  // namespace

class CudaEngine final : public Engine {
 public:
  explicit CudaEngine(const LoadedModel& model);
  ~CudaEngine() override;

  const char* device() const override { return "cuda"; }
  LossResult loss(const std::vector<Sample>& samples, const Theta& theta, const BatchOptions& opts,
                  bool want_grad) override;
  std::vector<float> logits(const std::vector<int32_t>& tokens, const Theta& theta,
                            const std::vector<int>& skip) override;
  std::vector<std::vector<int32_t>> generate(const std::vector<std::vector<int32_t>>& prompts, const Theta& theta,
                                             const GenerateOptions& opts) override;
  LayerStats layer_stats(const std::vector<Sample>& samples, const Theta& theta, const std::vector<int>& skip,
                         const std::vector<int>& hidden_layers) override;

 private:
  // Per-call workspace (grown on demand, reused across calls).
  struct Work {
    // forward internals of one layer
    DeviceBuffer xn1, rstd1, qkv, q, k, v, attn_o, lse, A, x1, xn2, rstd2, gu, act, M;
    // backward
    DeviceBuffer g0, g1, ga, dact, dgu, dxn, dout, dq, dk, dv, delta, dqkv, partials, dtheta;
    // layer inputs h_0..h_L (or two ping-pong slots without a backward)
    DeviceBuffer hs;
    // batch
    DeviceBuffer tokens, pos;
    // fused cross-entropy
    DeviceBuffer ce_rows, ce_targets, ce_weights, ce_nll, ce_x, ce_xn, ce_rstd, ce_logits, ce_dxn, ce_dx;
    // per-token statistics
    DeviceBuffer cos_a, cos_b, cos_c;
    DeviceBuffer argmax;
  };

  void activate() const;
  void upload_bf16(bf16* dst, MatRef src, size_t n, const char* what);
  void upload_f32(DeviceBuffer& dst, const float* src, size_t n, const char* what);
  void compute_inv_freq();
  size_t reserve_forward(int64_t T);
  size_t reserve_backward(int64_t T);
  size_t reserve_ce(int64_t R, bool want_grad);
  int64_t ce_chunk(int64_t R) const;
  void upload_seqs(DeviceSeqs& s, const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k);
  std::vector<bool> skip_mask(const std::vector<int>& skip) const;
  HostBatch pack(const std::vector<Sample>& samples, bool token_mean) const;

  // One block forward: h (T,H) -> out (T,H). k_dst/v_dst receive this step's keys and
  // values (rows of the KV cache or the workspace); k_all/v_all are what attention
  // reads (Tk rows, as described by `seqs`).
  void layer_forward(int l, const float* h, float* out, int64_t T, const Theta& theta, bool skipped,
                     const int32_t* pos, const DeviceSeqs& seqs, bf16* k_dst, bf16* v_dst, const bf16* k_all,
                     const bf16* v_all);
  // One block backward after layer_forward(l) left its internals in the workspace.
  // g_out (T,H) = dL/dh_{l+1} -> g_in (T,H) = dL/dh_l; writes dtheta[4l..4l+3] on device.
  void layer_backward(int l, const float* h, const float* g_out, float* g1, float* g_in, int64_t T,
                      const Theta& theta, bool skipped, const int32_t* pos, const DeviceSeqs& seqs);
  // Final norm + lm_head for rows [0, T) of h, copied to host (T x V).
  void logits_rows(const float* h, int64_t T, float* host_out);

  ModelConfig cfg_;
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Gemm> gemm_;
  std::vector<DeviceLayer> layers_;
  DeviceBuffer embed_, lm_head_, final_norm_, inv_freq_, staging_;
  bool tied_ = false;
  int QD_ = 0, KVD_ = 0, QKV_ = 0;
  float rm_ = 1.f, attn_scale_ = 1.f, logit_scale_ = 1.f, emb_scale_ = 1.f, eps_ = 1e-6f;
  Work w_;
  std::mutex mu_;
};

// ---------------------------------------------------------------------------------------
// Construction

CudaEngine::CudaEngine(const LoadedModel& model) : cfg_(model.config) {
  if (model.weights == nullptr) fail(code::kInternal, "CUDA engine: the model has no weights loaded");
  if (const char* env = std::getenv("HOPSCOTCH_CUDA_DEVICE"); env != nullptr && *env != '\0')
    device_ = std::atoi(env);
  int count = 0;
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (count <= 0) fail(code::kCuda, "no CUDA device is available");
  if (device_ < 0 || device_ >= count)
    fail(code::kCuda, "HOPSCOTCH_CUDA_DEVICE=" + std::to_string(device_) + " but only " + std::to_string(count) +
                          " device(s) exist");
  activate();
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  gemm_ = std::make_unique<Gemm>();

  const ModelConfig& c = cfg_;
  if (c.head_dim > kAttnMaxHeadDim || c.head_dim % 2 != 0)
    fail(code::kConfigUnsupported, "head_dim " + std::to_string(c.head_dim) + " is not supported by the CUDA engine");
  QD_ = c.num_heads * c.head_dim;
  KVD_ = c.num_kv_heads * c.head_dim;
  QKV_ = QD_ + 2 * KVD_;
  rm_ = static_cast<float>(c.residual_multiplier);
  attn_scale_ = c.attention_scale > 0 ? static_cast<float>(c.attention_scale)
                                      : static_cast<float>(1.0 / std::sqrt(double(c.head_dim)));
  logit_scale_ = static_cast<float>(1.0 / (c.logits_scaling != 0 ? c.logits_scaling : 1.0));
  emb_scale_ = static_cast<float>(c.embedding_multiplier);
  eps_ = static_cast<float>(c.rms_eps);

  const Weights& wt = *model.weights;
  const size_t H = c.hidden, I = c.intermediate, V = c.vocab, D = c.head_dim;
  embed_.reserve(V * H * sizeof(bf16), "embedding");
  upload_bf16(embed_.as<bf16>(), wt.embed, V * H, "embedding");
  tied_ = wt.lm_head == wt.embed || !wt.lm_head;
  if (!tied_) {
    lm_head_.reserve(V * H * sizeof(bf16), "lm_head");
    upload_bf16(lm_head_.as<bf16>(), wt.lm_head, V * H, "lm_head");
  }
  upload_f32(final_norm_, wt.final_norm, H, "final norm");

  layers_.resize(c.num_layers);
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& lw = wt.layers[l];
    DeviceLayer& d = layers_[l];
    d.has_attn = static_cast<bool>(lw.q) && !(l < static_cast<int>(c.attention_absent.size()) && c.attention_absent[l]);
    upload_f32(d.in_norm, lw.input_norm, H, "input_layernorm");
    upload_f32(d.post_norm, lw.post_norm, H, "post_attention_layernorm");
    if (d.has_attn) {
      d.w_qkv.reserve(size_t(QKV_) * H * sizeof(bf16), "q/k/v projections");
      bf16* qkv = d.w_qkv.as<bf16>();
      upload_bf16(qkv, lw.q, size_t(QD_) * H, "q_proj");
      upload_bf16(qkv + size_t(QD_) * H, lw.k, size_t(KVD_) * H, "k_proj");
      upload_bf16(qkv + size_t(QD_ + KVD_) * H, lw.v, size_t(KVD_) * H, "v_proj");
      d.w_o.reserve(H * QD_ * sizeof(bf16), "o_proj");
      upload_bf16(d.w_o.as<bf16>(), lw.o, H * QD_, "o_proj");
      if (lw.q_bias != nullptr) {
        std::vector<float> b(QKV_);
        std::memcpy(b.data(), lw.q_bias, sizeof(float) * QD_);
        std::memcpy(b.data() + QD_, lw.k_bias, sizeof(float) * KVD_);
        std::memcpy(b.data() + QD_ + KVD_, lw.v_bias, sizeof(float) * KVD_);
        upload_f32(d.qkv_bias, b.data(), b.size(), "q/k/v bias");
      }
      if (lw.o_bias != nullptr) upload_f32(d.o_bias, lw.o_bias, H, "o_proj bias");
      if (lw.q_norm != nullptr) upload_f32(d.q_norm, lw.q_norm, D, "q_norm");
      if (lw.k_norm != nullptr) upload_f32(d.k_norm, lw.k_norm, D, "k_norm");
    }
    d.w_gu.reserve(2 * I * H * sizeof(bf16), "gate/up projections");
    upload_bf16(d.w_gu.as<bf16>(), lw.gate, I * H, "gate_proj");
    upload_bf16(d.w_gu.as<bf16>() + I * H, lw.up, I * H, "up_proj");
    d.w_down.reserve(H * I * sizeof(bf16), "down_proj");
    upload_bf16(d.w_down.as<bf16>(), lw.down, H * I, "down_proj");
    if (lw.gate_bias != nullptr) {
      std::vector<float> b(2 * I);
      std::memcpy(b.data(), lw.gate_bias, sizeof(float) * I);
      std::memcpy(b.data() + I, lw.up_bias, sizeof(float) * I);
      upload_f32(d.gu_bias, b.data(), b.size(), "gate/up bias");
    }
    if (lw.down_bias != nullptr) upload_f32(d.down_bias, lw.down_bias, H, "down_proj bias");
  }
  compute_inv_freq();
  check(cudaStreamSynchronize(stream_), "weight upload");
  staging_.release();
}

CudaEngine::~CudaEngine() {
  (void)cudaSetDevice(device_);
  if (stream_ != nullptr) (void)cudaStreamSynchronize(stream_);
  gemm_.reset();
  if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
}

void CudaEngine::activate() const { check(cudaSetDevice(device_), "cudaSetDevice"); }

void CudaEngine::upload_bf16(bf16* dst, MatRef src, size_t n, const char* what) {
  if (!src) fail(code::kMissingTensor, std::string("CUDA engine: weight ") + what + " is missing");
  // Weights are held in the checkpoint's dtype: widen a chunk to fp32 on the host
  // (exact), then cast to bf16 on the device as for fp32 weights.
  const size_t chunk = std::min(n, kUploadChunk);
  staging_.reserve(std::max<size_t>(chunk, 1) * sizeof(float), "weight upload staging");
  std::vector<float> host(src.type == WType::F32 ? 0 : chunk);
  for (size_t off = 0; off < n; off += chunk) {
    const size_t m = std::min(chunk, n - off);
    const float* from = src.type == WType::F32 ? src.f32() + off : host.data();
    if (src.type != WType::F32) src.widen(static_cast<int64_t>(off), static_cast<int64_t>(m), host.data());
    check(cudaMemcpyAsync(staging_.get(), from, m * sizeof(float), cudaMemcpyHostToDevice, stream_), what);
    launch_cast_fwd({staging_.as<float>(), dst + off, static_cast<int64_t>(m)}, stream_);
    if (src.type != WType::F32) check(cudaStreamSynchronize(stream_), what);  // `host` is reused
  }
}

void CudaEngine::upload_f32(DeviceBuffer& dst, const float* src, size_t n, const char* what) {
  if (src == nullptr) fail(code::kMissingTensor, std::string("CUDA engine: weight ") + what + " is missing");
  dst.reserve(n * sizeof(float), what);
  check(cudaMemcpyAsync(dst.get(), src, n * sizeof(float), cudaMemcpyHostToDevice, stream_), what);
  check(cudaStreamSynchronize(stream_), what);  // `src` may be a temporary
}

// inv_freq exactly as the CPU engine computes it (HF's fp32 recipe plus rope scaling).
void CudaEngine::compute_inv_freq() {
  const std::vector<float> inv = cpu::rope_inv_freq(cfg_.rope, cfg_.head_dim);
  upload_f32(inv_freq_, inv.data(), inv.size(), "rotary inv_freq");
}

// ---------------------------------------------------------------------------------------
// Workspace

size_t CudaEngine::reserve_forward(int64_t T) {
  const size_t t = static_cast<size_t>(T), H = cfg_.hidden, I = cfg_.intermediate, nH = cfg_.num_heads;
  Work& w = w_;
  w.xn1.reserve(t * H * sizeof(bf16), "normed input");
  w.rstd1.reserve(t * sizeof(float), "rstd");
  w.qkv.reserve(t * QKV_ * sizeof(float), "q/k/v projections");
  w.q.reserve(t * QD_ * sizeof(bf16), "queries");
  w.k.reserve(t * KVD_ * sizeof(bf16), "keys");
  w.v.reserve(t * KVD_ * sizeof(bf16), "values");
  w.attn_o.reserve(t * QD_ * sizeof(bf16), "attention output");
  w.lse.reserve(t * nH * sizeof(float), "attention logsumexp");
  w.A.reserve(t * H * sizeof(float), "attention block output");
  w.x1.reserve(t * H * sizeof(float), "x1");
  w.xn2.reserve(t * H * sizeof(bf16), "normed x1");
  w.rstd2.reserve(t * sizeof(float), "rstd");
  w.gu.reserve(t * 2 * I * sizeof(float), "gate/up projections");
  w.act.reserve(t * I * sizeof(bf16), "SwiGLU output");
  w.M.reserve(t * H * sizeof(float), "MLP output");
  w.tokens.reserve(t * sizeof(int32_t), "tokens");
  w.pos.reserve(t * sizeof(int32_t), "positions");
  size_t total = 0;
  for (const DeviceBuffer* b : {&w.xn1, &w.rstd1, &w.qkv, &w.q, &w.k, &w.v, &w.attn_o, &w.lse, &w.A, &w.x1, &w.xn2,
                                &w.rstd2, &w.gu, &w.act, &w.M, &w.tokens, &w.pos})
    total += b->bytes();
  return total;
}

size_t CudaEngine::reserve_backward(int64_t T) {
  const size_t t = static_cast<size_t>(T), H = cfg_.hidden, I = cfg_.intermediate, nH = cfg_.num_heads;
  Work& w = w_;
  w.g0.reserve(t * H * sizeof(float), "gradient");
  w.g1.reserve(t * H * sizeof(float), "gradient");
  w.ga.reserve(t * H * sizeof(bf16), "sub-layer output gradient");
  w.dact.reserve(t * I * sizeof(float), "SwiGLU output gradient");
  w.dgu.reserve(t * 2 * I * sizeof(bf16), "gate/up gradient");
  w.dxn.reserve(t * H * sizeof(float), "normed input gradient");
  w.dout.reserve(t * QD_ * sizeof(bf16), "attention output gradient");
  w.dq.reserve(t * QD_ * sizeof(float), "query gradient");
  w.dk.reserve(t * KVD_ * sizeof(float), "key gradient");
  w.dv.reserve(t * KVD_ * sizeof(float), "value gradient");
  w.delta.reserve(t * nH * sizeof(float), "attention delta");
  w.dqkv.reserve(t * QKV_ * sizeof(bf16), "q/k/v gradient");
  w.partials.reserve(residual_bwd_partials(T, cfg_.hidden) * sizeof(float), "residual partial sums");
  w.dtheta.reserve(4 * size_t(cfg_.num_layers) * sizeof(float), "theta gradient");
  size_t total = 0;
  for (const DeviceBuffer* b : {&w.g0, &w.g1, &w.ga, &w.dact, &w.dgu, &w.dxn, &w.dout, &w.dq, &w.dk, &w.dv,
                                &w.delta, &w.dqkv, &w.partials, &w.dtheta})
    total += b->bytes();
  return total;
}

int64_t CudaEngine::ce_chunk(int64_t R) const {
  const int64_t by_bytes = std::max<int64_t>(1, int64_t(kLogitsChunkBytes / (sizeof(float) * size_t(cfg_.vocab))));
  return std::max<int64_t>(1, std::min(R, by_bytes));
}

size_t CudaEngine::reserve_ce(int64_t R, bool want_grad) {
  const size_t chunk = static_cast<size_t>(ce_chunk(R)), H = cfg_.hidden, V = cfg_.vocab, r = size_t(R);
  Work& w = w_;
  w.ce_rows.reserve(r * sizeof(int32_t), "loss rows");
  w.ce_targets.reserve(r * sizeof(int32_t), "loss targets");
  w.ce_weights.reserve(r * sizeof(float), "loss weights");
  w.ce_nll.reserve(r * sizeof(float), "per-row NLL");
  w.ce_x.reserve(chunk * H * sizeof(float), "loss rows of h");
  w.ce_xn.reserve(chunk * H * sizeof(bf16), "normed loss rows");
  w.ce_rstd.reserve(chunk * sizeof(float), "rstd");
  w.ce_logits.reserve(chunk * V * sizeof(float), "logits chunk");
  size_t total = w.ce_rows.bytes() + w.ce_targets.bytes() + w.ce_weights.bytes() + w.ce_nll.bytes() +
                 w.ce_x.bytes() + w.ce_xn.bytes() + w.ce_rstd.bytes() + w.ce_logits.bytes();
  if (want_grad) {
    w.ce_dxn.reserve(chunk * H * sizeof(float), "normed loss rows gradient");
    w.ce_dx.reserve(chunk * H * sizeof(float), "loss rows gradient");
    total += w.ce_dxn.bytes() + w.ce_dx.bytes();
  }
  return total;
}

void CudaEngine::upload_seqs(DeviceSeqs& s, const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k) {
  const AttentionTiles tiles = make_attention_tiles(cu_q, cu_k);
  upload(s.cu_q, cu_q, stream_, "cu_seqlens_q");
  upload(s.cu_k, cu_k, stream_, "cu_seqlens_k");
  upload(s.q_tiles, tiles.q_tiles, stream_, "query tiles");
  upload(s.k_tiles, tiles.k_tiles, stream_, "key tiles");
  s.num_q_tiles = static_cast<int>(tiles.q_tiles.size() / 2);
  s.num_k_tiles = static_cast<int>(tiles.k_tiles.size() / 2);
}

std::vector<bool> CudaEngine::skip_mask(const std::vector<int>& skip) const {
  std::vector<bool> m(cfg_.num_layers, false);
  for (int l : skip) m[l] = true;
  for (int l = 0; l < cfg_.num_layers; ++l)
    if (!layers_[l].has_attn) m[l] = true;
  return m;
}

HostBatch CudaEngine::pack(const std::vector<Sample>& samples, bool token_mean) const {
  HostBatch b;
  b.cu.push_back(0);
  int64_t responses = 0;
  for (const Sample& s : samples) responses += static_cast<int64_t>(s.response.size());
  const float weight = token_mean ? (responses > 0 ? 1.f / float(responses) : 0.f) : 1.f / float(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    const Sample& s = samples[i];
    const int32_t start = static_cast<int32_t>(b.tokens.size());
    const int32_t P = static_cast<int32_t>(s.prompt.size()), L = P + static_cast<int32_t>(s.response.size());
    for (int32_t p = 0; p < L; ++p) {
      b.tokens.push_back(p < P ? s.prompt[p] : s.response[p - P]);
      b.pos.push_back(p);
    }
    // Row p predicts token p + 1; rows P-1 .. L-2 predict the response.
    for (int32_t p = std::max(P - 1, 0); p + 1 < L; ++p) {
      if (p + 1 < P) continue;
      b.loss_rows.push_back(start + p);
      b.loss_targets.push_back(s.response[p + 1 - P]);
      b.loss_sample.push_back(static_cast<int32_t>(i));
      b.loss_weights.push_back(weight);
    }
    b.cu.push_back(static_cast<int32_t>(b.tokens.size()));
  }
  return b;
}

// ---------------------------------------------------------------------------------------
// Layer forward / backward

void CudaEngine::layer_forward(int l, const float* h, float* out, int64_t T, const Theta& theta, bool skipped,
                               const int32_t* pos, const DeviceSeqs& seqs, bf16* k_dst, bf16* v_dst,
                               const bf16* k_all, const bf16* v_all) {
  const DeviceLayer& d = layers_[l];
  const int H = cfg_.hidden, I = cfg_.intermediate;
  Work& w = w_;
  Gemm& g = *gemm_;
  if (!skipped) {
    launch_rmsnorm_fwd({h, d.in_norm.as<float>(), w.xn1.as<bf16>(), w.rstd1.as<float>(), T, H, eps_}, stream_);
    g.nt(stream_, T, QKV_, H, w.xn1.as<bf16>(), H, d.w_qkv.as<bf16>(), H, w.qkv.get(), GemmOut::F32, QKV_);
    RopeFwdParams rp{};
    rp.qkv = w.qkv.as<float>();
    rp.bias = ptr_or_null<float>(d.qkv_bias);
    rp.q_norm = ptr_or_null<float>(d.q_norm);
    rp.k_norm = ptr_or_null<float>(d.k_norm);
    rp.pos = pos;
    rp.inv_freq = inv_freq_.as<float>();
    rp.q = w.q.as<bf16>();
    rp.k = k_dst;
    rp.v = v_dst;
    rp.T = T;
    rp.n_heads = cfg_.num_heads;
    rp.n_kv_heads = cfg_.num_kv_heads;
    rp.head_dim = cfg_.head_dim;
    rp.eps = eps_;
    launch_rope_fwd(rp, stream_);
    AttentionFwdParams ap{};
    ap.q = w.q.as<bf16>();
    ap.k = k_all;
    ap.v = v_all;
    ap.o = w.attn_o.as<bf16>();
    ap.lse = w.lse.as<float>();
    ap.cu_q = seqs.cu_q.as<int32_t>();
    ap.cu_k = seqs.cu_k.as<int32_t>();
    ap.q_tiles = seqs.q_tiles.as<int32_t>();
    ap.num_q_tiles = seqs.num_q_tiles;
    ap.n_heads = cfg_.num_heads;
    ap.n_kv_heads = cfg_.num_kv_heads;
    ap.head_dim = cfg_.head_dim;
    ap.scale = attn_scale_;
    launch_attention_fwd(ap, stream_);
    g.nt(stream_, T, H, QD_, w.attn_o.as<bf16>(), QD_, d.w_o.as<bf16>(), QD_, w.A.get(), GemmOut::F32, H);
    launch_residual_fwd({w.A.as<float>(), ptr_or_null<float>(d.o_bias), h, w.x1.as<float>(), theta.b_att[l] * rm_,
                         theta.s_att[l], T, H},
                        stream_);
  } else {
    launch_residual_fwd({nullptr, nullptr, h, w.x1.as<float>(), 0.f, theta.s_att[l], T, H}, stream_);
  }
  launch_rmsnorm_fwd({w.x1.as<float>(), d.post_norm.as<float>(), w.xn2.as<bf16>(), w.rstd2.as<float>(), T, H, eps_},
                     stream_);
  g.nt(stream_, T, 2 * I, H, w.xn2.as<bf16>(), H, d.w_gu.as<bf16>(), H, w.gu.get(), GemmOut::F32, 2 * I);
  launch_swiglu_fwd({w.gu.as<float>(), ptr_or_null<float>(d.gu_bias), w.act.as<bf16>(), T, I}, stream_);
  g.nt(stream_, T, H, I, w.act.as<bf16>(), I, d.w_down.as<bf16>(), I, w.M.get(), GemmOut::F32, H);
  launch_residual_fwd({w.M.as<float>(), ptr_or_null<float>(d.down_bias), w.x1.as<float>(), out,
                       theta.b_mlp[l] * rm_, theta.s_mlp[l], T, H},
                      stream_);
}

void CudaEngine::layer_backward(int l, const float* h, const float* g_out, float* g1, float* g_in, int64_t T,
                                const Theta& theta, bool skipped, const int32_t* pos, const DeviceSeqs& seqs) {
  const DeviceLayer& d = layers_[l];
  const int H = cfg_.hidden, I = cfg_.intermediate;
  Work& w = w_;
  Gemm& g = *gemm_;
  float* dtheta = w.dtheta.as<float>() + 4 * l;  // [b_att, s_att, b_mlp, s_mlp]

  // MLP residual: h' = b_mlp * rm * M + s_mlp * x1.
  ResidualBwdParams mp{};
  mp.g = g_out;
  mp.a = w.M.as<float>();
  mp.h = w.x1.as<float>();
  mp.ga = w.ga.as<bf16>();
  mp.gh = nullptr;
  mp.partials = w.partials.as<float>();
  mp.grad_b = dtheta + 2;
  mp.grad_s = dtheta + 3;
  mp.coef_a = theta.b_mlp[l] * rm_;
  mp.coef_h = theta.s_mlp[l];
  mp.a_scale = rm_;
  mp.T = T;
  mp.C = H;
  launch_residual_bwd(mp, stream_);
  g.nn(stream_, T, I, H, w.ga.as<bf16>(), H, d.w_down.as<bf16>(), I, w.dact.get(), GemmOut::F32, I);
  launch_swiglu_bwd({w.dact.as<float>(), w.gu.as<float>(), ptr_or_null<float>(d.gu_bias), w.dgu.as<bf16>(), T, I},
                    stream_);
  g.nn(stream_, T, H, 2 * I, w.dgu.as<bf16>(), 2 * I, d.w_gu.as<bf16>(), H, w.dxn.get(), GemmOut::F32, H);
  launch_rmsnorm_bwd({w.dxn.as<float>(), w.x1.as<float>(), d.post_norm.as<float>(), w.rstd2.as<float>(), g_out,
                      theta.s_mlp[l], g1, T, H},
                     stream_);

  // Attention residual: x1 = b_att * rm * A + s_att * h.
  ResidualBwdParams ap{};
  ap.g = g1;
  ap.h = h;
  ap.partials = w.partials.as<float>();
  ap.grad_b = dtheta + 0;
  ap.grad_s = dtheta + 1;
  ap.coef_h = theta.s_att[l];
  ap.a_scale = rm_;
  ap.T = T;
  ap.C = H;
  if (skipped) {
    ap.a = nullptr;
    ap.ga = nullptr;
    ap.gh = g_in;  // g_in = s_att * g1
    ap.coef_a = 0.f;
    launch_residual_bwd(ap, stream_);
    return;
  }
  ap.a = w.A.as<float>();
  ap.ga = w.ga.as<bf16>();
  ap.gh = nullptr;
  ap.coef_a = theta.b_att[l] * rm_;
  launch_residual_bwd(ap, stream_);
  g.nn(stream_, T, QD_, H, w.ga.as<bf16>(), H, d.w_o.as<bf16>(), QD_, w.dout.get(), GemmOut::BF16, QD_);
  AttentionBwdParams bp{};
  bp.q = w.q.as<bf16>();
  bp.k = w.k.as<bf16>();
  bp.v = w.v.as<bf16>();
  bp.o = w.attn_o.as<bf16>();
  bp.dout = w.dout.as<bf16>();
  bp.lse = w.lse.as<float>();
  bp.delta = w.delta.as<float>();
  bp.dq = w.dq.as<float>();
  bp.dk = w.dk.as<float>();
  bp.dv = w.dv.as<float>();
  bp.cu_q = seqs.cu_q.as<int32_t>();
  bp.cu_k = seqs.cu_k.as<int32_t>();
  bp.q_tiles = seqs.q_tiles.as<int32_t>();
  bp.num_q_tiles = seqs.num_q_tiles;
  bp.k_tiles = seqs.k_tiles.as<int32_t>();
  bp.num_k_tiles = seqs.num_k_tiles;
  bp.Tq = T;
  bp.n_heads = cfg_.num_heads;
  bp.n_kv_heads = cfg_.num_kv_heads;
  bp.head_dim = cfg_.head_dim;
  bp.scale = attn_scale_;
  launch_attention_bwd(bp, stream_);
  RopeBwdParams rp{};
  rp.dq = w.dq.as<float>();
  rp.dk = w.dk.as<float>();
  rp.dv = w.dv.as<float>();
  rp.qkv = w.qkv.as<float>();
  rp.bias = ptr_or_null<float>(d.qkv_bias);
  rp.q_norm = ptr_or_null<float>(d.q_norm);
  rp.k_norm = ptr_or_null<float>(d.k_norm);
  rp.pos = pos;
  rp.inv_freq = inv_freq_.as<float>();
  rp.dqkv = w.dqkv.as<bf16>();
  rp.T = T;
  rp.n_heads = cfg_.num_heads;
  rp.n_kv_heads = cfg_.num_kv_heads;
  rp.head_dim = cfg_.head_dim;
  rp.eps = eps_;
  launch_rope_bwd(rp, stream_);
  g.nn(stream_, T, H, QKV_, w.dqkv.as<bf16>(), QKV_, d.w_qkv.as<bf16>(), H, w.dxn.get(), GemmOut::F32, H);
  launch_rmsnorm_bwd({w.dxn.as<float>(), h, d.in_norm.as<float>(), w.rstd1.as<float>(), g1, theta.s_att[l], g_in, T,
                      H},
                     stream_);
}

// ---------------------------------------------------------------------------------------
// Engine calls

LossResult CudaEngine::loss(const std::vector<Sample>& samples, const Theta& theta, const BatchOptions& opts,
                            bool want_grad) {
  validate_batch(cfg_, samples, theta, opts, true);
  std::lock_guard<std::mutex> lock(mu_);
  activate();
  const int L = cfg_.num_layers, H = cfg_.hidden;
  const std::vector<bool> skipped = skip_mask(opts.skip);
  const HostBatch b = pack(samples, opts.token_mean);
  const int64_t T = static_cast<int64_t>(b.tokens.size()), R = static_cast<int64_t>(b.loss_rows.size());

  size_t peak = reserve_forward(T) + reserve_ce(R, want_grad);
  // Layer inputs: all L+1 for a backward (recomputation keeps only these), else two slots.
  const int slots = want_grad ? L + 1 : 2;
  w_.hs.reserve(size_t(slots) * T * H * sizeof(float), "layer inputs");
  peak += w_.hs.bytes();
  if (want_grad) peak += reserve_backward(T);
  auto slot = [&](int l) { return w_.hs.as<float>() + size_t(want_grad ? l : l % 2) * T * H; };

  upload(w_.tokens, b.tokens, stream_, "tokens");
  upload(w_.pos, b.pos, stream_, "positions");
  DeviceSeqs seqs;
  upload_seqs(seqs, b.cu, b.cu);
  upload(w_.ce_rows, b.loss_rows, stream_, "loss rows");
  upload(w_.ce_targets, b.loss_targets, stream_, "loss targets");
  upload(w_.ce_weights, b.loss_weights, stream_, "loss weights");

  launch_embedding_fwd({w_.tokens.as<int32_t>(), embed_.as<bf16>(), slot(0), T, H, cfg_.vocab, emb_scale_}, stream_);
  for (int l = 0; l < L; ++l)
    layer_forward(l, slot(l), slot(l + 1), T, theta, skipped[l], w_.pos.as<int32_t>(), seqs, w_.k.as<bf16>(),
                  w_.v.as<bf16>(), w_.k.as<bf16>(), w_.v.as<bf16>());

  float* g_top = nullptr;
  if (want_grad) {
    g_top = w_.g0.as<float>();
    check(cudaMemsetAsync(g_top, 0, size_t(T) * H * sizeof(float), stream_), "zero the output gradient");
  }
  FusedCrossEntropyArgs ce{};
  ce.h = slot(L);
  ce.rows = w_.ce_rows.as<int32_t>();
  ce.targets = w_.ce_targets.as<int32_t>();
  ce.weights = w_.ce_weights.as<float>();
  ce.R = R;
  ce.H = H;
  ce.V = cfg_.vocab;
  ce.final_norm = final_norm_.as<float>();
  ce.eps = eps_;
  ce.lm_head = tied_ ? embed_.as<bf16>() : lm_head_.as<bf16>();
  ce.logit_scale = logit_scale_;
  ce.nll = w_.ce_nll.as<float>();
  ce.dh = g_top;
  ce.chunk = ce_chunk(R);
  ce.x_rows = w_.ce_x.as<float>();
  ce.xn = w_.ce_xn.as<bf16>();
  ce.rstd = w_.ce_rstd.as<float>();
  ce.logits = w_.ce_logits.as<float>();
  ce.dxn = want_grad ? w_.ce_dxn.as<float>() : nullptr;
  ce.dx_rows = want_grad ? w_.ce_dx.as<float>() : nullptr;
  run_fused_cross_entropy(*gemm_, ce, stream_);

  LossResult res;
  std::vector<float> nll(R);
  check(cudaMemcpyAsync(nll.data(), w_.ce_nll.get(), R * sizeof(float), cudaMemcpyDeviceToHost, stream_),
        "copy per-row NLL");
  if (want_grad) {
    float* g_a = w_.g0.as<float>();
    float* g_b = w_.g1.as<float>();
    // g_out lives in g_a, g1 in g_b; g_in overwrites g_a once g_out is dead.
    for (int l = L - 1; l >= 0; --l) {
      // Recompute layer l's internals (the last layer's are still in the workspace).
      // The recomputed output is bit-identical to h_{l+1}, so it may overwrite it.
      if (l != L - 1)
        layer_forward(l, slot(l), slot(l + 1), T, theta, skipped[l], w_.pos.as<int32_t>(), seqs, w_.k.as<bf16>(),
                      w_.v.as<bf16>(), w_.k.as<bf16>(), w_.v.as<bf16>());
      layer_backward(l, slot(l), g_a, g_b, g_a, T, theta, skipped[l], w_.pos.as<int32_t>(), seqs);
    }
    std::vector<float> dt(4 * size_t(L));
    check(cudaMemcpyAsync(dt.data(), w_.dtheta.get(), dt.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_),
          "copy theta gradient");
    check(cudaStreamSynchronize(stream_), "loss and gradient");
    res.grad = Theta::ones(L);
    for (int l = 0; l < L; ++l) {
      res.grad.b_att[l] = skipped[l] ? 0.f : dt[4 * l + 0];
      res.grad.s_att[l] = dt[4 * l + 1];
      res.grad.b_mlp[l] = dt[4 * l + 2];
      res.grad.s_mlp[l] = dt[4 * l + 3];
    }
  } else {
    check(cudaStreamSynchronize(stream_), "loss");
  }
  res.sample_nll.assign(samples.size(), 0.0);
  for (int64_t r = 0; r < R; ++r) res.sample_nll[b.loss_sample[r]] += double(nll[r]);
  double total = 0.0;
  for (double s : res.sample_nll) total += s;
  res.response_tokens = R;
  res.loss = opts.token_mean ? total / double(R) : total / double(samples.size());
  res.peak_bytes = peak;
  return res;
}

void CudaEngine::logits_rows(const float* h, int64_t T, float* host_out) {
  const int H = cfg_.hidden, V = cfg_.vocab;
  const int64_t chunk = ce_chunk(T);
  reserve_ce(T, false);
  const bf16* head = tied_ ? embed_.as<bf16>() : lm_head_.as<bf16>();
  for (int64_t r0 = 0; r0 < T; r0 += chunk) {
    const int64_t n = std::min(chunk, T - r0);
    launch_rmsnorm_fwd({h + r0 * H, final_norm_.as<float>(), w_.ce_xn.as<bf16>(), w_.ce_rstd.as<float>(), n, H, eps_},
                       stream_);
    gemm_->nt(stream_, n, V, H, w_.ce_xn.as<bf16>(), H, head, H, w_.ce_logits.get(), GemmOut::F32, V, logit_scale_);
    check(cudaMemcpyAsync(host_out + r0 * V, w_.ce_logits.get(), size_t(n) * V * sizeof(float), cudaMemcpyDeviceToHost,
                          stream_),
          "copy logits");
    check(cudaStreamSynchronize(stream_), "logits");
  }
}

std::vector<float> CudaEngine::logits(const std::vector<int32_t>& tokens, const Theta& theta,
                                      const std::vector<int>& skip) {
  if (tokens.empty()) fail(code::kArgument, "logits: tokens is empty");
  validate_tokens(cfg_, tokens, "tokens");
  validate_theta(cfg_, theta);
  validate_skip(cfg_, skip);
  std::lock_guard<std::mutex> lock(mu_);
  activate();
  const int L = cfg_.num_layers, H = cfg_.hidden;
  const std::vector<bool> skipped = skip_mask(skip);
  const int64_t T = static_cast<int64_t>(tokens.size());
  reserve_forward(T);
  w_.hs.reserve(2 * size_t(T) * H * sizeof(float), "layer inputs");
  auto slot = [&](int l) { return w_.hs.as<float>() + size_t(l % 2) * T * H; };
  std::vector<int32_t> pos(T);
  for (int64_t i = 0; i < T; ++i) pos[i] = static_cast<int32_t>(i);
  upload(w_.tokens, tokens, stream_, "tokens");
  upload(w_.pos, pos, stream_, "positions");
  DeviceSeqs seqs;
  const std::vector<int32_t> cu = {0, static_cast<int32_t>(T)};
  upload_seqs(seqs, cu, cu);
  launch_embedding_fwd({w_.tokens.as<int32_t>(), embed_.as<bf16>(), slot(0), T, H, cfg_.vocab, emb_scale_}, stream_);
  for (int l = 0; l < L; ++l)
    layer_forward(l, slot(l), slot(l + 1), T, theta, skipped[l], w_.pos.as<int32_t>(), seqs, w_.k.as<bf16>(),
                  w_.v.as<bf16>(), w_.k.as<bf16>(), w_.v.as<bf16>());
  std::vector<float> out(size_t(T) * cfg_.vocab);
  logits_rows(slot(L), T, out.data());
  return out;
}

std::vector<std::vector<int32_t>> CudaEngine::generate(const std::vector<std::vector<int32_t>>& prompts,
                                                       const Theta& theta, const GenerateOptions& opts) {
  validate_theta(cfg_, theta);
  validate_skip(cfg_, opts.skip);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string name = "prompts[" + std::to_string(i) + "]";
    if (prompts[i].empty()) fail(code::kArgument, name + " is empty: generation needs at least one token");
    validate_tokens(cfg_, prompts[i], name.c_str());
  }
  validate_tokens(cfg_, opts.stop, "stop");
  std::lock_guard<std::mutex> lock(mu_);
  activate();
  const int L = cfg_.num_layers, H = cfg_.hidden, V = cfg_.vocab;
  const std::vector<bool> skipped = skip_mask(opts.skip);
  std::vector<int> kept;  // layers with a KV cache
  std::vector<int> cache_index(L, -1);
  for (int l = 0; l < L; ++l)
    if (!skipped[l]) {
      cache_index[l] = static_cast<int>(kept.size());
      kept.push_back(l);
    }
  std::vector<std::vector<int32_t>> results;
  DeviceBuffer cache;
  for (const std::vector<int32_t>& prompt : prompts) {
    const int64_t P = static_cast<int64_t>(prompt.size());
    const int64_t maxT = P + opts.max_new_tokens;
    std::vector<int32_t> out;
    if (opts.max_new_tokens <= 0) {
      results.push_back(out);
      continue;
    }
    cache.reserve(std::max<size_t>(1, kept.size() * 2 * size_t(maxT) * KVD_ * sizeof(bf16)), "KV cache");
    auto k_cache = [&](int l) { return cache.as<bf16>() + (size_t(cache_index[l]) * 2 + 0) * maxT * KVD_; };
    auto v_cache = [&](int l) { return cache.as<bf16>() + (size_t(cache_index[l]) * 2 + 1) * maxT * KVD_; };
    reserve_forward(P);
    w_.hs.reserve(2 * size_t(P) * H * sizeof(float), "layer inputs");
    w_.argmax.reserve(sizeof(int32_t), "argmax");
    reserve_ce(1, false);

    // One forward over `T` new tokens at positions [p0, p0 + T); returns the greedy next token.
    auto step = [&](const std::vector<int32_t>& toks, int64_t p0) -> int32_t {
      const int64_t T = static_cast<int64_t>(toks.size());
      auto slot = [&](int l) { return w_.hs.as<float>() + size_t(l % 2) * T * H; };
      std::vector<int32_t> pos(T);
      for (int64_t i = 0; i < T; ++i) pos[i] = static_cast<int32_t>(p0 + i);
      upload(w_.tokens, toks, stream_, "tokens");
      upload(w_.pos, pos, stream_, "positions");
      DeviceSeqs seqs;
      upload_seqs(seqs, {0, static_cast<int32_t>(T)}, {0, static_cast<int32_t>(p0 + T)});
      launch_embedding_fwd({w_.tokens.as<int32_t>(), embed_.as<bf16>(), slot(0), T, H, V, emb_scale_}, stream_);
      for (int l = 0; l < L; ++l) {
        bf16* kc = skipped[l] ? nullptr : k_cache(l);
        bf16* vc = skipped[l] ? nullptr : v_cache(l);
        layer_forward(l, slot(l), slot(l + 1), T, theta, skipped[l], w_.pos.as<int32_t>(), seqs,
                      kc ? kc + size_t(p0) * KVD_ : nullptr, vc ? vc + size_t(p0) * KVD_ : nullptr, kc, vc);
      }
      const float* last = slot(L) + size_t(T - 1) * H;
      launch_rmsnorm_fwd({last, final_norm_.as<float>(), w_.ce_xn.as<bf16>(), w_.ce_rstd.as<float>(), 1, H, eps_},
                         stream_);
      gemm_->nt(stream_, 1, V, H, w_.ce_xn.as<bf16>(), H, tied_ ? embed_.as<bf16>() : lm_head_.as<bf16>(), H,
                w_.ce_logits.get(), GemmOut::F32, V, logit_scale_);
      launch_argmax_fwd({w_.ce_logits.as<float>(), w_.argmax.as<int32_t>(), 1, V}, stream_);
      int32_t next = 0;
      check(cudaMemcpyAsync(&next, w_.argmax.get(), sizeof(int32_t), cudaMemcpyDeviceToHost, stream_), "copy token");
      check(cudaStreamSynchronize(stream_), "generation step");
      return next;
    };

    // A stop token ends the generation and is not part of the output (as on the CPU).
    int32_t next = step(prompt, 0);
    int64_t p = P;
    while (std::find(opts.stop.begin(), opts.stop.end(), next) == opts.stop.end()) {
      out.push_back(next);
      if (static_cast<int>(out.size()) >= opts.max_new_tokens) break;
      next = step({next}, p);
      ++p;
    }
    results.push_back(std::move(out));
  }
  return results;
}

LayerStats CudaEngine::layer_stats(const std::vector<Sample>& samples, const Theta& theta,
                                   const std::vector<int>& skip, const std::vector<int>& hidden_layers) {
  BatchOptions opts;
  opts.skip = skip;
  validate_batch(cfg_, samples, theta, opts, false);
  const int L = cfg_.num_layers, H = cfg_.hidden;
  for (size_t i = 0; i < hidden_layers.size(); ++i)
    if (hidden_layers[i] < 0 || hidden_layers[i] > L)
      fail(code::kArgument, "hidden_layers[" + std::to_string(i) + "] = " + std::to_string(hidden_layers[i]) +
                                " is not in [0, " + std::to_string(L) + "]");
  std::lock_guard<std::mutex> lock(mu_);
  activate();
  const std::vector<bool> skipped = skip_mask(skip);
  HostBatch b;
  b.cu.push_back(0);
  for (const Sample& s : samples) {
    for (size_t p = 0; p < s.prompt.size() + s.response.size(); ++p) {
      b.tokens.push_back(p < s.prompt.size() ? s.prompt[p] : s.response[p - s.prompt.size()]);
      b.pos.push_back(static_cast<int32_t>(p));
    }
    b.cu.push_back(static_cast<int32_t>(b.tokens.size()));
  }
  const int64_t T = static_cast<int64_t>(b.tokens.size());
  reserve_forward(T);
  w_.hs.reserve(2 * size_t(T) * H * sizeof(float), "layer inputs");
  w_.cos_a.reserve(size_t(T) * sizeof(float), "cosines");
  w_.cos_b.reserve(size_t(T) * sizeof(float), "cosines");
  w_.cos_c.reserve(size_t(T) * sizeof(float), "cosines");
  auto slot = [&](int l) { return w_.hs.as<float>() + size_t(l % 2) * T * H; };
  upload(w_.tokens, b.tokens, stream_, "tokens");
  upload(w_.pos, b.pos, stream_, "positions");
  DeviceSeqs seqs;
  upload_seqs(seqs, b.cu, b.cu);

  LayerStats st;
  st.cos_attn.assign(L, 0.0);
  st.cos_mlp.assign(L, 0.0);
  st.cos_block.assign(L, 0.0);
  st.block_influence.assign(L, 0.0);
  st.hidden.resize(hidden_layers.size());
  auto copy_hidden = [&](int layer, const float* src) {
    for (size_t i = 0; i < hidden_layers.size(); ++i)
      if (hidden_layers[i] == layer) {
        st.hidden[i].resize(size_t(T) * H);
        check(cudaMemcpyAsync(st.hidden[i].data(), src, size_t(T) * H * sizeof(float), cudaMemcpyDeviceToHost,
                              stream_),
              "copy hidden state");
      }
  };
  launch_embedding_fwd({w_.tokens.as<int32_t>(), embed_.as<bf16>(), slot(0), T, H, cfg_.vocab, emb_scale_}, stream_);
  std::vector<float> ca(T), cb(T), cc(T);
  for (int l = 0; l < L; ++l) {
    copy_hidden(l, slot(l));
    layer_forward(l, slot(l), slot(l + 1), T, theta, skipped[l], w_.pos.as<int32_t>(), seqs, w_.k.as<bf16>(),
                  w_.v.as<bf16>(), w_.k.as<bf16>(), w_.v.as<bf16>());
    launch_cosine_fwd({slot(l), w_.x1.as<float>(), w_.cos_a.as<float>(), T, H}, stream_);
    launch_cosine_fwd({w_.x1.as<float>(), slot(l + 1), w_.cos_b.as<float>(), T, H}, stream_);
    launch_cosine_fwd({slot(l), slot(l + 1), w_.cos_c.as<float>(), T, H}, stream_);
    check(cudaMemcpyAsync(ca.data(), w_.cos_a.get(), T * sizeof(float), cudaMemcpyDeviceToHost, stream_), "copy cos");
    check(cudaMemcpyAsync(cb.data(), w_.cos_b.get(), T * sizeof(float), cudaMemcpyDeviceToHost, stream_), "copy cos");
    check(cudaMemcpyAsync(cc.data(), w_.cos_c.get(), T * sizeof(float), cudaMemcpyDeviceToHost, stream_), "copy cos");
    check(cudaStreamSynchronize(stream_), "layer statistics");
    double sa = 0, sb = 0, sc = 0;
    for (int64_t t = 0; t < T; ++t) {
      sa += ca[t];
      sb += cb[t];
      sc += cc[t];
    }
    st.cos_attn[l] = sa / double(T);
    st.cos_mlp[l] = sb / double(T);
    st.cos_block[l] = sc / double(T);
    st.block_influence[l] = 1.0 - st.cos_block[l];
  }
  copy_hidden(L, slot(L));
  check(cudaStreamSynchronize(stream_), "layer statistics");
  return st;
}

std::unique_ptr<Engine> make_cuda_engine(const LoadedModel& model) { return std::make_unique<CudaEngine>(model); }

}  // namespace hs::cuda
