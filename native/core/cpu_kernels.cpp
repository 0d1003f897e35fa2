// fp32 CPU kernels of the decoder block and the loss (see cpu_kernels.h for the
// layouts and the determinism guarantee). Inner loops run over contiguous floats
// so the compiler can vectorise them; work is split with ThreadPool::parallel_for
// over independent outputs only.
#include "cpu_kernels.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include <cstdlib>
#include <cstring>

#include "cpu_kernels_internal.h"
#include "gemm.h"
#include "gemm_internal.h"
#include "threadpool.h"

// The decode-time attention row loop is also compiled for AVX2/FMA and picked at
// load time (GCC/Clang function multi-versioning) where the platform supports it;
// the blocked prefill/training attention picks its tile primitives at run time
// (cpu_kernels_internal.h).
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__SANITIZE_ADDRESS__)
#define HS_VECTOR_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define HS_VECTOR_CLONES
#endif

namespace hs::cpu {

namespace {

void parallel(ThreadPool* pool, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (pool)
    pool->parallel_for(n, grain, fn);
  else
    fn(0, n);
}

// Dot products with independent lane accumulators (combined in a fixed order), so
// the compiler vectorises them without reassociating a serial sum.
inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  float tail = 0.f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))) + tail;
}

inline double dot_d(const float* a, const float* b, int64_t n) {
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) acc[k] += static_cast<double>(a[i + k]) * static_cast<double>(b[i + k]);
  double tail = 0.0;
  for (; i < n; ++i) tail += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return ((acc[0] + acc[2]) + (acc[1] + acc[3])) + tail;
}

// Rows of roughly `target` elements per parallel range.
inline int64_t row_grain(int64_t dim, int64_t target = 16384) { return std::max<int64_t>(1, target / std::max<int64_t>(1, dim)); }

}  // namespace

namespace detail {

namespace {

void matmul_scalar(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                   float* C, int64_t ldc, bool accumulate) {
  for (int64_t m = 0; m < M; ++m) {
    float* c = C + m * ldc;
    if (!accumulate) std::fill_n(c, N, 0.f);
    for (int64_t k = 0; k < K; ++k) {
      const float a = A[m * lda + k];
      const float* b = B + k * ldb;
      for (int64_t n = 0; n < N; ++n) c[n] += a * b[n];
    }
  }
}

void exp_inplace_scalar(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::exp(x[i]);
}

}  // namespace

const AttentionKernels& scalar_attention_kernels() {
  static const AttentionKernels k{"scalar", matmul_scalar, exp_inplace_scalar};
  return k;
}

const AttentionKernels& active_attention_kernels() {
  static const AttentionKernels& k = []() -> const AttentionKernels& {
    const char* forced = std::getenv("HOPSCOTCH_CPU_KERNEL");
    const bool scalar = forced && std::strcmp(forced, "scalar") == 0;
    return (!scalar && gemm_detail::cpu_has_avx2_fma()) ? avx2_attention_kernels() : scalar_attention_kernels();
  }();
  return k;
}

// Softmax-weighted sum of value rows for one query head. Keys/values are rows
// kb[j * stride .. + D), j < n. Returns the row's logsumexp of the scaled scores.
HS_VECTOR_CLONES float attend_row(const float* qh, const float* kb, const float* vb, int64_t stride, int64_t n, int D, float scale,
                 float* out, float* scores) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    const float s = dot(qh, kb + j * stride, D) * scale;
    scores[j] = s;
    mx = std::max(mx, s);
  }
  float sum = 0.f;
  for (int64_t j = 0; j < n; ++j) {
    const float e = std::exp(scores[j] - mx);
    scores[j] = e;
    sum += e;
  }
  for (int d = 0; d < D; ++d) out[d] = 0.f;
  for (int64_t j = 0; j < n; ++j) {
    const float p = scores[j];
    const float* vj = vb + j * stride;
    for (int d = 0; d < D; ++d) out[d] += p * vj[d];
  }
  const float inv = 1.f / sum;
  for (int d = 0; d < D; ++d) out[d] *= inv;
  return mx + std::log(sum);
}

}  // namespace detail

// ---------------------------------------------------------------- RMSNorm

void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t dim, float eps,
                 ThreadPool* pool) {
  parallel(pool, rows, row_grain(dim), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      const double ms = dot_d(xr, xr, dim) / static_cast<double>(dim);
      const float rs = static_cast<float>(1.0 / std::sqrt(static_cast<double>(static_cast<float>(ms) + eps)));
      if (rstd) rstd[r] = rs;
      if (w)
        for (int64_t i = 0; i < dim; ++i) yr[i] = w[i] * (xr[i] * rs);
      else
        for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * rs;
    }
  });
}

void rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd, float* dx, int64_t rows,
                 int64_t dim, bool accumulate, ThreadPool* pool) {
  parallel(pool, rows, row_grain(dim), [&](int64_t r0, int64_t r1) {
    std::vector<float> wdy(static_cast<size_t>(dim));
    for (int64_t r = r0; r < r1; ++r) {
      const float* dyr = dy + r * dim;
      const float* xr = x + r * dim;
      float* dxr = dx + r * dim;
      if (w)
        for (int64_t i = 0; i < dim; ++i) wdy[i] = w[i] * dyr[i];
      else
        for (int64_t i = 0; i < dim; ++i) wdy[i] = dyr[i];
      const float rs = rstd[r];
      // y = x r with r = (mean x^2 + eps)^-1/2: dx = r wdy - x r^3 <wdy, x> / dim.
      const float c = static_cast<float>(dot_d(wdy.data(), xr, dim) * rs * rs * rs / static_cast<double>(dim));
      if (accumulate)
        for (int64_t i = 0; i < dim; ++i) dxr[i] += rs * wdy[i] - c * xr[i];
      else
        for (int64_t i = 0; i < dim; ++i) dxr[i] = rs * wdy[i] - c * xr[i];
    }
  });
}

// ---------------------------------------------------------------- RoPE

std::vector<float> rope_inv_freq(const RopeConfig& rope, int head_dim) {
  const int half = head_dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i) {
    // transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)) in fp32.
    const float e = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float p = static_cast<float>(std::pow(rope.theta, static_cast<double>(e)));
    inv[i] = 1.0f / p;
  }
  if (rope.type == RopeType::Linear) {
    for (auto& f : inv) f = static_cast<float>(f / rope.factor);
  } else if (rope.type == RopeType::Llama3) {
    const double factor = rope.factor, low = rope.low_freq_factor, high = rope.high_freq_factor;
    const double old_len = static_cast<double>(rope.original_max_position);
    const double low_wavelen = old_len / low, high_wavelen = old_len / high;
    const double pi = 3.14159265358979323846;
    for (auto& f : inv) {
      const double base = f;
      const double wavelen = 2.0 * pi / base;
      double out = wavelen > low_wavelen ? base / factor : base;
      const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
      if (medium) {
        const double smooth = (old_len / wavelen - low) / (high - low);
        out = (1.0 - smooth) * out / factor + smooth * out;
      }
      f = static_cast<float>(out);
    }
  }
  return inv;
}

void rope_tables(const std::vector<float>& inv_freq, const int32_t* positions, int64_t T, float* cos_t,
                 float* sin_t, ThreadPool* pool) {
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  parallel(pool, T, row_grain(half, 4096), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float pos = static_cast<float>(positions[t]);
      for (int64_t i = 0; i < half; ++i) {
        const float ang = pos * inv_freq[i];
        cos_t[t * half + i] = static_cast<float>(std::cos(static_cast<double>(ang)));
        sin_t[t * half + i] = static_cast<float>(std::sin(static_cast<double>(ang)));
      }
    }
  });
}

void rope_fwd(float* x, int64_t T, int heads, int head_dim, const float* cos_t, const float* sin_t,
              ThreadPool* pool) {
  const int half = head_dim / 2;
  const int64_t width = static_cast<int64_t>(heads) * head_dim;
  parallel(pool, T, row_grain(width), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* c = cos_t + t * half;
      const float* s = sin_t + t * half;
      for (int h = 0; h < heads; ++h) {
        float* x1 = x + t * width + static_cast<int64_t>(h) * head_dim;
        float* x2 = x1 + half;
        for (int i = 0; i < half; ++i) {
          const float a = x1[i], b = x2[i];
          x1[i] = a * c[i] - b * s[i];
          x2[i] = b * c[i] + a * s[i];
        }
      }
    }
  });
}

void rope_bwd(float* dx, int64_t T, int heads, int head_dim, const float* cos_t, const float* sin_t,
              ThreadPool* pool) {
  const int half = head_dim / 2;
  const int64_t width = static_cast<int64_t>(heads) * head_dim;
  parallel(pool, T, row_grain(width), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* c = cos_t + t * half;
      const float* s = sin_t + t * half;
      for (int h = 0; h < heads; ++h) {
        float* d1 = dx + t * width + static_cast<int64_t>(h) * head_dim;
        float* d2 = d1 + half;
        for (int i = 0; i < half; ++i) {
          const float a = d1[i], b = d2[i];
          d1[i] = a * c[i] + b * s[i];
          d2[i] = b * c[i] - a * s[i];
        }
      }
    }
  });
}

// ---------------------------------------------------------------- attention

// Blocked ("flash-style") causal attention. Work items are (sample, kv head) or
// (sample, kv head, query block); inside an item, a tile packs `kTileRows` query
// rows of the group's heads (row m = token * group + head-in-group, as the heads of
// a group share their keys) against blocks of kKeyBlock keys. Tiles are placed
// relative to each sample's start, so every output is computed by the same
// sequence of operations whatever the packing of the batch or the thread count.
namespace {

constexpr int64_t kKeyBlock = 64;
constexpr int64_t kTileRows = 64;

struct AttentionGeometry {
  int D, nH, nKV, group;
  int64_t qs, ks, block_tokens;  // row strides of q/o and k/v; query tokens per tile
  explicit AttentionGeometry(const AttentionShape& sh)
      : D(sh.head_dim),
        nH(sh.heads),
        nKV(sh.kv_heads),
        group(sh.heads / sh.kv_heads),
        qs(static_cast<int64_t>(sh.heads) * sh.head_dim),
        ks(static_cast<int64_t>(sh.kv_heads) * sh.head_dim),
        block_tokens(std::max<int64_t>(1, kTileRows / (sh.heads / sh.kv_heads))) {}
  // Offset of (token t, head-in-group hh of kv head g) in q/o/dq.
  int64_t q_offset(int64_t t, int g, int hh) const { return t * qs + static_cast<int64_t>(g * group + hh) * D; }
};

// Copies rows of `tokens` query tokens x group heads (token-major) into a dense (rows, D) tile.
void pack_group_rows(const float* src, const AttentionGeometry& ge, int64_t t0, int64_t tokens, int g, float* dst) {
  for (int64_t i = 0; i < tokens; ++i)
    for (int hh = 0; hh < ge.group; ++hh)
      std::copy_n(src + ge.q_offset(t0 + i, g, hh), ge.D, dst + (i * ge.group + hh) * ge.D);
}

// dst (D, n) = transpose of n key/value rows of kv head g starting at token t0.
void pack_transposed(const float* src, const AttentionGeometry& ge, int64_t t0, int64_t n, int g, float* dst) {
  for (int64_t j = 0; j < n; ++j) {
    const float* row = src + (t0 + j) * ge.ks + static_cast<int64_t>(g) * ge.D;
    for (int d = 0; d < ge.D; ++d) dst[d * n + j] = row[d];
  }
}

void transpose(const float* src, int64_t rows, int64_t cols, float* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
}

// Keys of block [j0, j0 + nk) visible to query token i (causal): the first `valid`.
inline int64_t visible_keys(int64_t i, int64_t j0, int64_t nk) { return std::clamp<int64_t>(i - j0 + 1, 0, nk); }

}  // namespace

void attention_fwd(const float* q, const float* k, const float* v, float* o, float* lse, const int32_t* cu_seqlens,
                   int nseq, const AttentionShape& sh, ThreadPool* pool) {
  const detail::AttentionKernels& kern = detail::active_attention_kernels();
  const AttentionGeometry ge(sh);
  const int D = ge.D;
  const float scale = sh.scale;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  struct Task {
    int s, g;
    int64_t i0;
  };
  std::vector<Task> tasks;
  for (int s = 0; s < nseq; ++s)
    for (int g = 0; g < ge.nKV; ++g)
      for (int64_t i0 = 0; i0 < cu_seqlens[s + 1] - cu_seqlens[s]; i0 += ge.block_tokens) tasks.push_back({s, g, i0});
  const int64_t max_rows = ge.block_tokens * ge.group;
  parallel(pool, static_cast<int64_t>(tasks.size()), 1, [&](int64_t r0, int64_t r1) {
    std::vector<float> qp(max_rows * D), kt(D * kKeyBlock), sc(max_rows * kKeyBlock), acc(max_rows * D);
    std::vector<float> row_max(max_rows), row_sum(max_rows);
    for (int64_t ti = r0; ti < r1; ++ti) {
      const Task& task = tasks[ti];
      const int64_t st = cu_seqlens[task.s], len = cu_seqlens[task.s + 1] - st;
      const int64_t i0 = task.i0, i1 = std::min(i0 + ge.block_tokens, len);
      const int64_t M = (i1 - i0) * ge.group;
      pack_group_rows(q, ge, st + i0, i1 - i0, task.g, qp.data());
      std::fill_n(row_max.data(), M, neg_inf);
      std::fill_n(row_sum.data(), M, 0.f);
      std::fill_n(acc.data(), M * D, 0.f);
      for (int64_t j0 = 0; j0 < i1; j0 += kKeyBlock) {
        const int64_t nk = std::min(kKeyBlock, i1 - j0);
        pack_transposed(k, ge, st + j0, nk, task.g, kt.data());
        kern.matmul(M, nk, D, qp.data(), D, kt.data(), nk, sc.data(), nk, false);
        // Online softmax: rescale what was accumulated when a row's running max grows.
        for (int64_t m = 0; m < M; ++m) {
          float* row = sc.data() + m * nk;
          const int64_t valid = visible_keys(i0 + m / ge.group, j0, nk);
          float mx = row_max[m];
          for (int64_t j = 0; j < valid; ++j) {
            row[j] *= scale;
            mx = std::max(mx, row[j]);
          }
          for (int64_t j = 0; j < valid; ++j) row[j] -= mx;
          for (int64_t j = valid; j < nk; ++j) row[j] = neg_inf;
          if (valid > 0 && mx != row_max[m]) {
            const float alpha = row_max[m] == neg_inf ? 0.f : std::exp(row_max[m] - mx);
            row_sum[m] *= alpha;
            float* am = acc.data() + m * D;
            for (int d = 0; d < D; ++d) am[d] *= alpha;
            row_max[m] = mx;
          }
        }
        kern.exp_inplace(sc.data(), M * nk);
        for (int64_t m = 0; m < M; ++m) {
          const float* row = sc.data() + m * nk;
          float sum = 0.f;
          for (int64_t j = 0; j < nk; ++j) sum += row[j];
          row_sum[m] += sum;
        }
        kern.matmul(M, D, nk, sc.data(), nk, v + (st + j0) * ge.ks + static_cast<int64_t>(task.g) * D, ge.ks,
                    acc.data(), D, true);
      }
      for (int64_t m = 0; m < M; ++m) {
        const int64_t t = st + i0 + m / ge.group;
        const int hh = static_cast<int>(m % ge.group);
        const float inv = 1.f / row_sum[m];
        float* out = o + ge.q_offset(t, task.g, hh);
        for (int d = 0; d < D; ++d) out[d] = acc[m * D + d] * inv;
        lse[t * ge.nH + task.g * ge.group + hh] = row_max[m] + std::log(row_sum[m]);
      }
    }
  });
}

void attention_bwd(const float* q, const float* k, const float* v, const float* o, const float* lse,
                   const float* d_o, float* dq, float* dk, float* dv, const int32_t* cu_seqlens, int nseq,
                   const AttentionShape& sh, ThreadPool* pool) {
  const detail::AttentionKernels& kern = detail::active_attention_kernels();
  const AttentionGeometry ge(sh);
  const int D = ge.D, group = ge.group;
  const float scale = sh.scale;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  int64_t max_len = 0;
  for (int s = 0; s < nseq; ++s) max_len = std::max<int64_t>(max_len, cu_seqlens[s + 1] - cu_seqlens[s]);
  const int64_t max_rows = ge.block_tokens * group;
  // One item per (sample, kv head): it owns dK/dV of its keys and dQ of its group's heads.
  parallel(pool, static_cast<int64_t>(nseq) * ge.nKV, 1, [&](int64_t r0, int64_t r1) {
    const size_t all_rows = static_cast<size_t>(max_len * group);
    std::vector<float> qp(all_rows * D), dop(all_rows * D), dqa(all_rows * D), row_lse(all_rows), row_delta(all_rows);
    std::vector<float> kt(D * kKeyBlock), vt(D * kKeyBlock), dka(kKeyBlock * D), dva(kKeyBlock * D);
    std::vector<float> p(max_rows * kKeyBlock), ds(max_rows * kKeyBlock), tr(max_rows * kKeyBlock);
    for (int64_t item = r0; item < r1; ++item) {
      const int s = static_cast<int>(item / ge.nKV), g = static_cast<int>(item % ge.nKV);
      const int64_t st = cu_seqlens[s], len = cu_seqlens[s + 1] - st, R = len * group;
      pack_group_rows(q, ge, st, len, g, qp.data());
      pack_group_rows(d_o, ge, st, len, g, dop.data());
      for (int64_t m = 0; m < R; ++m) {
        const int64_t t = st + m / group;
        const int hh = static_cast<int>(m % group);
        row_lse[m] = lse[t * ge.nH + g * group + hh];
        row_delta[m] = dot(dop.data() + m * D, o + ge.q_offset(t, g, hh), D);
      }
      std::fill_n(dqa.data(), R * D, 0.f);
      for (int64_t j0 = 0; j0 < len; j0 += kKeyBlock) {
        const int64_t nk = std::min(kKeyBlock, len - j0);
        const float* kb = k + (st + j0) * ge.ks + static_cast<int64_t>(g) * D;
        pack_transposed(k, ge, st + j0, nk, g, kt.data());
        pack_transposed(v, ge, st + j0, nk, g, vt.data());
        std::fill_n(dka.data(), nk * D, 0.f);
        std::fill_n(dva.data(), nk * D, 0.f);
        for (int64_t i0 = (j0 / ge.block_tokens) * ge.block_tokens; i0 < len; i0 += ge.block_tokens) {
          const int64_t i1 = std::min(i0 + ge.block_tokens, len), M = (i1 - i0) * group, mb = i0 * group;
          // P = exp(S * scale - lse) recomputed; dS = P * (dO V^T - delta).
          kern.matmul(M, nk, D, qp.data() + mb * D, D, kt.data(), nk, p.data(), nk, false);
          kern.matmul(M, nk, D, dop.data() + mb * D, D, vt.data(), nk, ds.data(), nk, false);
          for (int64_t m = 0; m < M; ++m) {
            float* row = p.data() + m * nk;
            const int64_t valid = visible_keys(i0 + m / group, j0, nk);
            const float l = row_lse[mb + m];
            for (int64_t j = 0; j < valid; ++j) row[j] = row[j] * scale - l;
            for (int64_t j = valid; j < nk; ++j) row[j] = neg_inf;
          }
          kern.exp_inplace(p.data(), M * nk);
          for (int64_t m = 0; m < M; ++m) {
            const float* prow = p.data() + m * nk;
            float* drow = ds.data() + m * nk;
            const float delta = row_delta[mb + m];
            for (int64_t j = 0; j < nk; ++j) drow[j] = prow[j] * (drow[j] - delta);
          }
          transpose(p.data(), M, nk, tr.data());
          kern.matmul(nk, D, M, tr.data(), M, dop.data() + mb * D, D, dva.data(), D, true);
          transpose(ds.data(), M, nk, tr.data());
          kern.matmul(nk, D, M, tr.data(), M, qp.data() + mb * D, D, dka.data(), D, true);
          kern.matmul(M, D, nk, ds.data(), nk, kb, ge.ks, dqa.data() + mb * D, D, true);
        }
        for (int64_t j = 0; j < nk; ++j) {
          const int64_t off = (st + j0 + j) * ge.ks + static_cast<int64_t>(g) * D;
          for (int d = 0; d < D; ++d) {
            dk[off + d] = dka[j * D + d] * scale;
            dv[off + d] = dva[j * D + d];
          }
        }
      }
      for (int64_t m = 0; m < R; ++m) {
        float* out = dq + ge.q_offset(st + m / group, g, static_cast<int>(m % group));
        for (int d = 0; d < D; ++d) out[d] = dqa[m * D + d] * scale;
      }
    }
  });
}

void attention_cached(const float* q, const float* const* k_cache, const float* const* v_cache,
                      const int64_t* n_keys, float* o, int64_t rows, const AttentionShape& sh, ThreadPool* pool) {
  const int D = sh.head_dim, nH = sh.heads, group = sh.heads / sh.kv_heads;
  const int64_t qs = static_cast<int64_t>(nH) * D, ks = static_cast<int64_t>(sh.kv_heads) * D;
  int64_t max_len = 0;
  for (int64_t r = 0; r < rows; ++r) max_len = std::max(max_len, n_keys[r]);
  parallel(pool, rows * nH, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> scores(static_cast<size_t>(max_len));
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t r = item / nH;
      const int h = static_cast<int>(item % nH);
      const int64_t koff = static_cast<int64_t>(h / group) * D;
      detail::attend_row(q + r * qs + static_cast<int64_t>(h) * D, k_cache[r] + koff, v_cache[r] + koff, ks, n_keys[r], D,
                 sh.scale, o + r * qs + static_cast<int64_t>(h) * D, scores.data());
    }
  });
}

// ---------------------------------------------------------------- SwiGLU

void swiglu_fwd(const float* g, const float* u, float* a, int64_t n, ThreadPool* pool) {
  parallel(pool, n, 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float x = g[i];
      a[i] = x / (1.f + std::exp(-x)) * u[i];
    }
  });
}

void swiglu_bwd(const float* da, const float* g, const float* u, float* dg, float* du, int64_t n, ThreadPool* pool) {
  parallel(pool, n, 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float x = g[i];
      const float sig = 1.f / (1.f + std::exp(-x));
      const float silu = x * sig;
      du[i] = da[i] * silu;
      dg[i] = da[i] * u[i] * (sig * (1.f + x * (1.f - sig)));
    }
  });
}

// ---------------------------------------------------------------- scaled residual

void scaled_residual_fwd(const float* branch, const float* resid, float b, float s, float* out, int64_t n,
                         ThreadPool* pool) {
  parallel(pool, n, 16384, [&](int64_t i0, int64_t i1) {
    if (branch)
      for (int64_t i = i0; i < i1; ++i) out[i] = b * branch[i] + s * resid[i];
    else
      for (int64_t i = i0; i < i1; ++i) out[i] = s * resid[i];
  });
}

void scaled_residual_bwd(const float* g, const float* branch, const float* resid, float s, float* d_resid,
                         int64_t rows, int64_t dim, double* dot_branch, double* dot_resid, double* row_partials,
                         ThreadPool* pool) {
  parallel(pool, rows, row_grain(dim), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* gr = g + r * dim;
      row_partials[2 * r] = branch ? dot_d(gr, branch + r * dim, dim) : 0.0;
      row_partials[2 * r + 1] = dot_d(gr, resid + r * dim, dim);
      if (d_resid) {
        float* dr = d_resid + r * dim;
        for (int64_t i = 0; i < dim; ++i) dr[i] = s * gr[i];
      }
    }
  });
  double sb = 0.0, sr = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    sb += row_partials[2 * r];
    sr += row_partials[2 * r + 1];
  }
  *dot_branch = sb;
  *dot_resid = sr;
}

// ---------------------------------------------------------------- cross-entropy

void fused_cross_entropy(const float* x, int64_t hidden, MatRef lm_head, int64_t vocab, float logit_mult,
                         const int64_t* rows, const int32_t* targets, const float* weights, int64_t nrows,
                         double* nll, float* dx, int64_t chunk, MemoryMeter* meter, ThreadPool* pool, Arith arith) {
  chunk = std::max<int64_t>(1, std::min(chunk, nrows));
  Buffer<float> xc(meter, static_cast<size_t>(chunk * hidden));
  Buffer<float> logits(meter, static_cast<size_t>(chunk * vocab));
  Buffer<float> dxc;
  if (dx) dxc.reset(meter, static_cast<size_t>(chunk * hidden));
  for (int64_t c0 = 0; c0 < nrows; c0 += chunk) {
    const int64_t n = std::min(chunk, nrows - c0);
    for (int64_t r = 0; r < n; ++r) std::copy_n(x + rows[c0 + r] * hidden, hidden, xc.data() + r * hidden);
    gemm_nt(n, vocab, hidden, xc.data(), hidden, lm_head, hidden, logits.data(), vocab, false, pool, arith);
    parallel(pool, n, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* z = logits.data() + r * vocab;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < vocab; ++j) {
          z[j] *= logit_mult;
          mx = std::max(mx, z[j]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j < vocab; ++j) sum += std::exp(static_cast<double>(z[j] - mx));
        const double lse = static_cast<double>(mx) + std::log(sum);
        const int32_t tgt = targets[c0 + r];
        nll[c0 + r] = lse - static_cast<double>(z[tgt]);
        if (dx) {
          const float w = weights[c0 + r];
          const float lse_f = static_cast<float>(lse);
          for (int64_t j = 0; j < vocab; ++j) z[j] = w * std::exp(z[j] - lse_f);
          z[tgt] -= w;
          for (int64_t j = 0; j < vocab; ++j) z[j] *= logit_mult;
        }
      }
    });
    if (dx) {
      gemm_nn(n, hidden, vocab, logits.data(), vocab, lm_head, hidden, dxc.data(), hidden, false, pool, arith);
      for (int64_t r = 0; r < n; ++r) {
        float* dst = dx + rows[c0 + r] * hidden;
        const float* src = dxc.data() + r * hidden;
        for (int64_t i = 0; i < hidden; ++i) dst[i] += src[i];
      }
    }
  }
}

void row_cosines(const float* a, const float* b, int64_t rows, int64_t dim, double* cos_out, ThreadPool* pool) {
  parallel(pool, rows, row_grain(dim), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* ar = a + r * dim;
      const float* br = b + r * dim;
      const double ab = dot_d(ar, br, dim), aa = dot_d(ar, ar, dim), bb = dot_d(br, br, dim);
      cos_out[r] = (aa > 0.0 && bb > 0.0) ? ab / std::sqrt(aa * bb) : 0.0;
    }
  });
}

}  // namespace hs::cpu
