// Kernel-level checks: each CUDA kernel family against its CPU twin (twins.h), run by
// hopscotch_cuda_selftest --kernels on a GPU machine.
#pragma once
#include <string>
#include <vector>

namespace hs::cuda {

struct KernelCheck {
  std::string name;
  bool ok = false;
  std::string detail;  // JSON members, without braces
};

// Runs every check on the current device; a CUDA error in one check is reported as
// that check's failure (later checks may then fail too: the context is poisoned).
std::vector<KernelCheck> run_kernel_checks();

}  // namespace hs::cuda
