// Streaming fold of a checkpoint into a safetensors file (see safetensors_export.h).
#include "safetensors_export.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include "errors.h"
#include "half.h"

namespace hs {

namespace {

// Bytes read per piece of an unchanged tensor.
constexpr size_t kCopyChunk = size_t{8} << 20;

std::string errno_text() { return std::strerror(errno); }

// The checkpoint's files opened for reading: tensors are read with pread into a small
// buffer (the mapping is used for the validated header only, so no weight page is mapped).
class SourceFiles {
 public:
  ~SourceFiles() {
    for (const auto& kv : fds_) ::close(kv.second);
  }
  // Reads `n` bytes of `t` from byte `at` of its data.
  void read(const TensorView& t, const SafetensorsFile& file, size_t at, size_t n, uint8_t* out) {
    auto it = fds_.find(t.file);
    if (it == fds_.end()) {
      int fd = ::open(t.file.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) fail(code::kIo, t.file + ": cannot open: " + errno_text());
      ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
      it = fds_.emplace(t.file, fd).first;
    }
    const uint64_t offset = static_cast<uint64_t>(t.data - file.bytes()) + at;
    for (size_t done = 0; done < n;) {
      const ssize_t r = ::pread(it->second, out + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) fail(code::kIo, t.file + ": read failed: " + errno_text());
      if (r == 0) fail(code::kIo, t.file + ": unexpected end of file reading tensor '" + t.name + "'");
      done += static_cast<size_t>(r);
    }
  }

 private:
  std::map<std::string, int> fds_;
};

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
  std::map<std::string, const SafetensorsFile*> file_of;
  for (const auto& f : ckpt->files()) file_of.emplace(f->path(), f.get());
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
  SourceFiles files;
  std::vector<uint8_t> in, out;
  for (size_t k = 0; k < tensors.size(); ++k) {
    const FoldedTensor& t = tensors[k];
    const TensorView* v = sources[k];
    const size_t esize = dtype_size(t.dtype);
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    const size_t n = static_cast<size_t>(numel);
    stop_if_aborted();
    if (!v) {
      out.assign(std::min(n, kFoldChunk) * esize, 0);
      for (size_t at = 0; at < n; at += kFoldChunk) writer.write_data(out.data(), std::min(kFoldChunk, n - at) * esize);
    } else if (!t.scaled) {
      in.resize(std::min(v->nbytes, kCopyChunk));
      for (size_t at = 0; at < v->nbytes; at += kCopyChunk) {
        stop_if_aborted();
        const size_t len = std::min(kCopyChunk, v->nbytes - at);
        files.read(*v, *file_of.at(v->file), at, len, in.data());
        writer.write_data(in.data(), len);
      }
    } else {
      in.resize(std::min(n, kFoldChunk) * esize);
      out.resize(in.size());
      for (size_t at = 0; at < n; at += kFoldChunk) {
        stop_if_aborted();
        const size_t len = std::min(kFoldChunk, n - at);
        files.read(*v, *file_of.at(v->file), at * esize, len * esize, in.data());
        const size_t bad = fold_elements(in.data(), t.dtype, len, t.scale, out.data());
        if (bad != len) {
          const float value = static_cast<float>(static_cast<double>(widen(in.data(), t.dtype, bad)) * t.scale);
          fail(code::kExport, "folding theta into '" + t.name + "' overflows " + dtype_name(t.dtype) + " (value " +
                                  value_text(value) + "); theta is too extreme for this dtype");
        }
        writer.write_data(out.data(), len * esize);
      }
    }
  }
  stop_if_aborted();
  return writer.finish();
}

}  // namespace hs
