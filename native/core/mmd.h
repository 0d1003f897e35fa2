// Unbiased MMD^2 with a Gaussian kernel between two samples of vectors (the hidden-state
// shift evaluation, paper section 4.4; the estimator and its two forms are described in
// src/eval/mmd.ts). Pairwise squared distances come from norms and dot products in
// float64; the bandwidth defaults to the median pairwise distance of the pooled sample.
// Work splits over rows (paired with their mirror rows to balance the triangle) and
// every row's sums are kept apart and added in row order, so the result is the same
// for every thread count.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>

#include "threadpool.h"

namespace hs {

struct Mmd2 {
  double mmd2 = 0.0;
  double bandwidth = 0.0;
};

// `z` holds m + n rows of `dim` values: the m rows of x, then the n rows of y (m, n >= 2).
// m == n takes rows i of x and y as a pair (the paired U-statistic); otherwise the
// two-sample form. Without `bandwidth`, the median heuristic (a median of 0 or NaN falls
// back to 1). Throws HOPSCOTCH_ERR_ARGUMENT for bad sizes or a bandwidth that is not a
// positive finite number, HOPSCOTCH_ERR_ABORTED when `aborted` (polled between stages)
// returns true.
Mmd2 mmd2_unbiased(const double* z, int64_t m, int64_t n, int64_t dim, std::optional<double> bandwidth, ThreadPool& pool,
                   const std::function<bool()>& aborted);

}  // namespace hs
