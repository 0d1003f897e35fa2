// Model weights, checked against the config before any compute. The matrices
// (q/k/v/o, gate/up/down, embedding, lm_head) stay in the checkpoint's dtype and
// point into its memory mapping (fp32, bf16 or f16; the GEMMs widen them as they
// read them); norms and biases are small fp32 copies.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "gemm.h"
#include "safetensors.h"

namespace hs {

// All matrices are row-major [out, in] as in the checkpoint (y = x W^T).
struct LayerWeights {
  const float* input_norm = nullptr;   // [H]
  MatRef q;                            // [nH*D, H]   (null when attention absent)
  MatRef k;                            // [nKV*D, H]
  MatRef v;                            // [nKV*D, H]
  MatRef o;                            // [H, nH*D]
  const float* q_bias = nullptr;       // [nH*D]  (qkv_bias)
  const float* k_bias = nullptr;       // [nKV*D]
  const float* v_bias = nullptr;       // [nKV*D]
  const float* o_bias = nullptr;       // [H]     (o_bias)
  const float* q_norm = nullptr;       // [D]     (qk_norm)
  const float* k_norm = nullptr;       // [D]
  const float* post_norm = nullptr;    // [H]
  MatRef gate;                         // [I, H]
  MatRef up;                           // [I, H]
  MatRef down;                         // [H, I]
  const float* gate_bias = nullptr;    // [I] (mlp_bias)
  const float* up_bias = nullptr;      // [I]
  const float* down_bias = nullptr;    // [H]
};

// How load_weights holds the matrices.
struct WeightOptions {
  // Widen every tensor into an owned fp32 copy (how the engine held weights before
  // they stayed in their own dtype; HOPSCOTCH_WEIGHTS=f32-copy; tests compare the two).
  bool f32_copy = false;
  // Hold every matrix in bf16 (precision 'bf16'): BF16 matrices stay mapped, F32 and
  // F16 ones are rounded (nearest even) into owned bf16 copies.
  bool bf16 = false;
};

struct Weights {
  MatRef embed;                        // [V, H]
  const float* final_norm = nullptr;   // [H]
  MatRef lm_head;                      // [V, H] (== embed when tied)
  std::vector<LayerWeights> layers;
  std::vector<std::vector<float>> storage;      // owned fp32 copies (norms, biases; everything with f32_copy)
  std::vector<std::vector<uint16_t>> storage16; // owned 16-bit copies (misaligned in the file, or rounded to bf16)
  size_t bytes = 0;                          // bytes of all weights as held (mapped or copied)
  size_t copied_bytes = 0;                   // of which in the copies above
  int64_t parameters = 0;                    // elements in the checkpoint (tied counted once)
  std::string source_dtype;                  // dtype of the checkpoint's tensors ("F32", "BF16", mixed)
  std::string matrix_dtype;                  // dtype the matrices are held in ("F32", "BF16", "F16", mixed)
};

// Expected HF tensor names and shapes for a config.
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
  bool optional = false;
};
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& cfg);

// Checks every expected tensor, then wires the matrices to the checkpoint's mapping
// and copies the norms and biases to fp32. Reports all missing / mismatched names at
// once (HOPSCOTCH_ERR_MISSING_TENSOR, HOPSCOTCH_ERR_SHAPE). The result points into
// `ckpt` (unless opts.f32_copy): keep ckpt alive as long as it (LoadedModel does).
std::unique_ptr<Weights> load_weights(const ModelConfig& cfg, const Checkpoint& ckpt, const WeightOptions& opts = {});

// Stable hex SHA-256 over the config fields, every tensor's name/dtype/shape (sorted
// by name) and up to 4 KiB sampled from the start, middle and end of each tensor.
// Reads a few pages per tensor, so it is cheap for multi-GB checkpoints.
std::string model_fingerprint(const ModelConfig& cfg, const Checkpoint& ckpt);

// A loaded model directory: config + the mapped checkpoint + weights pointing into it.
struct LoadedModel {
  std::string dir;
  ModelConfig config;
  std::unique_ptr<Checkpoint> checkpoint;  // declared before weights: outlives them
  std::unique_ptr<Weights> weights;
  std::string fingerprint;  // hex digest of config + tensor headers + sampled bytes
};
// The folder's config.json, parsed (read_small_file's errors; HOPSCOTCH_ERR_CONFIG_INVALID
// above 16 MiB or when parse_config refuses it).
ModelConfig read_model_config(const std::string& dir);
// HOPSCOTCH_WEIGHTS=f32-copy in the environment sets opts.f32_copy.
std::unique_ptr<LoadedModel> load_model_dir(const std::string& dir, const WeightOptions& opts = {});

}  // namespace hs
