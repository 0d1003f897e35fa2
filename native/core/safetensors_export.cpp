// Streaming fold of a checkpoint into a safetensors file (see safetensors_export.h).
#include "safetensors_export.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <future>
#include <memory>

#include "errors.h"
#include "half.h"

namespace hs {

namespace {

// Bytes copied per piece of an unchanged tensor (the abort flag is checked between pieces).
constexpr size_t kCopyChunk = size_t{8} << 20;


// The checkpoint's files opened for reading, all of them before any piece is produced (the
// producer thread and the writer then only look them up): folded tensors are read with
// pread into a small buffer, unchanged ones copied file to file by the kernel (the mapping
// is used for the validated header only, so no weight page is mapped).
class SourceFiles {
 public:
  explicit SourceFiles(const std::vector<std::unique_ptr<SafetensorsFile>>& files) {
    for (const auto& f : files) {
      int fd = ::open(f->path().c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) fail(code::kIo, f->path() + ": cannot open: " + errno_text());
      ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
      open_.emplace(f->path(), Source{fd, f.get()});
    }
  }
  ~SourceFiles() {
    for (const auto& kv : open_) ::close(kv.second.fd);
  }
  int fd(const TensorView& t) const { return open_.at(t.file).fd; }
  // Byte `at` of `t`'s data, as an offset in its file.
  uint64_t offset(const TensorView& t, size_t at) const {
    return static_cast<uint64_t>(t.data - open_.at(t.file).file->bytes()) + at;
  }
  // Reads `n` bytes of `t` from byte `at` of its data.
  void read(const TensorView& t, size_t at, size_t n, uint8_t* out) const {
    const int f = fd(t);
    const uint64_t offset0 = offset(t, at);
    for (size_t done = 0; done < n;) {
      const ssize_t r = ::pread(f, out + done, n - done, static_cast<off_t>(offset0 + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) fail(code::kIo, t.file + ": read failed: " + errno_text());
      if (r == 0) fail(code::kIo, t.file + ": unexpected end of file reading tensor '" + t.name + "'");
      done += static_cast<size_t>(r);
    }
  }

 private:
  struct Source {
    int fd;
    const SafetensorsFile* file;
  };
  std::map<std::string, Source> open_;
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

  // The output in pieces, in file order: at most kCopyChunk bytes of an unchanged tensor,
  // kFoldChunk elements of a folded one or of zeros.
  struct Piece {
    size_t tensor, at, len;  // bytes (copies) or elements (folds, zeros)
  };
  std::vector<Piece> pieces;
  for (size_t k = 0; k < tensors.size(); ++k) {
    const bool copy = sources[k] && !tensors[k].scaled;
    int64_t numel = 1;
    for (int64_t d : tensors[k].shape) numel *= d;
    const size_t n = copy ? sources[k]->nbytes : static_cast<size_t>(numel);
    const size_t chunk = copy ? kCopyChunk : kFoldChunk;
    for (size_t at = 0; at < n; at += chunk) pieces.push_back({k, at, std::min(chunk, n - at)});
  }
  // A piece is read (and folded) into one of two buffers on a second thread while the
  // previous one is written from the other; an unchanged tensor's pieces are copied by the
  // writer, file to file.
  SourceFiles files(ckpt->files());
  constexpr size_t kCopied = SIZE_MAX;
  struct Buffers {
    std::vector<uint8_t> in, out;
  } slots[2];
  auto produce = [&](const Piece& p, Buffers& b) -> size_t {
    const FoldedTensor& t = tensors[p.tensor];
    const TensorView* v = sources[p.tensor];
    const size_t esize = dtype_size(t.dtype);
    if (!v) {
      b.out.assign(p.len * esize, 0);
      return p.len * esize;
    }
    if (!t.scaled) return kCopied;
    b.in.resize(p.len * esize);
    b.out.resize(p.len * esize);
    files.read(*v, p.at * esize, p.len * esize, b.in.data());
    const size_t bad = fold_elements(b.in.data(), t.dtype, p.len, t.scale, b.out.data());
    if (bad != p.len) {
      const float value = static_cast<float>(static_cast<double>(widen(b.in.data(), t.dtype, bad)) * t.scale);
      fail(code::kExport, "folding theta into '" + t.name + "' overflows " + dtype_name(t.dtype) + " (value " +
                              value_text(value) + "); theta is too extreme for this dtype");
    }
    return p.len * esize;
  };
  SafetensorsWriter writer(path, std::move(entries), metadata, false);
  std::future<size_t> next;  // destroyed first: waits for a piece in flight before the buffers go
  if (!pieces.empty()) next = std::async(std::launch::async, produce, std::cref(pieces[0]), std::ref(slots[0]));
  for (size_t i = 0; i < pieces.size(); ++i) {
    const size_t bytes = next.get();
    stop_if_aborted();
    if (i + 1 < pieces.size())
      next = std::async(std::launch::async, produce, std::cref(pieces[i + 1]), std::ref(slots[(i + 1) % 2]));
    if (bytes == kCopied) {
      const TensorView& v = *sources[pieces[i].tensor];
      writer.copy_data(files.fd(v), files.offset(v, pieces[i].at), pieces[i].len, v.file);
    } else {
      writer.write_data(slots[i % 2].out.data(), bytes);
    }
  }
  stop_if_aborted();
  return writer.finish();
}

}  // namespace hs
