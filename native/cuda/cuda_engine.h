// The CUDA engine: hs::Engine on one GPU with bf16 weights (see cuda_engine.cpp).
#pragma once
#include <memory>

#include "engine.h"

namespace hs::cuda {

// Uploads the model (fp32 host weights -> bf16 device weights) and loads cuBLASLt.
// Throws hs::Error (HOPSCOTCH_ERR_CUDA, HOPSCOTCH_ERR_CONFIG_UNSUPPORTED) on failure.
std::unique_ptr<Engine> make_cuda_engine(const LoadedModel& model);

}  // namespace hs::cuda
