// safetensors reader (mmap, zero-copy, fully validated) and streaming writer.
// Format: u64 little-endian header length N, N bytes of JSON header, then the data
// buffer. Every tensor entry {dtype, shape, data_offsets:[begin,end]} is checked:
// known dtype, shape product x dtype size == end - begin (checked arithmetic),
// spans inside the buffer, sorted contiguous and non-overlapping, covering the whole
// buffer (no trailing bytes), no duplicate names.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "files.h"

namespace hs {

enum class DType { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL };
const char* dtype_name(DType d);
size_t dtype_size(DType d);

struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into the mapping; valid while the file lives
  size_t nbytes = 0;
  std::string file;               // path of the file holding it (for error messages)
  int64_t numel() const;
};

// One mapped safetensors file.
class SafetensorsFile {
 public:
  // Maps and validates. Throws hs::Error (HOPSCOTCH_ERR_IO / _SAFETENSORS_HEADER /
  // _SAFETENSORS_LAYOUT / _SAFETENSORS_DTYPE) naming the file and tensor.
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  // Validates an in-memory image (used by the fuzzer and tests); the buffer must outlive the result.
  static std::unique_ptr<SafetensorsFile> from_memory(const uint8_t* data, size_t size, const std::string& label);
  ~SafetensorsFile();

  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }
  size_t header_size() const { return header_size_; }
  const uint8_t* bytes() const { return base_; }
  size_t size() const { return size_; }

 private:
  SafetensorsFile() = default;
  void parse();
  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  size_t header_size_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> by_name_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint folder: model.safetensors, or model.safetensors.index.json + shards.
// Shard names in the index must be plain file names inside the folder.
class Checkpoint {
 public:
  static std::unique_ptr<Checkpoint> open_dir(const std::string& dir);
  const TensorView* find(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

// Parses the text of a model.safetensors.index.json: weight_map name -> shard file.
// Validates shard names (no '/', '\\', '..', absolute paths, empty names).
std::map<std::string, std::string> parse_safetensors_index(const std::string& text, const std::string& label);

// Streaming writer. Tensors are declared up front (so the header can be written
// first), then their bytes are streamed in declaration order with write_data().
// Everything goes to "<path>.tmp-<pid>" in the target folder and is renamed over
// `path` by finish() after fsync; the destructor removes an unfinished temp file.
class SafetensorsWriter {
 public:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
  };
  SafetensorsWriter(const std::string& path, std::vector<Entry> entries,
                    std::map<std::string, std::string> metadata, bool overwrite);
  ~SafetensorsWriter();
  // Append bytes of the current tensor(s), in declaration order.
  void write_data(const void* data, size_t nbytes);
  // The same, copying `nbytes` of the open file `src_fd` from byte `offset` (see
  // AtomicFile::copy_from).
  void copy_data(int src_fd, uint64_t offset, size_t nbytes, const std::string& src_path);
  // Checks every declared byte was written, fsyncs, renames. Returns bytes written.
  size_t finish();

 private:
  // Refuses a write after finish() or past the declared data bytes (HOPSCOTCH_ERR_INTERNAL).
  void check_room(size_t nbytes) const;
  std::string path_;
  std::unique_ptr<AtomicFile> file_;
  size_t expected_ = 0, written_ = 0;
  size_t header_bytes_ = 0;  // 8-byte length + padded JSON header
  bool done_ = false;
};

// "[a, b, c]", for messages.
std::string shape_text(const std::vector<int64_t>& shape);

// Convenience: f32/bf16/f16 -> f32 conversion of a tensor's contents.
void convert_to_f32(const TensorView& t, float* out);

}  // namespace hs
