// CPU engine benchmark: theta loss + gradient (frozen weights) tokens/s, greedy
// generation tokens/s, and the attention kernels alone, on the bundled
// stories260k checkpoint, on a random Llama-shaped model built in memory, or on a
// random checkpoint this program writes (make-model).
// Prints one JSON object per measurement on stdout (bench/cpu-bench.sh collects them).
//
//   cpu_bench train    --model DIR|random100m --threads N [--samples 8] [--reps 3] [--seed 0]
//                      [--precision f32|bf16] [--weights mapped|f32-copy]
//   cpu_bench generate --model DIR|random100m --threads N [--batch 1] [--new 32] [--prompt 64]
//                      [--precision f32|bf16]
//   cpu_bench attention --threads N [--tokens 2048] [--heads 8] [--head-dim 64] [--reps 5]
//   cpu_bench make-model --shape llama32-1b|random100m --dtype BF16|F32 --out DIR [--seed 1]
//   cpu_bench machine --threads N      (fp32 FMA peak per core, memory read bandwidth)
//
// make-model writes config.json + model.safetensors with random weights of the named
// shape (llama32-1b: Llama-3.2-1B's sizes, 1.24e9 parameters, tied embeddings, plain
// RoPE with theta 500000; random100m: the in-memory model below, 134e6 parameters).
// train reports peak RSS next to the checkpoint's bytes and the metered activation
// peak, and the theta gradient (for the baselines' agreement check).
//
// The packed batch has GSM8K-like lengths: prompts of 120-180 tokens and responses
// of 60-120 tokens (random ids, fixed seed), the same batch bench/torch_cpu_baseline.py
// builds from the same seed (both use the lengths printed in the JSON).
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#include "cpu_kernels.h"
#include "cpu_kernels_internal.h"
#include "engine.h"
#include "errors.h"
#include "gemm.h"
#include "half.h"
#include "safetensors.h"
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
  w.matrix_dtype = "F32";
  return m;
}

std::unique_ptr<LoadedModel> open_model(const std::string& spec, const WeightOptions& wo = {}) {
  if (spec == "random100m") {
    auto m = random_model(random100m_config(), 1);
    if (wo.bf16) {
      // The in-memory model held in bf16 for precision bf16: round every matrix.
      Weights& w = *m->weights;
      auto round = [&](MatRef& r, size_t n) {
        const float* src = r.f32();
        w.storage16.emplace_back(n);
        for (size_t i = 0; i < n; ++i) w.storage16.back()[i] = f32_to_bf16(src[i]);
        r = MatRef(w.storage16.back().data(), WType::BF16);
      };
      const ModelConfig& c = m->config;
      const size_t H = c.hidden, I = c.intermediate, QW = size_t(c.num_heads) * c.head_dim,
                   KW = size_t(c.num_kv_heads) * c.head_dim, V = c.vocab;
      w.storage16.reserve(2 + 7 * c.num_layers);
      round(w.embed, V * H);
      round(w.lm_head, V * H);
      for (auto& lw : w.layers) {
        round(lw.q, QW * H), round(lw.k, KW * H), round(lw.v, KW * H), round(lw.o, H * QW);
        round(lw.gate, I * H), round(lw.up, I * H), round(lw.down, H * I);
      }
      w.matrix_dtype = "BF16";
    }
    return m;
  }
  return load_model_dir(spec, wo);
}

// Bytes of the model's safetensors files (0 for an in-memory model).
double checkpoint_mib(const LoadedModel& m) {
  double bytes = 0;
  if (m.checkpoint)
    for (const auto& f : m.checkpoint->files()) bytes += double(f->size());
  else if (m.dir != "<random>") {
    struct stat st{};
    if (::stat((m.dir + "/model.safetensors").c_str(), &st) == 0) bytes = double(st.st_size);
  }
  return bytes / 1048576.0;
}

// VmHWM and RssFile/RssAnon of this process, MiB (Linux /proc/self/status).
double proc_status_mib(const char* key) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  double kb = 0;
  const size_t n = std::strlen(key);
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, key, n) == 0 && line[n] == ':') kb = std::atof(line + n + 1);
  std::fclose(f);
  return kb / 1024.0;
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
  std::string mode, model = "random100m", precision = "f32", weights = "mapped", shape = "llama32-1b",
              dtype = "BF16", out;
  int threads = 1, samples = 8, reps = 3, batch = 1, new_tokens = 32, prompt = 64, heads = 8, head_dim = 64;
  int64_t tokens = 2048;
  uint64_t seed = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  if (argc < 2) fail(code::kArgument, "usage: cpu_bench train|generate|attention|make-model [--options]");
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
    else if (k == "--precision") a.precision = v;
    else if (k == "--weights") a.weights = v;
    else if (k == "--shape") a.shape = v;
    else if (k == "--dtype") a.dtype = v;
    else if (k == "--out") a.out = v;
    else fail(code::kArgument, "cpu_bench: unknown option " + k);
  }
  if (a.precision != "f32" && a.precision != "bf16") fail(code::kArgument, "--precision must be f32 or bf16");
  if (a.weights != "mapped" && a.weights != "f32-copy") fail(code::kArgument, "--weights must be mapped or f32-copy");
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

WeightOptions weight_options(const Args& a) {
  WeightOptions wo;
  wo.bf16 = a.precision == "bf16";
  wo.f32_copy = a.weights == "f32-copy";
  return wo;
}

Arith arith_of(const Args& a) { return a.precision == "bf16" ? Arith::BF16 : Arith::F32; }

int run_train(const Args& a) {
  auto model = open_model(a.model, weight_options(a));
  const ModelConfig& c = model->config;
  auto engine = make_cpu_engine(*model, a.threads, arith_of(a));
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
  const Weights& w = *model->weights;
  const double ckpt = checkpoint_mib(*model), act = r.peak_bytes / 1048576.0, rss = peak_rss_mib();
  // The memory goal: peak RSS <= checkpoint bytes + metered activations + 10%.
  const double budget = 1.1 * (ckpt + act);
  std::printf("{\"impl\": \"hopscotch\", \"mode\": \"train\", \"model\": \"%s\", \"threads\": %d, "
              "\"precision\": \"%s\", \"weights\": \"%s\", \"weight_dtype\": \"%s\", "
              "\"params\": %lld, \"tokens\": %lld, \"seconds\": %.4f, \"tokens_per_s\": %.2f, \"gflops\": %.2f, "
              "\"peak_rss_mib\": %.1f, \"rss_file_mib\": %.1f, \"rss_anon_mib\": %.1f, "
              "\"checkpoint_mib\": %.1f, \"weights_held_mib\": %.1f, \"weights_copied_mib\": %.1f, "
              "\"peak_activation_mib\": %.1f, \"rss_budget_mib\": %.1f, \"rss_within_budget\": %s, "
              "\"loss\": %.9g, \"gemm\": \"%s\", \"attention\": \"%s\", ",
              a.model.c_str(), a.threads, a.precision.c_str(), a.weights.c_str(), w.matrix_dtype.c_str(),
              static_cast<long long>(w.parameters), static_cast<long long>(tokens), t, tokens / t,
              train_flops(c, batch) / t * 1e-9, rss, proc_status_mib("RssFile"), proc_status_mib("RssAnon"), ckpt,
              w.bytes / 1048576.0, w.copied_bytes / 1048576.0, act, budget,
              ckpt > 0 ? (rss <= budget ? "true" : "false") : "null", r.loss, gemm_kernel_name(),
              cpu::detail::active_attention_kernels().name);
  std::printf("\"grad\": {");
  const std::pair<const char*, const std::vector<float>*> parts[] = {
      {"bAtt", &r.grad.b_att}, {"sAtt", &r.grad.s_att}, {"bMlp", &r.grad.b_mlp}, {"sMlp", &r.grad.s_mlp}};
  for (size_t p = 0; p < 4; ++p) {
    std::printf("%s\"%s\": [", p ? ", " : "", parts[p].first);
    for (size_t i = 0; i < parts[p].second->size(); ++i) std::printf("%s%.9g", i ? ", " : "", (*parts[p].second)[i]);
    std::printf("]");
  }
  std::printf("}, ");
  json_batch(batch);
  std::printf("}\n");
  return 0;
}

int run_generate(const Args& a) {
  auto model = open_model(a.model, weight_options(a));
  const ModelConfig& c = model->config;
  auto engine = make_cpu_engine(*model, a.threads, arith_of(a));
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
              "\"precision\": \"%s\", \"weight_dtype\": \"%s\", "
              "\"prompt\": %d, \"new_tokens\": %lld, \"seconds\": %.4f, \"tokens_per_s\": %.2f, "
              "\"peak_rss_mib\": %.1f, \"checkpoint_mib\": %.1f, \"weights_held_mib\": %.1f}\n",
              a.model.c_str(), a.threads, a.batch, a.precision.c_str(), model->weights->matrix_dtype.c_str(), a.prompt,
              static_cast<long long>(produced), t, produced / t, peak_rss_mib(), checkpoint_mib(*model),
              model->weights->bytes / 1048576.0);
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

double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// 12 independent chains of 8-lane FMAs, timed in thread CPU time (robust to a shared machine).
__attribute__((target("avx2,fma"))) double fma_peak_gflops() {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(0.1f * float(i + 1));
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
  const int64_t iters = 50'000'000;
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const double t0 = thread_seconds();
    for (int64_t i = 0; i < iters; ++i) {
      for (int j = 0; j < 12; ++j) a[j] = _mm256_fmadd_ps(a[j], x, y);
      __asm__ volatile("" : "+x"(a[0]), "+x"(a[1]), "+x"(a[2]), "+x"(a[3]), "+x"(a[4]), "+x"(a[5]));
      __asm__ volatile("" : "+x"(a[6]), "+x"(a[7]), "+x"(a[8]), "+x"(a[9]), "+x"(a[10]), "+x"(a[11]));
    }
    best = std::min(best, thread_seconds() - t0);
  }
  return 12.0 * 8 * 2 * iters / best * 1e-9;
}
#else
double fma_peak_gflops() { return 0; }
#endif

// Read bandwidth: `threads` threads sum disjoint parts of a 1 GiB buffer; best of 5, wall time.
double read_bandwidth_gbs(int threads) {
  const size_t n = size_t(1) << 28;  // floats
  std::vector<float> buf(n, 1.f);
  double best = 1e30;
  std::vector<double> sums(threads);
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = now_s();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        const size_t b = n * t / threads, e = n * (t + 1) / threads;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
        for (size_t i = b; i + 8 <= e; i += 8) {
          s0 += buf[i], s1 += buf[i + 1], s2 += buf[i + 2], s3 += buf[i + 3];
          s4 += buf[i + 4], s5 += buf[i + 5], s6 += buf[i + 6], s7 += buf[i + 7];
        }
        sums[t] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
      });
    for (auto& th : pool) th.join();
    best = std::min(best, now_s() - t0);
  }
  return double(n) * 4 / best * 1e-9;
}

int run_machine(const Args& a) {
  const double fma = fma_peak_gflops();
  std::printf("{\"mode\": \"machine\", \"fma_peak_gflops_per_core\": %.1f, \"read_gbs_1_thread\": %.1f, "
              "\"read_gbs_%d_threads\": %.1f}\n",
              fma, read_bandwidth_gbs(1), a.threads, read_bandwidth_gbs(a.threads));
  return 0;
}

// Writes a random checkpoint of a named shape (config.json + model.safetensors),
// streaming each tensor so that memory stays small whatever the model's size.
int run_make_model(const Args& a) {
  if (a.out.empty()) fail(code::kArgument, "make-model: --out DIR is required");
  if (a.dtype != "BF16" && a.dtype != "F32") fail(code::kArgument, "make-model: --dtype must be BF16 or F32");
  ModelConfig c;
  double rope_theta = 10000.0;
  bool tied = false;
  int64_t max_pos = 2048;
  if (a.shape == "llama32-1b") {
    c.num_layers = 16, c.hidden = 2048, c.intermediate = 8192, c.num_heads = 32, c.num_kv_heads = 8,
    c.head_dim = 64, c.vocab = 128256;
    rope_theta = 500000.0, tied = true, max_pos = 131072;
  } else if (a.shape == "random100m") {
    c = random100m_config();
  } else {
    fail(code::kArgument, "make-model: --shape must be llama32-1b or random100m");
  }
  ::mkdir(a.out.c_str(), 0755);
  const int64_t H = c.hidden, I = c.intermediate, QW = int64_t(c.num_heads) * c.head_dim,
                KW = int64_t(c.num_kv_heads) * c.head_dim, V = c.vocab;
  struct Spec {
    std::string name;
    std::vector<int64_t> shape;
    float center, scale;
  };
  const float sh = 1.7f / std::sqrt(float(H)), si = 1.7f / std::sqrt(float(I)), so = 1.7f / std::sqrt(float(QW));
  std::vector<Spec> specs = {{"model.embed_tokens.weight", {V, H}, 0.f, 1.f}, {"model.norm.weight", {H}, 1.f, 0.1f}};
  if (!tied) specs.push_back({"lm_head.weight", {V, H}, 0.f, sh});
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    specs.push_back({p + "input_layernorm.weight", {H}, 1.f, 0.1f});
    specs.push_back({p + "self_attn.q_proj.weight", {QW, H}, 0.f, sh});
    specs.push_back({p + "self_attn.k_proj.weight", {KW, H}, 0.f, sh});
    specs.push_back({p + "self_attn.v_proj.weight", {KW, H}, 0.f, sh});
    specs.push_back({p + "self_attn.o_proj.weight", {H, QW}, 0.f, so});
    specs.push_back({p + "post_attention_layernorm.weight", {H}, 1.f, 0.1f});
    specs.push_back({p + "mlp.gate_proj.weight", {I, H}, 0.f, sh});
    specs.push_back({p + "mlp.up_proj.weight", {I, H}, 0.f, sh});
    specs.push_back({p + "mlp.down_proj.weight", {H, I}, 0.f, si});
  }
  const DType dt = a.dtype == "BF16" ? DType::BF16 : DType::F32;
  std::vector<SafetensorsWriter::Entry> entries;
  for (const auto& sp : specs) entries.push_back({sp.name, dt, sp.shape});
  SafetensorsWriter writer(a.out + "/model.safetensors", entries, {{"format", "pt"}}, true);
  uint64_t x = 0x9E3779B97F4A7C15ULL ^ (a.seed * 0xD1B54A32D192ED03ULL);
  auto uniform = [&]() {  // xorshift64*: in [-1, 1)
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    return float(int64_t((x * 2685821657736338717ULL) >> 11) - (int64_t(1) << 52)) / float(int64_t(1) << 52);
  };
  std::vector<float> buf(1 << 20);
  std::vector<uint16_t> half(buf.size());
  int64_t params = 0;
  for (const auto& sp : specs) {
    int64_t n = 1;
    for (int64_t d : sp.shape) n *= d;
    params += n;
    for (int64_t off = 0; off < n; off += int64_t(buf.size())) {
      const int64_t m = std::min<int64_t>(int64_t(buf.size()), n - off);
      for (int64_t i = 0; i < m; ++i) buf[i] = sp.center + sp.scale * uniform();
      if (dt == DType::BF16) {
        for (int64_t i = 0; i < m; ++i) half[i] = f32_to_bf16(buf[i]);
        writer.write_data(half.data(), size_t(m) * 2);
      } else {
        writer.write_data(buf.data(), size_t(m) * 4);
      }
    }
  }
  const size_t bytes = writer.finish();
  FILE* f = std::fopen((a.out + "/config.json").c_str(), "w");
  if (!f) fail(code::kIo, "make-model: cannot write " + a.out + "/config.json");
  std::fprintf(f,
               "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
               "  \"hidden_size\": %lld,\n  \"intermediate_size\": %lld,\n  \"num_hidden_layers\": %d,\n"
               "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n"
               "  \"vocab_size\": %lld,\n  \"max_position_embeddings\": %lld,\n  \"rms_norm_eps\": 1e-05,\n"
               "  \"rope_theta\": %.1f,\n  \"rope_scaling\": null,\n  \"hidden_act\": \"silu\",\n"
               "  \"tie_word_embeddings\": %s,\n  \"attention_bias\": false,\n  \"mlp_bias\": false,\n"
               "  \"torch_dtype\": \"%s\",\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n",
               static_cast<long long>(H), static_cast<long long>(I), c.num_layers, c.num_heads, c.num_kv_heads,
               c.head_dim, static_cast<long long>(V), static_cast<long long>(max_pos), rope_theta,
               tied ? "true" : "false", dt == DType::BF16 ? "bfloat16" : "float32");
  std::fclose(f);
  std::printf("{\"mode\": \"make-model\", \"shape\": \"%s\", \"dtype\": \"%s\", \"out\": \"%s\", "
              "\"params\": %lld, \"bytes\": %zu}\n",
              a.shape.c_str(), a.dtype.c_str(), a.out.c_str(), static_cast<long long>(params), bytes);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    if (a.mode == "train") return run_train(a);
    if (a.mode == "generate") return run_generate(a);
    if (a.mode == "attention") return run_attention(a);
    if (a.mode == "make-model") return run_make_model(a);
    if (a.mode == "machine") return run_machine(a);
    fail(code::kArgument, "cpu_bench: unknown mode " + a.mode);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cpu_bench: %s\n", e.what());
    return 1;
  }
}
