// Writes a GGUF from a safetensors checkpoint, one tensor at a time: each output
// tensor is read from its source as f32, multiplied by its fold factor, its rows
// optionally reordered for llama.cpp's RoPE, encoded (F32 / F16 / BF16 / Q8_0) and
// streamed out. The caller (TypeScript) decides names, factors, types and metadata;
// this code checks them against the checkpoint before writing anything, writes a
// temporary file, reads it back with the GGUF reader (structure, metadata, tensor
// table and a checksum of every tensor's bytes), and only then renames it to `out`.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "gguf.h"

namespace hs {

struct GgufExportTensor {
  std::string name;               // GGUF tensor name
  std::string source;             // checkpoint tensor; empty: `values` holds the data
  std::vector<float> values;      // generated data (rope_freqs)
  std::vector<int64_t> shape;     // torch order; written reversed as ne
  double scale = 1.0;             // fold factor
  int permute_heads = 0;          // > 0: rows reordered per head into llama.cpp's interleaved RoPE order
  gguf::TensorType type = gguf::TensorType::F32;
};

struct GgufExportResult {
  uint64_t bytes = 0;         // file size
  uint64_t tensor_bytes = 0;  // sum of tensor data bytes
  uint64_t parameters = 0;    // sum of tensor elements
};

// Throws HOPSCOTCH_ERR_MISSING_TENSOR / _SHAPE for a plan that does not match the
// checkpoint, HOPSCOTCH_ERR_EXPORT for a value that is not finite or overflows the
// output type, HOPSCOTCH_ERR_EXISTS for an existing `out` without `overwrite`,
// HOPSCOTCH_ERR_IO for write failures and HOPSCOTCH_ERR_INTERNAL if the read-back
// differs from what was written. Nothing is left at `out` (or beside it) on error.
GgufExportResult export_gguf(const std::string& model_dir, const std::vector<gguf::KeyValue>& kvs,
                             const std::vector<GgufExportTensor>& tensors, const std::string& out, bool overwrite);

// The row order llama.cpp's converter gives q/k weights (LlamaModel.permute): within
// each of `heads` groups of `rows / heads` rows, row 2 i + j takes row j (rows/heads/2) + i.
void permute_rope_rows(const float* in, float* out, int64_t rows, int64_t cols, int heads);

}  // namespace hs
