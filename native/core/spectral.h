// Largest singular value of a row-major matrix by power iteration on W^T W (the
// spectral evaluation, paper Figure 4): v <- W^T W v / ||W^T W v||, sigma = ||W v||,
// from a given start vector until |sigma_k - sigma_{k-1}| <= tolerance * sigma_k.
// Sums are float64 in a fixed order: W v splits over rows and W^T u over columns, each
// sum running over the other index in order, so the result is the same for every
// thread count and equal to the sequential loop.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "threadpool.h"

namespace hs {

struct PowerIteration {
  std::vector<double> start;  // cols values; normalized before the first step
  double tolerance = 1e-6;
  int max_iterations = 1000;
};

struct SingularValue {
  double sigma = 0.0;
  int iterations = 0;
  bool converged = false;
};

// `w` is rows x cols (float or double). `aborted` (may be empty) is polled before each
// iteration; when it returns true this throws HOPSCOTCH_ERR_ABORTED.
template <typename T>
SingularValue top_singular_value(const T* w, int64_t rows, int64_t cols, const PowerIteration& opts, ThreadPool& pool,
                                 const std::function<bool()>& aborted);

}  // namespace hs
