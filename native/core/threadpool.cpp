#include "threadpool.h"

#include <algorithm>

namespace hs {

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  nthreads_ = threads;
  for (int i = 1; i < nthreads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker(int id) {
  uint64_t seen = 0;
  for (;;) {
    std::pair<int64_t, int64_t> range{0, 0};
    const std::function<void(int64_t, int64_t)>* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (id < static_cast<int>(ranges_.size())) range = ranges_[id];
      job = job_;
    }
    if (job && range.second > range.first) {
      try {
        (*job)(range.first, range.second);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!error_) error_ = std::current_exception();
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) cv_done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t parts = std::min<int64_t>(nthreads_, (n + grain - 1) / grain);
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  std::vector<std::pair<int64_t, int64_t>> ranges(parts);
  for (int64_t p = 0; p < parts; ++p) ranges[p] = {n * p / parts, n * (p + 1) / parts};
  {
    std::lock_guard<std::mutex> lock(mu_);
    ranges_ = ranges;
    job_ = &fn;
    error_ = nullptr;
    pending_ = nthreads_ - 1;
    ++generation_;
  }
  cv_start_.notify_all();
  std::exception_ptr mine;
  try {
    fn(ranges[0].first, ranges[0].second);
  } catch (...) {
    mine = std::current_exception();
  }
  std::exception_ptr err;
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_done_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
    err = error_;
  }
  if (mine) std::rethrow_exception(mine);
  if (err) std::rethrow_exception(err);
}

}  // namespace hs
