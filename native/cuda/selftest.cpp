// hopscotch_cuda_selftest: parity of the CUDA engine against the CPU engine (fp32, the
// correctness reference) on real model directories. Runs on the GPU machine, where
// there is no Node; the CUDA engine is reached the way the addon reaches it: dlopen of
// libhopscotch_cuda.so and its hopscotch_cuda_create entry point.
//
//   hopscotch_cuda_selftest [--lib PATH] [--json FILE] MODEL_DIR...
//
// Checks per model (tolerances for bf16 weights/activations against fp32):
//   loss            |cuda - cpu| / |cpu| <= 1e-2 (plain and token_mean)
//   grad            per theta vector: cosine >= 0.999 and |g - g_ref| / |g_ref| <= 2e-2,
//                   with a skipped layer (its b_att gradient must be exactly 0)
//   deterministic   two identical lossAndGrad calls are bit-identical
//   logits          |cuda - cpu|_2 / |cpu|_2 <= 2e-2
//   generate        the first 32 greedy tokens equal the CPU's (with and without a skip)
//   layer_stats     cosine statistics within 1e-2 of the CPU's
// Prints one JSON object per check, a JSON summary, and "N passed, M failed".
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine.h"
#include "errors.h"
#include "hopscotch_cuda.h"
#include "weights.h"

#ifndef HOPSCOTCH_CUDA_LIBRARY_NAME
#define HOPSCOTCH_CUDA_LIBRARY_NAME "libhopscotch_cuda.so"
#endif

namespace {

struct Report {
  int passed = 0, failed = 0;
  std::vector<std::string> lines;
  void add(const std::string& model, const std::string& check, bool ok, const std::string& detail) {
    (ok ? passed : failed)++;
    std::string line = "{\"model\":\"" + model + "\",\"check\":\"" + check + "\",\"ok\":" + (ok ? "true" : "false") +
                       (detail.empty() ? "" : "," + detail) + "}";
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    lines.push_back(line);
  }
};

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

// A JSON string literal (quotes included).
std::string jstr(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      o += buf;
    } else {
      o += c;
    }
  }
  return o + "\"";
}

std::string exe_dir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

// Deterministic token stream (64-bit LCG), ids in [lo, vocab).
struct Lcg {
  uint64_t s;
  int32_t next(int32_t lo, int32_t hi) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return lo + static_cast<int32_t>((s >> 33) % uint64_t(hi - lo));
  }
};

std::vector<hs::Sample> make_samples(int vocab) {
  // Odd lengths that straddle the 16-row attention tiles.
  const int prompt_len[] = {7, 19, 33, 5, 16};
  const int response_len[] = {9, 4, 21, 16, 1};
  Lcg rng{12345};
  const int32_t lo = vocab > 8 ? 3 : 0;
  std::vector<hs::Sample> out;
  for (int i = 0; i < 5; ++i) {
    hs::Sample s;
    for (int j = 0; j < prompt_len[i]; ++j) s.prompt.push_back(rng.next(lo, vocab));
    for (int j = 0; j < response_len[i]; ++j) s.response.push_back(rng.next(lo, vocab));
    out.push_back(std::move(s));
  }
  return out;
}

hs::Theta perturbed_theta(int L) {
  hs::Theta t = hs::Theta::ones(L);
  for (int l = 0; l < L; ++l) {
    t.b_att[l] = 1.0f + 0.1f * std::sin(1.0f + l);
    t.s_att[l] = 1.0f - 0.05f * std::cos(2.0f + l);
    t.b_mlp[l] = 1.0f + 0.08f * std::sin(3.0f + l);
    t.s_mlp[l] = 1.0f + 0.04f * std::cos(4.0f + l);
  }
  return t;
}

struct VecCompare {
  double cosine = 0, rel = 0;
};

VecCompare compare(const std::vector<float>& a, const std::vector<float>& ref) {
  double ab = 0, aa = 0, rr = 0, dd = 0;
  for (size_t i = 0; i < a.size() && i < ref.size(); ++i) {
    ab += double(a[i]) * ref[i];
    aa += double(a[i]) * a[i];
    rr += double(ref[i]) * ref[i];
    dd += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
  }
  VecCompare c;
  if (aa == 0 && rr == 0) {
    c.cosine = 1;
    c.rel = 0;
  } else {
    c.cosine = (aa > 0 && rr > 0) ? ab / std::sqrt(aa * rr) : 0;
    c.rel = rr > 0 ? std::sqrt(dd / rr) : INFINITY;
  }
  return c;
}

std::vector<int> with_absent(const hs::ModelConfig& cfg, std::vector<int> skip) {
  for (size_t l = 0; l < cfg.attention_absent.size(); ++l)
    if (cfg.attention_absent[l] && std::find(skip.begin(), skip.end(), static_cast<int>(l)) == skip.end())
      skip.push_back(static_cast<int>(l));
  return skip;
}

void run_model(const std::string& dir, hopscotch_cuda_create_fn create, Report& rep) {
  const std::string name = dir.substr(dir.find_last_of('/') == std::string::npos ? 0 : dir.find_last_of('/') + 1);
  std::unique_ptr<hs::LoadedModel> model;
  try {
    model = hs::load_model_dir(dir);
  } catch (const std::exception& e) {
    rep.add(name, "load", false, "\"error\":" + jstr(e.what()));
    return;
  }
  const hs::ModelConfig& cfg = model->config;
  const int L = cfg.num_layers;
  auto cpu = hs::make_cpu_engine(*model, 0);
  char err[4096] = {0};
  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<hs::Engine> gpu(create(model.get(), err, sizeof(err)));
  const double upload_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!gpu) {
    rep.add(name, "create", false, "\"error\":" + jstr(err));
    return;
  }
  rep.add(name, "create", true, "\"arch\":" + jstr(cfg.arch) + ",\"upload_s\":" + num(upload_s));

  const std::vector<hs::Sample> samples = make_samples(cfg.vocab);
  const hs::Theta ones = hs::Theta::ones(L);
  const hs::Theta theta = perturbed_theta(L);
  std::vector<int> skip;
  if (L > 2) skip.push_back(1);
  skip = with_absent(cfg, skip);
  hs::BatchOptions plain;
  plain.skip = with_absent(cfg, {});
  hs::BatchOptions skipping;
  skipping.skip = skip;

  auto guarded = [&](const char* check, auto&& fn) {
    try {
      fn();
    } catch (const hs::Error& e) {
      rep.add(name, check, false, "\"error\":" + jstr(std::string(e.code()) + ": " + e.what()));
    } catch (const std::exception& e) {
      rep.add(name, check, false, "\"error\":" + jstr(e.what()));
    }
  };

  guarded("loss", [&] {
    for (bool token_mean : {false, true}) {
      hs::BatchOptions o = plain;
      o.token_mean = token_mean;
      const hs::LossResult a = gpu->loss(samples, ones, o, false);
      const hs::LossResult r = cpu->loss(samples, ones, o, false);
      const double rel = std::fabs(a.loss - r.loss) / std::max(1e-12, std::fabs(r.loss));
      rep.add(name, token_mean ? "loss_token_mean" : "loss", rel <= 1e-2 && a.response_tokens == r.response_tokens,
              "\"cuda\":" + num(a.loss) + ",\"cpu\":" + num(r.loss) + ",\"rel\":" + num(rel) +
                  ",\"peak_bytes\":" + std::to_string(a.peak_bytes));
    }
  });

  guarded("grad", [&] {
    const hs::LossResult a = gpu->loss(samples, theta, skipping, true);
    const hs::LossResult r = cpu->loss(samples, theta, skipping, true);
    const double rel = std::fabs(a.loss - r.loss) / std::max(1e-12, std::fabs(r.loss));
    rep.add(name, "grad_loss", rel <= 1e-2, "\"cuda\":" + num(a.loss) + ",\"cpu\":" + num(r.loss) + ",\"rel\":" + num(rel));
    const struct {
      const char* n;
      const std::vector<float>* a;
      const std::vector<float>* r;
    } parts[] = {{"b_att", &a.grad.b_att, &r.grad.b_att},
                 {"s_att", &a.grad.s_att, &r.grad.s_att},
                 {"b_mlp", &a.grad.b_mlp, &r.grad.b_mlp},
                 {"s_mlp", &a.grad.s_mlp, &r.grad.s_mlp}};
    for (const auto& p : parts) {
      const VecCompare c = compare(*p.a, *p.r);
      std::string vals = "\"cuda\":[";
      for (size_t i = 0; i < p.a->size(); ++i) vals += (i ? "," : "") + num((*p.a)[i]);
      vals += "],\"cpu\":[";
      for (size_t i = 0; i < p.r->size(); ++i) vals += (i ? "," : "") + num((*p.r)[i]);
      vals += "]";
      rep.add(name, std::string("grad_") + p.n, c.cosine >= 0.999 && c.rel <= 2e-2,
              "\"cosine\":" + num(c.cosine) + ",\"rel\":" + num(c.rel) + "," + vals);
    }
    bool zero = true;
    for (int l : skip) zero = zero && a.grad.b_att[l] == 0.0f;
    rep.add(name, "grad_skipped_b_att_zero", zero, "");
  });

  guarded("deterministic", [&] {
    const hs::LossResult a = gpu->loss(samples, theta, skipping, true);
    const hs::LossResult b = gpu->loss(samples, theta, skipping, true);
    bool same = std::memcmp(&a.loss, &b.loss, sizeof(double)) == 0;
    for (auto v : {&hs::Theta::b_att, &hs::Theta::s_att, &hs::Theta::b_mlp, &hs::Theta::s_mlp})
      same = same && (a.grad.*v).size() == (b.grad.*v).size() &&
             std::memcmp((a.grad.*v).data(), (b.grad.*v).data(), (a.grad.*v).size() * sizeof(float)) == 0;
    rep.add(name, "deterministic", same, "\"loss_a\":" + num(a.loss) + ",\"loss_b\":" + num(b.loss));
  });

  guarded("logits", [&] {
    std::vector<int32_t> toks = samples[2].prompt;
    toks.insert(toks.end(), samples[2].response.begin(), samples[2].response.end());
    const std::vector<float> a = gpu->logits(toks, theta, skip);
    const std::vector<float> r = cpu->logits(toks, theta, skip);
    const VecCompare c = compare(a, r);
    rep.add(name, "logits", a.size() == r.size() && c.rel <= 2e-2,
            "\"rel\":" + num(c.rel) + ",\"cosine\":" + num(c.cosine) + ",\"size\":" + std::to_string(a.size()));
  });

  for (const bool with_skip : {false, true}) {
    guarded("generate", [&] {
      hs::GenerateOptions go;
      go.max_new_tokens = 32;
      go.skip = with_skip ? skip : plain.skip;
      const std::vector<std::vector<int32_t>> prompts = {samples[0].prompt, samples[2].prompt};
      const auto a = gpu->generate(prompts, with_skip ? theta : ones, go);
      const auto r = cpu->generate(prompts, with_skip ? theta : ones, go);
      bool same = a.size() == r.size();
      size_t first_diff = 0;
      for (size_t i = 0; same && i < a.size(); ++i) {
        const size_t n = std::min<size_t>(32, std::max(a[i].size(), r[i].size()));
        for (size_t j = 0; j < n; ++j) {
          if (j >= a[i].size() || j >= r[i].size() || a[i][j] != r[i][j]) {
            same = false;
            first_diff = j;
            break;
          }
        }
      }
      rep.add(name, with_skip ? "generate_skip" : "generate", same,
              same ? "" : "\"first_difference\":" + std::to_string(first_diff));
    });
  }

  guarded("layer_stats", [&] {
    const std::vector<hs::Sample> few(samples.begin(), samples.begin() + 3);
    const std::vector<int> hidden = {0, L};
    const hs::LayerStats a = gpu->layer_stats(few, theta, skip, hidden);
    const hs::LayerStats r = cpu->layer_stats(few, theta, skip, hidden);
    double worst = 0;
    for (int l = 0; l < L; ++l)
      worst = std::max({worst, std::fabs(a.cos_attn[l] - r.cos_attn[l]), std::fabs(a.cos_mlp[l] - r.cos_mlp[l]),
                        std::fabs(a.cos_block[l] - r.cos_block[l])});
    double hrel = 0;
    for (size_t i = 0; i < hidden.size(); ++i) hrel = std::max(hrel, compare(a.hidden[i], r.hidden[i]).rel);
    rep.add(name, "layer_stats", worst <= 1e-2 && hrel <= 2e-2,
            "\"max_cos_diff\":" + num(worst) + ",\"hidden_rel\":" + num(hrel));
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::string lib_path = exe_dir() + "/" + HOPSCOTCH_CUDA_LIBRARY_NAME;
  std::string json_out;
  std::vector<std::string> models;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--lib" && i + 1 < argc) {
      lib_path = argv[++i];
    } else if (a == "--json" && i + 1 < argc) {
      json_out = argv[++i];
    } else if (a == "-h" || a == "--help") {
      std::printf("usage: %s [--lib PATH] [--json FILE] MODEL_DIR...\n", argv[0]);
      return 0;
    } else {
      models.push_back(a);
    }
  }
  if (models.empty()) {
    std::fprintf(stderr, "usage: %s [--lib PATH] [--json FILE] MODEL_DIR...\n", argv[0]);
    return 2;
  }
  void* lib = dlopen(lib_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    std::fprintf(stderr, "cannot load %s: %s\n", lib_path.c_str(), dlerror());
    return 2;
  }
  auto version = reinterpret_cast<hopscotch_cuda_version_fn>(dlsym(lib, "hopscotch_cuda_version"));
  auto probe = reinterpret_cast<hopscotch_cuda_probe_fn>(dlsym(lib, "hopscotch_cuda_probe"));
  auto create = reinterpret_cast<hopscotch_cuda_create_fn>(dlsym(lib, "hopscotch_cuda_create"));
  if (!version || !probe || !create) {
    std::fprintf(stderr, "%s lacks the hopscotch_cuda_* entry points\n", lib_path.c_str());
    return 2;
  }
  char msg[8192] = {0};
  const int devices = probe(msg, sizeof(msg));
  std::printf("{\"library\":\"%s\",\"version\":\"%s\",\"probe\":%s}\n", lib_path.c_str(), version(), msg);
  Report rep;
  if (devices <= 0) {
    rep.add("-", "probe", false, "\"devices\":" + std::to_string(devices));
  } else {
    for (const std::string& m : models) run_model(m, create, rep);
  }
  std::ostringstream summary;
  summary << "{\"passed\":" << rep.passed << ",\"failed\":" << rep.failed << ",\"checks\":[";
  for (size_t i = 0; i < rep.lines.size(); ++i) summary << (i ? "," : "") << rep.lines[i];
  summary << "]}";
  if (!json_out.empty()) {
    std::ofstream f(json_out);
    f << summary.str() << "\n";
  }
  std::printf("%d passed, %d failed\n", rep.passed, rep.failed);
  return rep.failed == 0 ? 0 : 1;
}
