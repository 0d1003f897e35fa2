// GGUF (llama.cpp's model file format, version 3) reader and streaming writer.
//
// Layout: magic "GGUF", u32 version, u64 tensor count, u64 key/value count, the
// key/values (u64-length strings, u32 value type, value; arrays are u32 element type,
// u64 count, elements), the tensor table (name, u32 n_dims, u64 ne[n_dims] with ne[0]
// the contiguous dimension, u32 ggml type, u64 offset into the data section), padding
// to `general.alignment` (default 32), then the data section. All little-endian.
//
// The reader checks every length and count against the bytes that remain before it
// allocates or reads (the CVEs of llama.cpp's own reader came from unchecked counts
// and sizes), every product and sum with overflow checks, and that tensor spans are
// aligned, inside the file and do not overlap.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "files.h"

namespace hs::gguf {

inline constexpr uint32_t kVersion = 3;
inline constexpr uint32_t kDefaultAlignment = 32;
inline constexpr size_t kMaxNameBytes = 63;  // GGML_MAX_NAME - 1
inline constexpr uint32_t kMaxDims = 4;      // GGML_MAX_DIMS

enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* value_type_name(ValueType t);

// ggml tensor types this code writes and dequantizes. The reader also accepts (and
// sizes) the other ggml types, but only these four convert to f32.
enum class TensorType : uint32_t { F32 = 0, F16 = 1, Q8_0 = 8, BF16 = 30 };

// Q8_0 block: ggml-common.h's block_q8_0 { ggml_half d; int8_t qs[32]; }, 34 bytes per
// 32 values, value = d * qs[i]; quantized as quantize_row_q8_0_ref: d = max|x| / 127,
// qs = roundf(x / d). This is the layout of the llama.cpp that node-llama-cpp 3.21.1
// bundles (release tag v0.4.0), where the tests run the files; it has not changed since
// ggml introduced Q8_0.
inline constexpr int kQ8Block = 32;
inline constexpr size_t kQ8BlockBytes = 34;

// Block size (elements) and bytes per block of a ggml type id; false when unknown.
bool type_traits(uint32_t type, int64_t* block, size_t* block_bytes);
const char* type_name(uint32_t type);

// One key/value. Scalars live in the first matching field; arrays in `items`
// (elements of `elem` type, each a Value of that type; nested arrays are refused).
struct Value {
  ValueType type = ValueType::U32;
  ValueType elem = ValueType::U32;  // arrays only
  uint64_t u = 0;                    // U8/U16/U32/U64/BOOL
  int64_t i = 0;                     // I8/I16/I32/I64
  double f = 0;                      // F32/F64
  std::string s;                     // STRING
  std::vector<Value> items;          // ARRAY
};

struct KeyValue {
  std::string key;
  Value value;
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ne[0] is the contiguous dimension (reverse of a torch shape)
  uint32_t type = 0;
  uint64_t offset = 0;      // relative to the data section
  uint64_t nbytes = 0;
  int64_t numel() const;
};

// A parsed GGUF image (mapped file or caller's buffer).
class File {
 public:
  // Throws hs::Error: HOPSCOTCH_ERR_IO, HOPSCOTCH_ERR_GGUF_HEADER (magic, version,
  // counts, key/values), HOPSCOTCH_ERR_GGUF_LAYOUT (tensor table and data spans).
  static std::unique_ptr<File> open(const std::string& path);
  static std::unique_ptr<File> from_memory(const uint8_t* data, size_t size, const std::string& label);
  ~File();

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  const std::vector<KeyValue>& metadata() const { return kvs_; }
  const Value* find_key(const std::string& key) const;
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(const std::string& name) const;
  const uint8_t* tensor_data(const TensorInfo& t) const { return base_ + data_offset_ + t.offset; }

 private:
  File() = default;
  void parse();
  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<KeyValue> kvs_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> key_index_, tensor_index_;
};

// Dequantizes / converts a F32, F16, BF16 or Q8_0 tensor to f32 (numel values);
// other types throw HOPSCOTCH_ERR_GGUF_LAYOUT.
void tensor_to_f32(const File& f, const TensorInfo& t, float* out);

// Encodes n f32 values (n a multiple of 32 for Q8_0) as `type` into `out`
// (resized). F16/BF16 round to nearest even.
void encode(const float* x, size_t n, TensorType type, std::vector<uint8_t>* out);
size_t encoded_bytes(size_t n, TensorType type);

// 64-bit FNV-1a, used by the writer and its read-back check.
uint64_t fnv1a64(const uint8_t* p, size_t n, uint64_t h = 0xcbf29ce484222325ull);

// Streaming writer: key/values and the tensor table are declared up front and written
// first; tensor bytes then follow in declaration order (write_tensor), each padded to
// the alignment. Writes "<path>.tmp-<pid>"; finish() fsyncs and returns; publish()
// renames over `path`. The destructor removes an unpublished temporary file.
class Writer {
 public:
  struct Tensor {
    std::string name;
    std::vector<int64_t> ne;
    TensorType type;
  };
  Writer(const std::string& path, const std::vector<KeyValue>& kvs, std::vector<Tensor> tensors, bool overwrite);
  ~Writer();
  void write_tensor(const uint8_t* data, size_t nbytes);
  // Checks every tensor was written, fsyncs and closes. Returns the file size.
  uint64_t finish();
  // Renames the finished temporary file over `path` (refusing an existing one unless overwrite).
  void publish();
  const std::string& temp_path() const { return file_->temp_path(); }
  const std::vector<uint64_t>& checksums() const { return sums_; }

 private:
  std::string path_;
  bool overwrite_ = false;
  std::unique_ptr<AtomicFile> file_;
  std::vector<Tensor> tensors_;
  std::vector<uint64_t> sizes_, sums_;
  size_t next_ = 0;
  uint64_t pos_ = 0;
  bool finished_ = false;
};

}  // namespace hs::gguf
