// parallel_for over XLA's intra-op thread pool, shared by the C++ CPU kernels in csrc/.
#ifndef VIVIT_JAX_CSRC_PARALLEL_FOR_H_
#define VIVIT_JAX_CSRC_PARALLEL_FOR_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace vivit_jax {

// Runs fn(i) for i in [0, n) on the caller and on XLA's intra-op threads. Waits only for
// claimed items: a pool task that starts after the last item was claimed does nothing.
inline void parallel_for(xla::ffi::ThreadPool& pool, int64_t n, std::function<void(int64_t)> fn) {
  struct Job {
    std::function<void(int64_t)> fn;
    int64_t n;
    std::atomic<int64_t> next{0}, done{0};
    std::mutex mu;
    std::condition_variable cv;
    void work() {
      int64_t mine = 0;
      for (int64_t i; (i = next.fetch_add(1)) < n; ++mine) fn(i);
      if (mine > 0 && done.fetch_add(mine) + mine == n) {
        { std::lock_guard<std::mutex> lock(mu); }
        cv.notify_all();
      }
    }
  };
  auto job = std::make_shared<Job>();
  job->fn = std::move(fn);
  job->n = n;
  int64_t helpers = std::min<int64_t>(pool.num_threads(), n) - 1;
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule([job] { job->work(); });
  job->work();
  std::unique_lock<std::mutex> lock(job->mu);
  job->cv.wait(lock, [&] { return job->done.load() == n; });
}

}  // namespace vivit_jax

#endif  // VIVIT_JAX_CSRC_PARALLEL_FOR_H_
