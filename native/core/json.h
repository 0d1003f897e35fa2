// A small strict JSON parser (RFC 8259) for safetensors headers, index files and
// config.json. Inputs come from strangers: depth, size and number syntax are all
// checked, and every failure throws hs::Error with the caller's code.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace hs::json {

enum class Type { Null, Bool, Number, String, Array, Object };

struct Value {
  Type type = Type::Null;
  bool boolean = false;
  double number = 0.0;
  bool is_integer = false;    // the literal had no fraction or exponent
  int64_t integer = 0;        // valid when is_integer and it fits in int64
  bool integer_overflow = false;
  std::string string;
  std::vector<Value> array;
  // Object members in document order; duplicates are kept so callers can reject them.
  std::vector<std::pair<std::string, Value>> object;

  bool is_null() const { return type == Type::Null; }
  bool is_object() const { return type == Type::Object; }
  bool is_array() const { return type == Type::Array; }
  bool is_string() const { return type == Type::String; }
  bool is_number() const { return type == Type::Number; }
  bool is_bool() const { return type == Type::Bool; }
  // Returns the first member with that key, or nullptr.
  const Value* find(std::string_view key) const;
};

// Parses `text` completely (trailing whitespace allowed, nothing else).
// On error throws hs::Error(error_code, "<what>: <reason> at byte N").
Value parse(std::string_view text, const char* error_code, const std::string& what, int max_depth = 64);

// Serialises a value (used by writers: safetensors headers, configs, adapters).
std::string dump(const Value& v, int indent = -1);
std::string quote(std::string_view s);

}  // namespace hs::json
