// CPU side of the CUDA kernel checks, run in CI without a GPU:
//  1. the CUDA kernels' CPU twins (native/cuda/twins.h) against the CPU engine's own
//     kernels (cpu::attention_fwd/_bwd, independent code) and an fp64 reference, at
//     head dims 64 and 128, GQA 4:1, packed odd lengths around 300 tokens;
//  2. the synthetic benchmark model's weights and tokens (random_weights.h) against
//     values computed by the Python formula of bench/torch_baseline.py;
//  3. the tensor-core attention's index math (native/cuda/attention_mma_layout.h):
//     ldmatrix and the mma.m16n8k16 fragments are emulated from the PTX ISA's
//     definitions, written here independently, and every fragment the kernels load
//     must hold the elements the PTX definition requires; the swizzle must be a
//     bijection and free of shared-memory bank conflicts for each ldmatrix phase;
//  4. the tensor-core kernels' algorithm (tile loops, causal tile bounds, online softmax
//     in the log2 domain, bf16 P and dS), re-written here per row from the kernels, against
//     the fp64 reference with the kernels' 2x rule;
//  5. the row kernels' twins (RMSNorm, SwiGLU, RoPE) against the CPU engine's kernels;
//  6. the other twins (scaled residual forward and backward, cross-entropy, the row
//     gather and scatter, embedding, argmax, cosine, bf16 cast) against references
//     written here in double, with a bf16 rounding of their own (frexp/nearbyint);
//  7. names: every launcher launch_<op>_<dir> of native/cuda/*.cu has its twin
//     <op>_<dir>_ref in twins.h and a check named <op>_<dir> in kernel_checks.cpp,
//     and every check there names a launcher.
// What it cannot check: the kernels themselves (hopscotch_cuda_selftest --kernels does,
// on a GPU); item 4 is a hand-made mirror of the kernels, not their code.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "attention_mma_layout.h"
#include "cpu_kernels.h"
#include "random_weights.h"
#include "twins.h"

using namespace hs;
namespace tw = hs::cuda::twin;
namespace mm = hs::cuda::mma;

namespace {

int g_passed = 0, g_failed = 0;
void check(bool ok, const std::string& name, const std::string& detail = "") {
  (ok ? g_passed : g_failed)++;
  std::printf("%s  %s  %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
}

double rel(const std::vector<float>& a, const std::vector<float>& r) {
  double d = 0, n = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    d += (double(a[i]) - r[i]) * (double(a[i]) - r[i]);
    n += double(r[i]) * r[i];
  }
  return std::sqrt(d / (n > 0 ? n : 1));
}

std::vector<float> uniform(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = tw::bf16_round(u(g));
  return v;
}

void attention_twins(int D) {
  const int nH = 8, nKV = 2;
  const std::vector<int> lens = {301, 1, 17, 64, 65, 297};
  std::vector<int32_t> cu = {0};
  for (int l : lens) cu.push_back(cu.back() + l);
  const int64_t T = cu.back();
  const tw::AttnShape s{nH, nKV, D, float(1.0 / std::sqrt(double(D)))};
  const auto q = uniform(size_t(T) * nH * D, -2, 2, 1), k = uniform(size_t(T) * nKV * D, -1, 1, 2),
             v = uniform(size_t(T) * nKV * D, -1, 1, 3), dout = uniform(size_t(T) * nH * D, -1, 1, 4);
  std::vector<float> o_t, lse_t, o_d, lse_d;
  tw::attention_fwd_ref<float>(q, k, v, cu, cu, s, {}, false, o_t, lse_t);
  tw::attention_fwd_ref<double>(q, k, v, cu, cu, s, {}, false, o_d, lse_d);
  std::vector<float> o_c(o_t.size()), lse_c(lse_t.size());
  cpu::AttentionShape cs{nH, nKV, D, s.scale};
  cpu::attention_fwd(q.data(), k.data(), v.data(), o_c.data(), lse_c.data(), cu.data(), int(lens.size()), cs, nullptr);
  const std::string tag = "attention_twin_d" + std::to_string(D) + "_gqa4";
  check(rel(o_t, o_c) < 1e-5 && rel(lse_t, lse_c) < 1e-6, tag + "_fwd_vs_cpu_engine",
        "o " + std::to_string(rel(o_t, o_c)) + " lse " + std::to_string(rel(lse_t, lse_c)));
  check(rel(o_t, o_d) < 1e-5, tag + "_fwd_f32_vs_f64", std::to_string(rel(o_t, o_d)));

  std::vector<float> dq_t, dk_t, dv_t, dq_d, dk_d, dv_d;
  tw::attention_bwd_ref<float>(q, k, v, o_d, dout, lse_d, cu, cu, s, {}, dq_t, dk_t, dv_t);
  tw::attention_bwd_ref<double>(q, k, v, o_d, dout, lse_d, cu, cu, s, {}, dq_d, dk_d, dv_d);
  std::vector<float> dq_c(dq_t.size()), dk_c(dk_t.size()), dv_c(dv_t.size());
  cpu::attention_bwd(q.data(), k.data(), v.data(), o_d.data(), lse_d.data(), dout.data(), dq_c.data(), dk_c.data(),
                     dv_c.data(), cu.data(), int(lens.size()), cs, nullptr);
  const double e = std::max({rel(dq_t, dq_c), rel(dk_t, dk_c), rel(dv_t, dv_c)});
  check(e < 1e-4, tag + "_bwd_vs_cpu_engine", std::to_string(e));
  const double e64 = std::max({rel(dq_t, dq_d), rel(dk_t, dk_d), rel(dv_t, dv_d)});
  check(e64 < 1e-4, tag + "_bwd_f32_vs_f64", std::to_string(e64));

  // The tensor-core rounding (bf16 P and dS) costs accuracy, but stays small.
  std::vector<float> o_r, lse_r, dq_r, dk_r, dv_r;
  tw::attention_fwd_ref<float>(q, k, v, cu, cu, s, {true, true}, true, o_r, lse_r);
  tw::attention_bwd_ref<float>(q, k, v, o_d, dout, lse_d, cu, cu, s, {true, true}, dq_r, dk_r, dv_r);
  const double er = std::max({rel(o_r, o_d), rel(dq_r, dq_d), rel(dk_r, dk_d), rel(dv_r, dv_d)});
  check(er > 1e-5 && er < 2e-2, tag + "_bf16_rounding_bounded", std::to_string(er));

  // Decode shape: fewer queries than keys, bottom-right aligned. Sequence 0: the last
  // query of sample 0 over its 301 keys; sequence 1: sample 1 (one token). Must equal
  // rows 300 and 301 of the full attention.
  const std::vector<int32_t> cu_q2 = {0, 1, 2}, cu_k2 = {0, 301, 302};
  std::vector<float> qd(size_t(2) * nH * D), o_dec, lse_dec;
  std::memcpy(qd.data(), q.data() + size_t(300) * nH * D, sizeof(float) * nH * D);
  std::memcpy(qd.data() + size_t(nH) * D, q.data() + size_t(301) * nH * D, sizeof(float) * nH * D);
  std::vector<float> kd(k.begin(), k.begin() + size_t(302) * nKV * D), vd(v.begin(), v.begin() + size_t(302) * nKV * D);
  tw::attention_fwd_ref<float>(qd, kd, vd, cu_q2, cu_k2, s, {}, false, o_dec, lse_dec);
  std::vector<float> want(o_c.begin() + size_t(300) * nH * D, o_c.begin() + size_t(302) * nH * D);
  check(rel(o_dec, want) < 1e-5, tag + "_decode_alignment", std::to_string(rel(o_dec, want)));
}

// |a - ref| within one bf16 rounding step of ref (the twins round to bf16, the CPU
// engine does not), plus an absolute floor for values near zero.
bool near_bf16(const std::vector<float>& a, const std::vector<float>& ref, double floor_abs) {
  if (a.size() != ref.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::fabs(double(a[i]) - ref[i]) > std::ldexp(std::fabs(double(ref[i])), -8) + floor_abs) return false;
  return true;
}

void row_twins() {
  const int64_t T = 13;
  const int C = 96, I = 40, nH = 2, nKV = 1, D = 32;
  // RMSNorm forward and backward against the CPU engine's kernels.
  const auto x = uniform(size_t(T) * C, -2, 2, 21), w = uniform(C, 0.5f, 1.5f, 22), dy = uniform(size_t(T) * C, -1, 1, 23);
  std::vector<float> y_t, r_t, dx_t, y_c(size_t(T) * C), r_c(T), dx_c(size_t(T) * C);
  tw::rmsnorm_fwd_ref(x, w, T, C, 1e-5f, y_t, r_t);
  cpu::rmsnorm_fwd(x.data(), w.data(), y_c.data(), r_c.data(), T, C, 1e-5f, nullptr);
  tw::rmsnorm_bwd_ref(dy, x, w, r_t, nullptr, 0.f, T, C, dx_t);
  cpu::rmsnorm_bwd(dy.data(), x.data(), w.data(), r_c.data(), dx_c.data(), T, C, false, nullptr);
  check(near_bf16(y_t, y_c, 1e-6) && rel(r_t, r_c) < 1e-6 && rel(dx_t, dx_c) < 1e-5, "rmsnorm_twins_vs_cpu_engine");
  // SwiGLU forward and backward.
  const auto gu = uniform(size_t(T) * 2 * I, -4, 4, 24), da = uniform(size_t(T) * I, -1, 1, 25);
  std::vector<float> g(size_t(T) * I), u(size_t(T) * I);
  for (int64_t t = 0; t < T; ++t)
    for (int i = 0; i < I; ++i) {
      g[t * I + i] = gu[t * 2 * I + i];
      u[t * I + i] = gu[t * 2 * I + I + i];
    }
  std::vector<float> a_t, a_c(g.size()), dgu_t, dg_c(g.size()), du_c(g.size());
  tw::swiglu_fwd_ref(gu, nullptr, T, I, a_t);
  cpu::swiglu_fwd(g.data(), u.data(), a_c.data(), int64_t(g.size()), nullptr);
  tw::swiglu_bwd_ref(da, gu, nullptr, T, I, dgu_t);
  cpu::swiglu_bwd(da.data(), g.data(), u.data(), dg_c.data(), du_c.data(), int64_t(g.size()), nullptr);
  std::vector<float> dgu_c(dgu_t.size());
  for (int64_t t = 0; t < T; ++t)
    for (int i = 0; i < I; ++i) {
      dgu_c[t * 2 * I + i] = dg_c[t * I + i];
      dgu_c[t * 2 * I + I + i] = du_c[t * I + i];
    }
  check(near_bf16(a_t, a_c, 1e-6) && near_bf16(dgu_t, dgu_c, 1e-6), "swiglu_twins_vs_cpu_engine");
  // RoPE (no bias, no qk-norm) against the CPU engine's table-driven rotation.
  RopeConfig rc;
  const std::vector<float> inv = cpu::rope_inv_freq(rc, D);
  std::vector<int32_t> pos;
  for (int64_t t = 0; t < T; ++t) pos.push_back(int32_t(t * 23 % 300));
  const int nT = nH + 2 * nKV;
  const auto qkv = uniform(size_t(T) * nT * D, -2, 2, 26);
  std::vector<float> q_t, k_t, v_t;
  tw::rope_fwd_ref(qkv, nullptr, nullptr, nullptr, pos, inv, {nH, nKV, D, 1e-6f}, q_t, k_t, v_t);
  std::vector<float> cos_t(size_t(T) * D / 2), sin_t(size_t(T) * D / 2), q_c(size_t(T) * nH * D);
  cpu::rope_tables(inv, pos.data(), T, cos_t.data(), sin_t.data(), nullptr);
  for (int64_t t = 0; t < T; ++t)
    std::memcpy(q_c.data() + size_t(t) * nH * D, qkv.data() + size_t(t) * nT * D, sizeof(float) * nH * D);
  std::vector<float> dq_in = q_c;
  cpu::rope_fwd(q_c.data(), T, nH, D, cos_t.data(), sin_t.data(), nullptr);
  std::vector<float> dqkv_t;
  const std::vector<float> zk(size_t(T) * nKV * D, 0.f);
  tw::rope_bwd_ref(dq_in, zk, zk, qkv, nullptr, nullptr, nullptr, pos, inv, {nH, nKV, D, 1e-6f}, dqkv_t);
  cpu::rope_bwd(dq_in.data(), T, nH, D, cos_t.data(), sin_t.data(), nullptr);
  std::vector<float> dq_t(size_t(T) * nH * D);
  for (int64_t t = 0; t < T; ++t)
    std::memcpy(dq_t.data() + size_t(t) * nH * D, dqkv_t.data() + size_t(t) * nT * D, sizeof(float) * nH * D);
  check(near_bf16(q_t, q_c, 1e-5) && near_bf16(dq_t, dq_in, 1e-5), "rope_twins_vs_cpu_engine");
}

// The tensor-core kernels' algorithm, emulated per row on the CPU with their tile
// loops: 64-row query tiles and 64-key tiles, the causal bound of the last visible key
// tile (kend), the first query tile that sees a key tile (q_first), the mask, the online
// softmax in the log2 domain with bf16 P, lse converted back to natural log, and the
// backward's dK/dV and dQ passes with bf16 P and dS. It checks the algorithm's
// decisions (not the fragment math, checked below, nor the PTX itself).
struct EmuOut {
  std::vector<float> o, lse, dq, dk, dv;
};
EmuOut mma_algorithm(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                     const std::vector<float>& o_in, const std::vector<float>& dout, const std::vector<float>& lse_in,
                     const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k, int nH, int nKV, int D,
                     float scale) {
  constexpr int TQ = mm::kRows, TK = mm::kKeys;
  const float l2e = 1.4426950408889634f, ln2 = 0.6931471805599453f, sl2 = scale * l2e;
  const int G = nH / nKV;
  EmuOut e;
  e.o.assign(size_t(cu_q.back()) * nH * D, 0.f);
  e.lse.assign(size_t(cu_q.back()) * nH, 0.f);
  e.dq.assign(e.o.size(), 0.f);
  e.dk.assign(size_t(cu_k.back()) * nKV * D, 0.f);
  e.dv.assign(e.dk.size(), 0.f);
  auto dot = [&](const float* a, const float* b) {
    float s = 0;
    for (int d = 0; d < D; ++d) s += a[d] * b[d];
    return s;
  };
  std::vector<float> acc(D), pj(TK);
  for (size_t sq = 0; sq + 1 < cu_q.size(); ++sq) {
    const int qb = cu_q[sq], Lq = cu_q[sq + 1] - qb, kb = cu_k[sq], Lk = cu_k[sq + 1] - kb, off = Lk - Lq;
    for (int h = 0; h < nH; ++h) {
      const int kvh = h / G;
      const float* Q = q.data() + size_t(h) * D;
      const float* K = k.data() + size_t(kvh) * D;
      const float* V = v.data() + size_t(kvh) * D;
      for (int q0 = 0; q0 < Lq; q0 += TQ) {
        const int last_row = std::min(Lq - 1, q0 + TQ - 1), kend = std::min(Lk, last_row + off + 1);
        for (int qi = q0; qi < q0 + TQ && qi < Lq; ++qi) {
          const float* qr = Q + size_t(qb + qi) * nH * D;
          float m = -INFINITY, l = 0;
          std::fill(acc.begin(), acc.end(), 0.f);
          float dl = 0, lse2 = lse_in[size_t(qb + qi) * nH + h] * l2e;
          for (int d = 0; d < D; ++d) dl += dout[size_t(qb + qi) * nH * D + h * D + d] * o_in[size_t(qb + qi) * nH * D + h * D + d];
          std::vector<float> dqa(D, 0.f);
          for (int k0 = 0; k0 < kend; k0 += TK) {
            float mx = m;
            for (int j = 0; j < TK; ++j) {
              const int kj = k0 + j;
              const bool ok = kj < Lk && kj <= qi + off;
              pj[j] = ok ? dot(qr, K + size_t(kb + kj) * nKV * D) * sl2 : -INFINITY;
              mx = std::max(mx, pj[j]);
            }
            const float alpha = mx == -INFINITY ? 1.f : std::exp2(m - mx);
            m = mx;
            l *= alpha;
            for (float& a : acc) a *= alpha;
            for (int j = 0; j < TK; ++j) {
              const float p = m == -INFINITY ? 0.f : std::exp2(pj[j] - m);
              l += p;
              if (p == 0.f) continue;
              const float pb = tw::bf16_round(p);
              for (int d = 0; d < D; ++d) acc[d] += pb * V[size_t(kb + k0 + j) * nKV * D + d];
            }
            // dQ pass over the same key tiles.
            for (int j = 0; j < TK; ++j) {
              const int kj = k0 + j;
              if (!(kj < Lk && kj <= qi + off)) continue;
              const float* kr = K + size_t(kb + kj) * nKV * D;
              const float p = std::exp2(dot(qr, kr) * sl2 - lse2);
              const float dp = dot(dout.data() + size_t(qb + qi) * nH * D + h * D, V + size_t(kb + kj) * nKV * D);
              const float ds = tw::bf16_round(p * (dp - dl));
              for (int d = 0; d < D; ++d) dqa[d] += ds * kr[d];
            }
          }
          for (int d = 0; d < D; ++d) {
            e.o[size_t(qb + qi) * nH * D + h * D + d] = tw::bf16_round(l > 0 ? acc[d] / l : 0.f);
            e.dq[size_t(qb + qi) * nH * D + h * D + d] = scale * dqa[d];
          }
          e.lse[size_t(qb + qi) * nH + h] = l > 0 ? (m + std::log2(l)) * ln2 : 0.f;
        }
      }
    }
    // dK/dV: per 64-key tile and kv head, over the group's heads and the query tiles
    // from q_first on.
    for (int kvh = 0; kvh < nKV; ++kvh)
      for (int k0 = 0; k0 < Lk; k0 += TQ) {
        const int q_first = (std::max(0, k0 - off) / TK) * TK;
        for (int kj = k0; kj < k0 + TQ && kj < Lk; ++kj) {
          const float* kr = k.data() + size_t(kb + kj) * nKV * D + size_t(kvh) * D;
          const float* vr = v.data() + size_t(kb + kj) * nKV * D + size_t(kvh) * D;
          std::vector<float> dka(D, 0.f), dva(D, 0.f);
          for (int g = 0; g < G; ++g) {
            const int h = kvh * G + g;
            for (int q0 = q_first; q0 < Lq; q0 += TK)
              for (int qi = q0; qi < q0 + TK && qi < Lq; ++qi) {
                if (!(kj <= qi + off)) continue;
                const float* qr = q.data() + size_t(qb + qi) * nH * D + size_t(h) * D;
                const float* dor = dout.data() + size_t(qb + qi) * nH * D + size_t(h) * D;
                float dl = 0;
                for (int d = 0; d < D; ++d) dl += dor[d] * o_in[size_t(qb + qi) * nH * D + h * D + d];
                const float p = std::exp2(dot(qr, kr) * sl2 - lse_in[size_t(qb + qi) * nH + h] * l2e);
                const float ds = p * (dot(dor, vr) - dl);
                const float pb = tw::bf16_round(p), dsb = tw::bf16_round(ds);
                for (int d = 0; d < D; ++d) {
                  dva[d] += pb * dor[d];
                  dka[d] += dsb * qr[d];
                }
              }
          }
          for (int d = 0; d < D; ++d) {
            e.dk[size_t(kb + kj) * nKV * D + size_t(kvh) * D + d] = scale * dka[d];
            e.dv[size_t(kb + kj) * nKV * D + size_t(kvh) * D + d] = dva[d];
          }
        }
      }
  }
  return e;
}

void mma_algorithm_checks() {
  struct Case {
    const char* name;
    int D;
    std::vector<int> lq, lk;
  };
  const std::vector<Case> cases = {{"packed_d64", 64, {301, 1, 65, 130}, {301, 1, 65, 130}},
                                   {"decode_d128", 128, {1, 3, 70}, {300, 77, 200}}};
  for (const Case& c : cases) {
    const int nH = 8, nKV = 2, D = c.D;
    std::vector<int32_t> cu_q = {0}, cu_k = {0};
    for (size_t i = 0; i < c.lq.size(); ++i) {
      cu_q.push_back(cu_q.back() + c.lq[i]);
      cu_k.push_back(cu_k.back() + c.lk[i]);
    }
    const tw::AttnShape s{nH, nKV, D, float(1.0 / std::sqrt(double(D)))};
    const auto q = uniform(size_t(cu_q.back()) * nH * D, -2, 2, 31), k = uniform(size_t(cu_k.back()) * nKV * D, -1, 1, 32),
               v = uniform(size_t(cu_k.back()) * nKV * D, -1, 1, 33), dout = uniform(size_t(cu_q.back()) * nH * D, -1, 1, 34);
    std::vector<float> o_ref, lse_ref, o_tw, lse_tw, dq_ref, dk_ref, dv_ref, dq_tw, dk_tw, dv_tw;
    tw::attention_fwd_ref<double>(q, k, v, cu_q, cu_k, s, {}, false, o_ref, lse_ref);
    tw::attention_fwd_ref<float>(q, k, v, cu_q, cu_k, s, {true, true}, true, o_tw, lse_tw);
    const std::vector<float> o_in = tw::bf16_round(o_ref);
    tw::attention_bwd_ref<double>(q, k, v, o_in, dout, lse_ref, cu_q, cu_k, s, {}, dq_ref, dk_ref, dv_ref);
    tw::attention_bwd_ref<float>(q, k, v, o_in, dout, lse_ref, cu_q, cu_k, s, {true, true}, dq_tw, dk_tw, dv_tw);
    const EmuOut e = mma_algorithm(q, k, v, o_in, dout, lse_ref, cu_q, cu_k, nH, nKV, D, s.scale);
    const struct {
      const char* n;
      const std::vector<float>*em, *tw, *ref;
    } parts[] = {{"o", &e.o, &o_tw, &o_ref},    {"lse", &e.lse, &lse_tw, &lse_ref}, {"dq", &e.dq, &dq_tw, &dq_ref},
                 {"dk", &e.dk, &dk_tw, &dk_ref}, {"dv", &e.dv, &dv_tw, &dv_ref}};
    for (const auto& pt : parts) {
      const double ee = rel(*pt.em, *pt.ref), et = rel(*pt.tw, *pt.ref);
      check(ee <= 2 * et + 1e-6, std::string("mma_algorithm_") + c.name + "_" + pt.n,
            "err " + std::to_string(ee) + " twin " + std::to_string(et));
    }
  }
}

void random_weights() {
  // Values from the Python formula (bench/torch_baseline.py random_values / random_tokens).
  const struct {
    uint32_t i;
    float v;
  } want[] = {{0, 0x1.0ap-6f}, {1, -0x1.1ap-6f}, {2, 0x1.3ep-8f}, {12345, -0x1.9ep-6f}, {4000000000u, 0x1.72p-6f}};
  bool ok = true;
  for (const auto& w : want) ok = ok && tw::bf16_round(hs::cuda::random_weight_value(w.i, 1)) == w.v;
  ok = ok && hs::cuda::random_hash(0, 1) == 3261717523u && hs::cuda::random_hash(4000000000u, 1) == 3702597594u;
  check(ok, "random_weights_match_python");
  const int32_t toks[] = {44982, 662, 95189};
  bool tok_ok = hs::cuda::random_token(0, 1234, 128256) == toks[0] && hs::cuda::random_token(1, 1234, 128256) == toks[1] &&
                hs::cuda::random_token(2, 1234, 128256) == toks[2] && hs::cuda::random_token(99999, 1234, 128256) == 19656;
  check(tok_ok, "random_tokens_match_python");
  std::set<uint64_t> offs;
  bool aligned = true;
  for (int kidx = 0; kidx < 300; ++kidx) {
    const uint64_t o = hs::cuda::random_weight_offset(kidx);
    aligned = aligned && o % 8 == 0 && o < hs::cuda::kRandomWeightSpan;
    offs.insert(o);
  }
  check(aligned && offs.size() > 250, "random_weight_offsets_aligned_and_spread", std::to_string(offs.size()));
}

// ---- PTX ISA definitions (written from the ISA's fragment tables, not from the header) ----
// mma.m16n8k16 .bf16: A element i of 8 (reg i/2, half i%2): row g + 8*((i/2)%2) ... per ISA:
//   row = g for a0,a1,a4,a5; g+8 for a2,a3,a6,a7; col = 2t + (i%2) (+8 for a4..a7).
int ptx_a_row(int lane, int i) { return (lane >> 2) + ((i == 2 || i == 3 || i == 6 || i == 7) ? 8 : 0); }
int ptx_a_col(int lane, int i) { return (lane % 4) * 2 + (i & 1) + (i >= 4 ? 8 : 0); }
// B element i of 4: k = 2t + (i%2) (+8 for b2,b3), n = g.
int ptx_b_k(int lane, int i) { return (lane % 4) * 2 + (i & 1) + (i >= 2 ? 8 : 0); }
int ptx_b_n(int lane) { return lane >> 2; }
// C element i of 4: row g (+8 for c2,c3), col 2t + (i%2).
int ptx_c_row(int lane, int i) { return (lane >> 2) + (i >= 2 ? 8 : 0); }
int ptx_c_col(int lane, int i) { return (lane % 4) * 2 + (i & 1); }

// ldmatrix.x4 emulation: tile[] holds element ids; each lane gives one row address
// (row, col of the row's first element, in logical tile coordinates: the swizzle maps
// them to storage). Returns per lane 4 registers x 2 halves of element ids.
struct Frag {
  int e[32][4][2];
};
Frag ldmatrix(const std::vector<int>& smem, int D, int (*row_of)(int), int (*col_of)(int), int row0, int col0,
              bool trans) {
  // Per matrix m, the 8 row addresses (as storage offsets of the row's first element).
  int addr[4][8];
  for (int lane = 0; lane < 32; ++lane) addr[lane / 8][lane % 8] = mm::swz(row0 + row_of(lane), col0 + col_of(lane), D);
  Frag f;
  for (int lane = 0; lane < 32; ++lane)
    for (int m = 0; m < 4; ++m)
      for (int h = 0; h < 2; ++h) {
        // non-trans: row lane/4, col 2(lane%4)+h ; trans: row 2(lane%4)+h, col lane/4
        const int r = trans ? 2 * (lane % 4) + h : lane / 4;
        const int c = trans ? lane / 4 : 2 * (lane % 4) + h;
        f.e[lane][m][h] = smem[addr[m][r] + c];  // 8 contiguous elements per row address
      }
  return f;
}

void mma_layout() {
  bool ok = true;
  for (int lane = 0; lane < 32; ++lane)
    for (int r = 0; r < 4; ++r)
      for (int h = 0; h < 2; ++h) {
        ok = ok && mm::a_row(lane, r) == ptx_a_row(lane, 2 * r + h) && mm::a_col(lane, r, h) == ptx_a_col(lane, 2 * r + h);
        if (r < 2) ok = ok && mm::b_k(lane, r, h) == ptx_b_k(lane, 2 * r + h) && mm::b_n(lane) == ptx_b_n(lane);
      }
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) ok = ok && mm::c_row(lane, i) == ptx_c_row(lane, i) && mm::c_col(lane, i) == ptx_c_col(lane, i);
  check(ok, "mma_fragment_coordinates_match_ptx");

  for (int D : {64, 128}) {
    const int rows = 64;
    // Storage: element id (row * D + col) stored at its swizzled place.
    std::vector<int> smem(size_t(rows) * D, -1);
    std::set<int> seen;
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < D; ++c) {
        const int at = mm::swz(r, c, D);
        seen.insert(at);
        if (at >= 0 && at < rows * D) smem[at] = r * D + c;
      }
    check(int(seen.size()) == rows * D && *seen.begin() == 0 && *seen.rbegin() == rows * D - 1,
          "swizzle_bijection_d" + std::to_string(D));
    // 8 consecutive logical columns stay contiguous (a 16-byte ldmatrix row).
    bool contig = true;
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < D; c += 8)
        for (int j = 1; j < 8; ++j) contig = contig && mm::swz(r, c + j, D) == mm::swz(r, c, D) + j;
    check(contig, "swizzle_keeps_16_byte_rows_d" + std::to_string(D));

    auto id = [&](int r, int c) { return r * D + c; };
    bool a_ok = true, bn_ok = true, bt_ok = true, banks = true;
    for (int row0 = 0; row0 < rows; row0 += 16)
      for (int col0 = 0; col0 < D; col0 += 16) {
        // A operand: tile rows = M rows, cols = k.
        const Frag fa = ldmatrix(smem, D, mm::ldsm_a_row, mm::ldsm_a_col, row0, col0, false);
        for (int lane = 0; lane < 32; ++lane)
          for (int r = 0; r < 4; ++r)
            for (int h = 0; h < 2; ++h)
              a_ok = a_ok && fa.e[lane][r][h] == id(row0 + ptx_a_row(lane, 2 * r + h), col0 + ptx_a_col(lane, 2 * r + h));
        // B from n-major storage (row = n, col = k): regs {b0,b1} of n-block 0, then 1.
        const Frag fb = ldmatrix(smem, D, mm::ldsm_bn_row, mm::ldsm_bn_col, row0, col0, false);
        for (int lane = 0; lane < 32; ++lane)
          for (int r = 0; r < 4; ++r)
            for (int h = 0; h < 2; ++h) {
              const int nb = r / 2, i = 2 * (r % 2) + h;
              bn_ok = bn_ok && fb.e[lane][r][h] == id(row0 + nb * 8 + ptx_b_n(lane), col0 + ptx_b_k(lane, i));
            }
        // B from k-major storage (row = k, col = n), .trans: regs {b0,b1} of n-block 0, then 1.
        const Frag ft = ldmatrix(smem, D, mm::ldsm_bt_row, mm::ldsm_bt_col, row0, col0, true);
        for (int lane = 0; lane < 32; ++lane)
          for (int r = 0; r < 4; ++r)
            for (int h = 0; h < 2; ++h) {
              const int nb = r / 2, i = 2 * (r % 2) + h;
              bt_ok = bt_ok && ft.e[lane][r][h] == id(row0 + ptx_b_k(lane, i), col0 + nb * 8 + ptx_b_n(lane));
            }
        // Banks: in each of the 4 phases (one 8x8 matrix), 8 row addresses of 16 bytes
        // must cover all 32 banks once.
        for (auto fn : {std::make_pair(mm::ldsm_a_row, mm::ldsm_a_col), std::make_pair(mm::ldsm_bn_row, mm::ldsm_bn_col),
                        std::make_pair(mm::ldsm_bt_row, mm::ldsm_bt_col)})
          for (int m = 0; m < 4; ++m) {
            std::set<int> groups;
            for (int j = 0; j < 8; ++j) {
              const int lane = m * 8 + j;
              const int byte = 2 * mm::swz(row0 + fn.first(lane), col0 + fn.second(lane), D);
              groups.insert((byte / 16) % 8);
            }
            banks = banks && groups.size() == 8;
          }
      }
    const std::string d = "_d" + std::to_string(D);
    check(a_ok, "ldmatrix_a_fragment" + d);
    check(bn_ok, "ldmatrix_b_from_rows_fragment" + d);
    check(bt_ok, "ldmatrix_b_trans_fragment" + d);
    check(banks, "ldmatrix_bank_conflict_free" + d);
  }

  // Accumulators of S (two n-blocks: keys 0..7, 8..15) reused as the A operand of P V.
  bool acc_ok = true;
  for (int lane = 0; lane < 32; ++lane)
    for (int r = 0; r < 4; ++r)
      for (int h = 0; h < 2; ++h) {
        const int blk = mm::acc_block(r), i = mm::acc_elem(r, h);
        // The accumulator element's (row, key) must be the A element's (row, k).
        acc_ok = acc_ok && ptx_c_row(lane, i) == ptx_a_row(lane, 2 * r + h) &&
                 blk * 8 + ptx_c_col(lane, i) == ptx_a_col(lane, 2 * r + h);
      }
  check(acc_ok, "accumulator_to_a_operand");
  // Output stores write c[2r], c[2r+1] as one pair: same row, adjacent columns.
  bool pairs = true;
  for (int lane = 0; lane < 32; ++lane)
    for (int r = 0; r < 2; ++r)
      pairs = pairs && ptx_c_row(lane, 2 * r) == ptx_c_row(lane, 2 * r + 1) &&
              ptx_c_col(lane, 2 * r + 1) == ptx_c_col(lane, 2 * r) + 1 && mm::c_row(lane, 2 * r) == ptx_c_row(lane, 2 * r);
  check(pairs, "accumulator_pair_stores");
}

// bf16 round-to-nearest-even by another route than the twins' bit trick: 8 significant
// bits of the frexp mantissa, rounded with nearbyint (ties to even).
float ref_bf16(double x) {
  if (!std::isfinite(x) || x == 0) return float(x);
  int e = 0;
  const double m = std::frexp(double(float(x)), &e);  // the float the kernel holds, in [0.5, 1)
  return float(std::ldexp(std::nearbyint(std::ldexp(m, 8)), e - 8));
}

bool close(double a, double ref, double rel_tol, double abs_tol = 0) {
  return std::fabs(a - ref) <= rel_tol * std::fabs(ref) + abs_tol;
}

void other_twins() {
  const int64_t T = 11;
  const int C = 77;
  // bf16 cast, with exact ties (1 + 2^-8 rounds to 1, 1 + 3 * 2^-8 to 1 + 2^-6), inf, nan.
  std::vector<float> in = uniform(300, -50.f, 50.f, 61);
  for (float& v : in) v = std::nextafter(v, 100.f) * 1.001f;  // not already bf16
  for (float v : {1.f + 0x1p-8f, 1.f + 3 * 0x1p-8f, -1.f - 0x1p-8f, 0.f, -0.f, 1e-30f, 3.0e38f}) in.push_back(v);
  in.push_back(std::numeric_limits<float>::infinity());
  std::vector<float> cast;
  tw::cast_fwd_ref(in, cast);
  bool cast_ok = cast.size() == in.size();
  for (size_t i = 0; cast_ok && i < in.size(); ++i) cast_ok = cast[i] == ref_bf16(in[i]);
  cast_ok = cast_ok && tw::bf16_round(1.f + 0x1p-8f) == 1.f && tw::bf16_round(1.f + 3 * 0x1p-8f) == 1.f + 0x1p-6f;
  cast_ok = cast_ok && std::isnan(tw::bf16_round(std::numeric_limits<float>::quiet_NaN()));
  check(cast_ok, "cast_fwd_ref_vs_reference");

  // Scaled residual: out = ca (a + bias) + ch h; backward ga = bf16(ca g), gh = ch g,
  // grad_b = a_scale <g, a>, grad_s = <g, h> (summed here backwards, in long double).
  const auto a = uniform(size_t(T) * C, -1, 1, 62), h = uniform(size_t(T) * C, -1, 1, 63), b = uniform(C, -1, 1, 64);
  const auto g = uniform(size_t(T) * C, -1, 1, 65);
  const float ca = 0.75f, ch = 1.25f, as = 0.5f;
  std::vector<float> out;
  tw::residual_fwd_ref(a, &b, h, ca, ch, T, C, out);
  bool res_ok = out.size() == a.size();
  for (int64_t t = 0; res_ok && t < T; ++t)
    for (int c = 0; c < C && res_ok; ++c) {
      const size_t i = size_t(t) * C + c;
      res_ok = close(out[i], double(ca) * (double(a[i]) + b[c]) + double(ch) * h[i], 1e-6, 1e-7);
    }
  check(res_ok, "residual_fwd_ref_vs_reference");
  std::vector<float> ga, gh;
  double gb = 0, gs = 0;
  tw::residual_bwd_ref(g, a, h, ca, ch, as, ga, gh, gb, gs);
  long double rb = 0, rs = 0;
  bool rbwd_ok = ga.size() == g.size() && gh.size() == g.size();
  for (size_t j = g.size(); rbwd_ok && j-- > 0;) {
    rb += (long double)g[j] * a[j];
    rs += (long double)g[j] * h[j];
    rbwd_ok = ga[j] == ref_bf16(double(ca) * g[j]) && close(gh[j], double(ch) * g[j], 1e-7);
  }
  rbwd_ok = rbwd_ok && close(gb, double(as * rb), 1e-9, 1e-12) && close(gs, double(rs), 1e-9, 1e-12);
  check(rbwd_ok, "residual_bwd_ref_vs_reference");

  // Cross-entropy: nll = log(sum exp z) - z[t] (no max shift here: |z| <= 8), and
  // dz = bf16(w * scale * (softmax - onehot)).
  const int64_t R = 7;
  const int V = 301;
  const auto z = uniform(size_t(R) * V, -8, 8, 66);
  const std::vector<int32_t> targets = {0, 300, 5, 150, 7, 299, 1};
  const std::vector<float> weights = {1.f, 0.5f, 2.f, 1.f, 0.f, 1.f, 0.25f};
  std::vector<float> nll, dz;
  tw::cross_entropy_fwd_ref(z, targets, weights, R, V, 0.125f, nll, dz);
  bool ce_ok = nll.size() == size_t(R) && dz.size() == size_t(R) * V;
  for (int64_t r = 0; ce_ok && r < R; ++r) {
    long double sum = 0;
    for (int j = 0; j < V; ++j) sum += std::exp((long double)z[r * V + j]);
    const long double lse = std::log(sum);
    ce_ok = close(nll[r], double(lse - z[r * V + targets[r]]), 1e-6);
    for (int j = 0; j < V && ce_ok; ++j) {
      const double p = double(std::exp((long double)z[r * V + j] - lse));
      const double want = double(weights[r]) * 0.125 * (p - (j == targets[r] ? 1.0 : 0.0));
      ce_ok = std::fabs(dz[r * V + j] - want) <= std::ldexp(std::fabs(want), -8) + 1e-12;
    }
  }
  check(ce_ok, "cross_entropy_fwd_ref_vs_reference");

  // Row gather and scatter (the fused cross-entropy's loss rows), embedding, argmax, cosine.
  const std::vector<int32_t> rows = {10, 0, 3, 4, 9};
  std::vector<float> gathered;
  tw::gather_rows_fwd_ref(a, rows, C, gathered);
  bool gs_ok = gathered.size() == rows.size() * C;
  for (size_t i = 0; gs_ok && i < rows.size(); ++i)
    for (int c = 0; c < C && gs_ok; ++c) gs_ok = gathered[i * C + c] == a[size_t(rows[i]) * C + c];
  std::vector<float> scattered = h;
  tw::scatter_rows_bwd_ref(gathered, rows, C, scattered);
  for (int64_t t = 0; gs_ok && t < T; ++t) {
    const bool hit = std::find(rows.begin(), rows.end(), int32_t(t)) != rows.end();
    for (int c = 0; c < C && gs_ok; ++c) gs_ok = scattered[t * C + c] == (hit ? a : h)[t * C + c];
  }
  check(gs_ok, "gather_rows_fwd_ref_and_scatter_rows_bwd_ref_vs_reference");

  const std::vector<int32_t> toks = {3, 0, 10, 3, 7};
  std::vector<float> emb;
  tw::embedding_fwd_ref(toks, a, C, 2.5f, emb);
  bool emb_ok = emb.size() == toks.size() * C;
  for (size_t t = 0; emb_ok && t < toks.size(); ++t)
    for (int c = 0; c < C && emb_ok; ++c) emb_ok = emb[t * C + c] == 2.5f * a[size_t(toks[t]) * C + c];
  check(emb_ok, "embedding_fwd_ref_vs_reference");

  std::vector<float> logits = z;
  logits[2 * V + 17] = logits[2 * V + 200] = 100.f;  // a tie: the smaller index wins
  std::vector<int32_t> am;
  tw::argmax_fwd_ref(logits, R, V, am);
  bool am_ok = am.size() == size_t(R) && am[2] == 17;
  for (int64_t r = 0; am_ok && r < R; ++r)
    am_ok = am[r] == int32_t(std::max_element(logits.begin() + r * V, logits.begin() + (r + 1) * V) - (logits.begin() + r * V));
  check(am_ok, "argmax_fwd_ref_vs_reference");

  std::vector<float> a0 = a;
  std::fill(a0.begin() + 4 * C, a0.begin() + 5 * C, 0.f);  // a zero row: cosine 0
  std::vector<float> cs;
  tw::cosine_fwd_ref(a0, h, T, C, cs);
  bool cos_ok = cs.size() == size_t(T) && cs[4] == 0.f;
  for (int64_t t = 0; cos_ok && t < T; ++t) {
    if (t == 4) continue;
    long double ab = 0, aa = 0, bb = 0;
    for (int c = C; c-- > 0;) {
      ab += (long double)a0[t * C + c] * h[t * C + c];
      aa += (long double)a0[t * C + c] * a0[t * C + c];
      bb += (long double)h[t * C + c] * h[t * C + c];
    }
    cos_ok = close(cs[t], double(ab / std::sqrt(aa * bb)), 1e-6, 1e-7);
  }
  check(cos_ok, "cosine_fwd_ref_vs_reference");
}

std::string read_source(const std::string& rel_path) {
  std::ifstream f(std::string(HOPSCOTCH_SOURCE_DIR) + "/" + rel_path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::set<std::string> matches(const std::string& text, const std::regex& re) {
  std::set<std::string> out;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it)
    out.insert((*it)[1].str());
  return out;
}

void names() {
  const char* families[] = {"argmax", "attention", "attention_mma", "cast", "cosine", "cross_entropy", "embedding",
                            "residual", "rmsnorm", "rope", "swiglu"};
  std::set<std::string> launchers;
  for (const char* f : families) {
    const std::string cu = read_source(std::string("native/cuda/") + f + ".cu");
    check(!cu.empty(), std::string("read native/cuda/") + f + ".cu");
    for (const std::string& l : matches(cu, std::regex(R"(\nvoid launch_(\w+_(?:fwd|bwd))\()"))) launchers.insert(l);
  }
  const std::string twins = read_source("native/cuda/twins.h");
  const std::string checks = read_source("native/cuda/kernel_checks.cpp");
  const std::set<std::string> twin_names = matches(twins, std::regex(R"((\w+_(?:fwd|bwd))_ref\()"));
  // Check names: the "<op>_<dir>" literals, and the attention names attention_check_name builds.
  std::set<std::string> check_names = matches(checks, std::regex(R"re("(\w+_(?:fwd|bwd))")re"));
  if (checks.find(R"(attention_check_name(impl, "fwd", c))") != std::string::npos &&
      checks.find(R"(attention_check_name(impl, "bwd", c))") != std::string::npos &&
      checks.find("AttentionImpl::Fma, AttentionImpl::Mma") != std::string::npos)
    check_names.insert({"attention_fwd", "attention_bwd", "attention_mma_fwd", "attention_mma_bwd"});
  check(launchers.size() >= 18, "launchers found", std::to_string(launchers.size()));
  std::string no_twin, no_check, stray;
  for (const std::string& l : launchers) {
    if (!twin_names.count(l)) no_twin += l + " ";
    if (!check_names.count(l)) no_check += l + " ";
  }
  for (const std::string& c : check_names)
    if (!launchers.count(c)) stray += c + " ";
  check(no_twin.empty(), "every launcher has its twin <op>_<dir>_ref in twins.h", no_twin);
  check(no_check.empty(), "every launcher has a check named <op>_<dir> in kernel_checks.cpp", no_check);
  check(stray.empty(), "every kernel check names a launcher", stray);
}

}  // namespace

int main() {
  attention_twins(64);
  attention_twins(128);
  row_twins();
  other_twins();
  names();
  mma_algorithm_checks();
  random_weights();
  mma_layout();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
