// Power iteration for the largest singular value (see spectral.h).
#include "spectral.h"

#include <cmath>
#include <string>
#include <utility>

#include "errors.h"

namespace hs {

namespace {

double normalize(std::vector<double>& a) {
  double s = 0.0;
  for (double x : a) s += x * x;
  const double n = std::sqrt(s);
  if (n > 0)
    for (double& x : a) x /= n;
  return n;
}

}  // namespace

template <typename T>
SingularValue top_singular_value(const T* w, int64_t rows, int64_t cols, const PowerIteration& opts, ThreadPool& pool,
                                 const std::function<bool()>& aborted) {
  if (rows <= 0 || cols <= 0)
    fail(code::kArgument, "bad matrix shape " + std::to_string(rows) + " x " + std::to_string(cols));
  if (static_cast<int64_t>(opts.start.size()) != cols)
    fail(code::kArgument, "the start vector has " + std::to_string(opts.start.size()) + " values, expected " + std::to_string(cols));
  std::vector<double> v = opts.start, next(static_cast<size_t>(cols)), u(static_cast<size_t>(rows));
  normalize(v);
  double sigma = 0.0;
  for (int it = 1; it <= opts.max_iterations; ++it) {
    if (aborted && aborted()) fail(code::kAborted, "the power iteration was aborted");
    // u = W v
    pool.parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* row = w + r * cols;
        double s = 0.0;
        for (int64_t c = 0; c < cols; ++c) s += static_cast<double>(row[c]) * v[static_cast<size_t>(c)];
        u[static_cast<size_t>(r)] = s;
      }
    });
    const double prev = sigma;
    sigma = normalize(u);
    if (sigma == 0.0) return {0.0, it, true};
    // next = W^T u (u is unit), the direction of W^T W v
    pool.parallel_for(cols, 64, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) next[static_cast<size_t>(c)] = 0.0;
      for (int64_t r = 0; r < rows; ++r) {
        const T* row = w + r * cols;
        const double ur = u[static_cast<size_t>(r)];
        for (int64_t c = c0; c < c1; ++c) next[static_cast<size_t>(c)] += static_cast<double>(row[c]) * ur;
      }
    });
    normalize(next);
    std::swap(v, next);
    if (it > 1 && std::fabs(sigma - prev) <= opts.tolerance * sigma) return {sigma, it, true};
  }
  return {sigma, opts.max_iterations, false};
}

template SingularValue top_singular_value<float>(const float*, int64_t, int64_t, const PowerIteration&, ThreadPool&,
                                                 const std::function<bool()>&);
template SingularValue top_singular_value<double>(const double*, int64_t, int64_t, const PowerIteration&, ThreadPool&,
                                                  const std::function<bool()>&);

}  // namespace hs
