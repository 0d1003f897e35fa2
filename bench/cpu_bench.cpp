// CPU engine benchmark: theta loss + gradient (frozen weights) tokens/s, greedy
// generation tokens/s, and the attention kernels alone, on the bundled
// stories260k checkpoint or on a random Llama-shaped model built in memory.
// Prints one JSON object per measurement on stdout (bench/cpu-bench.sh collects them).
//
//   cpu_bench train    --model DIR|random100m --threads N [--samples 8] [--reps 3] [--seed 0]
//   cpu_bench generate --model DIR|random100m --threads N [--batch 1] [--new 32] [--prompt 64]
//   cpu_bench attention --threads N [--tokens 2048] [--heads 8] [--head-dim 64] [--reps 5]
//
// The packed batch has GSM8K-like lengths: prompts of 120-180 tokens and responses
// of 60-120 tokens (random ids, fixed seed), the same batch bench/torch_cpu_baseline.py
// builds from the same seed (both use the lengths printed in the JSON).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu_kernels.h"
#include "cpu_kernels_internal.h"
#include "engine.h"
#include "errors.h"
#include "gemm.h"
#include "threadpool.h"
#include "weights.h"

using namespace hs;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux reports KiB
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

// Llama shape of about 110M parameters (GPT-2-small-like width): fp32, random weights.
ModelConfig random100m_config() {
  ModelConfig c;
  c.arch = "LlamaForCausalLM";
  c.model_type = "llama";
  c.num_layers = 12;
  c.hidden = 768;
  c.intermediate = 2048;
  c.num_heads = 12;
  c.num_kv_heads = 12;
  c.head_dim = 64;
  c.vocab = 32000;
  c.max_position = 2048;
  c.rms_eps = 1e-5;
  c.tie_embeddings = false;
  return c;
}

std::unique_ptr<LoadedModel> random_model(const ModelConfig& cfg, uint64_t seed) {
  auto m = std::make_unique<LoadedModel>();
  m->dir = "<random>";
  m->config = cfg;
  m->weights = std::make_unique<Weights>();
  Weights& w = *m->weights;
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_real_distribution<float> ud(-1.f, 1.f);
  auto tensor = [&](size_t n, float center, float scale) -> const float* {
    w.storage.emplace_back(n);
    for (auto& x : w.storage.back()) x = center + scale * ud(rng);
    w.parameters += static_cast<int64_t>(n);
    w.bytes += n * sizeof(float);
    return w.storage.back().data();
  };
  const size_t H = cfg.hidden, I = cfg.intermediate, QW = size_t(cfg.num_heads) * cfg.head_dim,
               KW = size_t(cfg.num_kv_heads) * cfg.head_dim, V = cfg.vocab;
  const float sh = 1.7f / std::sqrt(float(H)), si = 1.7f / std::sqrt(float(I));
  w.storage.reserve(8 + 16 * cfg.num_layers);
  w.embed = tensor(V * H, 0.f, 1.f);
  w.final_norm = tensor(H, 1.f, 0.f);
  w.lm_head = tensor(V * H, 0.f, sh);
  for (int l = 0; l < cfg.num_layers; ++l) {
    LayerWeights lw;
    lw.input_norm = tensor(H, 1.f, 0.f);
    lw.q = tensor(QW * H, 0.f, sh);
    lw.k = tensor(KW * H, 0.f, sh);
    lw.v = tensor(KW * H, 0.f, sh);
    lw.o = tensor(H * QW, 0.f, 1.7f / std::sqrt(float(QW)));
    lw.post_norm = tensor(H, 1.f, 0.f);
    lw.gate = tensor(I * H, 0.f, sh);
    lw.up = tensor(I * H, 0.f, sh);
    lw.down = tensor(H * I, 0.f, si);
    w.layers.push_back(lw);
  }
  w.source_dtype = "F32";
  return m;
}

std::unique_ptr<LoadedModel> open_model(const std::string& spec) {
  if (spec == "random100m") return random_model(random100m_config(), 1);
  return load_model_dir(spec);
}

// GSM8K-like packed batch (same generator as bench/torch_cpu_baseline.py: a 64-bit LCG).
struct Lcg {
  uint64_t s;
  explicit Lcg(uint64_t seed) : s(seed * 6364136223846793005ULL + 1442695040888963407ULL) {}
  uint32_t next() {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<uint32_t>(s >> 33);
  }
  int range(int lo, int hi) { return lo + static_cast<int>(next() % uint32_t(hi - lo + 1)); }
};

std::vector<Sample> make_batch(int n, int vocab, uint64_t seed) {
  Lcg rng(seed);
  std::vector<Sample> out(n);
  for (auto& s : out) {
    const int p = rng.range(120, 180), r = rng.range(60, 120);
    for (int i = 0; i < p; ++i) s.prompt.push_back(rng.range(0, vocab - 1));
    for (int i = 0; i < r; ++i) s.response.push_back(rng.range(0, vocab - 1));
  }
  return out;
}

struct Args {
  std::string mode, model = "random100m";
  int threads = 1, samples = 8, reps = 3, batch = 1, new_tokens = 32, prompt = 64, heads = 8, head_dim = 64;
  int64_t tokens = 2048;
  uint64_t seed = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  if (argc < 2) fail(code::kArgument, "usage: cpu_bench train|generate|attention [--options]");
  a.mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model") a.model = v;
    else if (k == "--threads") a.threads = std::atoi(v.c_str());
    else if (k == "--samples") a.samples = std::atoi(v.c_str());
    else if (k == "--reps") a.reps = std::atoi(v.c_str());
    else if (k == "--batch") a.batch = std::atoi(v.c_str());
    else if (k == "--new") a.new_tokens = std::atoi(v.c_str());
    else if (k == "--prompt") a.prompt = std::atoi(v.c_str());
    else if (k == "--tokens") a.tokens = std::atoll(v.c_str());
    else if (k == "--heads") a.heads = std::atoi(v.c_str());
    else if (k == "--head-dim") a.head_dim = std::atoi(v.c_str());
    else if (k == "--seed") a.seed = std::strtoull(v.c_str(), nullptr, 10);
    else fail(code::kArgument, "cpu_bench: unknown option " + k);
  }
  return a;
}

// Multiply-adds x 2 of one frozen-weight forward + activation backward (no weight
// gradients), per the engine's work: q/k/v/o, gate/up/down, causal attention
// (QK^T and PV forward; S recompute, dP, dV, dK, dQ backward), and the lm_head on
// response rows (logits forward, dx backward).
double train_flops(const ModelConfig& c, const std::vector<Sample>& batch) {
  const double H = c.hidden, I = c.intermediate, D = c.head_dim, nH = c.num_heads, nKV = c.num_kv_heads;
  const double per_token_linear = 2.0 * (H * nH * D + 2 * H * nKV * D + nH * D * H + 3 * H * I);
  double tokens = 0, pairs = 0, resp = 0;
  for (const auto& s : batch) {
    const double len = double(s.prompt.size() + s.response.size());
    tokens += len;
    pairs += len * (len + 1) / 2;
    resp += double(s.response.size());
  }
  const double layers = c.num_layers;
  const double linear = layers * tokens * per_token_linear * 2.0;          // fwd + bwd(dx)
  const double attention = layers * pairs * nH * D * 2.0 * (2.0 + 5.0);     // 2 fwd + 5 bwd products
  const double head = resp * 2.0 * H * c.vocab * 2.0;                       // logits + dx
  return linear + attention + head;
}

void json_batch(const std::vector<Sample>& b) {
  std::printf("\"lengths\": [");
  for (size_t i = 0; i < b.size(); ++i)
    std::printf("%s[%zu, %zu]", i ? ", " : "", b[i].prompt.size(), b[i].response.size());
  std::printf("]");
}

int run_train(const Args& a) {
  auto model = open_model(a.model);
  const ModelConfig& c = model->config;
  auto engine = make_cpu_engine(*model, a.threads);
  const auto batch = make_batch(a.samples, c.vocab, a.seed);
  int64_t tokens = 0;
  for (const auto& s : batch) tokens += int64_t(s.prompt.size() + s.response.size());
  const Theta theta = Theta::ones(c.num_layers);
  BatchOptions opts;
  engine->loss(batch, theta, opts, true);  // warm-up (page faults, pool start)
  std::vector<double> times;
  LossResult r;
  for (int i = 0; i < a.reps; ++i) {
    const double t0 = now_s();
    r = engine->loss(batch, theta, opts, true);
    times.push_back(now_s() - t0);
  }
  const double t = median(times);
  std::printf("{\"impl\": \"hopscotch\", \"mode\": \"train\", \"model\": \"%s\", \"threads\": %d, "
              "\"params\": %lld, \"tokens\": %lld, \"seconds\": %.4f, \"tokens_per_s\": %.2f, \"gflops\": %.2f, "
              "\"peak_rss_mib\": %.1f, \"peak_activation_mib\": %.1f, \"loss\": %.6f, \"gemm\": \"%s\", "
              "\"attention\": \"%s\", ",
              a.model.c_str(), a.threads, static_cast<long long>(model->weights->parameters),
              static_cast<long long>(tokens), t, tokens / t, train_flops(c, batch) / t * 1e-9, peak_rss_mib(),
              r.peak_bytes / 1048576.0, r.loss, gemm_kernel_name(), cpu::detail::active_attention_kernels().name);
  json_batch(batch);
  std::printf("}\n");
  return 0;
}

int run_generate(const Args& a) {
  auto model = open_model(a.model);
  const ModelConfig& c = model->config;
  auto engine = make_cpu_engine(*model, a.threads);
  Lcg rng(a.seed + 7);
  std::vector<std::vector<int32_t>> prompts(a.batch);
  for (auto& p : prompts)
    for (int i = 0; i < a.prompt; ++i) p.push_back(rng.range(0, c.vocab - 1));
  GenerateOptions go;
  go.max_new_tokens = a.new_tokens;
  const Theta theta = Theta::ones(c.num_layers);
  engine->generate(prompts, theta, go);  // warm-up
  std::vector<double> times;
  int64_t produced = 0;
  for (int i = 0; i < a.reps; ++i) {
    const double t0 = now_s();
    const auto out = engine->generate(prompts, theta, go);
    times.push_back(now_s() - t0);
    produced = 0;
    for (const auto& o : out) produced += int64_t(o.size());
  }
  const double t = median(times);
  std::printf("{\"impl\": \"hopscotch\", \"mode\": \"generate\", \"model\": \"%s\", \"threads\": %d, \"batch\": %d, "
              "\"prompt\": %d, \"new_tokens\": %lld, \"seconds\": %.4f, \"tokens_per_s\": %.2f, "
              "\"peak_rss_mib\": %.1f}\n",
              a.model.c_str(), a.threads, a.batch, a.prompt, static_cast<long long>(produced), t, produced / t,
              peak_rss_mib());
  return 0;
}

// Attention forward + backward alone on `tokens` packed tokens of 256-token samples.
int run_attention(const Args& a) {
  ThreadPool pool(a.threads);
  const int D = a.head_dim, nH = a.heads;
  const int64_t T = a.tokens, W = int64_t(nH) * D;
  std::vector<int32_t> cu{0};
  while (cu.back() < T) cu.push_back(static_cast<int32_t>(std::min<int64_t>(cu.back() + 256, T)));
  const int nseq = static_cast<int>(cu.size()) - 1;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<float> q(T * W), k(T * W), v(T * W), o(T * W), lse(T * nH), d_o(T * W), dq(T * W), dk(T * W),
      dv(T * W);
  for (auto* t : {&q, &k, &v, &d_o})
    for (auto& x : *t) x = nd(rng);
  const cpu::AttentionShape sh{nH, nH, D, 1.f / std::sqrt(float(D))};
  std::vector<double> tf, tb;
  for (int i = 0; i < a.reps + 1; ++i) {
    const double t0 = now_s();
    cpu::attention_fwd(q.data(), k.data(), v.data(), o.data(), lse.data(), cu.data(), nseq, sh, &pool);
    const double t1 = now_s();
    cpu::attention_bwd(q.data(), k.data(), v.data(), o.data(), lse.data(), d_o.data(), dq.data(), dk.data(),
                       dv.data(), cu.data(), nseq, sh, &pool);
    const double t2 = now_s();
    if (i > 0) {
      tf.push_back(t1 - t0);
      tb.push_back(t2 - t1);
    }
  }
  double pairs = 0;
  for (int s = 0; s < nseq; ++s) {
    const double len = cu[s + 1] - cu[s];
    pairs += len * (len + 1) / 2;
  }
  const double ff = pairs * nH * D * 2.0 * 2.0, fb = pairs * nH * D * 2.0 * 5.0;
  std::printf("{\"impl\": \"hopscotch\", \"mode\": \"attention\", \"kernel\": \"%s\", \"threads\": %d, "
              "\"tokens\": %lld, \"heads\": %d, \"head_dim\": %d, \"fwd_ms\": %.3f, \"bwd_ms\": %.3f, "
              "\"fwd_gflops\": %.2f, \"bwd_gflops\": %.2f}\n",
              cpu::detail::active_attention_kernels().name, a.threads, static_cast<long long>(T), nH, D,
              median(tf) * 1e3, median(tb) * 1e3, ff / median(tf) * 1e-9, fb / median(tb) * 1e-9);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    if (a.mode == "train") return run_train(a);
    if (a.mode == "generate") return run_generate(a);
    if (a.mode == "attention") return run_attention(a);
    fail(code::kArgument, "cpu_bench: unknown mode " + a.mode);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cpu_bench: %s\n", e.what());
    return 1;
  }
}
