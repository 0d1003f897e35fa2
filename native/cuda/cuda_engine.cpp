// CudaEngine: the hs::Engine contract on one GPU.
//
// Precision: the large matrices (q/k/v/o, gate/up/down, embedding, lm_head) are bf16 on
// the device; norms and biases stay fp32. GEMMs take bf16 operands and accumulate in
// fp32 (cuBLASLt COMPUTE_32F). The residual stream (h, x1, h_next), GEMM outputs,
// gradients and theta reductions are fp32; the operands fed to the next GEMM (normed
// activations, attention output, SwiGLU output, gradients entering a GEMM) are bf16.
//
// Memory: a backward keeps each layer's input h_l and, per a plan made from the free
// GPU memory (or BatchOptions.max_memory), the internals of as many of the top layers as
// fit (only what the backward reads: not the GEMM operands xn1, xn2, act, nor the raw
// q/k/v projections unless qk-norm needs them); the other layers are recomputed right
// before their backward (layer-wise recomputation), so with the smallest plan one
// layer's worth of activations exists at a time. A recomputed layer repeats its forward
// with the same kernels on the same input, so every plan should give bit-identical
// results (hopscotch_cuda_selftest --bench compares two plans). A skipped layer's attention is never computed, and
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
#include "random_weights.h"
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

// Device pointers of one layer's weights. They point into storage the engine owns:
// one allocation per tensor for a loaded model, or one shared random buffer for the
// synthetic benchmark model (make_cuda_engine_random).
struct DeviceLayer {
  bool has_attn = false;
  const bf16* w_qkv = nullptr;       // (QKV, H): [q rows | k rows | v rows]
  const bf16* w_o = nullptr;         // (H, nH*D)
  const bf16* w_gu = nullptr;        // (2I, H): [gate rows | up rows]
  const bf16* w_down = nullptr;      // (H, I)
  const float* qkv_bias = nullptr;   // (QKV) or null
  const float* o_bias = nullptr;     // (H) or null
  const float* q_norm = nullptr;     // (D) or null
  const float* k_norm = nullptr;     // (D) or null
  const float* in_norm = nullptr;    // (H)
  const float* post_norm = nullptr;  // (H)
  const float* gu_bias = nullptr;    // (2I) or null
  const float* down_bias = nullptr;  // (H) or null
};

// A packed batch on the host: tokens, positions, sequence boundaries, loss rows.
struct HostBatch {
  std::vector<int32_t> tokens, pos, cu;
  std::vector<int32_t> loss_rows, loss_targets, loss_sample;
  std::vector<float> loss_weights;
};

// Attention batch description on the device.
struct DeviceSeqs {
  DeviceBuffer cu_q, cu_k, q_tiles, k_tiles, q_tiles64, k_tiles64;
  int num_q_tiles = 0, num_k_tiles = 0, num_q_tiles64 = 0, num_k_tiles64 = 0;
};

template <typename T>
void upload(DeviceBuffer& dst, const std::vector<T>& src, cudaStream_t stream, const char* what) {
  dst.reserve(std::max<size_t>(src.size(), 1) * sizeof(T), what);
  if (!src.empty())
    check(cudaMemcpyAsync(dst.get(), src.data(), src.size() * sizeof(T), cudaMemcpyHostToDevice, stream), what);
}

}  // namespace

// Each buffer's size as a function of the token count; reserve_* allocate exactly
// these, *_bytes only count them (the memory plan).
namespace {
struct Sized {
  DeviceBuffer* buf;
  size_t bytes;
  const char* what;
};
size_t reserve_all(const std::vector<Sized>& list) {
  size_t total = 0;
  for (const Sized& s : list) {
    if (s.buf != nullptr) s.buf->reserve(s.bytes, s.what);
    total += s.bytes;
  }
  return total;
}
}  // namespace

// The forward internals of one layer that its backward reads.
struct Acts {
  DeviceBuffer xn1, rstd1, qkv, q, k, v, attn_o, lse, A, x1, xn2, rstd2, gu, act, M;
};

class CudaEngine final : public Engine {
 public:
  explicit CudaEngine(const LoadedModel& model);
  // Synthetic benchmark model: every bf16 matrix points into one random buffer (see
  // make_cuda_engine_random), norms are 1, biases 0.
  CudaEngine(const ModelConfig& cfg, uint32_t seed);
  ~CudaEngine() override;

  const char* device() const override { return "cuda"; }

 protected:
  // Called by the hs::Engine front once it has checked the arguments: nothing here
  // validates again, and no CUDA call happens before those checks.
  LossResult run_loss(const std::vector<Sample>& samples, const Theta& theta, const BatchOptions& opts,
                      bool want_grad) override;
  std::vector<float> run_logits(const std::vector<int32_t>& tokens, const Theta& theta,
                                const std::vector<int>& skip) override;
  LayerStats run_layer_stats(const std::vector<Sample>& samples, const Theta& theta, const std::vector<int>& skip,
                             const std::vector<int>& hidden_layers) override;
  // One prompt per prefill: attention reads one contiguous KV cache per step.
  size_t generation_group() const override { return 1; }
  std::unique_ptr<Decoder> open_decoder(const Theta& theta, const std::vector<int>& skip) override;

 private:
  friend class CudaDecoder;
  // Per-call workspace (grown on demand, reused across calls: no allocation per step
  // once the largest shape has been seen).
  struct Work {
    // forward internals: acts[0] is the working set (and the recompute slot); with
    // kept layers, acts[i] holds the internals of layer L - K + i.
    std::vector<Acts> acts;
    // backward
    DeviceBuffer g0, g1, ga, dact, dgu, dxn, dout, dq, dk, dv, delta, dqkv, partials, dtheta;
    // layer inputs h_0..h_L (or two ping-pong slots without a backward)
    DeviceBuffer hs;
    // batch
    DeviceBuffer tokens, pos;
    DeviceSeqs seqs;
    // fused cross-entropy
    DeviceBuffer ce_rows, ce_targets, ce_weights, ce_nll, ce_x, ce_xn, ce_rstd, ce_logits, ce_dxn, ce_dx;
    // per-token statistics
    DeviceBuffer cos_a, cos_b, cos_c;
    DeviceBuffer argmax;
    DeviceBuffer kv_cache;
  };

  void init_common();
  void activate() const;
  void upload_bf16(bf16* dst, MatRef src, size_t n, const char* what);
  const float* upload_f32(const float* src, size_t n, const char* what);
  void* alloc(size_t bytes, const char* what);
  void compute_inv_freq();
  // The buffers of one Acts slot: the working set (kept = false) or a kept layer's slot,
  // which holds only what the backward reads.
  std::vector<Sized> acts_list(Acts* a, int64_t T, bool kept) const;
  size_t acts_bytes(int64_t T, bool kept) const;
  size_t reserve_acts(Acts& a, int64_t T, bool kept);
  size_t reserve_forward(int64_t T);
  size_t reserve_backward(int64_t T);
  size_t backward_bytes(int64_t T) const;
  size_t reserve_ce(int64_t R, bool want_grad);
  size_t ce_bytes(int64_t R, bool want_grad) const;
  int64_t ce_chunk(int64_t R) const;
  // The memory plan of one lossAndGrad (see kept_layers in the .cpp).
  struct Plan {
    int kept = 1;       // top layers whose internals stay from the forward
    bool thin = false;  // layer inputs stored for even layers only
  };
  Plan plan(int64_t T, int64_t R, const BatchOptions& opts);
  void upload_seqs(DeviceSeqs& s, const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k);
  std::vector<bool> skip_mask(const std::vector<int>& skip) const;
  HostBatch pack(const std::vector<Sample>& samples, bool token_mean) const;

  // One block forward: h (T,H) -> out (T,H), internals into `a`. k_dst/v_dst receive
  // this step's keys and values (rows of the KV cache or a.k/a.v); k_all/v_all are what
  // attention reads (Tk rows, as described by `seqs`).
  void layer_forward(int l, Acts& a, const float* h, float* out, int64_t T, const Theta& theta, bool skipped,
                     const int32_t* pos, const DeviceSeqs& seqs, bf16* k_dst, bf16* v_dst, const bf16* k_all,
                     const bf16* v_all);
  // One block backward from the internals layer_forward(l) left in `a`.
  // g_out (T,H) = dL/dh_{l+1} -> g_in (T,H) = dL/dh_l; writes dtheta[4l..4l+3] on device.
  void layer_backward(int l, const Acts& a, const float* h, const float* g_out, float* g1, float* g_in, int64_t T,
                      const Theta& theta, bool skipped, const int32_t* pos, const DeviceSeqs& seqs);
  // Final norm + lm_head for rows [0, T) of h, copied to host (T x V).
  void logits_rows(const float* h, int64_t T, float* host_out);
  Acts& act0() {
    if (w_.acts.empty()) w_.acts.resize(1);
    return w_.acts[0];
  }

  ModelConfig cfg_;
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Gemm> gemm_;
  std::vector<DeviceLayer> layers_;
  std::vector<DeviceBuffer> storage_;  // owns every weight allocation
  const bf16* embed_ = nullptr;        // (V, H)
  const bf16* lm_head_ = nullptr;      // (V, H); == embed_ when tied
  const float* final_norm_ = nullptr;  // (H)
  DeviceBuffer inv_freq_, staging_;
  size_t weight_bytes_ = 0;
  int QD_ = 0, KVD_ = 0, QKV_ = 0;
  float rm_ = 1.f, attn_scale_ = 1.f, logit_scale_ = 1.f, emb_scale_ = 1.f, eps_ = 1e-6f;
  Work w_;
  std::mutex mu_;
};

// ---------------------------------------------------------------------------------------
// Construction

void CudaEngine::init_common() {
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
  w_.acts.resize(1);
}

void* CudaEngine::alloc(size_t bytes, const char* what) {
  storage_.emplace_back();
  storage_.back().reserve(std::max<size_t>(bytes, 1), what);
  weight_bytes_ += storage_.back().bytes();
  return storage_.back().get();
}

CudaEngine::CudaEngine(const LoadedModel& model) : Engine(model.config), cfg_(model.config) {
  if (model.weights == nullptr) fail(code::kInternal, "CUDA engine: the model has no weights loaded");
  init_common();
  const ModelConfig& c = cfg_;
  const Weights& wt = *model.weights;
  const size_t H = c.hidden, I = c.intermediate, V = c.vocab, D = c.head_dim;
  bf16* embed = static_cast<bf16*>(alloc(V * H * sizeof(bf16), "embedding"));
  upload_bf16(embed, wt.embed, V * H, "embedding");
  embed_ = lm_head_ = embed;
  if (wt.lm_head != wt.embed && static_cast<bool>(wt.lm_head)) {
    bf16* head = static_cast<bf16*>(alloc(V * H * sizeof(bf16), "lm_head"));
    upload_bf16(head, wt.lm_head, V * H, "lm_head");
    lm_head_ = head;
  }
  final_norm_ = upload_f32(wt.final_norm, H, "final norm");

  layers_.resize(c.num_layers);
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& lw = wt.layers[l];
    DeviceLayer& d = layers_[l];
    d.has_attn = static_cast<bool>(lw.q) && !(l < static_cast<int>(c.attention_absent.size()) && c.attention_absent[l]);
    d.in_norm = upload_f32(lw.input_norm, H, "input_layernorm");
    d.post_norm = upload_f32(lw.post_norm, H, "post_attention_layernorm");
    if (d.has_attn) {
      bf16* qkv = static_cast<bf16*>(alloc(size_t(QKV_) * H * sizeof(bf16), "q/k/v projections"));
      upload_bf16(qkv, lw.q, size_t(QD_) * H, "q_proj");
      upload_bf16(qkv + size_t(QD_) * H, lw.k, size_t(KVD_) * H, "k_proj");
      upload_bf16(qkv + size_t(QD_ + KVD_) * H, lw.v, size_t(KVD_) * H, "v_proj");
      d.w_qkv = qkv;
      bf16* o = static_cast<bf16*>(alloc(H * QD_ * sizeof(bf16), "o_proj"));
      upload_bf16(o, lw.o, H * QD_, "o_proj");
      d.w_o = o;
      if (lw.q_bias != nullptr) {
        std::vector<float> b(QKV_);
        std::memcpy(b.data(), lw.q_bias, sizeof(float) * QD_);
        std::memcpy(b.data() + QD_, lw.k_bias, sizeof(float) * KVD_);
        std::memcpy(b.data() + QD_ + KVD_, lw.v_bias, sizeof(float) * KVD_);
        d.qkv_bias = upload_f32(b.data(), b.size(), "q/k/v bias");
      }
      if (lw.o_bias != nullptr) d.o_bias = upload_f32(lw.o_bias, H, "o_proj bias");
      if (lw.q_norm != nullptr) d.q_norm = upload_f32(lw.q_norm, D, "q_norm");
      if (lw.k_norm != nullptr) d.k_norm = upload_f32(lw.k_norm, D, "k_norm");
    }
    bf16* gu = static_cast<bf16*>(alloc(2 * I * H * sizeof(bf16), "gate/up projections"));
    upload_bf16(gu, lw.gate, I * H, "gate_proj");
    upload_bf16(gu + I * H, lw.up, I * H, "up_proj");
    d.w_gu = gu;
    bf16* down = static_cast<bf16*>(alloc(H * I * sizeof(bf16), "down_proj"));
    upload_bf16(down, lw.down, H * I, "down_proj");
    d.w_down = down;
    if (lw.gate_bias != nullptr) {
      std::vector<float> b(2 * I);
      std::memcpy(b.data(), lw.gate_bias, sizeof(float) * I);
      std::memcpy(b.data() + I, lw.up_bias, sizeof(float) * I);
      d.gu_bias = upload_f32(b.data(), b.size(), "gate/up bias");
    }
    if (lw.down_bias != nullptr) d.down_bias = upload_f32(lw.down_bias, H, "down_proj bias");
  }
  compute_inv_freq();
  check(cudaStreamSynchronize(stream_), "weight upload");
  staging_.release();
}

CudaEngine::CudaEngine(const ModelConfig& cfg, uint32_t seed) : Engine(cfg), cfg_(cfg) {
  init_common();
  const ModelConfig& c = cfg_;
  const size_t H = c.hidden, I = c.intermediate, V = c.vocab, D = c.head_dim;
  const size_t sizes[] = {V * H, size_t(QKV_) * H, H * size_t(QD_), 2 * I * H, H * I};
  size_t largest = 0;
  for (size_t n : sizes) largest = std::max(largest, n);
  const size_t n = largest + kRandomWeightSpan;
  bf16* buf = static_cast<bf16*>(alloc(n * sizeof(bf16), "random weights"));
  launch_fill_random_fwd({buf, static_cast<int64_t>(n), seed}, stream_);
  const size_t vec = std::max({H, D, size_t(QKV_), 2 * I});
  std::vector<float> ones(vec, 1.f), zeros(vec, 0.f);
  const float* one = upload_f32(ones.data(), vec, "unit norm weights");
  const float* zero = upload_f32(zeros.data(), vec, "zero biases");
  int tensor = 0;
  auto next = [&] { return buf + random_weight_offset(tensor++); };
  embed_ = next();
  lm_head_ = c.tie_embeddings ? embed_ : next();
  final_norm_ = one;
  layers_.resize(c.num_layers);
  for (int l = 0; l < c.num_layers; ++l) {
    DeviceLayer& d = layers_[l];
    d.has_attn = !(l < static_cast<int>(c.attention_absent.size()) && c.attention_absent[l]);
    d.in_norm = d.post_norm = one;
    if (d.has_attn) {
      d.w_qkv = next();
      d.w_o = next();
      if (c.qkv_bias) d.qkv_bias = zero;
      if (c.o_bias) d.o_bias = zero;
      if (c.qk_norm) d.q_norm = d.k_norm = one;
    }
    d.w_gu = next();
    d.w_down = next();
    if (c.mlp_bias) d.gu_bias = d.down_bias = zero;
  }
  compute_inv_freq();
  check(cudaStreamSynchronize(stream_), "random weights");
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

const float* CudaEngine::upload_f32(const float* src, size_t n, const char* what) {
  if (src == nullptr) fail(code::kMissingTensor, std::string("CUDA engine: weight ") + what + " is missing");
  float* dst = static_cast<float*>(alloc(n * sizeof(float), what));
  check(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyHostToDevice, stream_), what);
  check(cudaStreamSynchronize(stream_), what);  // `src` may be a temporary
  return dst;
}

// inv_freq exactly as the CPU engine computes it (HF's fp32 recipe plus rope scaling).
void CudaEngine::compute_inv_freq() {
  const std::vector<float> inv = cpu::rope_inv_freq(cfg_.rope, cfg_.head_dim);
  inv_freq_.reserve(inv.size() * sizeof(float), "rotary inv_freq");
  check(cudaMemcpyAsync(inv_freq_.get(), inv.data(), inv.size() * sizeof(float), cudaMemcpyHostToDevice, stream_),
        "rotary inv_freq");
  check(cudaStreamSynchronize(stream_), "rotary inv_freq");
}

// ---------------------------------------------------------------------------------------
// Workspace

std::vector<Sized> CudaEngine::acts_list(Acts* a, int64_t T, bool kept) const {
  const size_t t = static_cast<size_t>(T), H = cfg_.hidden, I = cfg_.intermediate, nH = cfg_.num_heads;
  auto at = [&](DeviceBuffer Acts::*m) { return a != nullptr ? &(a->*m) : nullptr; };
  std::vector<Sized> list = {
      {at(&Acts::rstd1), t * sizeof(float), "rstd"},
      {at(&Acts::q), t * QD_ * sizeof(bf16), "queries"},
      {at(&Acts::k), t * KVD_ * sizeof(bf16), "keys"},
      {at(&Acts::v), t * KVD_ * sizeof(bf16), "values"},
      {at(&Acts::attn_o), t * QD_ * sizeof(bf16), "attention output"},
      {at(&Acts::lse), t * nH * sizeof(float), "attention logsumexp"},
      {at(&Acts::A), t * H * sizeof(float), "attention block output"},
      {at(&Acts::x1), t * H * sizeof(float), "x1"},
      {at(&Acts::rstd2), t * sizeof(float), "rstd"},
      {at(&Acts::gu), t * 2 * I * sizeof(float), "gate/up projections"},
      {at(&Acts::M), t * H * sizeof(float), "MLP output"}};
  // Only the working set holds the GEMM operands (and the raw projections unless the
  // qk-norm backward needs them).
  if (!kept || cfg_.qk_norm) list.push_back({at(&Acts::qkv), t * QKV_ * sizeof(float), "q/k/v projections"});
  if (!kept) {
    list.push_back({at(&Acts::xn1), t * H * sizeof(bf16), "normed input"});
    list.push_back({at(&Acts::xn2), t * H * sizeof(bf16), "normed x1"});
    list.push_back({at(&Acts::act), t * I * sizeof(bf16), "SwiGLU output"});
  }
  return list;
}

size_t CudaEngine::acts_bytes(int64_t T, bool kept) const {
  size_t total = 0;
  for (const Sized& s : acts_list(nullptr, T, kept)) total += s.bytes;
  return total;
}

size_t CudaEngine::reserve_acts(Acts& a, int64_t T, bool kept) { return reserve_all(acts_list(&a, T, kept)); }

size_t CudaEngine::reserve_forward(int64_t T) {
  const size_t t = static_cast<size_t>(T);
  size_t total = reserve_acts(act0(), T, false);
  total += reserve_all({{&w_.tokens, t * sizeof(int32_t), "tokens"}, {&w_.pos, t * sizeof(int32_t), "positions"}});
  return total;
}

size_t CudaEngine::backward_bytes(int64_t T) const {
  const size_t t = static_cast<size_t>(T), H = cfg_.hidden, I = cfg_.intermediate, nH = cfg_.num_heads;
  return t * H * sizeof(float) * 2 + t * H * sizeof(bf16) + t * I * sizeof(float) + t * 2 * I * sizeof(bf16) +
         t * H * sizeof(float) + t * QD_ * sizeof(bf16) + t * QD_ * sizeof(float) + 2 * t * KVD_ * sizeof(float) +
         t * nH * sizeof(float) + t * QKV_ * sizeof(bf16) +
         residual_bwd_partials(T, cfg_.hidden) * sizeof(float) + 4 * size_t(cfg_.num_layers) * sizeof(float);
}

size_t CudaEngine::reserve_backward(int64_t T) {
  const size_t t = static_cast<size_t>(T), H = cfg_.hidden, I = cfg_.intermediate, nH = cfg_.num_heads;
  Work& w = w_;
  return reserve_all({{&w.g0, t * H * sizeof(float), "gradient"},
                      {&w.g1, t * H * sizeof(float), "gradient"},
                      {&w.ga, t * H * sizeof(bf16), "sub-layer output gradient"},
                      {&w.dact, t * I * sizeof(float), "SwiGLU output gradient"},
                      {&w.dgu, t * 2 * I * sizeof(bf16), "gate/up gradient"},
                      {&w.dxn, t * H * sizeof(float), "normed input gradient"},
                      {&w.dout, t * QD_ * sizeof(bf16), "attention output gradient"},
                      {&w.dq, t * QD_ * sizeof(float), "query gradient"},
                      {&w.dk, t * KVD_ * sizeof(float), "key gradient"},
                      {&w.dv, t * KVD_ * sizeof(float), "value gradient"},
                      {&w.delta, t * nH * sizeof(float), "attention delta"},
                      {&w.dqkv, t * QKV_ * sizeof(bf16), "q/k/v gradient"},
                      {&w.partials, residual_bwd_partials(T, cfg_.hidden) * sizeof(float), "residual partial sums"},
                      {&w.dtheta, 4 * size_t(cfg_.num_layers) * sizeof(float), "theta gradient"}});
}

int64_t CudaEngine::ce_chunk(int64_t R) const {
  const int64_t by_bytes = std::max<int64_t>(1, int64_t(kLogitsChunkBytes / (sizeof(float) * size_t(cfg_.vocab))));
  return std::max<int64_t>(1, std::min(R, by_bytes));
}

size_t CudaEngine::ce_bytes(int64_t R, bool want_grad) const {
  const size_t chunk = static_cast<size_t>(ce_chunk(R)), H = cfg_.hidden, V = cfg_.vocab, r = size_t(R);
  return r * (3 * sizeof(int32_t) + sizeof(float)) + chunk * H * (sizeof(float) + sizeof(bf16)) +
         chunk * sizeof(float) + chunk * V * sizeof(float) + (want_grad ? 2 * chunk * H * sizeof(float) : 0);
}

size_t CudaEngine::reserve_ce(int64_t R, bool want_grad) {
  const size_t chunk = static_cast<size_t>(ce_chunk(R)), H = cfg_.hidden, V = cfg_.vocab, r = size_t(R);
  Work& w = w_;
  size_t total = reserve_all({{&w.ce_rows, r * sizeof(int32_t), "loss rows"},
                              {&w.ce_targets, r * sizeof(int32_t), "loss targets"},
                              {&w.ce_weights, r * sizeof(float), "loss weights"},
                              {&w.ce_nll, r * sizeof(float), "per-row NLL"},
                              {&w.ce_x, chunk * H * sizeof(float), "loss rows of h"},
                              {&w.ce_xn, chunk * H * sizeof(bf16), "normed loss rows"},
                              {&w.ce_rstd, chunk * sizeof(float), "rstd"},
                              {&w.ce_logits, chunk * V * sizeof(float), "logits chunk"}});
  if (want_grad)
    total += reserve_all({{&w.ce_dxn, chunk * H * sizeof(float), "normed loss rows gradient"},
                          {&w.ce_dx, chunk * H * sizeof(float), "loss rows gradient"}});
  return total;
}

// The memory plan of one lossAndGrad: how many of the top layers keep their forward
// internals (the others are recomputed right before their backward). All of them
// when the budget allows (no recompute), else as many as fit, at least one.
// Budget: opts.max_memory (bytes for the whole engine, weights included) or, when 0,
// the device's free memory plus what this engine's workspace already holds, less a
// margin of 5% + 256 MiB for cuBLASLt and the allocator.
// Thin checkpoints, the smallest plan: when even full recomputation does not fit, only
// the even layers' inputs are stored and an odd layer's input is rebuilt from the layer
// below before its backward (half a forward more). HOPSCOTCH_CUDA_PLAN=thin forces it.
CudaEngine::Plan CudaEngine::plan(int64_t T, int64_t R, const BatchOptions& opts) {
  const int L = cfg_.num_layers;
  const char* env = std::getenv("HOPSCOTCH_CUDA_PLAN");
  if (env != nullptr && std::strcmp(env, "thin") == 0) return {1, true};
  if (opts.recompute || (env != nullptr && std::strcmp(env, "recompute") == 0)) return {1, false};
  size_t held = 0;
  for (const Acts& a : w_.acts)
    for (const DeviceBuffer* b : {&a.xn1, &a.rstd1, &a.qkv, &a.q, &a.k, &a.v, &a.attn_o, &a.lse, &a.A, &a.x1, &a.xn2,
                                  &a.rstd2, &a.gu, &a.act, &a.M})
      held += b->bytes();
  for (const DeviceBuffer* b : {&w_.g0, &w_.g1, &w_.ga, &w_.dact, &w_.dgu, &w_.dxn, &w_.dout, &w_.dq, &w_.dk, &w_.dv,
                                &w_.delta, &w_.dqkv, &w_.partials, &w_.dtheta, &w_.hs, &w_.ce_logits})
    held += b->bytes();
  size_t budget = 0;
  if (opts.max_memory > 0) {
    budget = static_cast<size_t>(opts.max_memory);
    budget = budget > weight_bytes_ ? budget - weight_bytes_ : 0;
  } else {
    size_t free_b = 0, total_b = 0;
    check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    budget = free_b + held;
  }
  const size_t margin = budget / 20 + (size_t(256) << 20);
  budget = budget > margin ? budget - margin : 0;
  const size_t t = static_cast<size_t>(T);
  const size_t base = size_t(L + 1) * t * cfg_.hidden * sizeof(float) + backward_bytes(T) + ce_bytes(R, true) +
                      2 * t * sizeof(int32_t);  // slot 0 (the working set) is `first` below
  const size_t first = acts_bytes(T, false), per = acts_bytes(T, true);
  if (base + first >= budget) return {1, true};
  return {static_cast<int>(std::min<size_t>(size_t(L), 1 + (budget - base - first) / per)), false};
}

void CudaEngine::upload_seqs(DeviceSeqs& s, const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k) {
  const AttentionTiles tiles = make_attention_tiles(cu_q, cu_k);
  upload(s.cu_q, cu_q, stream_, "cu_seqlens_q");
  upload(s.cu_k, cu_k, stream_, "cu_seqlens_k");
  upload(s.q_tiles, tiles.q_tiles, stream_, "query tiles");
  upload(s.k_tiles, tiles.k_tiles, stream_, "key tiles");
  upload(s.q_tiles64, tiles.q_tiles64, stream_, "query tiles");
  upload(s.k_tiles64, tiles.k_tiles64, stream_, "key tiles");
  s.num_q_tiles = static_cast<int>(tiles.q_tiles.size() / 2);
  s.num_k_tiles = static_cast<int>(tiles.k_tiles.size() / 2);
  s.num_q_tiles64 = static_cast<int>(tiles.q_tiles64.size() / 2);
  s.num_k_tiles64 = static_cast<int>(tiles.k_tiles64.size() / 2);
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

void CudaEngine::layer_forward(int l, Acts& a, const float* h, float* out, int64_t T, const Theta& theta, bool skipped,
                               const int32_t* pos, const DeviceSeqs& seqs, bf16* k_dst, bf16* v_dst,
                               const bf16* k_all, const bf16* v_all) {
  const DeviceLayer& d = layers_[l];
  const int H = cfg_.hidden, I = cfg_.intermediate;
  Gemm& g = *gemm_;
  // GEMM operands the backward never reads live in the working set acts[0] (a kept
  // layer's slot does not hold them); the raw q/k/v projections are kept only for the
  // qk-norm backward.
  Acts& w0 = act0();
  DeviceBuffer& qkvb = cfg_.qk_norm ? a.qkv : w0.qkv;
  if (!skipped) {
    launch_rmsnorm_fwd({h, d.in_norm, w0.xn1.as<bf16>(), a.rstd1.as<float>(), T, H, eps_}, stream_);
    g.nt(stream_, T, QKV_, H, w0.xn1.as<bf16>(), H, d.w_qkv, H, qkvb.get(), GemmOut::F32, QKV_);
    RopeFwdParams rp{};
    rp.qkv = qkvb.as<float>();
    rp.bias = d.qkv_bias;
    rp.q_norm = d.q_norm;
    rp.k_norm = d.k_norm;
    rp.pos = pos;
    rp.inv_freq = inv_freq_.as<float>();
    rp.q = a.q.as<bf16>();
    rp.k = k_dst;
    rp.v = v_dst;
    rp.T = T;
    rp.n_heads = cfg_.num_heads;
    rp.n_kv_heads = cfg_.num_kv_heads;
    rp.head_dim = cfg_.head_dim;
    rp.eps = eps_;
    launch_rope_fwd(rp, stream_);
    AttentionFwdParams ap{};
    ap.q = a.q.as<bf16>();
    ap.k = k_all;
    ap.v = v_all;
    ap.o = a.attn_o.as<bf16>();
    ap.lse = a.lse.as<float>();
    ap.cu_q = seqs.cu_q.as<int32_t>();
    ap.cu_k = seqs.cu_k.as<int32_t>();
    ap.q_tiles = seqs.q_tiles.as<int32_t>();
    ap.num_q_tiles = seqs.num_q_tiles;
    ap.q_tiles64 = seqs.q_tiles64.as<int32_t>();
    ap.num_q_tiles64 = seqs.num_q_tiles64;
    ap.n_heads = cfg_.num_heads;
    ap.n_kv_heads = cfg_.num_kv_heads;
    ap.head_dim = cfg_.head_dim;
    ap.scale = attn_scale_;
    launch_attention_fwd(ap, stream_);
    g.nt(stream_, T, H, QD_, a.attn_o.as<bf16>(), QD_, d.w_o, QD_, a.A.get(), GemmOut::F32, H);
    launch_residual_fwd({a.A.as<float>(), d.o_bias, h, a.x1.as<float>(), theta.b_att[l] * rm_,
                         theta.s_att[l], T, H},
                        stream_);
  } else {
    launch_residual_fwd({nullptr, nullptr, h, a.x1.as<float>(), 0.f, theta.s_att[l], T, H}, stream_);
  }
  launch_rmsnorm_fwd({a.x1.as<float>(), d.post_norm, w0.xn2.as<bf16>(), a.rstd2.as<float>(), T, H, eps_},
                     stream_);
  g.nt(stream_, T, 2 * I, H, w0.xn2.as<bf16>(), H, d.w_gu, H, a.gu.get(), GemmOut::F32, 2 * I);
  launch_swiglu_fwd({a.gu.as<float>(), d.gu_bias, w0.act.as<bf16>(), T, I}, stream_);
  g.nt(stream_, T, H, I, w0.act.as<bf16>(), I, d.w_down, I, a.M.get(), GemmOut::F32, H);
  launch_residual_fwd({a.M.as<float>(), d.down_bias, a.x1.as<float>(), out,
                       theta.b_mlp[l] * rm_, theta.s_mlp[l], T, H},
                      stream_);
}

void CudaEngine::layer_backward(int l, const Acts& a, const float* h, const float* g_out, float* g1, float* g_in, int64_t T,
                                const Theta& theta, bool skipped, const int32_t* pos, const DeviceSeqs& seqs) {
  const DeviceLayer& d = layers_[l];
  const int H = cfg_.hidden, I = cfg_.intermediate;
  Work& w = w_;
  Gemm& g = *gemm_;
  float* dtheta = w.dtheta.as<float>() + 4 * l;  // [b_att, s_att, b_mlp, s_mlp]

  // MLP residual: h' = b_mlp * rm * M + s_mlp * x1.
  ResidualBwdParams mp{};
  mp.g = g_out;
  mp.a = a.M.as<float>();
  mp.h = a.x1.as<float>();
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
  g.nn(stream_, T, I, H, w.ga.as<bf16>(), H, d.w_down, I, w.dact.get(), GemmOut::F32, I);
  launch_swiglu_bwd({w.dact.as<float>(), a.gu.as<float>(), d.gu_bias, w.dgu.as<bf16>(), T, I},
                    stream_);
  g.nn(stream_, T, H, 2 * I, w.dgu.as<bf16>(), 2 * I, d.w_gu, H, w.dxn.get(), GemmOut::F32, H);
  launch_rmsnorm_bwd({w.dxn.as<float>(), a.x1.as<float>(), d.post_norm, a.rstd2.as<float>(), g_out,
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
  ap.a = a.A.as<float>();
  ap.ga = w.ga.as<bf16>();
  ap.gh = nullptr;
  ap.coef_a = theta.b_att[l] * rm_;
  launch_residual_bwd(ap, stream_);
  g.nn(stream_, T, QD_, H, w.ga.as<bf16>(), H, d.w_o, QD_, w.dout.get(), GemmOut::BF16, QD_);
  AttentionBwdParams bp{};
  bp.q = a.q.as<bf16>();
  bp.k = a.k.as<bf16>();
  bp.v = a.v.as<bf16>();
  bp.o = a.attn_o.as<bf16>();
  bp.dout = w.dout.as<bf16>();
  bp.lse = a.lse.as<float>();
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
  bp.q_tiles64 = seqs.q_tiles64.as<int32_t>();
  bp.num_q_tiles64 = seqs.num_q_tiles64;
  bp.k_tiles64 = seqs.k_tiles64.as<int32_t>();
  bp.num_k_tiles64 = seqs.num_k_tiles64;
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
  rp.qkv = a.qkv.as<float>();
  rp.bias = d.qkv_bias;
  rp.q_norm = d.q_norm;
  rp.k_norm = d.k_norm;
  rp.pos = pos;
  rp.inv_freq = inv_freq_.as<float>();
  rp.dqkv = w.dqkv.as<bf16>();
  rp.T = T;
  rp.n_heads = cfg_.num_heads;
  rp.n_kv_heads = cfg_.num_kv_heads;
  rp.head_dim = cfg_.head_dim;
  rp.eps = eps_;
  launch_rope_bwd(rp, stream_);
  g.nn(stream_, T, H, QKV_, w.dqkv.as<bf16>(), QKV_, d.w_qkv, H, w.dxn.get(), GemmOut::F32, H);
  launch_rmsnorm_bwd({w.dxn.as<float>(), h, d.in_norm, a.rstd1.as<float>(), g1, theta.s_att[l], g_in, T,
                      H},
                     stream_);
}

// ---------------------------------------------------------------------------------------
// Engine calls

LossResult CudaEngine::run_loss(const std::vector<Sample>& samples, const Theta& theta, const BatchOptions& opts,
                                bool want_grad) {
  std::lock_guard<std::mutex> lock(mu_);
  activate();
  const int L = cfg_.num_layers, H = cfg_.hidden;
  const std::vector<bool> skipped = skip_mask(opts.skip);
  const HostBatch b = pack(samples, opts.token_mean);
  const int64_t T = static_cast<int64_t>(b.tokens.size()), R = static_cast<int64_t>(b.loss_rows.size());

  // Kept layers: L - K .. L - 1 keep their internals in acts[0 .. K-1]; the others
  // run in acts[0] and are recomputed before their backward (acts[0] is free again by
  // then: the kept layers' backward comes first).
  // A forward-only call uses acts[0] and leaves the slots of the last plan alone (no
  // allocation churn between training and evaluation calls); a lossAndGrad frees the
  // slots its plan does not use.
  const Plan pl = want_grad ? plan(T, R, opts) : Plan{};
  const int K = pl.kept;
  const bool thin = pl.thin;
  if (want_grad) w_.acts.resize(K);
  auto acts_of = [&](int l) -> Acts& { return w_.acts[l >= L - K ? l - (L - K) : 0]; };

  size_t peak = reserve_forward(T) + reserve_ce(R, want_grad);
  for (int i = 1; i < K; ++i) peak += reserve_acts(w_.acts[i], T, true);
  // Layer inputs: all L+1 for a backward (thin: the even ones, h_L and one slot for the
  // odd input at hand), else two slots.
  const int slots = !want_grad ? 2 : !thin ? L + 1 : (L + 1) / 2 + 2;
  w_.hs.reserve(size_t(slots) * T * H * sizeof(float), "layer inputs");
  peak += size_t(slots) * T * H * sizeof(float);
  if (want_grad) peak += reserve_backward(T);
  auto slot = [&](int l) {
    int i = l;
    if (!want_grad)
      i = l % 2;
    else if (thin)
      i = l == L ? (L + 1) / 2 : l % 2 == 0 ? l / 2 : (L + 1) / 2 + 1;
    return w_.hs.as<float>() + size_t(i) * T * H;
  };

  upload(w_.tokens, b.tokens, stream_, "tokens");
  upload(w_.pos, b.pos, stream_, "positions");
  DeviceSeqs& seqs = w_.seqs;
  upload_seqs(seqs, b.cu, b.cu);
  upload(w_.ce_rows, b.loss_rows, stream_, "loss rows");
  upload(w_.ce_targets, b.loss_targets, stream_, "loss targets");
  upload(w_.ce_weights, b.loss_weights, stream_, "loss weights");

  launch_embedding_fwd({w_.tokens.as<int32_t>(), embed_, slot(0), T, H, cfg_.vocab, emb_scale_}, stream_);
  for (int l = 0; l < L; ++l) {
    Acts& a = acts_of(l);
    layer_forward(l, a, slot(l), slot(l + 1), T, theta, skipped[l], w_.pos.as<int32_t>(), seqs, a.k.as<bf16>(),
                  a.v.as<bf16>(), a.k.as<bf16>(), a.v.as<bf16>());
  }

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
  ce.final_norm = final_norm_;
  ce.eps = eps_;
  ce.lm_head = lm_head_;
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
    int repeated = 0;
    auto refwd = [&](int j, Acts& a) {
      layer_forward(j, a, slot(j), slot(j + 1), T, theta, skipped[j], w_.pos.as<int32_t>(), seqs, a.k.as<bf16>(),
                    a.v.as<bf16>(), a.k.as<bf16>(), a.v.as<bf16>());
      ++repeated;
    };
    for (int l = L - 1; l >= 0; --l) {
      Acts& a = acts_of(l);
      // Recompute a layer whose internals were not kept (the last layer's always are).
      // A recomputed output is bit-identical to the stored h_{l+1}, so it may overwrite it.
      if (l < L - K && l != L - 1) {
        if (thin && l % 2 == 1) refwd(l - 1, a);  // rebuilds h_l in the odd slot
        refwd(l, a);
      }
      layer_backward(l, a, slot(l), g_a, g_b, g_a, T, theta, skipped[l], w_.pos.as<int32_t>(), seqs);
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
    res.recomputed_layers = repeated;
    res.thin_checkpoints = thin;
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
  res.weight_bytes = weight_bytes_;
  return res;
}

void CudaEngine::logits_rows(const float* h, int64_t T, float* host_out) {
  const int H = cfg_.hidden, V = cfg_.vocab;
  const int64_t chunk = ce_chunk(T);
  reserve_ce(T, false);
  const bf16* head = lm_head_;
  for (int64_t r0 = 0; r0 < T; r0 += chunk) {
    const int64_t n = std::min(chunk, T - r0);
    launch_rmsnorm_fwd({h + r0 * H, final_norm_, w_.ce_xn.as<bf16>(), w_.ce_rstd.as<float>(), n, H, eps_},
                       stream_);
    gemm_->nt(stream_, n, V, H, w_.ce_xn.as<bf16>(), H, head, H, w_.ce_logits.get(), GemmOut::F32, V, logit_scale_);
    check(cudaMemcpyAsync(host_out + r0 * V, w_.ce_logits.get(), size_t(n) * V * sizeof(float), cudaMemcpyDeviceToHost,
                          stream_),
          "copy logits");
    check(cudaStreamSynchronize(stream_), "logits");
  }
}

std::vector<float> CudaEngine::run_logits(const std::vector<int32_t>& tokens, const Theta& theta,
                                          const std::vector<int>& skip) {
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
  DeviceSeqs& seqs = w_.seqs;
  const std::vector<int32_t> cu = {0, static_cast<int32_t>(T)};
  upload_seqs(seqs, cu, cu);
  launch_embedding_fwd({w_.tokens.as<int32_t>(), embed_, slot(0), T, H, cfg_.vocab, emb_scale_}, stream_);
  for (int l = 0; l < L; ++l)
    layer_forward(l, act0(), slot(l), slot(l + 1), T, theta, skipped[l], w_.pos.as<int32_t>(), seqs, act0().k.as<bf16>(),
                  act0().v.as<bf16>(), act0().k.as<bf16>(), act0().v.as<bf16>());
  std::vector<float> out(size_t(T) * cfg_.vocab);
  logits_rows(slot(L), T, out.data());
  return out;
}

// Greedy generation steps for one prompt at a time (generation_group() == 1): a KV cache
// for the kept layers only, grown (never shrunk) to prompt + max_new_tokens rows, and
// the greedy token taken on the device so that only its index is copied back.
class CudaDecoder final : public Decoder {
 public:
  CudaDecoder(CudaEngine& e, const Theta& theta, const std::vector<int>& skip)
      : e_(e), lock_(e.mu_), theta_(theta), skipped_(e.skip_mask(skip)), cache_index_(e.cfg_.num_layers, -1) {
    e_.activate();
    for (int l = 0; l < e_.cfg_.num_layers; ++l)
      if (!skipped_[l]) cache_index_[l] = kept_++;
  }

  void prefill(const std::vector<std::vector<int32_t>>& prompts, int64_t max_new, std::vector<int32_t>& next) override {
    if (prompts.size() != 1) fail(code::kInternal, "CUDA generation runs one prompt per prefill");
    const std::vector<int32_t>& prompt = prompts[0];
    const int64_t P = static_cast<int64_t>(prompt.size());
    maxT_ = P + max_new;
    e_.w_.kv_cache.reserve(std::max<size_t>(1, size_t(kept_) * 2 * size_t(maxT_) * e_.KVD_ * sizeof(bf16)),
                           "KV cache");
    e_.reserve_forward(P);
    e_.w_.hs.reserve(2 * size_t(P) * e_.cfg_.hidden * sizeof(float), "layer inputs");
    e_.w_.argmax.reserve(sizeof(int32_t), "argmax");
    e_.reserve_ce(1, false);
    next[0] = step(prompt, 0);
  }

  void decode(const std::vector<int>& seqs, const std::vector<int32_t>& tokens, const std::vector<int64_t>& positions,
              std::vector<int32_t>& next) override {
    next[0] = step({tokens[0]}, positions[0]);
  }

 private:
  bf16* k_cache(int l) { return e_.w_.kv_cache.as<bf16>() + (size_t(cache_index_[l]) * 2 + 0) * maxT_ * e_.KVD_; }
  bf16* v_cache(int l) { return e_.w_.kv_cache.as<bf16>() + (size_t(cache_index_[l]) * 2 + 1) * maxT_ * e_.KVD_; }

  // One forward over `toks` at positions [p0, p0 + T); returns the greedy next token.
  int32_t step(const std::vector<int32_t>& toks, int64_t p0) {
    const int L = e_.cfg_.num_layers, H = e_.cfg_.hidden, V = e_.cfg_.vocab;
    const cudaStream_t stream = e_.stream_;
    const int64_t T = static_cast<int64_t>(toks.size());
    auto slot = [&](int l) { return e_.w_.hs.as<float>() + size_t(l % 2) * T * H; };
    std::vector<int32_t> pos(T);
    for (int64_t i = 0; i < T; ++i) pos[i] = static_cast<int32_t>(p0 + i);
    upload(e_.w_.tokens, toks, stream, "tokens");
    upload(e_.w_.pos, pos, stream, "positions");
    DeviceSeqs& seqs = e_.w_.seqs;
    e_.upload_seqs(seqs, {0, static_cast<int32_t>(T)}, {0, static_cast<int32_t>(p0 + T)});
    launch_embedding_fwd({e_.w_.tokens.as<int32_t>(), e_.embed_, slot(0), T, H, V, e_.emb_scale_}, stream);
    for (int l = 0; l < L; ++l) {
      bf16* kc = skipped_[l] ? nullptr : k_cache(l);
      bf16* vc = skipped_[l] ? nullptr : v_cache(l);
      e_.layer_forward(l, e_.act0(), slot(l), slot(l + 1), T, theta_, skipped_[l], e_.w_.pos.as<int32_t>(), seqs,
                       kc ? kc + size_t(p0) * e_.KVD_ : nullptr, vc ? vc + size_t(p0) * e_.KVD_ : nullptr, kc, vc);
    }
    const float* last = slot(L) + size_t(T - 1) * H;
    launch_rmsnorm_fwd({last, e_.final_norm_, e_.w_.ce_xn.as<bf16>(), e_.w_.ce_rstd.as<float>(), 1, H, e_.eps_},
                       stream);
    e_.gemm_->nt(stream, 1, V, H, e_.w_.ce_xn.as<bf16>(), H, e_.lm_head_, H, e_.w_.ce_logits.get(), GemmOut::F32, V,
                 e_.logit_scale_);
    launch_argmax_fwd({e_.w_.ce_logits.as<float>(), e_.w_.argmax.as<int32_t>(), 1, V}, stream);
    int32_t next = 0;
    check(cudaMemcpyAsync(&next, e_.w_.argmax.get(), sizeof(int32_t), cudaMemcpyDeviceToHost, stream), "copy token");
    check(cudaStreamSynchronize(stream), "generation step");
    return next;
  }

  CudaEngine& e_;
  std::lock_guard<std::mutex> lock_;
  const Theta& theta_;
  const std::vector<bool> skipped_;
  std::vector<int> cache_index_;
  int kept_ = 0;
  int64_t maxT_ = 0;
};

std::unique_ptr<Decoder> CudaEngine::open_decoder(const Theta& theta, const std::vector<int>& skip) {
  return std::make_unique<CudaDecoder>(*this, theta, skip);
}

LayerStats CudaEngine::run_layer_stats(const std::vector<Sample>& samples, const Theta& theta,
                                       const std::vector<int>& skip, const std::vector<int>& hidden_layers) {
  const int L = cfg_.num_layers, H = cfg_.hidden;
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
  DeviceSeqs& seqs = w_.seqs;
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
  launch_embedding_fwd({w_.tokens.as<int32_t>(), embed_, slot(0), T, H, cfg_.vocab, emb_scale_}, stream_);
  std::vector<float> ca(T), cb(T), cc(T);
  for (int l = 0; l < L; ++l) {
    copy_hidden(l, slot(l));
    layer_forward(l, act0(), slot(l), slot(l + 1), T, theta, skipped[l], w_.pos.as<int32_t>(), seqs, act0().k.as<bf16>(),
                  act0().v.as<bf16>(), act0().k.as<bf16>(), act0().v.as<bf16>());
    launch_cosine_fwd({slot(l), act0().x1.as<float>(), w_.cos_a.as<float>(), T, H}, stream_);
    launch_cosine_fwd({act0().x1.as<float>(), slot(l + 1), w_.cos_b.as<float>(), T, H}, stream_);
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

std::unique_ptr<Engine> make_cuda_engine_random(const ModelConfig& cfg, uint32_t seed) {
  return std::make_unique<CudaEngine>(cfg, seed);
}

}  // namespace hs::cuda
