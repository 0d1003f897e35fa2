// Checks the blocked causal varlen GQA attention (cpu::attention_fwd/_bwd) against
// a plain double-precision reference written here, on shapes that exercise the
// tiling: samples shorter and longer than one key block, lengths off the block
// edges, head_dim 8/12/64 (vector tails), groups of 1, 2 and 3 query heads per kv
// head. Also: outputs are bit-identical for 1 and 3 threads, and a sample gives
// bit-identical results alone and packed after others.
// Run with HOPSCOTCH_CPU_KERNEL=scalar to check the portable kernels.
//
// Usage: attention_test
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cpu_kernels.h"
#include "cpu_kernels_internal.h"
#include "threadpool.h"

using namespace hs;

namespace {

int g_passed = 0, g_failed = 0;

void check(bool ok, const std::string& name, const std::string& detail) {
  (ok ? g_passed : g_failed)++;
  std::printf("%s  %s  %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
}

struct Case {
  const char* name;
  int heads, kv_heads, head_dim;
  std::vector<int32_t> lens;
  float q_gain;  // larger = peakier softmax (exercises the running-max rescale)
};

struct Tensors {
  std::vector<float> q, k, v, d_o;
};

struct Outputs {
  std::vector<float> o, lse, dq, dk, dv;
};

Outputs run(const Case& c, const Tensors& x, const std::vector<int32_t>& cu, ThreadPool* pool) {
  const int64_t T = cu.back();
  cpu::AttentionShape sh{c.heads, c.kv_heads, c.head_dim, 1.f / std::sqrt(float(c.head_dim))};
  Outputs out;
  out.o.assign(T * c.heads * c.head_dim, 0.f);
  out.lse.assign(T * c.heads, 0.f);
  out.dq.assign(out.o.size(), 0.f);
  out.dk.assign(x.k.size(), 0.f);
  out.dv.assign(x.k.size(), 0.f);
  const int nseq = static_cast<int>(cu.size()) - 1;
  cpu::attention_fwd(x.q.data(), x.k.data(), x.v.data(), out.o.data(), out.lse.data(), cu.data(), nseq, sh, pool);
  cpu::attention_bwd(x.q.data(), x.k.data(), x.v.data(), out.o.data(), out.lse.data(), x.d_o.data(), out.dq.data(),
                     out.dk.data(), out.dv.data(), cu.data(), nseq, sh, pool);
  return out;
}

// Double-precision reference, one (sample, head) at a time, written from the definition.
struct RefOutputs {
  std::vector<double> o, lse, dq, dk, dv;
};

RefOutputs reference(const Case& c, const Tensors& x, const std::vector<int32_t>& cu) {
  const int64_t T = cu.back();
  const int D = c.head_dim, nH = c.heads, nKV = c.kv_heads, G = nH / nKV;
  const int64_t qs = int64_t(nH) * D, ks = int64_t(nKV) * D;
  const double sc = double(1.f / std::sqrt(float(D)));  // the fp32 scale the kernel is given
  RefOutputs r;
  r.o.assign(T * qs, 0.0);
  r.lse.assign(T * nH, 0.0);
  r.dq.assign(T * qs, 0.0);
  r.dk.assign(T * ks, 0.0);
  r.dv.assign(T * ks, 0.0);
  for (size_t s = 0; s + 1 < cu.size(); ++s) {
    const int64_t st = cu[s], len = cu[s + 1] - st;
    for (int h = 0; h < nH; ++h) {
      const int g = h / G;
      for (int64_t i = 0; i < len; ++i) {
        const float* qi = &x.q[(st + i) * qs + h * D];
        const float* doi = &x.d_o[(st + i) * qs + h * D];
        std::vector<double> p(i + 1), dp(i + 1);
        double mx = -1e300;
        for (int64_t j = 0; j <= i; ++j) {
          const float* kj = &x.k[(st + j) * ks + g * D];
          double acc = 0.0;
          for (int d = 0; d < D; ++d) acc += double(qi[d]) * kj[d];
          p[j] = acc * sc;
          mx = std::max(mx, p[j]);
        }
        double sum = 0.0;
        for (auto& e : p) sum += (e = std::exp(e - mx));
        for (auto& e : p) e /= sum;
        r.lse[(st + i) * nH + h] = mx + std::log(sum);
        double delta = 0.0;
        for (int64_t j = 0; j <= i; ++j) {
          const float* vj = &x.v[(st + j) * ks + g * D];
          double acc = 0.0;
          for (int d = 0; d < D; ++d) {
            r.o[(st + i) * qs + h * D + d] += p[j] * vj[d];
            acc += double(doi[d]) * vj[d];
          }
          dp[j] = acc;
          delta += p[j] * acc;
        }
        for (int64_t j = 0; j <= i; ++j) {
          const double ds = p[j] * (dp[j] - delta);
          const float* kj = &x.k[(st + j) * ks + g * D];
          for (int d = 0; d < D; ++d) {
            r.dq[(st + i) * qs + h * D + d] += sc * ds * kj[d];
            r.dk[(st + j) * ks + g * D + d] += sc * ds * qi[d];
            r.dv[(st + j) * ks + g * D + d] += p[j] * doi[d];
          }
        }
      }
    }
  }
  return r;
}

// max |a - b| / max |b|
double rel_err(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0.0, den = 1e-30;
  for (size_t i = 0; i < b.size(); ++i) {
    num = std::max(num, std::fabs(double(a[i]) - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return num / den;
}

bool same_bits(const Outputs& a, const Outputs& b) {
  auto eq = [](const std::vector<float>& x, const std::vector<float>& y) {
    return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
  };
  return eq(a.o, b.o) && eq(a.lse, b.lse) && eq(a.dq, b.dq) && eq(a.dk, b.dk) && eq(a.dv, b.dv);
}

Tensors make_tensors(const Case& c, int64_t T, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  Tensors x;
  const size_t qn = T * c.heads * c.head_dim, kn = T * c.kv_heads * c.head_dim;
  x.q.resize(qn);
  x.d_o.resize(qn);
  x.k.resize(kn);
  x.v.resize(kn);
  for (auto& e : x.q) e = c.q_gain * nd(rng);
  for (auto& e : x.k) e = nd(rng);
  for (auto& e : x.v) e = nd(rng);
  for (auto& e : x.d_o) e = nd(rng);
  return x;
}

void check_case(const Case& c, ThreadPool& one, ThreadPool& three) {
  std::vector<int32_t> cu{0};
  for (int32_t l : c.lens) cu.push_back(cu.back() + l);
  const int64_t T = cu.back();
  const Tensors x = make_tensors(c, T, 1234 + c.head_dim);
  const Outputs a = run(c, x, cu, &one);
  const RefOutputs r = reference(c, x, cu);
  const double tol = 2e-5;
  const double eo = rel_err(a.o, r.o), el = rel_err(a.lse, r.lse), eq = rel_err(a.dq, r.dq),
               ek = rel_err(a.dk, r.dk), ev = rel_err(a.dv, r.dv);
  char buf[256];
  std::snprintf(buf, sizeof buf, "rel err o %.1e lse %.1e dq %.1e dk %.1e dv %.1e (tol %.0e)", eo, el, eq, ek, ev,
                tol);
  check(std::max({eo, el, eq, ek, ev}) <= tol, std::string(c.name) + ": fwd/bwd vs double reference", buf);
  check(same_bits(a, run(c, x, cu, &three)), std::string(c.name) + ": threads 1/3 bit-identical", "");
  check(same_bits(a, run(c, x, cu, nullptr)), std::string(c.name) + ": no pool vs 1 thread bit-identical", "");

  // The last sample alone gives the same bits as inside the packed batch.
  const int64_t st = cu[cu.size() - 2];
  const int D = c.head_dim;
  const int64_t qs = int64_t(c.heads) * D, ks = int64_t(c.kv_heads) * D;
  Tensors xs;
  xs.q.assign(x.q.begin() + st * qs, x.q.end());
  xs.d_o.assign(x.d_o.begin() + st * qs, x.d_o.end());
  xs.k.assign(x.k.begin() + st * ks, x.k.end());
  xs.v.assign(x.v.begin() + st * ks, x.v.end());
  const Outputs b = run(c, xs, {0, static_cast<int32_t>(T - st)}, &three);
  const bool packed_same =
      std::memcmp(b.o.data(), a.o.data() + st * qs, b.o.size() * 4) == 0 &&
      std::memcmp(b.lse.data(), a.lse.data() + st * c.heads, b.lse.size() * 4) == 0 &&
      std::memcmp(b.dq.data(), a.dq.data() + st * qs, b.dq.size() * 4) == 0 &&
      std::memcmp(b.dk.data(), a.dk.data() + st * ks, b.dk.size() * 4) == 0 &&
      std::memcmp(b.dv.data(), a.dv.data() + st * ks, b.dv.size() * 4) == 0;
  check(packed_same, std::string(c.name) + ": last sample alone == packed (bitwise)", "");
}

void check_exp() {
  // The tile exp against std::exp over the range the softmax uses (x <= 0), and its edges.
  const auto& kern = cpu::detail::active_attention_kernels();
  std::vector<float> x, y;
  for (float v = -100.f; v <= 1.f; v += 0.0137f) x.push_back(v);
  x.push_back(-std::numeric_limits<float>::infinity());
  x.push_back(0.f);
  y = x;
  kern.exp_inplace(y.data(), static_cast<int64_t>(y.size()));
  double worst = 0.0;
  bool edges = y[y.size() - 2] == 0.f && y.back() == 1.f;
  for (size_t i = 0; i + 2 < x.size(); ++i) {
    const double ref = std::exp(double(x[i]));
    if (ref < std::numeric_limits<float>::min()) {  // subnormal range: 0 or a subnormal
      edges = edges && y[i] >= 0.f && y[i] <= std::numeric_limits<float>::min();
      continue;
    }
    worst = std::max(worst, std::fabs(y[i] - ref) / ref);
  }
  char buf[128];
  std::snprintf(buf, sizeof buf, "kernel %s, max rel err %.2e over [-100, 1]", kern.name, worst);
  check(worst < 4e-7 && edges, "exp kernel vs double exp; exp(-inf) = 0, exp(0) = 1", buf);
}

}  // namespace

int main() {
  ThreadPool one(1), three(3);
  std::printf("attention kernels: %s\n", cpu::detail::active_attention_kernels().name);
  check_exp();
  const std::vector<Case> cases = {
      {"GQA 4/2, head_dim 64", 4, 2, 64, {1, 63, 64, 65, 150, 200}, 3.f},
      {"MHA 2/2, head_dim 8", 2, 2, 8, {70, 7, 129}, 4.f},
      {"GQA 3/1, head_dim 12", 3, 1, 12, {5, 130}, 2.f},
      {"GQA 8/1, head_dim 16", 8, 1, 16, {40, 90}, 1.f},
  };
  for (const Case& c : cases) check_case(c, one, three);
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
