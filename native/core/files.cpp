// See files.h.
#include "files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "errors.h"

namespace hs {

std::string errno_text() { return std::strerror(errno); }

ReadOnlyMapping map_readonly(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(code::kIo, path + ": cannot open: " + errno_text());
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    std::string why = errno_text();
    ::close(fd);
    fail(code::kIo, path + ": cannot stat: " + why);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(code::kIo, path + ": not a regular file");
  }
  ReadOnlyMapping m;
  m.size = static_cast<size_t>(st.st_size);
  if (m.size > 0) {
    void* p = ::mmap(nullptr, m.size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      std::string why = errno_text();
      ::close(fd);
      fail(code::kIo, path + ": mmap failed: " + why);
    }
    m.base = static_cast<const uint8_t*>(p);
    m.mapped = true;
  }
  ::close(fd);
  return m;
}

std::string read_small_file(const std::string& path, size_t max_bytes, const char* too_large) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(code::kIo, path + ": cannot open: " + errno_text());
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::string why = errno_text();
      ::close(fd);
      fail(code::kIo, path + ": read failed: " + why);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      ::close(fd);
      fail(too_large, path + ": file larger than " + std::to_string(max_bytes) + " bytes");
    }
  }
  ::close(fd);
  return out;
}

namespace {

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string parent_dir(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

AtomicFile::AtomicFile(const std::string& path, bool overwrite) : path_(path), overwrite_(overwrite) {
  if (!overwrite_ && exists(path_)) fail(code::kExists, path_ + ": already exists");
  const std::string tmp = path_ + ".tmp-" + std::to_string(::getpid());
  fd_ = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(code::kIo, tmp + ": cannot create: " + errno_text());
  tmp_ = tmp;  // ours from here: the destructor removes it unless published
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!published_ && !tmp_.empty()) ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t nbytes) {
  if (fd_ < 0) fail(code::kInternal, path_ + ": write after close");
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (nbytes > 0) {
    ssize_t w = ::write(fd_, p, nbytes);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(code::kIo, tmp_ + ": write failed: " + errno_text());
    }
    p += w;
    nbytes -= static_cast<size_t>(w);
    wrote(static_cast<uint64_t>(w));
  }
}

void AtomicFile::copy_from(int src_fd, uint64_t offset, size_t nbytes, const std::string& src_path) {
  if (fd_ < 0) fail(code::kInternal, path_ + ": write after close");
  auto off = static_cast<off_t>(offset);
#ifdef __linux__
  while (nbytes > 0) {
    ssize_t c = ::copy_file_range(src_fd, &off, fd_, nullptr, nbytes, 0);
    if (c < 0 && errno == EINTR) continue;
    if (c < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) break;  // not here: buffer
    if (c < 0) fail(code::kIo, tmp_ + ": copy from " + src_path + " failed: " + errno_text());
    if (c == 0) fail(code::kIo, src_path + ": unexpected end of file");
    nbytes -= static_cast<size_t>(c);
    wrote(static_cast<uint64_t>(c));
  }
#endif
  std::vector<uint8_t> buf(std::min(nbytes, size_t{8} << 20));
  while (nbytes > 0) {
    ssize_t r = ::pread(src_fd, buf.data(), std::min(nbytes, buf.size()), off);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail(code::kIo, src_path + ": read failed: " + errno_text());
    if (r == 0) fail(code::kIo, src_path + ": unexpected end of file");
    write(buf.data(), static_cast<size_t>(r));
    off += r;
    nbytes -= static_cast<size_t>(r);
  }
}

void AtomicFile::wrote(uint64_t n) {
  written_ += n;
#ifdef __linux__
  // Start the disk writing what is complete while the caller produces the rest, instead of
  // leaving a whole file of dirty pages to the final fsync (the kernel's own write-back
  // starts only past its dirty threshold, typically 10% of memory). Asynchronous: it queues
  // the write-back and returns; the fsync in sync_and_close() still makes the file durable.
  if (written_ - kicked_ >= kWritebackChunk) {
    ::sync_file_range(fd_, static_cast<off_t>(kicked_), static_cast<off_t>(written_ - kicked_), SYNC_FILE_RANGE_WRITE);
    kicked_ = written_;
  }
#endif
}

void AtomicFile::sync_and_close() {
  if (fd_ < 0) fail(code::kInternal, path_ + ": closed twice");
  if (::fsync(fd_) != 0) fail(code::kIo, tmp_ + ": fsync failed: " + errno_text());
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail(code::kIo, tmp_ + ": close failed: " + errno_text());
}

void AtomicFile::publish() {
  if (fd_ >= 0 || published_) fail(code::kInternal, path_ + ": publish before sync_and_close, or twice");
  if (!overwrite_ && exists(path_)) fail(code::kExists, path_ + ": already exists");
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail(code::kIo, path_ + ": rename from " + tmp_ + " failed: " + errno_text());
  published_ = true;
  int dfd = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace hs
