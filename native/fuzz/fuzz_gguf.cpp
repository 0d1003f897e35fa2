// libFuzzer target for the GGUF reader (gguf::File::from_memory).
//
// Any input either fails with one of the reader's documented codes, or parses into a
// header whose every tensor lies inside the data section, aligned, without overlaps,
// with a byte size that matches its type and dimensions; names and keys resolve
// through find_*; and small F32/F16/BF16/Q8_0 tensors convert to f32 (other types
// must be refused with HOPSCOTCH_ERR_GGUF_LAYOUT).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz_common.h"
#include "gguf.h"

namespace {
constexpr int64_t kMaxConvertElements = 1 << 16;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<hs::gguf::File> file;
  try {
    file = hs::gguf::File::from_memory(data, size, "fuzz.gguf");
  } catch (const hs::Error& e) {
    hs::fuzz::expect_code(e, {hs::code::kGgufHeader, hs::code::kGgufLayout});
    return 0;
  }
  FUZZ_CHECK(file->version() == 2 || file->version() == 3);
  const uint32_t align = file->alignment();
  FUZZ_CHECK(align != 0 && (align & (align - 1)) == 0);
  FUZZ_CHECK(file->data_offset() <= size);
  for (const auto& kv : file->metadata()) FUZZ_CHECK(file->find_key(kv.key) == &kv.value);
  const uint64_t data_size = size - file->data_offset();
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const auto& t : file->tensors()) {
    FUZZ_CHECK(file->find_tensor(t.name) == &t);
    FUZZ_CHECK(!t.ne.empty() && t.ne.size() <= hs::gguf::kMaxDims);
    FUZZ_CHECK(t.offset % align == 0);
    FUZZ_CHECK(t.offset <= data_size && t.nbytes <= data_size - t.offset);
    int64_t block;
    size_t block_bytes;
    FUZZ_CHECK(hs::gguf::type_traits(t.type, &block, &block_bytes));
    const int64_t numel = t.numel();
    FUZZ_CHECK(numel >= 0 && t.ne[0] % block == 0);
    FUZZ_CHECK(static_cast<uint64_t>(numel / block) * block_bytes == t.nbytes);
    spans.emplace_back(t.offset, t.offset + t.nbytes);
    if (numel <= kMaxConvertElements) {
      std::vector<float> out(static_cast<size_t>(numel) + 1, 0.0f);
      out[static_cast<size_t>(numel)] = 12345.0f;
      const bool convertible = t.type == 0 || t.type == 1 || t.type == 8 || t.type == 30;
      try {
        hs::gguf::tensor_to_f32(*file, t, out.data());
        FUZZ_CHECK(convertible);
        FUZZ_CHECK(out[static_cast<size_t>(numel)] == 12345.0f);
      } catch (const hs::Error& e) {
        FUZZ_CHECK(!convertible);
        hs::fuzz::expect_code(e, {hs::code::kGgufLayout});
      }
    }
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) FUZZ_CHECK(spans[i].first >= spans[i - 1].second);
  return 0;
}
