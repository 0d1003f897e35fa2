// Writes one safetensors file whose tensors come from a checkpoint folder (the `hf` and
// `decilm` exports): each output tensor is the source's bytes unchanged, the source
// multiplied by a fold factor and re-encoded in its own dtype, or zeros. The checkpoint is
// opened with the validating reader (its index and headers); unchanged tensors are copied
// file to file in pieces of 8 MB (AtomicFile::copy_from), folded ones read with pread in
// pieces of kFoldChunk elements and folded on a second thread while the previous piece is
// written, so memory stays a few tens of MB whatever the size of the tensors: no tensor is
// ever held whole, no weight page mapped.
//
// The fold is exact as the export defines it: each element is widened to fp32, multiplied
// by the factor in double, rounded once to fp32 and encoded round-to-nearest-even
// (half.h); a BF16/F16 value that rounds to inf or NaN is refused (HOPSCOTCH_ERR_EXPORT),
// a factor of 0 writes +0.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "safetensors.h"

namespace hs {

struct FoldedTensor {
  std::string name;              // output tensor name
  DType dtype = DType::F32;      // output dtype; a source must have the same
  std::vector<int64_t> shape;    // a source must have the same
  std::string source;            // checkpoint tensor; empty: zeros
  bool scaled = false;           // false: the source's bytes are copied unchanged
  double scale = 1.0;            // fold factor (scaled only)
};

// Elements per piece of a folded tensor.
inline constexpr size_t kFoldChunk = size_t{1} << 20;

// Writes `tensors` (in order) from the checkpoint in `model_dir` to the safetensors file
// `path` atomically (SafetensorsWriter: temp file, fsync, rename; it must not exist).
// The whole plan is checked before the file is created: every source present, with the
// declared dtype and shape, and F32/F16/BF16 when scaled (HOPSCOTCH_ERR_MISSING_TENSOR,
// _SHAPE, _SAFETENSORS_DTYPE). `aborted` (may be empty) is polled between pieces (so
// between tensors); when it returns true the write stops with HOPSCOTCH_ERR_ABORTED and nothing
// is left at `path`. Returns the bytes written.
size_t write_folded_safetensors(const std::string& model_dir, const std::string& path,
                                const std::vector<FoldedTensor>& tensors,
                                const std::map<std::string, std::string>& metadata,
                                const std::function<bool()>& aborted);

// Folds `n` elements of `dtype` at `src` by `scale` into `out` (n elements of `dtype`).
// Returns n, or the index of the first element whose BF16/F16 encoding is not finite
// (F32 is written as it rounds, unchecked).
size_t fold_elements(const uint8_t* src, DType dtype, size_t n, double scale, uint8_t* out);

}  // namespace hs
