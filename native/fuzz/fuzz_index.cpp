// libFuzzer target for parse_safetensors_index (model.safetensors.index.json).
//
// Any input either fails with HOPSCOTCH_ERR_SAFETENSORS_INDEX, or yields a non-empty
// weight map whose shard names are plain file names: non-empty, no path separators,
// no NUL, no "..", so joining them onto the checkpoint folder cannot escape it.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_common.h"
#include "safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::map<std::string, std::string> weight_map;
  try {
    weight_map = hs::parse_safetensors_index(text, "model.safetensors.index.json");
  } catch (const hs::Error& e) {
    hs::fuzz::expect_code(e, {hs::code::kSafetensorsIndex});
    return 0;
  }
  FUZZ_CHECK(!weight_map.empty());
  for (const auto& kv : weight_map) {
    const std::string& shard = kv.second;
    FUZZ_CHECK(!shard.empty());
    FUZZ_CHECK(shard.find('/') == std::string::npos);
    FUZZ_CHECK(shard.find('\\') == std::string::npos);
    FUZZ_CHECK(shard.find('\0') == std::string::npos);
    FUZZ_CHECK(shard.find("..") == std::string::npos);
    FUZZ_CHECK(shard != ".");
  }
  return 0;
}
