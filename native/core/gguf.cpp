// GGUF reader and streaming writer (see gguf.h for the layout).
#include "gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "errors.h"
#include "half.h"
#include "safetensors.h"

namespace hs::gguf {

namespace {


// Caps that keep a hostile header from asking for absurd allocations even when the
// counts fit the file (each entry still needs its bytes in the file).
constexpr uint64_t kMaxStringBytes = 1ull << 30;

struct TypeRow {
  uint32_t id;
  const char* name;
  int64_t block;
  size_t bytes;
};

// ggml_type ids, block sizes and block bytes (ggml.c type_traits; removed ids absent).
constexpr TypeRow kTypes[] = {
    {0, "F32", 1, 4},        {1, "F16", 1, 2},          {2, "Q4_0", 32, 18},      {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},     {7, "Q5_1", 32, 24},       {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},   {11, "Q3_K", 256, 110},    {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},  {15, "Q8_K", 256, 292},    {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},   {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82},  {23, "IQ4_XS", 256, 136},  {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},       {27, "I64", 1, 8},         {28, "F64", 1, 8},        {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},      {34, "TQ1_0", 256, 54},    {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

size_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::I8: case ValueType::BOOL: return 1;
    case ValueType::U16: case ValueType::I16: return 2;
    case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
    case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
    case ValueType::STRING: return 8;  // at least its length
    case ValueType::ARRAY: return 12;  // at least its element type and count
  }
  return 0;
}

bool known_value_type(uint32_t t) { return t <= 12; }

// Bounds-checked little-endian cursor over the header.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t n, const std::string& label) : p_(p), n_(n), label_(label) {}
  size_t pos() const { return pos_; }
  size_t left() const { return n_ - pos_; }
  void need(uint64_t k, const std::string& what) const {
    if (k > left())
      fail(code::kGgufHeader, label_ + ": " + what + " needs " + std::to_string(k) + " bytes at offset " +
                                  std::to_string(pos_) + ", only " + std::to_string(left()) + " remain");
  }
  uint64_t uint(size_t bytes, const std::string& what) {
    need(bytes, what);
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(p_[pos_ + i]) << (8 * i);
    pos_ += bytes;
    return v;
  }
  std::string str(const std::string& what) {
    uint64_t len = uint(8, what + " length");
    if (len > kMaxStringBytes) fail(code::kGgufHeader, label_ + ": " + what + " length " + std::to_string(len) + " is over the 1 GiB cap");
    need(len, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& label_;
};

Value read_scalar(Cursor& c, ValueType t, const std::string& what, const std::string& label) {
  Value v;
  v.type = t;
  switch (t) {
    case ValueType::U8: v.u = c.uint(1, what); break;
    case ValueType::U16: v.u = c.uint(2, what); break;
    case ValueType::U32: v.u = c.uint(4, what); break;
    case ValueType::U64: v.u = c.uint(8, what); break;
    case ValueType::I8: v.i = static_cast<int8_t>(c.uint(1, what)); break;
    case ValueType::I16: v.i = static_cast<int16_t>(c.uint(2, what)); break;
    case ValueType::I32: v.i = static_cast<int32_t>(c.uint(4, what)); break;
    case ValueType::I64: v.i = static_cast<int64_t>(c.uint(8, what)); break;
    case ValueType::BOOL: {
      v.u = c.uint(1, what);
      if (v.u > 1) fail(code::kGgufHeader, label + ": " + what + ": bool value " + std::to_string(v.u) + " is not 0 or 1");
      break;
    }
    case ValueType::F32: {
      uint32_t bits = static_cast<uint32_t>(c.uint(4, what));
      float f;
      std::memcpy(&f, &bits, 4);
      v.f = f;
      break;
    }
    case ValueType::F64: {
      uint64_t bits = c.uint(8, what);
      std::memcpy(&v.f, &bits, 8);
      break;
    }
    case ValueType::STRING: v.s = c.str(what); break;
    case ValueType::ARRAY: fail(code::kGgufHeader, label + ": " + what + ": nested arrays are not supported");
  }
  return v;
}

bool mul_ok(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }
bool add_ok(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }

void put_u(std::string& b, uint64_t v, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) b.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_str(std::string& b, const std::string& s) {
  put_u(b, s.size(), 8);
  b += s;
}

void put_scalar(std::string& b, const Value& v, ValueType t, const std::string& key) {
  switch (t) {
    case ValueType::U8: case ValueType::BOOL: put_u(b, v.u, 1); break;
    case ValueType::U16: put_u(b, v.u, 2); break;
    case ValueType::U32: put_u(b, v.u, 4); break;
    case ValueType::U64: put_u(b, v.u, 8); break;
    case ValueType::I8: put_u(b, static_cast<uint64_t>(v.i), 1); break;
    case ValueType::I16: put_u(b, static_cast<uint64_t>(v.i), 2); break;
    case ValueType::I32: put_u(b, static_cast<uint64_t>(v.i), 4); break;
    case ValueType::I64: put_u(b, static_cast<uint64_t>(v.i), 8); break;
    case ValueType::F32: {
      float f = static_cast<float>(v.f);
      uint32_t bits;
      std::memcpy(&bits, &f, 4);
      put_u(b, bits, 4);
      break;
    }
    case ValueType::F64: {
      uint64_t bits;
      std::memcpy(&bits, &v.f, 8);
      put_u(b, bits, 8);
      break;
    }
    case ValueType::STRING: put_str(b, v.s); break;
    case ValueType::ARRAY: fail(code::kArgument, "gguf key '" + key + "': nested arrays are not supported");
  }
}

}  // namespace

const char* value_type_name(ValueType t) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
  auto i = static_cast<uint32_t>(t);
  return i <= 12 ? names[i] : "?";
}

bool type_traits(uint32_t type, int64_t* block, size_t* block_bytes) {
  for (const auto& r : kTypes)
    if (r.id == type) {
      *block = r.block;
      *block_bytes = r.bytes;
      return true;
    }
  return false;
}

const char* type_name(uint32_t type) {
  for (const auto& r : kTypes)
    if (r.id == type) return r.name;
  return "?";
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

uint64_t fnv1a64(const uint8_t* p, size_t n, uint64_t h) {
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

// ---------------------------------------------------------------------------
// Reader

std::unique_ptr<File> File::open(const std::string& path) {
  const ReadOnlyMapping m = map_readonly(path);
  std::unique_ptr<File> f(new File());
  f->path_ = path;
  f->size_ = m.size;
  f->base_ = m.base;
  f->mapped_ = m.mapped;
  f->parse();
  return f;
}

std::unique_ptr<File> File::from_memory(const uint8_t* data, size_t size, const std::string& label) {
  std::unique_ptr<File> f(new File());
  f->path_ = label;
  f->base_ = data;
  f->size_ = size;
  f->parse();
  return f;
}

File::~File() {
  if (mapped_ && base_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

const Value* File::find_key(const std::string& key) const {
  auto it = key_index_.find(key);
  return it == key_index_.end() ? nullptr : &kvs_[it->second].value;
}

const TensorInfo* File::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

void File::parse() {
  const std::string& label = path_;
  Cursor c(base_, size_, label);
  if (size_ < 4 || std::memcmp(base_, "GGUF", 4) != 0)
    fail(code::kGgufHeader, label + ": not a GGUF file (the first 4 bytes are not \"GGUF\")");
  c.uint(4, "magic");
  version_ = static_cast<uint32_t>(c.uint(4, "version"));
  if (version_ != 2 && version_ != 3)
    fail(code::kGgufHeader, label + ": GGUF version " + std::to_string(version_) + " is not supported (2 and 3 are)");
  const uint64_t n_tensors = c.uint(8, "tensor count");
  const uint64_t n_kv = c.uint(8, "key/value count");
  // A key/value needs at least 8 (key length) + 4 (type) + 1 bytes; a tensor entry
  // 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
  if (n_kv > c.left() / 13)
    fail(code::kGgufHeader, label + ": key/value count " + std::to_string(n_kv) + " cannot fit in the " + std::to_string(size_) + "-byte file");
  if (n_tensors > c.left() / 24)
    fail(code::kGgufHeader, label + ": tensor count " + std::to_string(n_tensors) + " cannot fit in the " + std::to_string(size_) + "-byte file");

  kvs_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string where = "key/value " + std::to_string(k);
    KeyValue kv;
    kv.key = c.str(where + " key");
    const std::string what = "key '" + kv.key + "'";
    if (kv.key.empty()) fail(code::kGgufHeader, label + ": " + where + " has an empty key");
    const uint32_t t = static_cast<uint32_t>(c.uint(4, what + " type"));
    if (!known_value_type(t)) fail(code::kGgufHeader, label + ": " + what + " has unknown value type " + std::to_string(t));
    if (static_cast<ValueType>(t) == ValueType::ARRAY) {
      kv.value.type = ValueType::ARRAY;
      const uint32_t et = static_cast<uint32_t>(c.uint(4, what + " element type"));
      if (!known_value_type(et)) fail(code::kGgufHeader, label + ": " + what + " has unknown array element type " + std::to_string(et));
      kv.value.elem = static_cast<ValueType>(et);
      if (kv.value.elem == ValueType::ARRAY) fail(code::kGgufHeader, label + ": " + what + ": nested arrays are not supported");
      const uint64_t count = c.uint(8, what + " array length");
      uint64_t min_bytes;
      if (!mul_ok(count, scalar_size(kv.value.elem), &min_bytes) || min_bytes > c.left())
        fail(code::kGgufHeader, label + ": " + what + " array of " + std::to_string(count) + " " +
                                    value_type_name(kv.value.elem) + " runs past the end of the file");
      kv.value.items.reserve(static_cast<size_t>(count));
      for (uint64_t i = 0; i < count; ++i) kv.value.items.push_back(read_scalar(c, kv.value.elem, what + "[" + std::to_string(i) + "]", label));
    } else {
      kv.value = read_scalar(c, static_cast<ValueType>(t), what, label);
    }
    if (!key_index_.emplace(kv.key, kvs_.size()).second) fail(code::kGgufHeader, label + ": duplicate key '" + kv.key + "'");
    kvs_.push_back(std::move(kv));
  }
  if (const Value* a = find_key("general.alignment")) {
    if (a->type != ValueType::U32) fail(code::kGgufHeader, label + ": general.alignment must be a u32, got " + value_type_name(a->type));
    if (a->u == 0 || (a->u & (a->u - 1)) != 0) fail(code::kGgufHeader, label + ": general.alignment " + std::to_string(a->u) + " is not a power of two");
    alignment_ = static_cast<uint32_t>(a->u);
  }

  tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    TensorInfo t;
    t.name = c.str("tensor " + std::to_string(k) + " name");
    const std::string where = label + ": tensor '" + t.name + "'";
    if (t.name.empty() || t.name.size() > kMaxNameBytes)
      fail(code::kGgufLayout, where + ": name must be 1 to " + std::to_string(kMaxNameBytes) + " bytes");
    const uint32_t n_dims = static_cast<uint32_t>(c.uint(4, "tensor '" + t.name + "' n_dims"));
    if (n_dims == 0 || n_dims > kMaxDims) fail(code::kGgufLayout, where + ": " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.uint(8, "tensor '" + t.name + "' dimension");
      if (ne > static_cast<uint64_t>(INT64_MAX) || !mul_ok(numel, ne, &numel) || numel > static_cast<uint64_t>(INT64_MAX))
        fail(code::kGgufLayout, where + ": element count overflows");
      t.ne.push_back(static_cast<int64_t>(ne));
    }
    t.type = static_cast<uint32_t>(c.uint(4, "tensor '" + t.name + "' type"));
    int64_t block;
    size_t block_bytes;
    if (!type_traits(t.type, &block, &block_bytes)) fail(code::kGgufLayout, where + ": unknown ggml type " + std::to_string(t.type));
    if (t.ne[0] % block != 0)
      fail(code::kGgufLayout, where + ": ne[0] = " + std::to_string(t.ne[0]) + " is not a multiple of the " + type_name(t.type) +
                                  " block size " + std::to_string(block));
    if (!mul_ok(numel / static_cast<uint64_t>(block), block_bytes, &t.nbytes)) fail(code::kGgufLayout, where + ": byte size overflows");
    t.offset = c.uint(8, "tensor '" + t.name + "' offset");
    if (t.offset % alignment_ != 0)
      fail(code::kGgufLayout, where + ": offset " + std::to_string(t.offset) + " is not a multiple of the alignment " + std::to_string(alignment_));
    if (!tensor_index_.emplace(t.name, tensors_.size()).second) fail(code::kGgufLayout, where + ": duplicate tensor name");
    tensors_.push_back(std::move(t));
  }
  uint64_t data = c.pos();
  if (data % alignment_) data += alignment_ - data % alignment_;
  if (data > size_ && !tensors_.empty())
    fail(code::kGgufLayout, label + ": the data section would start at " + std::to_string(data) + ", past the end of the " + std::to_string(size_) + "-byte file");
  data_offset_ = std::min<uint64_t>(data, size_);
  const uint64_t data_size = size_ - data_offset_;

  std::vector<size_t> order(tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return tensors_[a].offset < tensors_[b].offset; });
  uint64_t cursor = 0;
  const TensorInfo* prev = nullptr;
  for (size_t i : order) {
    const TensorInfo& t = tensors_[i];
    uint64_t end;
    if (!add_ok(t.offset, t.nbytes, &end) || end > data_size)
      fail(code::kGgufLayout, label + ": tensor '" + t.name + "' (" + std::to_string(t.nbytes) + " bytes at data offset " +
                                  std::to_string(t.offset) + ") runs past the end of the " + std::to_string(data_size) + "-byte data section");
    if (prev && t.offset < cursor)
      fail(code::kGgufLayout, label + ": tensor '" + t.name + "' overlaps tensor '" + prev->name + "'");
    cursor = end;
    prev = &t;
  }
}

// ---------------------------------------------------------------------------
// Conversion

size_t encoded_bytes(size_t n, TensorType type) {
  switch (type) {
    case TensorType::F32: return n * 4;
    case TensorType::F16:
    case TensorType::BF16: return n * 2;
    case TensorType::Q8_0: return n / kQ8Block * kQ8BlockBytes;
  }
  return 0;
}

void encode(const float* x, size_t n, TensorType type, std::vector<uint8_t>* out) {
  out->resize(encoded_bytes(n, type));
  uint8_t* o = out->data();
  switch (type) {
    case TensorType::F32:
      std::memcpy(o, x, n * 4);
      return;
    case TensorType::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h = f32_to_f16(x[i]);
        std::memcpy(o + 2 * i, &h, 2);
      }
      return;
    case TensorType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h = f32_to_bf16(x[i]);
        std::memcpy(o + 2 * i, &h, 2);
      }
      return;
    case TensorType::Q8_0: {
      if (n % kQ8Block != 0) fail(code::kInternal, "Q8_0 needs a multiple of 32 values");
      for (size_t b = 0; b < n / kQ8Block; ++b) {
        const float* v = x + b * kQ8Block;
        float amax = 0;
        for (int j = 0; j < kQ8Block; ++j) amax = std::max(amax, std::fabs(v[j]));
        // As quantize_row_q8_0_ref: d = amax / 127 stored as f16, q = roundf(x / d)
        // with the reciprocal of the unrounded d.
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t* blk = o + b * kQ8BlockBytes;
        uint16_t dh = f32_to_f16(d);
        std::memcpy(blk, &dh, 2);
        for (int j = 0; j < kQ8Block; ++j) blk[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::roundf(v[j] * id)));
      }
      return;
    }
  }
}

void tensor_to_f32(const File& f, const TensorInfo& t, float* out) {
  const uint8_t* p = f.tensor_data(t);
  const size_t n = static_cast<size_t>(t.numel());
  switch (t.type) {
    case 0:
      std::memcpy(out, p, n * 4);
      return;
    case 1:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = f16_to_f32(h);
      }
      return;
    case 30:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        uint32_t bits = static_cast<uint32_t>(h) << 16;
        std::memcpy(out + i, &bits, 4);
      }
      return;
    case 8:
      for (size_t b = 0; b < n / kQ8Block; ++b) {
        const uint8_t* blk = p + b * kQ8BlockBytes;
        uint16_t dh;
        std::memcpy(&dh, blk, 2);
        const float d = f16_to_f32(dh);
        for (int j = 0; j < kQ8Block; ++j) out[b * kQ8Block + j] = d * static_cast<float>(static_cast<int8_t>(blk[2 + j]));
      }
      return;
    default:
      fail(code::kGgufLayout, f.path() + ": tensor '" + t.name + "' has type " + type_name(t.type) +
                                  "; only F32, F16, BF16 and Q8_0 convert to f32");
  }
}

// ---------------------------------------------------------------------------
// Writer

Writer::Writer(const std::string& path, const std::vector<KeyValue>& kvs, std::vector<Tensor> tensors, bool overwrite)
    : path_(path), overwrite_(overwrite), tensors_(std::move(tensors)) {
  std::string head = "GGUF";
  put_u(head, kVersion, 4);
  put_u(head, tensors_.size(), 8);
  put_u(head, kvs.size(), 8);
  std::map<std::string, int> seen;
  for (const KeyValue& kv : kvs) {
    if (kv.key.empty() || !seen.emplace(kv.key, 0).second) fail(code::kArgument, path + ": empty or duplicate gguf key '" + kv.key + "'");
    if (kv.key == "general.alignment" && (kv.value.type != ValueType::U32 || kv.value.u != kDefaultAlignment))
      fail(code::kArgument, path + ": only the default alignment of 32 is written");
    put_str(head, kv.key);
    put_u(head, static_cast<uint32_t>(kv.value.type), 4);
    if (kv.value.type == ValueType::ARRAY) {
      put_u(head, static_cast<uint32_t>(kv.value.elem), 4);
      put_u(head, kv.value.items.size(), 8);
      for (const Value& item : kv.value.items) put_scalar(head, item, kv.value.elem, kv.key);
    } else {
      put_scalar(head, kv.value, kv.value.type, kv.key);
    }
  }
  std::map<std::string, int> names;
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    if (t.name.empty() || t.name.size() > kMaxNameBytes || !names.emplace(t.name, 0).second)
      fail(code::kArgument, path + ": tensor name '" + t.name + "' is empty, longer than 63 bytes or repeated");
    if (t.ne.empty() || t.ne.size() > kMaxDims) fail(code::kArgument, path + ": tensor '" + t.name + "' must have 1 to 4 dimensions");
    uint64_t n = 1;
    for (int64_t d : t.ne)
      if (d <= 0 || !mul_ok(n, static_cast<uint64_t>(d), &n)) fail(code::kArgument, path + ": tensor '" + t.name + "' has an invalid shape");
    if (t.type == TensorType::Q8_0 && t.ne[0] % kQ8Block != 0)
      fail(code::kArgument, path + ": tensor '" + t.name + "': Q8_0 needs ne[0] to be a multiple of 32, got " + std::to_string(t.ne[0]));
    const uint64_t bytes = encoded_bytes(static_cast<size_t>(n), t.type);
    put_str(head, t.name);
    put_u(head, t.ne.size(), 4);
    for (int64_t d : t.ne) put_u(head, static_cast<uint64_t>(d), 8);
    put_u(head, static_cast<uint32_t>(t.type), 4);
    put_u(head, offset, 8);
    sizes_.push_back(bytes);
    offset += bytes;
    if (offset % kDefaultAlignment) offset += kDefaultAlignment - offset % kDefaultAlignment;
  }
  while (head.size() % kDefaultAlignment) head.push_back('\0');

  file_ = std::make_unique<AtomicFile>(path_, overwrite_);
  file_->write(head.data(), head.size());
  pos_ = head.size();
}

Writer::~Writer() = default;

void Writer::write_tensor(const uint8_t* data, size_t nbytes) {
  if (finished_ || next_ >= tensors_.size()) fail(code::kInternal, path_ + ": more tensors written than declared");
  if (nbytes != sizes_[next_])
    fail(code::kInternal, path_ + ": tensor '" + tensors_[next_].name + "' has " + std::to_string(nbytes) + " bytes, declared " +
                              std::to_string(sizes_[next_]));
  file_->write(data, nbytes);
  sums_.push_back(fnv1a64(data, nbytes));
  pos_ += nbytes;
  ++next_;
  if (next_ < tensors_.size() && pos_ % kDefaultAlignment) {
    static const uint8_t zeros[kDefaultAlignment] = {};
    const size_t pad = kDefaultAlignment - pos_ % kDefaultAlignment;
    file_->write(zeros, pad);
    pos_ += pad;
  }
}

uint64_t Writer::finish() {
  if (finished_) fail(code::kInternal, path_ + ": finish called twice");
  if (next_ != tensors_.size())
    fail(code::kInternal, path_ + ": wrote " + std::to_string(next_) + " of " + std::to_string(tensors_.size()) + " tensors");
  file_->sync_and_close();
  finished_ = true;
  return pos_;
}

void Writer::publish() {
  if (!finished_) fail(code::kInternal, path_ + ": publish before finish");
  file_->publish();
}

}  // namespace hs::gguf
