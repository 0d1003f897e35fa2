// libFuzzer target for the strict JSON parser (native/core/json.cpp).
//
// Any input either fails with hs::Error carrying the caller's code, or parses to a
// value v such that parse(dump(v)) == v, for both compact and indented output, and
// dump is a fixed point after one normalising pass. Numbers compare by value (JSON
// does not distinguish 1, 1.0 and 1e0), integers additionally by their exact int64.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_common.h"
#include "json.h"

namespace {

using hs::json::Type;
using hs::json::Value;

constexpr const char* kCode = hs::code::kArgument;
const std::string kWhat = "fuzz input";

bool same(const Value& a, const Value& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case Type::Null:
      return true;
    case Type::Bool:
      return a.boolean == b.boolean;
    case Type::Number:
      if (!std::isfinite(a.number) || !std::isfinite(b.number)) return false;
      if (a.number != b.number) return false;
      if (a.is_integer && !a.integer_overflow && b.is_integer && !b.integer_overflow) {
        return a.integer == b.integer;
      }
      return true;
    case Type::String:
      return a.string == b.string;
    case Type::Array:
      if (a.array.size() != b.array.size()) return false;
      for (size_t i = 0; i < a.array.size(); ++i) {
        if (!same(a.array[i], b.array[i])) return false;
      }
      return true;
    case Type::Object:
      if (a.object.size() != b.object.size()) return false;
      for (size_t i = 0; i < a.object.size(); ++i) {
        if (a.object[i].first != b.object[i].first) return false;
        if (!same(a.object[i].second, b.object[i].second)) return false;
      }
      return true;
  }
  return false;
}

// Parses text the fuzzer did not write (our own dump output): it must succeed.
Value reparse(const std::string& text) {
  try {
    return hs::json::parse(text, kCode, kWhat);
  } catch (const hs::Error& e) {
    std::fprintf(stderr, "dump output does not parse: %s\n--- text ---\n%s\n", e.what(), text.c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  // A shallow depth limit must be enforced with the caller's code, never by crashing.
  try {
    hs::json::parse(text, kCode, kWhat, 4);
  } catch (const hs::Error& e) {
    hs::fuzz::expect_code(e, {kCode});
  }

  Value v;
  try {
    v = hs::json::parse(text, kCode, kWhat);
  } catch (const hs::Error& e) {
    hs::fuzz::expect_code(e, {kCode});
    return 0;
  }

  const std::string compact = hs::json::dump(v);
  const Value v2 = reparse(compact);
  FUZZ_CHECK(same(v, v2));

  const Value v3 = reparse(hs::json::dump(v, 2));
  FUZZ_CHECK(same(v, v3));

  // After one pass the serialisation is canonical: dumping again changes nothing.
  const std::string compact2 = hs::json::dump(v2);
  FUZZ_CHECK(hs::json::dump(reparse(compact2)) == compact2);
  return 0;
}
