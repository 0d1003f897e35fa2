// The synthetic benchmark model's weights and batch, reproducible bit for bit in
// Python (bench/torch_baseline.py has the same functions): a counter-based hash of the
// element index gives each bf16 value, so no 16 GB checkpoint is needed, and PyTorch
// builds the very same model to check its loss against ours.
//
//   h(i, seed): 32-bit unsigned arithmetic (wraps mod 2^32)
//     x = i * 2654435761 + seed * 40503
//     x ^= x >> 16; x *= 0x45d9f3b; x ^= x >> 16; x *= 0x45d9f3b; x ^= x >> 16
//   weight[i] = bf16_rn(((x >> 8) * 2^-24 - 0.5) * 2 * kRandomWeightAmplitude)   (exact in fp32)
//   tensor k (embedding, lm_head, then per layer qkv, o, gate/up, down) starts at
//   element random_weight_offset(k) of one buffer of (largest tensor + kRandomWeightSpan).
#pragma once
#include <cstdint>

#include "host_device.h"

namespace hs::cuda {

inline constexpr float kRandomWeightAmplitude = 0.03125f;  // uniform(-1/32, 1/32): std 0.018
inline constexpr uint64_t kRandomWeightSpan = 65536;       // elements past the largest tensor

HS_HD inline uint32_t random_hash(uint32_t i, uint32_t seed) {
  uint32_t x = i * 2654435761u + seed * 40503u;
  x ^= x >> 16;
  x *= 0x45d9f3bu;
  x ^= x >> 16;
  x *= 0x45d9f3bu;
  x ^= x >> 16;
  return x;
}

HS_HD inline float random_weight_value(uint32_t i, uint32_t seed) {
  const float u = static_cast<float>(random_hash(i, seed) >> 8) * (1.0f / 16777216.0f);
  return (u - 0.5f) * (2.0f * kRandomWeightAmplitude);
}

// Start of tensor k in the shared buffer: a multiple of 8 elements (16-byte aligned
// for cuBLASLt), below kRandomWeightSpan.
HS_HD inline uint64_t random_weight_offset(int k) { return (uint64_t(k) * 9973u % (kRandomWeightSpan / 8)) * 8; }

// Token t of the synthetic batch: 3 + h(t, seed) mod (vocab - 3).
inline int32_t random_token(uint32_t t, uint32_t seed, int32_t vocab) {
  return 3 + static_cast<int32_t>(random_hash(t, seed) % uint32_t(vocab - 3));
}

}  // namespace hs::cuda
