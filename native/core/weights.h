// Model weights in fp32, checked against the config before any compute.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "safetensors.h"

namespace hs {

// All matrices are row-major [out, in] as in the checkpoint (y = x W^T).
struct LayerWeights {
  const float* input_norm = nullptr;   // [H]
  const float* q = nullptr;            // [nH*D, H]   (null when attention absent)
  const float* k = nullptr;            // [nKV*D, H]
  const float* v = nullptr;            // [nKV*D, H]
  const float* o = nullptr;            // [H, nH*D]
  const float* q_bias = nullptr;       // [nH*D]  (qkv_bias)
  const float* k_bias = nullptr;       // [nKV*D]
  const float* v_bias = nullptr;       // [nKV*D]
  const float* o_bias = nullptr;       // [H]     (o_bias)
  const float* q_norm = nullptr;       // [D]     (qk_norm)
  const float* k_norm = nullptr;       // [D]
  const float* post_norm = nullptr;    // [H]
  const float* gate = nullptr;         // [I, H]
  const float* up = nullptr;           // [I, H]
  const float* down = nullptr;         // [H, I]
  const float* gate_bias = nullptr;    // [I] (mlp_bias)
  const float* up_bias = nullptr;      // [I]
  const float* down_bias = nullptr;    // [H]
};

struct Weights {
  const float* embed = nullptr;        // [V, H]
  const float* final_norm = nullptr;   // [H]
  const float* lm_head = nullptr;      // [V, H] (== embed when tied)
  std::vector<LayerWeights> layers;
  std::vector<std::vector<float>> storage;  // owns the fp32 copies
  size_t bytes = 0;                          // fp32 bytes held
  int64_t parameters = 0;                    // elements in the checkpoint (tied counted once)
  std::string source_dtype;                  // dtype of the checkpoint's tensors ("F32", "BF16", mixed)
};

// Expected HF tensor names and shapes for a config.
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
  bool optional = false;
};
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& cfg);

// Loads and converts every expected tensor. Reports all missing / mismatched names at
// once (HOPSCOTCH_ERR_MISSING_TENSOR, HOPSCOTCH_ERR_SHAPE).
std::unique_ptr<Weights> load_weights(const ModelConfig& cfg, const Checkpoint& ckpt);

// Stable hex SHA-256 over the config fields, every tensor's name/dtype/shape (sorted
// by name) and up to 4 KiB sampled from the start, middle and end of each tensor.
// Reads a few pages per tensor, so it is cheap for multi-GB checkpoints.
std::string model_fingerprint(const ModelConfig& cfg, const Checkpoint& ckpt);

// A loaded model directory: config + weights.
struct LoadedModel {
  std::string dir;
  ModelConfig config;
  std::unique_ptr<Weights> weights;
  std::string fingerprint;  // hex digest of config + tensor headers + sampled bytes
};
std::unique_ptr<LoadedModel> load_model_dir(const std::string& dir);

}  // namespace hs
