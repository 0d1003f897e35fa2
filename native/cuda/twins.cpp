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

void rmsnorm_bwd_ref(const std::vector<float>& dy, const std::vector<float>& x, const std::vector<float>& w,
                     const std::vector<float>& rstd, const std::vector<float>* dres, float res_scale, int64_t T, int C,
                     std::vector<float>& dx) {
  dx.resize(size_t(T) * C);
  for (int64_t t = 0; t < T; ++t) {
    const double r = rstd[t];
    double dot = 0;
    for (int c = 0; c < C; ++c) dot += double(w[c]) * dy[t * C + c] * x[t * C + c];
    const double k = dot * r * r * r / C;
    for (int c = 0; c < C; ++c)
      dx[t * C + c] = float(r * w[c] * dy[t * C + c] - x[t * C + c] * k +
                            (dres != nullptr ? double(res_scale) * (*dres)[t * C + c] : 0.0));
  }
}

void swiglu_bwd_ref(const std::vector<float>& dact, const std::vector<float>& gu, const std::vector<float>* bias,
                    int64_t T, int I, std::vector<float>& dgu) {
  dgu.resize(size_t(T) * 2 * I);
  for (int64_t t = 0; t < T; ++t)
    for (int i = 0; i < I; ++i) {
      float g = gu[t * 2 * I + i], u = gu[t * 2 * I + I + i];
      if (bias != nullptr) {
        g += (*bias)[i];
        u += (*bias)[I + i];
      }
      const float s = 1.f / (1.f + std::exp(-g)), d = dact[t * I + i];
      dgu[t * 2 * I + i] = bf16_round(d * u * s * (1.f + g * (1.f - s)));
      dgu[t * 2 * I + I + i] = bf16_round(d * g * s);
    }
}

void residual_bwd_ref(const std::vector<float>& g, const std::vector<float>& a, const std::vector<float>& h,
                      float coef_a, float coef_h, float a_scale, std::vector<float>& ga, std::vector<float>& gh,
                      double& grad_b, double& grad_s) {
  ga.resize(g.size());
  gh.resize(g.size());
  grad_b = grad_s = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    ga[i] = bf16_round(coef_a * g[i]);
    gh[i] = coef_h * g[i];
    grad_b += double(g[i]) * a[i];
    grad_s += double(g[i]) * h[i];
  }
  grad_b *= a_scale;
}

namespace {
// q/k head x (D values) after bias and the optional norm, as rope_fwd_kernel computes it.
void rope_prepare(const float* raw, const float* b, const float* nw, int D, float eps, float* x, double* r_out) {
  double ss = 0;
  for (int d = 0; d < D; ++d) {
    x[d] = raw[d] + (b ? b[d] : 0.f);
    ss += double(x[d]) * x[d];
  }
  const double r = 1.0 / std::sqrt(ss / D + eps);
  if (r_out) *r_out = r;
  if (nw != nullptr)
    for (int d = 0; d < D; ++d) x[d] = float(nw[d] * (x[d] * r));
}
}  // namespace

void rope_fwd_ref(const std::vector<float>& qkv, const std::vector<float>* bias, const std::vector<float>* q_norm,
                  const std::vector<float>* k_norm, const std::vector<int32_t>& pos, const std::vector<float>& inv_freq,
                  const RopeShape& s, std::vector<float>& q, std::vector<float>& k, std::vector<float>& v) {
  const int D = s.head_dim, h = D / 2, nT = s.n_heads + 2 * s.n_kv_heads;
  const int64_t T = static_cast<int64_t>(pos.size());
  q.resize(size_t(T) * s.n_heads * D);
  k.resize(size_t(T) * s.n_kv_heads * D);
  v.resize(size_t(T) * s.n_kv_heads * D);
  std::vector<float> x(D);
  for (int64_t t = 0; t < T; ++t)
    for (int hh = 0; hh < nT; ++hh) {
      const float* raw = qkv.data() + (size_t(t) * nT + hh) * D;
      const float* b = bias ? bias->data() + size_t(hh) * D : nullptr;
      if (hh >= s.n_heads + s.n_kv_heads) {
        float* dst = v.data() + (size_t(t) * s.n_kv_heads + (hh - s.n_heads - s.n_kv_heads)) * D;
        for (int d = 0; d < D; ++d) dst[d] = bf16_round(raw[d] + (b ? b[d] : 0.f));
        continue;
      }
      const bool is_q = hh < s.n_heads;
      const std::vector<float>* nw = is_q ? q_norm : k_norm;
      rope_prepare(raw, b, nw ? nw->data() : nullptr, D, s.eps, x.data(), nullptr);
      float* dst = is_q ? q.data() + (size_t(t) * s.n_heads + hh) * D
                        : k.data() + (size_t(t) * s.n_kv_heads + (hh - s.n_heads)) * D;
      for (int i = 0; i < h; ++i) {
        const double a = double(float(pos[t]) * inv_freq[i]), c = std::cos(a), sn = std::sin(a);
        dst[i] = bf16_round(float(x[i] * c - x[i + h] * sn));
        dst[i + h] = bf16_round(float(x[i + h] * c + x[i] * sn));
      }
    }
}

void rope_bwd_ref(const std::vector<float>& dq, const std::vector<float>& dk, const std::vector<float>& dv,
                  const std::vector<float>& qkv, const std::vector<float>* bias, const std::vector<float>* q_norm,
                  const std::vector<float>* k_norm, const std::vector<int32_t>& pos,
                  const std::vector<float>& inv_freq, const RopeShape& s, std::vector<float>& dqkv) {
  const int D = s.head_dim, h = D / 2, nT = s.n_heads + 2 * s.n_kv_heads;
  const int64_t T = static_cast<int64_t>(pos.size());
  dqkv.resize(size_t(T) * nT * D);
  std::vector<float> x(D);
  std::vector<double> g(D);
  for (int64_t t = 0; t < T; ++t)
    for (int hh = 0; hh < nT; ++hh) {
      float* dst = dqkv.data() + (size_t(t) * nT + hh) * D;
      if (hh >= s.n_heads + s.n_kv_heads) {
        const float* src = dv.data() + (size_t(t) * s.n_kv_heads + (hh - s.n_heads - s.n_kv_heads)) * D;
        for (int d = 0; d < D; ++d) dst[d] = bf16_round(src[d]);
        continue;
      }
      const bool is_q = hh < s.n_heads;
      const float* dy = is_q ? dq.data() + (size_t(t) * s.n_heads + hh) * D
                             : dk.data() + (size_t(t) * s.n_kv_heads + (hh - s.n_heads)) * D;
      for (int i = 0; i < h; ++i) {
        const double a = double(float(pos[t]) * inv_freq[i]), c = std::cos(a), sn = std::sin(a);
        g[i] = dy[i] * c + dy[i + h] * sn;
        g[i + h] = dy[i + h] * c - dy[i] * sn;
      }
      const std::vector<float>* nw = is_q ? q_norm : k_norm;
      if (nw != nullptr) {
        const float* raw = qkv.data() + (size_t(t) * nT + hh) * D;
        const float* b = bias ? bias->data() + size_t(hh) * D : nullptr;
        double r = 0;
        rope_prepare(raw, b, nullptr, D, s.eps, x.data(), &r);  // x before the norm
        double dot = 0;
        for (int d = 0; d < D; ++d) dot += (*nw)[d] * g[d] * x[d];
        const double kx = dot * r * r * r / D;
        for (int d = 0; d < D; ++d) g[d] = r * (*nw)[d] * g[d] - x[d] * kx;
      }
      for (int d = 0; d < D; ++d) dst[d] = bf16_round(float(g[d]));
    }
}

void cross_entropy_fwd_ref(const std::vector<float>& logits, const std::vector<int32_t>& targets,
                           const std::vector<float>& weights, int64_t R, int V, float grad_scale,
                           std::vector<float>& nll, std::vector<float>& dlogits) {
  nll.resize(size_t(R));
  dlogits.resize(size_t(R) * V);
  for (int64_t r = 0; r < R; ++r) {
    const float* z = logits.data() + size_t(r) * V;
    double m = z[0];
    for (int j = 1; j < V; ++j) m = std::max(m, double(z[j]));
    double sum = 0;
    for (int j = 0; j < V; ++j) sum += std::exp(double(z[j]) - m);
    const double lse = m + std::log(sum);
    nll[r] = float(lse - z[targets[r]]);
    for (int j = 0; j < V; ++j)
      dlogits[size_t(r) * V + j] =
          bf16_round(float(weights[r] * grad_scale * (std::exp(double(z[j]) - lse) - (j == targets[r] ? 1.0 : 0.0))));
  }
}

void gather_rows_fwd_ref(const std::vector<float>& src, const std::vector<int32_t>& rows, int H,
                         std::vector<float>& dst) {
  dst.resize(rows.size() * size_t(H));
  for (size_t i = 0; i < rows.size(); ++i)
    std::copy_n(src.data() + size_t(rows[i]) * H, H, dst.data() + i * H);
}

void scatter_rows_bwd_ref(const std::vector<float>& src, const std::vector<int32_t>& rows, int H,
                          std::vector<float>& dst) {
  for (size_t i = 0; i < rows.size(); ++i)
    std::copy_n(src.data() + i * H, H, dst.data() + size_t(rows[i]) * H);
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
