// safetensors reader and writer.
//
// Reader: maps a file read-only (MAP_PRIVATE) and validates the whole header before
// handing out any tensor: header length bounds, strict JSON, entry structure, known
// dtypes, shape arithmetic without overflow, and a data layout that tiles the data
// buffer exactly (contiguous from 0, no gaps, no overlaps, no trailing bytes).
// Tensor views point into the mapping; nothing is copied.
//
// Writer: writes the header first, streams tensor bytes, and publishes the file with
// fsync + rename + directory fsync, so a reader never sees a partial file.
#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "errors.h"
#include "half.h"
#include "json.h"

namespace hs {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;


bool parse_dtype(const std::string& s, DType* out) {
  static const struct {
    const char* name;
    DType dtype;
  } kTable[] = {{"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"F64", DType::F64},
                {"I64", DType::I64}, {"I32", DType::I32}, {"I16", DType::I16},   {"I8", DType::I8},
                {"U8", DType::U8},   {"BOOL", DType::BOOL}};
  for (const auto& e : kTable) {
    if (s == e.name) {
      *out = e.dtype;
      return true;
    }
  }
  return false;
}

// a * b into *out; false on overflow.
bool mul_overflow(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

// Element count and byte size of a shape; false when either overflows.
bool shape_bytes(const std::vector<int64_t>& shape, DType dtype, uint64_t* numel, uint64_t* nbytes) {
  // Every running product must stay within int64 (not only the final one), so that
  // TensorView::numel(), which multiplies in the same order, can never overflow.
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
    if (n > static_cast<uint64_t>(INT64_MAX)) return false;
  }
  uint64_t b;
  if (mul_overflow(n, dtype_size(dtype), &b)) return false;
  *numel = n;
  *nbytes = b;
  return true;
}


// A non-negative JSON integer, or false.
bool as_index(const json::Value& v, uint64_t* out) {
  if (!v.is_number() || !v.is_integer || v.integer_overflow || v.integer < 0) return false;
  *out = static_cast<uint64_t>(v.integer);
  return true;
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

}  // namespace

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F64: return "F64";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}

size_t dtype_size(DType d) {
  switch (d) {
    case DType::F64:
    case DType::I64: return 8;
    case DType::F32:
    case DType::I32: return 4;
    case DType::F16:
    case DType::BF16:
    case DType::I16: return 2;
    case DType::I8:
    case DType::U8:
    case DType::BOOL: return 1;
  }
  return 0;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// ---------------------------------------------------------------------------
// SafetensorsFile

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  const ReadOnlyMapping m = map_readonly(path);
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->size_ = m.size;
  f->base_ = m.base;
  f->mapped_ = m.mapped;
  f->parse();
  return f;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::from_memory(const uint8_t* data, size_t size,
                                                              const std::string& label) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = label;
  f->base_ = data;
  f->size_ = size;
  f->parse();
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapped_ && base_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsFile::parse() {
  const std::string& file = path_;
  if (size_ < 8) {
    fail(code::kSafetensorsHeader,
         file + ": file is " + std::to_string(size_) + " bytes, too short for the 8-byte header length");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | base_[i];
  if (n > kMaxHeaderBytes) {
    fail(code::kSafetensorsHeader, file + ": header length " + std::to_string(n) + " exceeds the " +
                                       std::to_string(kMaxHeaderBytes) + "-byte limit");
  }
  if (n > size_ - 8) {
    fail(code::kSafetensorsHeader, file + ": header length " + std::to_string(n) + " runs past the end of the " +
                                       std::to_string(size_) + "-byte file");
  }
  header_size_ = static_cast<size_t>(n);
  const uint8_t* data_start = base_ + 8 + header_size_;
  const uint64_t data_size = size_ - 8 - header_size_;

  std::string_view text(reinterpret_cast<const char*>(base_ + 8), header_size_);
  json::Value root = json::parse(text, code::kSafetensorsHeader, file + ": header");
  if (!root.is_object()) fail(code::kSafetensorsHeader, file + ": header is not a JSON object");

  struct Span {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Span> spans;
  std::set<std::string> seen;
  bool have_metadata = false;

  for (const auto& member : root.object) {
    const std::string& name = member.first;
    const json::Value& entry = member.second;
    if (name == "__metadata__") {
      if (have_metadata) fail(code::kSafetensorsHeader, file + ": duplicate __metadata__");
      have_metadata = true;
      if (!entry.is_object()) fail(code::kSafetensorsHeader, file + ": __metadata__ is not an object");
      for (const auto& kv : entry.object) {
        if (!kv.second.is_string()) {
          fail(code::kSafetensorsHeader, file + ": __metadata__ value for '" + kv.first + "' is not a string");
        }
        if (!metadata_.emplace(kv.first, kv.second.string).second) {
          fail(code::kSafetensorsHeader, file + ": duplicate __metadata__ key '" + kv.first + "'");
        }
      }
      continue;
    }
    const std::string where = file + ": tensor '" + name + "'";
    if (!seen.insert(name).second) fail(code::kSafetensorsHeader, where + ": duplicate tensor name");
    if (!entry.is_object()) fail(code::kSafetensorsHeader, where + ": entry is not an object");

    const json::Value* dtype_v = nullptr;
    const json::Value* shape_v = nullptr;
    const json::Value* offsets_v = nullptr;
    for (const auto& kv : entry.object) {
      const json::Value** slot = nullptr;
      if (kv.first == "dtype") {
        slot = &dtype_v;
      } else if (kv.first == "shape") {
        slot = &shape_v;
      } else if (kv.first == "data_offsets") {
        slot = &offsets_v;
      } else {
        fail(code::kSafetensorsHeader, where + ": unexpected field '" + kv.first + "'");
      }
      if (*slot) fail(code::kSafetensorsHeader, where + ": duplicate field '" + kv.first + "'");
      *slot = &kv.second;
    }
    if (!dtype_v) fail(code::kSafetensorsHeader, where + ": missing dtype");
    if (!shape_v) fail(code::kSafetensorsHeader, where + ": missing shape");
    if (!offsets_v) fail(code::kSafetensorsHeader, where + ": missing data_offsets");

    if (!dtype_v->is_string()) fail(code::kSafetensorsHeader, where + ": dtype is not a string");
    TensorView t;
    t.name = name;
    t.file = file;
    if (!parse_dtype(dtype_v->string, &t.dtype)) {
      fail(code::kSafetensorsDtype, where + ": unknown dtype '" + dtype_v->string + "'");
    }

    if (!shape_v->is_array()) fail(code::kSafetensorsHeader, where + ": shape is not an array");
    for (const auto& d : shape_v->array) {
      uint64_t dim;
      if (!as_index(d, &dim)) {
        fail(code::kSafetensorsHeader, where + ": shape entries must be non-negative integers");
      }
      t.shape.push_back(static_cast<int64_t>(dim));
    }

    if (!offsets_v->is_array() || offsets_v->array.size() != 2) {
      fail(code::kSafetensorsHeader, where + ": data_offsets must be an array of two integers");
    }
    uint64_t begin, end;
    if (!as_index(offsets_v->array[0], &begin) || !as_index(offsets_v->array[1], &end)) {
      fail(code::kSafetensorsHeader, where + ": data_offsets must be non-negative integers");
    }

    uint64_t numel, nbytes;
    if (!shape_bytes(t.shape, t.dtype, &numel, &nbytes)) {
      fail(code::kSafetensorsLayout, where + ": shape " + shape_text(t.shape) + " overflows its byte size");
    }
    if (end < begin) {
      fail(code::kSafetensorsLayout, where + ": data_offsets end " + std::to_string(end) + " is before begin " +
                                         std::to_string(begin));
    }
    if (end - begin != nbytes) {
      fail(code::kSafetensorsLayout, where + ": data_offsets span " + std::to_string(end - begin) +
                                         " bytes but shape " + shape_text(t.shape) + " x " + dtype_name(t.dtype) +
                                         " needs " + std::to_string(nbytes));
    }
    if (end > data_size) {
      fail(code::kSafetensorsLayout, where + ": data_offsets end " + std::to_string(end) +
                                         " is past the end of the " + std::to_string(data_size) +
                                         "-byte data buffer");
    }
    t.data = data_start + begin;
    t.nbytes = static_cast<size_t>(nbytes);
    spans.push_back({begin, end, tensors_.size()});
    tensors_.push_back(std::move(t));
  }

  std::stable_sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const Span& s : spans) {
    const std::string where = file + ": tensor '" + tensors_[s.index].name + "'";
    if (s.begin > cursor) {
      fail(code::kSafetensorsLayout, where + ": gap of " + std::to_string(s.begin - cursor) +
                                         " bytes before it (starts at " + std::to_string(s.begin) +
                                         ", previous data ends at " + std::to_string(cursor) + ")");
    }
    if (s.begin < cursor) {
      fail(code::kSafetensorsLayout, where + ": overlaps the previous tensor (starts at " +
                                         std::to_string(s.begin) + ", previous data ends at " +
                                         std::to_string(cursor) + ")");
    }
    cursor = s.end;
  }
  if (cursor != data_size) {
    fail(code::kSafetensorsLayout, file + ": " + std::to_string(data_size - cursor) +
                                       " trailing bytes after the last tensor (data buffer is " +
                                       std::to_string(data_size) + " bytes, tensors cover " +
                                       std::to_string(cursor) + ")");
  }
  for (size_t i = 0; i < tensors_.size(); ++i) by_name_.emplace(tensors_[i].name, i);
}

// ---------------------------------------------------------------------------
// Checkpoint

std::map<std::string, std::string> parse_safetensors_index(const std::string& text, const std::string& label) {
  json::Value root = json::parse(text, code::kSafetensorsIndex, label);
  if (!root.is_object()) fail(code::kSafetensorsIndex, label + ": index is not a JSON object");
  const json::Value* map = root.find("weight_map");
  if (!map) fail(code::kSafetensorsIndex, label + ": missing weight_map");
  if (!map->is_object()) fail(code::kSafetensorsIndex, label + ": weight_map is not an object");
  std::map<std::string, std::string> out;
  for (const auto& kv : map->object) {
    const std::string where = label + ": weight_map entry '" + kv.first + "'";
    if (!kv.second.is_string()) fail(code::kSafetensorsIndex, where + ": shard name is not a string");
    const std::string& shard = kv.second.string;
    if (shard.empty()) fail(code::kSafetensorsIndex, where + ": empty shard name");
    if (shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos ||
        shard.find('\0') != std::string::npos || shard == "." || shard == ".." ||
        shard.find("..") != std::string::npos) {
      fail(code::kSafetensorsIndex, where + ": shard '" + shard + "' is not a plain file name in the folder");
    }
    if (!out.emplace(kv.first, shard).second) fail(code::kSafetensorsIndex, where + ": duplicate tensor name");
  }
  if (out.empty()) fail(code::kSafetensorsIndex, label + ": weight_map is empty");
  return out;
}

std::unique_ptr<Checkpoint> Checkpoint::open_dir(const std::string& dir) {
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  const std::string single = join_path(dir, "model.safetensors");
  const std::string index_path = join_path(dir, "model.safetensors.index.json");
  if (file_exists(single)) {
    ckpt->files_.push_back(SafetensorsFile::open(single));
    for (const auto& t : ckpt->files_.back()->tensors()) ckpt->index_.emplace(t.name, &t);
    return ckpt;
  }
  if (!file_exists(index_path)) {
    fail(code::kIo, dir + ": no model.safetensors or model.safetensors.index.json");
  }
  const auto weight_map = parse_safetensors_index(read_small_file(index_path, kMaxHeaderBytes, code::kSafetensorsIndex), index_path);
  std::map<std::string, const SafetensorsFile*> shards;
  for (const auto& kv : weight_map) {
    if (shards.count(kv.second)) continue;
    const std::string shard_path = join_path(dir, kv.second);
    if (!file_exists(shard_path)) {
      fail(code::kSafetensorsIndex, index_path + ": shard '" + kv.second + "' (for tensor '" + kv.first +
                                        "') does not exist");
    }
    ckpt->files_.push_back(SafetensorsFile::open(shard_path));
    shards.emplace(kv.second, ckpt->files_.back().get());
  }
  for (const auto& kv : weight_map) {
    const TensorView* t = shards.at(kv.second)->find(kv.first);
    if (!t) {
      fail(code::kSafetensorsIndex, index_path + ": tensor '" + kv.first + "' is not in shard '" + kv.second + "'");
    }
    ckpt->index_.emplace(kv.first, t);
  }
  return ckpt;
}

const TensorView* Checkpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& kv : index_) out.push_back(kv.first);
  return out;
}

// ---------------------------------------------------------------------------
// SafetensorsWriter

SafetensorsWriter::SafetensorsWriter(const std::string& path, std::vector<Entry> entries,
                                     std::map<std::string, std::string> metadata, bool overwrite)
    : path_(path) {
  json::Value header;
  header.type = json::Type::Object;
  if (!metadata.empty()) {
    json::Value meta;
    meta.type = json::Type::Object;
    for (const auto& kv : metadata) {
      json::Value s;
      s.type = json::Type::String;
      s.string = kv.second;
      meta.object.emplace_back(kv.first, std::move(s));
    }
    header.object.emplace_back("__metadata__", std::move(meta));
  }
  auto integer = [](uint64_t x) {
    json::Value v;
    v.type = json::Type::Number;
    v.is_integer = true;
    v.integer = static_cast<int64_t>(x);
    v.number = static_cast<double>(x);
    return v;
  };
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const Entry& e : entries) {
    if (e.name.empty() || e.name == "__metadata__") {
      fail(code::kArgument, path + ": invalid tensor name '" + e.name + "'");
    }
    if (!names.insert(e.name).second) fail(code::kArgument, path + ": duplicate tensor name '" + e.name + "'");
    uint64_t numel, nbytes;
    if (!shape_bytes(e.shape, e.dtype, &numel, &nbytes)) {
      fail(code::kArgument, path + ": tensor '" + e.name + "' has an invalid shape " + shape_text(e.shape));
    }
    json::Value entry;
    entry.type = json::Type::Object;
    json::Value dtype;
    dtype.type = json::Type::String;
    dtype.string = dtype_name(e.dtype);
    json::Value shape;
    shape.type = json::Type::Array;
    for (int64_t d : e.shape) shape.array.push_back(integer(static_cast<uint64_t>(d)));
    json::Value offsets;
    offsets.type = json::Type::Array;
    offsets.array.push_back(integer(offset));
    if (__builtin_add_overflow(offset, nbytes, &offset) || offset > static_cast<uint64_t>(INT64_MAX)) {
      fail(code::kArgument, path + ": total tensor size overflows");
    }
    offsets.array.push_back(integer(offset));
    entry.object.emplace_back("dtype", std::move(dtype));
    entry.object.emplace_back("shape", std::move(shape));
    entry.object.emplace_back("data_offsets", std::move(offsets));
    header.object.emplace_back(e.name, std::move(entry));
  }
  expected_ = static_cast<size_t>(offset);

  std::string text = json::dump(header);
  while (text.size() % 8 != 0) text.push_back(' ');
  if (text.size() > kMaxHeaderBytes) fail(code::kArgument, path + ": header would exceed the 100 MB limit");

  file_ = std::make_unique<AtomicFile>(path_, overwrite);
  uint8_t len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  file_->write(len, 8);
  file_->write(text.data(), text.size());
  header_bytes_ = 8 + text.size();
}

SafetensorsWriter::~SafetensorsWriter() = default;

void SafetensorsWriter::check_room(size_t nbytes) const {
  if (done_) fail(code::kInternal, path_ + ": write after finish");
  if (nbytes > expected_ - written_) {
    fail(code::kInternal, path_ + ": write of " + std::to_string(nbytes) + " bytes exceeds the declared " +
                              std::to_string(expected_) + " data bytes (" + std::to_string(written_) +
                              " already written)");
  }
}

void SafetensorsWriter::write_data(const void* data, size_t nbytes) {
  check_room(nbytes);
  file_->write(data, nbytes);
  written_ += nbytes;
}

void SafetensorsWriter::copy_data(int src_fd, uint64_t offset, size_t nbytes, const std::string& src_path) {
  check_room(nbytes);
  file_->copy_from(src_fd, offset, nbytes, src_path);
  written_ += nbytes;
}

size_t SafetensorsWriter::finish() {
  if (done_) fail(code::kInternal, path_ + ": finish called twice");
  if (written_ != expected_) {
    fail(code::kInternal, path_ + ": wrote " + std::to_string(written_) + " data bytes, declared " +
                              std::to_string(expected_));
  }
  file_->sync_and_close();
  file_->publish();
  done_ = true;
  return header_bytes_ + written_;
}

// ---------------------------------------------------------------------------
// Conversion

void convert_to_f32(const TensorView& t, float* out) {
  const size_t n = static_cast<size_t>(t.numel());
  switch (t.dtype) {
    case DType::F32:
      std::memcpy(out, t.data, n * 4);
      return;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        out[i] = f16_to_f32(h);
      }
      return;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        uint32_t bits = static_cast<uint32_t>(h) << 16;
        std::memcpy(out + i, &bits, 4);
      }
      return;
    default:
      fail(code::kSafetensorsDtype, t.file + ": tensor '" + t.name + "' has dtype " + dtype_name(t.dtype) +
                                        "; only F32, F16 and BF16 convert to F32");
  }
}

}  // namespace hs
