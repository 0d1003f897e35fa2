// Streaming fold of a checkpoint into a safetensors file (see safetensors_export.h).
#include "safetensors_export.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include "errors.h"
#include "half.h"

namespace hs {

namespace {

// Bytes copied per write for unchanged tensors.
constexpr size_t kCopyChunk = size_t{16} << 20;

// Drops the pages under [p, p + n) from this process's mapping: they stay in the page
// cache, a later read maps them again, but they no longer count towards its memory.
void release_pages(const uint8_t* p, size_t n) {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n + page - 1) & ~(page - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

float widen(const uint8_t* src, DType dtype, size_t i) {
  if (dtype == DType::F32) {
    float v;
    std::memcpy(&v, src + 4 * i, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, src + 2 * i, 2);
  return dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

bool foldable(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16; }

std::string value_text(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
  return buf;
}

}  // namespace

size_t fold_elements(const uint8_t* src, DType dtype, size_t n, double scale, uint8_t* out) {
  if (scale == 0.0) {
    std::memset(out, 0, n * dtype_size(dtype));
    return n;
  }
  for (size_t i = 0; i < n; ++i) {
    const float v = static_cast<float>(static_cast<double>(widen(src, dtype, i)) * scale);
    if (dtype == DType::F32) {
      std::memcpy(out + 4 * i, &v, 4);
      continue;
    }
    const uint16_t bits = dtype == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
    if ((bits & 0x7fff) >= (dtype == DType::BF16 ? 0x7f80 : 0x7c00)) return i;
    std::memcpy(out + 2 * i, &bits, 2);
  }
  return n;
}

size_t write_folded_safetensors(const std::string& model_dir, const std::string& path,
                                const std::vector<FoldedTensor>& tensors,
                                const std::map<std::string, std::string>& metadata,
                                const std::function<bool()>& aborted) {
  auto stop_if_aborted = [&] {
    if (aborted && aborted()) fail(code::kAborted, path + ": the export was aborted");
  };
  std::unique_ptr<Checkpoint> ckpt = Checkpoint::open_dir(model_dir);
  // The whole plan is checked before the file is created.
  std::vector<const TensorView*> sources;
  std::vector<SafetensorsWriter::Entry> entries;
  std::string missing;
  for (const FoldedTensor& t : tensors) {
    const TensorView* v = nullptr;
    if (!t.source.empty()) {
      v = ckpt->find(t.source);
      if (!v) {
        missing += (missing.empty() ? "" : ", ") + t.source;
      } else {
        if (v->shape != t.shape)
          fail(code::kShape, model_dir + ": tensor '" + t.source + "' has shape " + shape_text(v->shape) +
                                 ", the export expects " + shape_text(t.shape));
        if (v->dtype != t.dtype)
          fail(code::kSafetensorsDtype, model_dir + ": tensor '" + t.source + "' has dtype " + dtype_name(v->dtype) +
                                            ", the export expects " + dtype_name(t.dtype));
        if (t.scaled && !foldable(v->dtype))
          fail(code::kSafetensorsDtype, model_dir + ": tensor '" + t.source + "' has dtype " + dtype_name(v->dtype) +
                                            "; only F32, BF16 and F16 weights can be folded");
      }
    } else if (t.scaled) {
      fail(code::kArgument, "tensor '" + t.name + "': a scaled tensor needs a source");
    }
    sources.push_back(v);
    entries.push_back({t.name, t.dtype, t.shape});
  }
  if (!missing.empty()) fail(code::kMissingTensor, model_dir + ": missing tensors: " + missing);
  stop_if_aborted();

  SafetensorsWriter writer(path, std::move(entries), metadata, false);
  std::vector<uint8_t> buf;
  for (size_t k = 0; k < tensors.size(); ++k) {
    const FoldedTensor& t = tensors[k];
    const TensorView* v = sources[k];
    const size_t esize = dtype_size(t.dtype);
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    const size_t n = static_cast<size_t>(numel);
    stop_if_aborted();
    if (!v) {
      buf.assign(std::min(n, kFoldChunk) * esize, 0);
      for (size_t at = 0; at < n; at += kFoldChunk) writer.write_data(buf.data(), std::min(kFoldChunk, n - at) * esize);
    } else if (!t.scaled) {
      for (size_t at = 0; at < v->nbytes; at += kCopyChunk) {
        stop_if_aborted();
        const size_t len = std::min(kCopyChunk, v->nbytes - at);
        writer.write_data(v->data + at, len);
        release_pages(v->data + at, len);
      }
    } else {
      buf.resize(std::min(n, kFoldChunk) * esize);
      for (size_t at = 0; at < n; at += kFoldChunk) {
        stop_if_aborted();
        const size_t len = std::min(kFoldChunk, n - at);
        const uint8_t* src = v->data + at * esize;
        const size_t bad = fold_elements(src, t.dtype, len, t.scale, buf.data());
        if (bad != len) {
          const float value = static_cast<float>(static_cast<double>(widen(src, t.dtype, bad)) * t.scale);
          fail(code::kExport, "folding theta into '" + t.name + "' overflows " + dtype_name(t.dtype) + " (value " +
                                  value_text(value) + "); theta is too extreme for this dtype");
        }
        writer.write_data(buf.data(), len * esize);
        release_pages(src, len * esize);
      }
    }
  }
  stop_if_aborted();
  return writer.finish();
}

}  // namespace hs
