// Unbiased MMD^2 (see mmd.h).
#include "mmd.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "errors.h"

namespace hs {

namespace {

// Calls row(i) for every i in [0, count), rows i and count - 1 - i on the same thread,
// so triangular loops split evenly.
template <typename F>
void for_rows_balanced(ThreadPool& pool, int64_t count, const F& row) {
  pool.parallel_for((count + 1) / 2, 4, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      row(k);
      if (count - 1 - k != k) row(count - 1 - k);
    }
  });
}

// Ascending, NaN last (the order of a Float64Array sort).
bool less_nan_last(double a, double b) { return a < b || (!std::isnan(a) && std::isnan(b)); }

double median(std::vector<double>& v) {
  if (v.empty()) return 0.0;
  const size_t h = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(h), v.end(), less_nan_last);
  const double upper = v[h];
  if (v.size() % 2) return upper;
  const double lower = *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(h), less_nan_last);
  return (lower + upper) / 2;
}

}  // namespace

Mmd2 mmd2_unbiased(const double* z, int64_t m, int64_t n, int64_t dim, std::optional<double> bandwidth, ThreadPool& pool,
                   const std::function<bool()>& aborted) {
  if (dim <= 0) fail(code::kArgument, "dim must be a positive integer, got " + std::to_string(dim));
  if (m < 2 || n < 2)
    fail(code::kArgument, "MMD needs at least two points per sample, got " + std::to_string(m) + " and " + std::to_string(n));
  auto stop_if_aborted = [&] {
    if (aborted && aborted()) fail(code::kAborted, "the MMD computation was aborted");
  };
  const int64_t count = m + n;
  const size_t cnt = static_cast<size_t>(count);
  std::vector<double> norms(cnt);
  pool.parallel_for(count, 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const double* a = z + i * dim;
      double s = 0.0;
      for (int64_t k = 0; k < dim; ++k) s += a[k] * a[k];
      norms[static_cast<size_t>(i)] = s;
    }
  });
  // Squared distances, upper triangle of a count x count matrix.
  std::vector<double> d(cnt * cnt);
  for_rows_balanced(pool, count, [&](int64_t i) {
    const double* a = z + i * dim;
    for (int64_t j = i + 1; j < count; ++j) {
      const double* b = z + j * dim;
      double dot = 0.0;
      for (int64_t k = 0; k < dim; ++k) dot += a[k] * b[k];
      const double v = norms[static_cast<size_t>(i)] + norms[static_cast<size_t>(j)] - 2 * dot;
      d[static_cast<size_t>(i * count + j)] = v < 0 ? 0.0 : v;  // NaN stays NaN
    }
  });
  stop_if_aborted();
  double bw;
  if (bandwidth) {
    bw = *bandwidth;
  } else {
    std::vector<double> upper;
    upper.reserve(cnt * (cnt - 1) / 2);
    for (int64_t i = 0; i < count; ++i)
      for (int64_t j = i + 1; j < count; ++j) upper.push_back(std::sqrt(d[static_cast<size_t>(i * count + j)]));
    bw = median(upper);
    if (bw == 0.0 || std::isnan(bw)) bw = 1.0;
  }
  if (!(std::isfinite(bw) && bw > 0)) fail(code::kArgument, "bandwidth must be a positive number, got " + std::to_string(bw));
  stop_if_aborted();
  const double g = 1 / (2 * bw * bw);
  const bool paired = m == n;
  // Per-row sums of k(., .) over j > i: kxx (both in x), kyy (both in y), kxy (across).
  std::vector<double> kxx(cnt, 0.0), kyy(cnt, 0.0), kxy(cnt, 0.0);
  for_rows_balanced(pool, count, [&](int64_t i) {
    double xx = 0.0, yy = 0.0, xy = 0.0;
    for (int64_t j = i + 1; j < count; ++j) {
      if (paired && j == i + m) continue;  // k(x_i, y_i): left out of the paired U-statistic
      const double k = std::exp(-d[static_cast<size_t>(i * count + j)] * g);
      if (i < m && j < m) xx += 2 * k;
      else if (i >= m && j >= m) yy += 2 * k;
      else xy += k;
    }
    kxx[static_cast<size_t>(i)] = xx;
    kyy[static_cast<size_t>(i)] = yy;
    kxy[static_cast<size_t>(i)] = xy;
  });
  double sxx = 0.0, syy = 0.0, sxy = 0.0;
  for (size_t i = 0; i < cnt; ++i) {
    sxx += kxx[i];
    syy += kyy[i];
    sxy += kxy[i];
  }
  const double md = static_cast<double>(m), nd = static_cast<double>(n);
  const double mmd2 = paired ? (sxx + syy - 2 * sxy) / (md * (md - 1))
                             : sxx / (md * (md - 1)) + syy / (nd * (nd - 1)) - (2 * sxy) / (md * nd);
  return {mmd2, bw};
}

}  // namespace hs
