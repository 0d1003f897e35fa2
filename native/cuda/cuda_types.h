// Element types shared by the kernel launchers and the host code that calls them.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_common.h"

namespace hs::cuda {
using bf16 = __nv_bfloat16;
}  // namespace hs::cuda
