// CPU engine checks against an independent reference.
//
// The reference below is a plain double-precision forward written separately from
// the engine (no shared kernels): it runs each sample on its own, so it also checks
// packing. Gradients are compared with central finite differences of that
// reference. Further checks: packing exactness, recompute on/off and thread counts
// bit-identical, generate with the KV cache equal to greedy decoding through
// repeated logits() calls, argument validation codes, and the real stories260k
// checkpoint's 200-token greedy continuation against the Hugging Face tokens in
// verification.json.
//
// Usage: engine_test [stories260k model dir]   (default <source>/models/stories260k)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine.h"
#include "engine_mistakes.h"
#include "errors.h"
#include "json.h"

using namespace hs;

namespace {

int g_passed = 0, g_failed = 0;

void check(bool ok, const std::string& name, const std::string& detail = "") {
  if (ok)
    ++g_passed;
  else
    ++g_failed;
  std::printf("%s  %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.empty() ? "" : "  ", detail.c_str());
}

std::string fmt(const char* f, double a, double b = 0.0, double c = 0.0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, f, a, b, c);
  return buf;
}

// ---------------------------------------------------------------- tiny models

std::unique_ptr<LoadedModel> make_model(const ModelConfig& cfg, uint64_t seed) {
  auto m = std::make_unique<LoadedModel>();
  m->dir = "<memory>";
  m->config = cfg;
  m->weights = std::make_unique<Weights>();
  Weights& w = *m->weights;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  auto tensor = [&](size_t n, double center, double scale) -> const float* {
    w.storage.emplace_back(n);
    for (auto& x : w.storage.back()) x = static_cast<float>(center + scale * nd(rng));
    return w.storage.back().data();
  };
  const size_t H = cfg.hidden, I = cfg.intermediate, D = cfg.head_dim;
  const size_t QW = cfg.num_heads * D, KW = cfg.num_kv_heads * D, V = cfg.vocab;
  w.storage.reserve(64 + 32 * cfg.num_layers);
  w.embed = tensor(V * H, 0.0, 1.0);
  w.final_norm = tensor(H, 1.0, 0.1);
  w.lm_head = cfg.tie_embeddings ? w.embed : tensor(V * H, 0.0, 2.0 / std::sqrt(double(H)));
  for (int l = 0; l < cfg.num_layers; ++l) {
    LayerWeights lw;
    lw.input_norm = tensor(H, 1.0, 0.1);
    const bool absent = l < static_cast<int>(cfg.attention_absent.size()) && cfg.attention_absent[l];
    if (!absent) {
      lw.q = tensor(QW * H, 0.0, 1.0 / std::sqrt(double(H)));
      lw.k = tensor(KW * H, 0.0, 1.0 / std::sqrt(double(H)));
      lw.v = tensor(KW * H, 0.0, 1.0 / std::sqrt(double(H)));
      lw.o = tensor(H * QW, 0.0, 1.0 / std::sqrt(double(QW)));
      if (cfg.qkv_bias) {
        lw.q_bias = tensor(QW, 0.0, 0.2);
        lw.k_bias = tensor(KW, 0.0, 0.2);
        lw.v_bias = tensor(KW, 0.0, 0.2);
      }
      if (cfg.o_bias) lw.o_bias = tensor(H, 0.0, 0.2);
      if (cfg.qk_norm) {
        lw.q_norm = tensor(D, 1.0, 0.2);
        lw.k_norm = tensor(D, 1.0, 0.2);
      }
    }
    lw.post_norm = tensor(H, 1.0, 0.1);
    lw.gate = tensor(I * H, 0.0, 1.0 / std::sqrt(double(H)));
    lw.up = tensor(I * H, 0.0, 1.0 / std::sqrt(double(H)));
    lw.down = tensor(H * I, 0.0, 1.0 / std::sqrt(double(I)));
    if (cfg.mlp_bias) {
      lw.gate_bias = tensor(I, 0.0, 0.2);
      lw.up_bias = tensor(I, 0.0, 0.2);
      lw.down_bias = tensor(H, 0.0, 0.2);
    }
    w.layers.push_back(lw);
  }
  return m;
}

ModelConfig base_config() {
  ModelConfig c;
  c.arch = "LlamaForCausalLM";
  c.model_type = "llama";
  c.num_layers = 3;
  c.hidden = 32;
  c.intermediate = 48;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.vocab = 61;
  c.max_position = 256;
  c.rms_eps = 1e-5;
  c.tie_embeddings = false;
  return c;
}

// ---------------------------------------------------------------- double reference

struct RefTheta {
  std::vector<double> v[4];  // b_att, s_att, b_mlp, s_mlp
};

RefTheta to_ref(const Theta& t) {
  RefTheta r;
  r.v[0].assign(t.b_att.begin(), t.b_att.end());
  r.v[1].assign(t.s_att.begin(), t.s_att.end());
  r.v[2].assign(t.b_mlp.begin(), t.b_mlp.end());
  r.v[3].assign(t.s_mlp.begin(), t.s_mlp.end());
  return r;
}

// Inverse RoPE frequencies in double, written from the transformers formulas.
std::vector<double> ref_inv_freq(const ModelConfig& c) {
  const int D = c.head_dim;
  std::vector<double> f(D / 2);
  for (int i = 0; i < D / 2; ++i) f[i] = std::pow(c.rope.theta, -2.0 * i / D);
  if (c.rope.type == RopeType::Linear) {
    for (auto& x : f) x /= c.rope.factor;
  } else if (c.rope.type == RopeType::Llama3) {
    const double lw = c.rope.original_max_position / c.rope.low_freq_factor;
    const double hw = c.rope.original_max_position / c.rope.high_freq_factor;
    for (auto& x : f) {
      const double wl = 2 * M_PI / x;
      if (wl < hw) continue;                        // high frequency: unchanged
      if (wl > lw) { x /= c.rope.factor; continue; }  // low frequency: scaled
      const double sm = (c.rope.original_max_position / wl - c.rope.low_freq_factor) /
                        (c.rope.high_freq_factor - c.rope.low_freq_factor);
      x = (1 - sm) * x / c.rope.factor + sm * x;
    }
  }
  return f;
}

struct RefModel {
  const ModelConfig& c;
  const Weights& w;

  static void rms(const std::vector<double>& x, const float* wt, std::vector<double>& y, int rows, int dim,
                  double eps) {
    y.resize(x.size());
    for (int r = 0; r < rows; ++r) {
      double ss = 0;
      for (int i = 0; i < dim; ++i) ss += x[r * dim + i] * x[r * dim + i];
      const double inv = 1.0 / std::sqrt(ss / dim + eps);
      for (int i = 0; i < dim; ++i) y[r * dim + i] = wt[i] * x[r * dim + i] * inv;
    }
  }
  static std::vector<double> lin(const std::vector<double>& x, int T, int in, const float* W, const float* b,
                                 int out) {
    std::vector<double> y(size_t(T) * out);
    for (int t = 0; t < T; ++t)
      for (int o = 0; o < out; ++o) {
        double s = b ? b[o] : 0.0;
        for (int i = 0; i < in; ++i) s += x[size_t(t) * in + i] * double(W[size_t(o) * in + i]);
        y[size_t(t) * out + o] = s;
      }
    return y;
  }

  // One sequence; returns T x V logits. states (optional) gets the input of every
  // layer plus the final output; x1s (optional) gets each layer's x1.
  std::vector<double> forward(const std::vector<int32_t>& toks, const RefTheta& th, const std::set<int>& skip,
                              std::vector<std::vector<double>>* states = nullptr,
                              std::vector<std::vector<double>>* x1s = nullptr) const {
    const int T = int(toks.size()), H = c.hidden, I = c.intermediate, D = c.head_dim;
    const int nH = c.num_heads, nKV = c.num_kv_heads;
    const double rm = c.residual_multiplier;
    const double scale = c.attention_scale > 0 ? c.attention_scale : 1.0 / std::sqrt(double(D));
    const std::vector<double> invf = ref_inv_freq(c);
    std::vector<double> x(size_t(T) * H);
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < H; ++i) x[size_t(t) * H + i] = w.embed.get(int64_t(toks[t]) * H + i) * c.embedding_multiplier;
    std::vector<double> n;
    for (int l = 0; l < c.num_layers; ++l) {
      if (states) states->push_back(x);
      const LayerWeights& lw = w.layers[l];
      std::vector<double> x1(x.size());
      if (skip.count(l)) {
        for (size_t i = 0; i < x.size(); ++i) x1[i] = th.v[1][l] * x[i];
      } else {
        rms(x, lw.input_norm, n, T, H, c.rms_eps);
        std::vector<double> q = lin(n, T, H, lw.q.f32(), lw.q_bias, nH * D);
        std::vector<double> k = lin(n, T, H, lw.k.f32(), lw.k_bias, nKV * D);
        std::vector<double> v = lin(n, T, H, lw.v.f32(), lw.v_bias, nKV * D);
        if (c.qk_norm) {
          std::vector<double> tmp;
          rms(q, lw.q_norm, tmp, T * nH, D, c.rms_eps);
          q = tmp;
          rms(k, lw.k_norm, tmp, T * nKV, D, c.rms_eps);
          k = tmp;
        }
        auto rope = [&](std::vector<double>& z, int heads) {
          for (int t = 0; t < T; ++t)
            for (int h = 0; h < heads; ++h) {
              double* p = &z[(size_t(t) * heads + h) * D];
              for (int i = 0; i < D / 2; ++i) {
                const double a = t * invf[i], cs = std::cos(a), sn = std::sin(a);
                const double u = p[i], w2 = p[i + D / 2];
                p[i] = u * cs - w2 * sn;
                p[i + D / 2] = w2 * cs + u * sn;
              }
            }
        };
        rope(q, nH);
        rope(k, nKV);
        std::vector<double> o(size_t(T) * nH * D, 0.0);
        for (int h = 0; h < nH; ++h) {
          const int kh = h / (nH / nKV);
          for (int t = 0; t < T; ++t) {
            std::vector<double> s(t + 1);
            double mx = -1e300;
            for (int j = 0; j <= t; ++j) {
              double d = 0;
              for (int e = 0; e < D; ++e) d += q[(size_t(t) * nH + h) * D + e] * k[(size_t(j) * nKV + kh) * D + e];
              s[j] = d * scale;
              mx = std::max(mx, s[j]);
            }
            double z = 0;
            for (int j = 0; j <= t; ++j) z += (s[j] = std::exp(s[j] - mx));
            for (int j = 0; j <= t; ++j)
              for (int e = 0; e < D; ++e)
                o[(size_t(t) * nH + h) * D + e] += s[j] / z * v[(size_t(j) * nKV + kh) * D + e];
          }
        }
        std::vector<double> A = lin(o, T, nH * D, lw.o.f32(), lw.o_bias, H);
        for (size_t i = 0; i < x.size(); ++i) x1[i] = th.v[0][l] * rm * A[i] + th.v[1][l] * x[i];
      }
      if (x1s) x1s->push_back(x1);
      rms(x1, lw.post_norm, n, T, H, c.rms_eps);
      std::vector<double> g = lin(n, T, H, lw.gate.f32(), lw.gate_bias, I);
      std::vector<double> u = lin(n, T, H, lw.up.f32(), lw.up_bias, I);
      for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
      std::vector<double> M = lin(g, T, I, lw.down.f32(), lw.down_bias, H);
      for (size_t i = 0; i < x.size(); ++i) x[i] = th.v[2][l] * rm * M[i] + th.v[3][l] * x1[i];
    }
    if (states) states->push_back(x);
    rms(x, w.final_norm, n, T, H, c.rms_eps);
    std::vector<double> logits = lin(n, T, H, w.lm_head.f32(), nullptr, c.vocab);
    for (auto& z : logits) z /= c.logits_scaling;
    return logits;
  }

  double sample_nll(const Sample& s, const RefTheta& th, const std::set<int>& skip) const {
    std::vector<int32_t> toks = s.prompt;
    toks.insert(toks.end(), s.response.begin(), s.response.end());
    const std::vector<double> lg = forward(toks, th, skip);
    const int V = c.vocab, P = int(s.prompt.size());
    double nll = 0;
    for (size_t j = 0; j < s.response.size(); ++j) {
      const double* z = &lg[size_t(P - 1 + j) * V];
      double mx = -1e300;
      for (int i = 0; i < V; ++i) mx = std::max(mx, z[i]);
      double se = 0;
      for (int i = 0; i < V; ++i) se += std::exp(z[i] - mx);
      nll += mx + std::log(se) - z[s.response[j]];
    }
    return nll;
  }

  double loss(const std::vector<Sample>& ss, const RefTheta& th, const std::set<int>& skip, bool token_mean) const {
    double tot = 0;
    size_t ntok = 0;
    for (const auto& s : ss) tot += sample_nll(s, th, skip), ntok += s.response.size();
    return tot / (token_mean ? double(ntok) : double(ss.size()));
  }
};

// ---------------------------------------------------------------- helpers

std::vector<Sample> random_samples(int vocab, const std::vector<std::pair<int, int>>& lens, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> tok(0, vocab - 1);
  std::vector<Sample> out;
  for (auto [p, r] : lens) {
    Sample s;
    for (int i = 0; i < p; ++i) s.prompt.push_back(tok(rng));
    for (int i = 0; i < r; ++i) s.response.push_back(tok(rng));
    out.push_back(s);
  }
  return out;
}

Theta random_theta(int layers, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.6f, 1.4f);
  Theta t = Theta::ones(layers);
  for (int l = 0; l < layers; ++l) {
    t.b_att[l] = u(rng);
    t.s_att[l] = u(rng);
    t.b_mlp[l] = u(rng);
    t.s_mlp[l] = u(rng);
  }
  return t;
}

std::vector<float>& part(Theta& t, int p) { return p == 0 ? t.b_att : p == 1 ? t.s_att : p == 2 ? t.b_mlp : t.s_mlp; }
const char* part_name(int p) { return p == 0 ? "b_att" : p == 1 ? "s_att" : p == 2 ? "b_mlp" : "s_mlp"; }

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}
bool same_result(const LossResult& a, const LossResult& b) {
  bool ok = std::memcmp(&a.loss, &b.loss, sizeof(double)) == 0 && a.sample_nll.size() == b.sample_nll.size();
  for (size_t i = 0; ok && i < a.sample_nll.size(); ++i)
    ok = std::memcmp(&a.sample_nll[i], &b.sample_nll[i], sizeof(double)) == 0;
  return ok && same_bits(a.grad.b_att, b.grad.b_att) && same_bits(a.grad.s_att, b.grad.s_att) &&
         same_bits(a.grad.b_mlp, b.grad.b_mlp) && same_bits(a.grad.s_mlp, b.grad.s_mlp);
}

template <typename F>
std::string expect_error(const char* code, F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    if (std::strcmp(e.code(), code) == 0) return "";
    return std::string("got ") + e.code() + ": " + e.what();
  } catch (const std::exception& e) {
    return std::string("got untyped exception: ") + e.what();
  }
  return "no error thrown";
}

// ---------------------------------------------------------------- (a) reference + gradients

struct Case {
  std::string name;
  ModelConfig cfg;
  std::vector<int> skip;
  bool token_mean = false;
};

void check_against_reference(const Case& cs, uint64_t seed) {
  auto model = make_model(cs.cfg, seed);
  auto eng = make_cpu_engine(*model, 2);
  RefModel ref{model->config, *model->weights};
  const auto samples = random_samples(cs.cfg.vocab, {{5, 7}, {1, 4}, {9, 3}, {3, 11}}, seed + 1);
  Theta th = random_theta(cs.cfg.num_layers, seed + 2);
  BatchOptions bo;
  bo.skip = cs.skip;
  bo.token_mean = cs.token_mean;
  const LossResult r = eng->loss(samples, th, bo, true);
  const std::set<int> skip(cs.skip.begin(), cs.skip.end());
  RefTheta rt = to_ref(th);
  const double ref_loss = ref.loss(samples, rt, skip, cs.token_mean);
  const double rel = std::fabs(r.loss - ref_loss) / std::fabs(ref_loss);
  check(rel <= 1e-5, cs.name + ": loss vs double reference", fmt("engine %.9f ref %.9f rel %.2e", r.loss, ref_loss, rel));

  // Per-sample NLL of the packed batch vs the reference run on each sample alone.
  double worst = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const double want = ref.sample_nll(samples[i], rt, skip);
    worst = std::max(worst, std::fabs(r.sample_nll[i] - want) / std::fabs(want));
  }
  check(worst <= 1e-5, cs.name + ": packed sample_nll vs reference", fmt("max rel %.2e", worst));

  // Finite differences of the double reference.
  const double h = 1e-4;
  double gmax = 0;
  std::vector<double> fd(4 * cs.cfg.num_layers), eg(fd.size());
  for (int p = 0; p < 4; ++p)
    for (int l = 0; l < cs.cfg.num_layers; ++l) {
      RefTheta a = rt, b = rt;
      a.v[p][l] += h;
      b.v[p][l] -= h;
      fd[p * cs.cfg.num_layers + l] = (ref.loss(samples, a, skip, cs.token_mean) - ref.loss(samples, b, skip, cs.token_mean)) / (2 * h);
      eg[p * cs.cfg.num_layers + l] = part(const_cast<Theta&>(r.grad), p)[l];
      gmax = std::max(gmax, std::fabs(fd[p * cs.cfg.num_layers + l]));
    }
  double worst_rel = 0, worst_abs_tiny = 0;
  std::string where;
  for (size_t i = 0; i < fd.size(); ++i) {
    const double d = std::fabs(eg[i] - fd[i]);
    if (std::fabs(fd[i]) > 1e-3 * gmax) {
      const double rr = d / std::fabs(fd[i]);
      if (rr > worst_rel) {
        worst_rel = rr;
        where = std::string(part_name(int(i) / cs.cfg.num_layers)) + "[" +
                std::to_string(int(i) % cs.cfg.num_layers) + "]";
      }
    } else {
      worst_abs_tiny = std::max(worst_abs_tiny, d);
    }
  }
  check(worst_rel <= 1e-4 && worst_abs_tiny <= 1e-6 * gmax, cs.name + ": grad vs reference finite differences",
        fmt("max rel %.2e, tiny-component abs %.2e, max|g| %.3f", worst_rel, worst_abs_tiny, gmax) + " (worst " +
            where + ")");
  for (int l : cs.skip)
    check(r.grad.b_att[l] == 0.f, cs.name + ": skipped layer " + std::to_string(l) + " reports dL/db_att = 0");

  // Logits vs the reference on one sequence.
  std::vector<int32_t> toks = samples[3].prompt;
  toks.insert(toks.end(), samples[3].response.begin(), samples[3].response.end());
  const std::vector<float> lg = eng->logits(toks, th, cs.skip);
  const std::vector<double> rl = ref.forward(toks, rt, skip);
  double dmax = 0, zmax = 0;
  for (size_t i = 0; i < rl.size(); ++i) dmax = std::max(dmax, std::fabs(lg[i] - rl[i])), zmax = std::max(zmax, std::fabs(rl[i]));
  check(lg.size() == rl.size() && dmax <= 1e-5 * std::max(1.0, zmax), cs.name + ": logits vs reference",
        fmt("max abs diff %.2e (max |logit| %.2f)", dmax, zmax));
}

// ---------------------------------------------------------------- (b)-(e)

void check_packing_recompute_threads() {
  ModelConfig c = base_config();
  c.num_layers = 4;
  c.qkv_bias = true;
  auto model = make_model(c, 101);
  const auto samples = random_samples(c.vocab, {{4, 6}, {2, 9}, {7, 2}, {1, 5}, {12, 8}}, 102);
  const Theta th = random_theta(c.num_layers, 103);
  BatchOptions bo;
  bo.skip = {2};
  auto e1 = make_cpu_engine(*model, 1);
  const LossResult packed = e1->loss(samples, th, bo, true);

  // (b) packing exactness: each sample alone.
  double worst = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const LossResult one = e1->loss({samples[i]}, th, bo, false);
    worst = std::max(worst, std::fabs(one.sample_nll[0] - packed.sample_nll[i]) / std::fabs(one.sample_nll[0]));
  }
  check(worst <= 1e-5, "packing: per-sample NLL of packed batch == separate calls", fmt("max rel %.2e", worst));
  const LossResult noguard = e1->loss(samples, th, bo, false);
  check(std::memcmp(&noguard.loss, &packed.loss, sizeof(double)) == 0, "loss-only call == loss of gradient call (bitwise)");

  // (c) recompute on/off.
  BatchOptions rc = bo;
  rc.recompute = true;
  const LossResult rec = e1->loss(samples, th, rc, true);
  check(same_result(rec, packed), "recompute=true bit-identical to recompute=false (loss, sample_nll, grad)");
  check(rec.peak_bytes < packed.peak_bytes, "recompute lowers peak activation bytes",
        fmt("%.0f -> %.0f bytes", double(packed.peak_bytes), double(rec.peak_bytes)));

  // (d) thread counts.
  auto e2 = make_cpu_engine(*model, 2);
  auto e3 = make_cpu_engine(*model, 3);
  const LossResult r2 = e2->loss(samples, th, bo, true), r3 = e3->loss(samples, th, bo, true);
  const LossResult r3c = e3->loss(samples, th, rc, true);
  check(same_result(r2, packed) && same_result(r3, packed) && same_result(r3c, packed),
        "threads 1/2/3 bit-identical (loss, sample_nll, grad; recompute too)");
  std::vector<int32_t> toks = samples[4].prompt;
  toks.insert(toks.end(), samples[4].response.begin(), samples[4].response.end());
  check(same_bits(e1->logits(toks, th, bo.skip), e3->logits(toks, th, bo.skip)), "threads 1/3 logits bit-identical");
  const LossResult again = e3->loss(samples, th, bo, true);
  check(same_result(again, r3), "same call twice bit-identical");

  // token_mean divides by response tokens.
  BatchOptions tm = bo;
  tm.token_mean = true;
  const LossResult rt = e2->loss(samples, th, tm, false);
  double sum = 0;
  for (double v : packed.sample_nll) sum += v;
  check(rt.response_tokens == 30 && std::fabs(rt.loss - sum / 30) <= 1e-12 * sum &&
            std::fabs(packed.loss - sum / samples.size()) <= 1e-12 * sum,
        "token_mean / sample mean normalisation", fmt("responseTokens %.0f", double(rt.response_tokens)));

  // layer_stats vs the reference's hidden states.
  RefModel ref{model->config, *model->weights};
  const LayerStats st = e2->layer_stats(samples, th, bo.skip, {0, 2, c.num_layers});
  std::set<int> sk(bo.skip.begin(), bo.skip.end());
  std::vector<double> ca(c.num_layers, 0), cm(c.num_layers, 0), cb(c.num_layers, 0);
  double hid_err = 0;
  int64_t ntok = 0, off = 0;
  auto cosine = [](const double* a, const double* b, int n) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; ++i) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
    return ab / std::sqrt(aa * bb);
  };
  for (const auto& s : samples) {
    std::vector<int32_t> t = s.prompt;
    t.insert(t.end(), s.response.begin(), s.response.end());
    std::vector<std::vector<double>> states, x1s;
    ref.forward(t, to_ref(th), sk, &states, &x1s);
    for (int l = 0; l < c.num_layers; ++l)
      for (size_t r = 0; r < t.size(); ++r) {
        const double* hh = &states[l][r * c.hidden];
        const double* xx = &x1s[l][r * c.hidden];
        const double* hn = &states[l + 1][r * c.hidden];
        ca[l] += cosine(hh, xx, c.hidden), cm[l] += cosine(xx, hn, c.hidden), cb[l] += cosine(hh, hn, c.hidden);
      }
    const int idx[3] = {0, 2, c.num_layers};
    for (int k = 0; k < 3; ++k)
      for (size_t i = 0; i < t.size() * c.hidden; ++i)
        hid_err = std::max(hid_err, std::fabs(st.hidden[k][off * c.hidden + i] - states[idx[k]][i]) /
                                        std::max(1.0, std::fabs(states[idx[k]][i])));
    ntok += t.size();
    off += t.size();
  }
  double cos_err = 0;
  for (int l = 0; l < c.num_layers; ++l) {
    cos_err = std::max({cos_err, std::fabs(st.cos_attn[l] - ca[l] / ntok), std::fabs(st.cos_mlp[l] - cm[l] / ntok),
                        std::fabs(st.cos_block[l] - cb[l] / ntok),
                        std::fabs(st.block_influence[l] - (1 - cb[l] / ntok))});
  }
  check(cos_err <= 1e-5 && hid_err <= 1e-5, "layer_stats cosines and hidden states vs reference",
        fmt("max cos err %.2e, max hidden err %.2e", cos_err, hid_err));
}

std::vector<int32_t> greedy_by_logits(Engine& e, std::vector<int32_t> seq, const Theta& th, const std::vector<int>& skip,
                                      int max_new, const std::vector<int32_t>& stop, int vocab) {
  std::vector<int32_t> out;
  for (int i = 0; i < max_new; ++i) {
    const std::vector<float> lg = e.logits(seq, th, skip);
    const float* z = lg.data() + (seq.size() - 1) * vocab;
    int32_t best = 0;
    for (int j = 1; j < vocab; ++j)
      if (z[j] > z[best]) best = j;
    if (std::find(stop.begin(), stop.end(), best) != stop.end()) break;
    out.push_back(best);
    seq.push_back(best);
  }
  return out;
}

void check_generate() {
  ModelConfig c = base_config();
  c.qk_norm = true;
  c.head_dim = 16;
  auto model = make_model(c, 201);
  auto eng = make_cpu_engine(*model, 2);
  const std::vector<std::vector<int32_t>> prompts = {{3, 17, 5}, {42}, {7, 8, 9, 10, 11, 12, 13}, {60, 1}};
  struct Variant {
    std::string name;
    Theta th;
    std::vector<int> skip;
  };
  std::vector<Variant> vars = {{"theta=1", Theta::ones(c.num_layers), {}},
                               {"skip {1} + random theta", random_theta(c.num_layers, 202), {1}}};
  for (const auto& v : vars) {
    GenerateOptions go;
    go.max_new_tokens = 12;
    go.skip = v.skip;
    const auto got = eng->generate(prompts, v.th, go);
    bool ok = got.size() == prompts.size();
    for (size_t i = 0; ok && i < prompts.size(); ++i)
      ok = got[i] == greedy_by_logits(*eng, prompts[i], v.th, v.skip, 12, {}, c.vocab);
    check(ok, "generate (KV cache, batched) == greedy via logits(): " + v.name);
    std::string shown;
    for (int32_t t : got[2]) shown += " " + std::to_string(t);
    std::printf("      prompt 2 continuation (%s):%s\n", v.name.c_str(), shown.c_str());
    // Stop on the first token of prompt 0's continuation that is new after position 0:
    // the output must end right before it, and other prompts follow the greedy rule.
    size_t k = 1;
    while (k < got[0].size() && std::find(got[0].begin(), got[0].begin() + k, got[0][k]) != got[0].begin() + k) ++k;
    if (k < got[0].size()) {
      go.stop = {got[0][k]};
      const auto stopped = eng->generate(prompts, v.th, go);
      bool ok2 = stopped[0].size() == k;
      for (size_t i = 0; i < prompts.size(); ++i)
        ok2 = ok2 && stopped[i] == greedy_by_logits(*eng, prompts[i], v.th, v.skip, 12, go.stop, c.vocab);
      check(ok2, "generate stops before the stop token: " + v.name,
            fmt("prompt 0 stopped after %.0f tokens (expected %.0f)", double(stopped[0].size()), double(k)));
    } else {
      check(false, "generate stop check: prompt 0's continuation has a new token after position 0");
    }
  }
}

void check_validation() {
  ModelConfig c = base_config();
  c.attention_absent = {false, true, false};
  auto model = make_model(c, 301);
  auto eng = make_cpu_engine(*model, 1);
  const Theta th = Theta::ones(c.num_layers);
  BatchOptions bo;
  bo.skip = {1};
  const std::vector<Sample> ok = random_samples(c.vocab, {{3, 3}}, 302);
  check(expect_error(code::kSkip, [&] { eng->loss(ok, th, BatchOptions{}, false); }).empty(),
        "attention-absent layer not skipped -> HOPSCOTCH_ERR_SKIP");
  check(expect_error(code::kEmptyBatch, [&] { eng->loss({}, th, bo, false); }).empty(), "empty batch -> EMPTY_BATCH");
  std::vector<Sample> bad = ok;
  bad[0].response.push_back(c.vocab);
  check(expect_error(code::kTokenRange, [&] { eng->loss(bad, th, bo, false); }).empty(), "token >= vocab -> TOKEN_RANGE");
  bad = ok;
  bad[0].prompt[0] = -1;
  check(expect_error(code::kTokenRange, [&] { eng->loss(bad, th, bo, false); }).empty(), "token < 0 -> TOKEN_RANGE");
  bad = ok;
  bad[0].response.clear();
  check(expect_error(code::kEmptyResponse, [&] { eng->loss(bad, th, bo, true); }).empty(), "empty response -> EMPTY_RESPONSE");
  Theta t2 = th;
  t2.s_mlp.pop_back();
  check(expect_error(code::kTheta, [&] { eng->loss(ok, t2, bo, false); }).empty(), "short theta -> THETA");
  t2 = th;
  t2.b_att[0] = NAN;
  check(expect_error(code::kTheta, [&] { eng->loss(ok, t2, bo, false); }).empty(), "NaN theta -> THETA");
  BatchOptions b2 = bo;
  b2.skip = {1, 1};
  check(expect_error(code::kSkip, [&] { eng->loss(ok, th, b2, false); }).empty(), "repeated skip -> SKIP");
  b2.skip = {1, 3};
  check(expect_error(code::kSkip, [&] { eng->loss(ok, th, b2, false); }).empty(), "skip out of range -> SKIP");
  b2 = bo;
  b2.token_cap = 5;
  check(expect_error(code::kTokenCap, [&] { eng->loss(ok, th, b2, false); }).empty(), "token cap -> TOKEN_CAP");
  b2.token_cap = 6;
  check(expect_error(code::kTokenCap, [&] { eng->loss(ok, th, b2, false); }) == "no error thrown",
        "token cap equal to batch size accepted");
  GenerateOptions go;
  check(expect_error(code::kSkip, [&] { eng->generate({{1, 2}}, th, go); }).empty(), "generate checks skip");
  check(expect_error(code::kTokenRange, [&] { eng->logits({1, 999}, th, {1}); }).empty(), "logits checks tokens");

  // The context (max_position_embeddings) bounds every call that takes tokens.
  ModelConfig small = base_config();
  small.max_position = 8;
  auto small_model = make_model(small, 303);
  auto se = make_cpu_engine(*small_model, 1);
  const Theta st = Theta::ones(small.num_layers);
  const std::vector<Sample> fits = random_samples(small.vocab, {{5, 3}}, 304);
  const std::vector<Sample> longer = random_samples(small.vocab, {{5, 4}}, 305);
  check(expect_error(code::kContext, [&] { se->loss(fits, st, BatchOptions{}, true); }) == "no error thrown",
        "a sample as long as the context is accepted");
  check(expect_error(code::kContext, [&] { se->loss(longer, st, BatchOptions{}, false); }).empty(), "loss: sample > context -> CONTEXT");
  check(expect_error(code::kContext, [&] { se->loss(longer, st, BatchOptions{}, true); }).empty(), "lossAndGrad: sample > context -> CONTEXT");
  check(expect_error(code::kContext, [&] { se->layer_stats(longer, st, {}, {}); }).empty(), "layer_stats: sample > context -> CONTEXT");
  check(expect_error(code::kContext, [&] { se->logits(std::vector<int32_t>(9, 1), st, {}); }).empty(), "logits: 9 tokens > 8 -> CONTEXT");
  GenerateOptions g8;
  g8.max_new_tokens = 6;
  check(expect_error(code::kContext, [&] { se->generate({{1, 2, 3}}, st, g8); }).empty(), "generate: prompt 3 + 6 new > 8 -> CONTEXT");
  g8.max_new_tokens = 5;
  check(se->generate({{1, 2, 3}}, st, g8)[0].size() == 5, "generate: prompt 3 + 5 new = 8 fits");
}

// ---------------------------------------------------------------- one front, one driver

// The hs::Engine front with no device behind it, as the CUDA engine has it: every call is
// checked by Engine's own (non-virtual) methods before a backend method runs, and this
// backend only counts the calls that reach it. Runs on a machine without a GPU.
class FrontOnly final : public Engine {
 public:
  explicit FrontOnly(const ModelConfig& c) : Engine(c) {}
  const char* device() const override { return "none"; }
  int reached = 0;

 protected:
  LossResult run_loss(const std::vector<Sample>&, const Theta&, const BatchOptions&, bool) override {
    ++reached;
    return {};
  }
  std::vector<float> run_logits(const std::vector<int32_t>&, const Theta&, const std::vector<int>&) override {
    ++reached;
    return {};
  }
  LayerStats run_layer_stats(const std::vector<Sample>&, const Theta&, const std::vector<int>&,
                             const std::vector<int>&) override {
    ++reached;
    return {};
  }
  size_t generation_group() const override { return 1; }
  std::unique_ptr<Decoder> open_decoder(const Theta&, const std::vector<int>&) override {
    ++reached;
    return nullptr;
  }
};

// Every error code a call can raise, each through the CPU engine and through the front
// the CUDA engine runs (FrontOnly): the same code from both, and no backend reached.
void check_error_codes() {
  ModelConfig c = base_config();
  c.max_position = 12;
  c.attention_absent = {false, false, true};
  auto model = make_model(c, 311);
  auto cpu = make_cpu_engine(*model, 1);
  FrontOnly front(c);
  for (const test::Mistake& m : test::engine_mistakes(c)) {
    const std::string on_cpu = expect_error(m.code, [&] { m.call(*cpu); });
    const std::string on_front = expect_error(m.code, [&] { m.call(front); });
    check(on_cpu.empty() && on_front.empty(), std::string(m.code) + " " + m.what + " (CPU engine and the CUDA front)",
          on_cpu.empty() ? on_front : on_cpu);
  }
  check(front.reached == 0, "no refused call reaches a backend", fmt("%.0f calls reached it", front.reached));
  const Theta th = Theta::ones(c.num_layers);
  const std::vector<Sample> ok = random_samples(c.vocab, {{3, 3}}, 312);
  BatchOptions bo;
  bo.skip = {2};
  front.loss(ok, th, bo, true);
  front.logits({1, 2}, th, {2});
  front.layer_stats(ok, th, {2}, {0, c.num_layers});
  check(front.reached == 3, "the front passes checked calls on to the backend", fmt("%.0f of 3", front.reached));
}

// A decoder whose next token is a fixed function of (prompt, position): checks the step
// loop of generate_greedy (grouping, positions, stop tokens, max_new_tokens) without a model.
class ScriptedDecoder final : public Decoder {
 public:
  static int32_t token(const std::vector<int32_t>& prompt, int64_t position) {
    return static_cast<int32_t>((prompt[0] * 5 + position * position * 3 + static_cast<int64_t>(prompt.size())) % 17);
  }
  void prefill(const std::vector<std::vector<int32_t>>& prompts, int64_t, std::vector<int32_t>& next) override {
    group_ = prompts;
    position_.clear();
    for (size_t i = 0; i < prompts.size(); ++i) {
      position_.push_back(static_cast<int64_t>(prompts[i].size()) - 1);
      next[i] = token(prompts[i], position_[i]);
    }
    widest = std::max(widest, prompts.size());
  }
  void decode(const std::vector<int>& seqs, const std::vector<int32_t>&, const std::vector<int64_t>& positions,
              std::vector<int32_t>& next) override {
    for (size_t r = 0; r < seqs.size(); ++r) {
      in_order = in_order && positions[r] == position_[seqs[r]] + 1;
      position_[seqs[r]] = positions[r];
      next[r] = token(group_[seqs[r]], positions[r]);
    }
  }
  size_t widest = 0;
  bool in_order = true;

 private:
  std::vector<std::vector<int32_t>> group_;
  std::vector<int64_t> position_;
};

void check_generation_driver() {
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {4}, {5, 6}, {7, 8, 9, 10}, {2}};
  for (bool include_stop : {false, true}) {
    GenerateOptions go;
    go.max_new_tokens = 6;
    go.stop = {0, 10};
    go.include_stop = include_stop;
    // The reference: each prompt on its own, token by token.
    std::vector<std::vector<int32_t>> want;
    for (const auto& p : prompts) {
      std::vector<int32_t> o;
      for (int64_t q = static_cast<int64_t>(p.size()) - 1; static_cast<int64_t>(o.size()) < go.max_new_tokens; ++q) {
        const int32_t t = ScriptedDecoder::token(p, q);
        if (t == 0 || t == 10) {
          if (include_stop) o.push_back(t);
          break;
        }
        o.push_back(t);
      }
      want.push_back(o);
    }
    for (size_t group : {size_t(0), size_t(1), size_t(2)}) {
      ScriptedDecoder d;
      const auto got = generate_greedy(prompts, go, group, d);
      const size_t expect_width = group == 0 ? prompts.size() : group;
      check(got == want && d.in_order && d.widest == expect_width,
            "generate_greedy: groups of " + std::to_string(group) + (include_stop ? ", stop kept" : ", stop dropped") +
                " equal the one-prompt reference");
    }
  }
}

// ---------------------------------------------------------------- (f) stories260k

void check_stories(const std::string& dir) {
  std::unique_ptr<LoadedModel> model;
  try {
    model = load_model_dir(dir);
  } catch (const std::exception& e) {
    check(false, "stories260k: load_model_dir", e.what());
    return;
  }
  std::ifstream f(dir + "/verification.json");
  std::stringstream ss;
  ss << f.rdbuf();
  std::vector<int32_t> want;
  try {
    const json::Value v = json::parse(ss.str(), code::kIo, "verification.json");
    const json::Value* arr = v.find("greedy_tokens_hf");
    if (arr && arr->is_array())
      for (const auto& x : arr->array) want.push_back(static_cast<int32_t>(x.integer));
  } catch (const std::exception& e) {
    check(false, "stories260k: read verification.json", e.what());
    return;
  }
  // greedy_tokens_hf holds the prompt [1] followed by 200 generated tokens.
  if (want.size() != 201 || want[0] != 1) {
    check(false, "stories260k: verification.json greedy_tokens_hf has prompt + 200 tokens");
    return;
  }
  auto eng = make_cpu_engine(*model, 0);
  GenerateOptions go;
  go.max_new_tokens = 200;
  const auto got = eng->generate({{1}}, Theta::ones(model->config.num_layers), go);
  size_t match = 0;
  while (match < got[0].size() && match < 200 && got[0][match] == want[match + 1]) ++match;
  check(got[0].size() == 200 && match == 200, "stories260k: 200 greedy tokens match transformers",
        fmt("%.0f/200 match, %.0f generated", double(match), double(got[0].size())));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string stories = argc > 1 ? argv[1] : HOPSCOTCH_SOURCE_DIR "/models/stories260k";
  try {
    std::vector<Case> cases;
    {
      Case c{"gqa", base_config(), {}, false};
      cases.push_back(c);
    }
    {
      Case c{"qkv+o+mlp bias, MHA", base_config(), {}, false};
      c.cfg.qkv_bias = c.cfg.o_bias = c.cfg.mlp_bias = true;
      c.cfg.num_kv_heads = 4;
      cases.push_back(c);
    }
    {
      Case c{"qwen3 qk_norm, head_dim 16", base_config(), {2}, false};
      c.cfg.qk_norm = true;
      c.cfg.head_dim = 16;
      c.cfg.num_kv_heads = 1;
      cases.push_back(c);
    }
    {
      Case c{"granite multipliers, tied", base_config(), {}, true};
      c.cfg.embedding_multiplier = 3.0;
      c.cfg.residual_multiplier = 0.4;
      c.cfg.attention_scale = 0.2;
      c.cfg.logits_scaling = 2.5;
      c.cfg.tie_embeddings = true;
      cases.push_back(c);
    }
    {
      Case c{"llama3 rope scaling, skip {1}, token_mean", base_config(), {1}, true};
      c.cfg.head_dim = 16;
      c.cfg.rope.type = RopeType::Llama3;
      c.cfg.rope.theta = 10000.0;
      c.cfg.rope.factor = 8.0;
      c.cfg.rope.low_freq_factor = 1.0;
      c.cfg.rope.high_freq_factor = 4.0;
      c.cfg.rope.original_max_position = 32;
      cases.push_back(c);
    }
    {
      Case c{"linear rope, skip {0,2}", base_config(), {0, 2}, false};
      c.cfg.rope.type = RopeType::Linear;
      c.cfg.rope.factor = 4.0;
      cases.push_back(c);
    }
    uint64_t seed = 1;
    for (const auto& c : cases) check_against_reference(c, seed += 10);
    check_packing_recompute_threads();
    check_generate();
    check_validation();
    check_error_codes();
    check_generation_driver();
    check_stories(stories);
  } catch (const std::exception& e) {
    check(false, "unexpected exception", e.what());
  }
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
