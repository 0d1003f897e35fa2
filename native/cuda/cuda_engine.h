// The CUDA engine: hs::Engine on one GPU with bf16 weights (see cuda_engine.cpp).
#pragma once
#include <memory>

#include "engine.h"

namespace hs::cuda {

// Uploads the model (fp32 host weights -> bf16 device weights) and loads cuBLASLt.
// Throws hs::Error (HOPSCOTCH_ERR_CUDA, HOPSCOTCH_ERR_CONFIG_UNSUPPORTED) on failure.
std::unique_ptr<Engine> make_cuda_engine(const LoadedModel& model);

// The synthetic benchmark model of `cfg`: every bf16 matrix points into one random
// buffer on the device (random_weights.h), norms are 1 and biases 0. No host weights,
// so an 8B shape needs about 1 GB of device memory for its weights.
std::unique_ptr<Engine> make_cuda_engine_random(const ModelConfig& cfg, uint32_t seed);

}  // namespace hs::cuda
