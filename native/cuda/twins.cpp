// CPU twins of the CUDA kernels (see twins.h). Straightforward loops in the kernels'
// precision; clarity over speed.
#include "twins.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "random_weights.h"

namespace hs::cuda::twin {

float bf16_round(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) return x;  // inf / nan unchanged
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  float y;
  std::memcpy(&y, &u, 4);
  return y;
}

std::vector<float> bf16_round(const std::vector<float>& x) {
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = bf16_round(x[i]);
  return y;
}

namespace {
template <typename T>
T rnd(T x, bool on) {
  return on ? T(bf16_round(float(x))) : x;
}
}  // namespace

template <typename T>
void attention_fwd_ref(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                       const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k, const AttnShape& s,
                       const AttnRounding& r, bool round_o, std::vector<float>& o, std::vector<float>& lse) {
  const int nH = s.n_heads, nKV = s.n_kv_heads, D = s.head_dim, G = nH / nKV;
  const int64_t Tq = cu_q.back();
  o.assign(size_t(Tq) * nH * D, 0.f);
  lse.assign(size_t(Tq) * nH, 0.f);
  std::vector<T> sc, acc(D);
  for (size_t seq = 0; seq + 1 < cu_q.size(); ++seq) {
    const int qb = cu_q[seq], Lq = cu_q[seq + 1] - qb, kb = cu_k[seq], Lk = cu_k[seq + 1] - kb, off = Lk - Lq;
    for (int h = 0; h < nH; ++h) {
      const int kvh = h / G;
      for (int i = 0; i < Lq; ++i) {
        const int n = std::min(Lk, i + off + 1);
        sc.assign(std::max(n, 0), T(0));
        T m = -std::numeric_limits<T>::infinity();
        for (int j = 0; j < n; ++j) {
          T d = 0;
          for (int c = 0; c < D; ++c)
            d += T(q[(size_t(qb + i) * nH + h) * D + c]) * T(k[(size_t(kb + j) * nKV + kvh) * D + c]);
          sc[j] = d * T(s.scale);
          m = std::max(m, sc[j]);
        }
        T l = 0;
        std::fill(acc.begin(), acc.end(), T(0));
        for (int j = 0; j < n; ++j) {
          const T p = std::exp(sc[j] - m);
          l += p;
          const T pr = rnd(p, r.p_bf16);
          for (int c = 0; c < D; ++c) acc[c] += pr * T(v[(size_t(kb + j) * nKV + kvh) * D + c]);
        }
        for (int c = 0; c < D; ++c) {
          const float val = n > 0 ? float(acc[c] / l) : 0.f;
          o[(size_t(qb + i) * nH + h) * D + c] = round_o ? bf16_round(val) : val;
        }
        lse[size_t(qb + i) * nH + h] = n > 0 ? float(m + std::log(l)) : 0.f;
      }
    }
  }
}

template <typename T>
void attention_bwd_ref(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                       const std::vector<float>& o, const std::vector<float>& dout, const std::vector<float>& lse,
                       const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k, const AttnShape& s,
                       const AttnRounding& r, std::vector<float>& dq, std::vector<float>& dk, std::vector<float>& dv) {
  const int nH = s.n_heads, nKV = s.n_kv_heads, D = s.head_dim, G = nH / nKV;
  const int64_t Tq = cu_q.back(), Tk = cu_k.back();
  std::vector<T> dq_t(size_t(Tq) * nH * D, T(0)), dk_t(size_t(Tk) * nKV * D, T(0)), dv_t(size_t(Tk) * nKV * D, T(0));
  for (size_t seq = 0; seq + 1 < cu_q.size(); ++seq) {
    const int qb = cu_q[seq], Lq = cu_q[seq + 1] - qb, kb = cu_k[seq], Lk = cu_k[seq + 1] - kb, off = Lk - Lq;
    for (int h = 0; h < nH; ++h) {
      const int kvh = h / G;
      for (int i = 0; i < Lq; ++i) {
        const size_t qi = (size_t(qb + i) * nH + h) * D;
        T delta = 0;
        for (int c = 0; c < D; ++c) delta += T(dout[qi + c]) * T(o[qi + c]);
        const int n = std::min(Lk, i + off + 1);
        for (int j = 0; j < n; ++j) {
          const size_t kj = (size_t(kb + j) * nKV + kvh) * D;
          T sc = 0, dp = 0;
          for (int c = 0; c < D; ++c) {
            sc += T(q[qi + c]) * T(k[kj + c]);
            dp += T(dout[qi + c]) * T(v[kj + c]);
          }
          const T p = std::exp(sc * T(s.scale) - T(lse[size_t(qb + i) * nH + h]));
          const T ds = p * (dp - delta);
          const T pr = rnd(p, r.ds_bf16), dsr = rnd(ds, r.ds_bf16);
          for (int c = 0; c < D; ++c) {
            dv_t[kj + c] += pr * T(dout[qi + c]);
            dk_t[kj + c] += dsr * T(q[qi + c]);
            dq_t[qi + c] += dsr * T(k[kj + c]);
          }
        }
      }
    }
  }
  dq.resize(dq_t.size());
  dk.resize(dk_t.size());
  dv.resize(dv_t.size());
  for (size_t i = 0; i < dq_t.size(); ++i) dq[i] = float(dq_t[i] * T(s.scale));
  for (size_t i = 0; i < dk_t.size(); ++i) dk[i] = float(dk_t[i] * T(s.scale));
  for (size_t i = 0; i < dv_t.size(); ++i) dv[i] = float(dv_t[i]);
}

template void attention_fwd_ref<float>(const std::vector<float>&, const std::vector<float>&,
                                       const std::vector<float>&, const std::vector<int32_t>&,
                                       const std::vector<int32_t>&, const AttnShape&, const AttnRounding&, bool,
                                       std::vector<float>&, std::vector<float>&);
template void attention_fwd_ref<double>(const std::vector<float>&, const std::vector<float>&,
                                        const std::vector<float>&, const std::vector<int32_t>&,
                                        const std::vector<int32_t>&, const AttnShape&, const AttnRounding&, bool,
                                        std::vector<float>&, std::vector<float>&);
template void attention_bwd_ref<float>(const std::vector<float>&, const std::vector<float>&,
                                       const std::vector<float>&, const std::vector<float>&,
                                       const std::vector<float>&, const std::vector<float>&,
                                       const std::vector<int32_t>&, const std::vector<int32_t>&, const AttnShape&,
                                       const AttnRounding&, std::vector<float>&, std::vector<float>&,
                                       std::vector<float>&);
template void attention_bwd_ref<double>(const std::vector<float>&, const std::vector<float>&,
                                        const std::vector<float>&, const std::vector<float>&,
                                        const std::vector<float>&, const std::vector<float>&,
                                        const std::vector<int32_t>&, const std::vector<int32_t>&, const AttnShape&,
                                        const AttnRounding&, std::vector<float>&, std::vector<float>&,
                                        std::vector<float>&);

void rmsnorm_fwd_ref(const std::vector<float>& x, const std::vector<float>& w, int64_t T, int C, float eps,
                     std::vector<float>& y, std::vector<float>& rstd) {
  y.resize(size_t(T) * C);
  rstd.resize(size_t(T));
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (int c = 0; c < C; ++c) ss += double(x[t * C + c]) * x[t * C + c];
    const float r = float(1.0 / std::sqrt(ss / C + eps));
    rstd[t] = r;
    for (int c = 0; c < C; ++c) y[t * C + c] = bf16_round(w[c] * (x[t * C + c] * r));
  }
}

void swiglu_fwd_ref(const std::vector<float>& gu, const std::vector<float>* bias, int64_t T, int I,
                    std::vector<float>& act) {
  act.resize(size_t(T) * I);
  for (int64_t t = 0; t < T; ++t)
    for (int i = 0; i < I; ++i) {
      float g = gu[t * 2 * I + i], u = gu[t * 2 * I + I + i];
      if (bias != nullptr) {
        g += (*bias)[i];
        u += (*bias)[I + i];
      }
      const float s = 1.f / (1.f + std::exp(-g));
      act[t * I + i] = bf16_round(g * s * u);
    }
}

void residual_fwd_ref(const std::vector<float>& a, const std::vector<float>* bias, const std::vector<float>& h,
                      float coef_a, float coef_h, int64_t T, int C, std::vector<float>& out) {
  out.resize(size_t(T) * C);
  for (int64_t t = 0; t < T; ++t)
    for (int c = 0; c < C; ++c) {
      const float av = a[t * C + c] + (bias != nullptr ? (*bias)[c] : 0.f);
      out[t * C + c] = coef_a * av + coef_h * h[t * C + c];
    }
}

void embedding_fwd_ref(const std::vector<int32_t>& tokens, const std::vector<float>& table, int C, float scale,
                       std::vector<float>& out) {
  out.resize(tokens.size() * size_t(C));
  for (size_t t = 0; t < tokens.size(); ++t)
    for (int c = 0; c < C; ++c) out[t * C + c] = scale * table[size_t(tokens[t]) * C + c];
}

void argmax_fwd_ref(const std::vector<float>& x, int64_t R, int V, std::vector<int32_t>& out) {
  out.resize(size_t(R));
  for (int64_t r = 0; r < R; ++r) {
    int best = 0;
    for (int j = 1; j < V; ++j)
      if (x[r * V + j] > x[r * V + best]) best = j;
    out[r] = best;
  }
}

void cosine_fwd_ref(const std::vector<float>& a, const std::vector<float>& b, int64_t T, int C,
                    std::vector<float>& out) {
  out.resize(size_t(T));
  for (int64_t t = 0; t < T; ++t) {
    double ab = 0, aa = 0, bb = 0;
    for (int c = 0; c < C; ++c) {
      ab += double(a[t * C + c]) * b[t * C + c];
      aa += double(a[t * C + c]) * a[t * C + c];
      bb += double(b[t * C + c]) * b[t * C + c];
    }
    out[t] = (aa > 0 && bb > 0) ? float(ab / std::sqrt(aa * bb)) : 0.f;
  }
}

void cast_fwd_ref(const std::vector<float>& in, std::vector<float>& out) { out = bf16_round(in); }

void fill_random_fwd_ref(int64_t n, uint32_t seed, std::vector<float>& out) {
  out.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_round(random_weight_value(static_cast<uint32_t>(i), seed));
}

}  // namespace hs::cuda::twin
