// The file operations every reader and writer of the engine shares: a read-only mapping,
// a small whole-file read, and a file published atomically (written under a temporary name
// beside its destination, fsynced, renamed over it, the folder fsynced), so a reader never
// sees a partial file and a failed or abandoned write leaves nothing behind.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace hs {

// strerror(errno), for messages.
std::string errno_text();

// A regular file mapped read-only (a zero-length file is not mapped: base is null).
// Throws HOPSCOTCH_ERR_IO naming the path when it cannot be opened, is not a regular
// file or cannot be mapped. Shared by the safetensors and GGUF readers.
struct ReadOnlyMapping {
  const uint8_t* base = nullptr;
  size_t size = 0;
  bool mapped = false;
};
ReadOnlyMapping map_readonly(const std::string& path);

// The whole of a small file (a config or an index). HOPSCOTCH_ERR_IO naming the path when
// it cannot be opened or read; `too_large` (a code) when it exceeds max_bytes.
std::string read_small_file(const std::string& path, size_t max_bytes, const char* too_large);

// One output file of the safetensors and GGUF writers.
class AtomicFile {
 public:
  // Refuses an existing `path` unless `overwrite` (HOPSCOTCH_ERR_EXISTS), then creates
  // `path`.tmp-<pid> exclusively (HOPSCOTCH_ERR_IO).
  AtomicFile(const std::string& path, bool overwrite);
  // Closes and removes the temporary file unless it was published.
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Appends all `nbytes` (retrying short writes and EINTR) or throws HOPSCOTCH_ERR_IO.
  void write(const void* data, size_t nbytes);
  // Appends `nbytes` of the open file `src_fd` from byte `offset`, copied by the kernel
  // (copy_file_range) where it can, else read and written through a buffer.
  void copy_from(int src_fd, uint64_t offset, size_t nbytes, const std::string& src_path);
  // fsync and close: the temporary file is complete on disk (it can be read back by path).
  void sync_and_close();
  // Renames the closed temporary file over `path` (refusing a file that appeared meanwhile
  // unless `overwrite`) and fsyncs the folder.
  void publish();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_; }

 private:
  std::string path_, tmp_;
  bool overwrite_ = false;
  int fd_ = -1;
  bool published_ = false;
  // Bytes written, and how many of them have been handed to the disk's write-back.
  uint64_t written_ = 0, kicked_ = 0;
  static constexpr uint64_t kWritebackChunk = uint64_t{32} << 20;
  void wrote(uint64_t n);  // counts written bytes and queues their write-back
};

}  // namespace hs
