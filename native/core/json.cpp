// Strict RFC 8259 JSON parser and serialiser.
//
// The parser accepts exactly the grammar of RFC 8259: no comments, no trailing
// commas, no NaN/Infinity, no leading zeros, no raw control characters in strings,
// no lone surrogates, valid UTF-8 only, and nothing but whitespace after the value.
// Nesting is bounded by `max_depth`. Numbers keep both a double and, for literals
// without fraction or exponent, an exact int64 with overflow detection.
#include "json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "errors.h"

namespace hs::json {

const Value* Value::find(std::string_view key) const {
  for (const auto& member : object) {
    if (member.first == key) return &member.second;
  }
  return nullptr;
}

namespace {

class Parser {
 public:
  Parser(std::string_view text, const char* code, const std::string& what, int max_depth)
      : text_(text), code_(code), what_(what), max_depth_(max_depth) {}

  Value parse_document() {
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (pos_ != text_.size()) error("unexpected trailing characters");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& reason) const { error_at(reason, pos_); }
  [[noreturn]] void error_at(const std::string& reason, size_t at) const {
    fail(code_, what_ + ": invalid JSON: " + reason + " at byte " + std::to_string(at));
  }

  bool at_end() const { return pos_ >= text_.size(); }
  unsigned char peek() const { return static_cast<unsigned char>(text_[pos_]); }

  void skip_ws() {
    while (!at_end()) {
      char c = text_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else {
        break;
      }
    }
  }

  void expect_literal(std::string_view lit) {
    if (text_.substr(pos_, lit.size()) != lit) error("invalid literal");
    pos_ += lit.size();
  }

  Value parse_value(int depth) {
    if (at_end()) error("unexpected end of input");
    Value v;
    switch (text_[pos_]) {
      case '{':
        return parse_object(depth + 1);
      case '[':
        return parse_array(depth + 1);
      case '"':
        v.type = Type::String;
        v.string = parse_string();
        return v;
      case 't':
        expect_literal("true");
        v.type = Type::Bool;
        v.boolean = true;
        return v;
      case 'f':
        expect_literal("false");
        v.type = Type::Bool;
        return v;
      case 'n':
        expect_literal("null");
        return v;
      default:
        if (text_[pos_] == '-' || (text_[pos_] >= '0' && text_[pos_] <= '9')) return parse_number();
        error("unexpected character");
    }
  }

  Value parse_object(int depth) {
    if (depth > max_depth_) error("nesting deeper than " + std::to_string(max_depth_));
    Value v;
    v.type = Type::Object;
    ++pos_;  // '{'
    skip_ws();
    if (!at_end() && text_[pos_] == '}') {
      ++pos_;
      return v;
    }
    for (;;) {
      skip_ws();
      if (at_end() || text_[pos_] != '"') error("expected a string key");
      std::string key = parse_string();
      skip_ws();
      if (at_end() || text_[pos_] != ':') error("expected ':'");
      ++pos_;
      skip_ws();
      Value member = parse_value(depth);
      v.object.emplace_back(std::move(key), std::move(member));
      skip_ws();
      if (at_end()) error("unterminated object");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == '}') {
        ++pos_;
        return v;
      }
      error("expected ',' or '}'");
    }
  }

  Value parse_array(int depth) {
    if (depth > max_depth_) error("nesting deeper than " + std::to_string(max_depth_));
    Value v;
    v.type = Type::Array;
    ++pos_;  // '['
    skip_ws();
    if (!at_end() && text_[pos_] == ']') {
      ++pos_;
      return v;
    }
    for (;;) {
      skip_ws();
      v.array.push_back(parse_value(depth));
      skip_ws();
      if (at_end()) error("unterminated array");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == ']') {
        ++pos_;
        return v;
      }
      error("expected ',' or ']'");
    }
  }

  unsigned parse_hex4() {
    if (pos_ + 4 > text_.size()) error("truncated \\u escape");
    unsigned cp = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text_[pos_ + i];
      cp <<= 4;
      if (c >= '0' && c <= '9') {
        cp |= static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        cp |= static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        cp |= static_cast<unsigned>(c - 'A' + 10);
      } else {
        error("invalid hex digit in \\u escape");
      }
    }
    pos_ += 4;
    return cp;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  // Copies one raw UTF-8 sequence starting at pos_, rejecting malformed, overlong,
  // surrogate and out-of-range encodings.
  void copy_utf8(std::string& out) {
    size_t start = pos_;
    unsigned char b0 = peek();
    int extra;
    unsigned cp;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      extra = 1;
      cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      extra = 2;
      cp = b0 & 0x0F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      extra = 3;
      cp = b0 & 0x07;
    } else {
      error("invalid UTF-8 byte");
    }
    if (pos_ + 1 + extra > text_.size()) error("truncated UTF-8 sequence");
    for (int i = 1; i <= extra; ++i) {
      unsigned char b = static_cast<unsigned char>(text_[pos_ + i]);
      if ((b & 0xC0) != 0x80) error_at("invalid UTF-8 continuation byte", pos_ + i);
      cp = (cp << 6) | (b & 0x3F);
    }
    if ((extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000)) error("overlong UTF-8 sequence");
    if (cp >= 0xD800 && cp <= 0xDFFF) error("UTF-8 encoded surrogate");
    if (cp > 0x10FFFF) error("UTF-8 code point above U+10FFFF");
    pos_ += 1 + extra;
    out.append(text_.substr(start, pos_ - start));
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    for (;;) {
      if (at_end()) error("unterminated string");
      unsigned char c = peek();
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) error("control character in string");
      if (c == '\\') {
        ++pos_;
        if (at_end()) error("unterminated escape");
        char e = text_[pos_++];
        switch (e) {
          case '"': out.push_back('"'); break;
          case '\\': out.push_back('\\'); break;
          case '/': out.push_back('/'); break;
          case 'b': out.push_back('\b'); break;
          case 'f': out.push_back('\f'); break;
          case 'n': out.push_back('\n'); break;
          case 'r': out.push_back('\r'); break;
          case 't': out.push_back('\t'); break;
          case 'u': {
            size_t esc_start = pos_ - 2;
            unsigned cp = parse_hex4();
            if (cp >= 0xDC00 && cp <= 0xDFFF) error_at("lone low surrogate in \\u escape", esc_start);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (text_.substr(pos_, 2) != "\\u") error_at("high surrogate not followed by a low surrogate", esc_start);
              pos_ += 2;
              unsigned lo = parse_hex4();
              if (lo < 0xDC00 || lo > 0xDFFF) error_at("high surrogate not followed by a low surrogate", esc_start);
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            append_utf8(out, cp);
            break;
          }
          default:
            error_at("invalid escape", pos_ - 1);
        }
        continue;
      }
      if (c < 0x80) {
        out.push_back(static_cast<char>(c));
        ++pos_;
      } else {
        copy_utf8(out);
      }
    }
  }

  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  // Position of the first significant digit relative to the decimal point (positive
  // for |x| >= 1), used to tell overflow from underflow. Assumes a valid literal.
  static int64_t decimal_magnitude(const char* p, const char* last) {
    if (*p == '-') ++p;
    int64_t mag = 0;
    bool significant = false;
    for (; p < last && is_digit(*p); ++p) {
      if (*p != '0') significant = true;
      if (significant) ++mag;
    }
    if (p < last && *p == '.') {
      for (++p; p < last && is_digit(*p); ++p) {
        if (significant) continue;
        if (*p != '0') {
          significant = true;
          break;
        }
        --mag;
      }
      while (p < last && is_digit(*p)) ++p;
    }
    if (p < last && (*p == 'e' || *p == 'E')) {
      ++p;
      bool neg = false;
      if (*p == '+' || *p == '-') neg = *p++ == '-';
      int64_t exp = 0;
      for (; p < last; ++p) exp = std::min<int64_t>(exp * 10 + (*p - '0'), int64_t{1} << 40);
      mag += neg ? -exp : exp;
    }
    return mag;
  }

  Value parse_number() {
    size_t start = pos_;
    bool negative = false;
    if (text_[pos_] == '-') {
      negative = true;
      ++pos_;
    }
    if (at_end() || !is_digit(text_[pos_])) error("expected a digit");
    if (text_[pos_] == '0') {
      ++pos_;
      if (!at_end() && is_digit(text_[pos_])) error_at("leading zero in number", start);
    } else {
      while (!at_end() && is_digit(text_[pos_])) ++pos_;
    }
    size_t int_end = pos_;
    bool integral = true;
    if (!at_end() && text_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (at_end() || !is_digit(text_[pos_])) error("expected a digit after '.'");
      while (!at_end() && is_digit(text_[pos_])) ++pos_;
    }
    if (!at_end() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (!at_end() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (at_end() || !is_digit(text_[pos_])) error("expected a digit in exponent");
      while (!at_end() && is_digit(text_[pos_])) ++pos_;
    }

    Value v;
    v.type = Type::Number;
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    auto res = std::from_chars(first, last, v.number);
    if (res.ec == std::errc::result_out_of_range) {
      // Underflow to zero is harmless; overflow to infinity is not representable.
      if (decimal_magnitude(first, last) > 0) error_at("number out of range", start);
      v.number = negative ? -0.0 : 0.0;
    } else if (res.ec != std::errc() || res.ptr != last || !std::isfinite(v.number)) {
      error_at("number out of range", start);
    }

    if (integral) {
      v.is_integer = true;
      // Accumulate as a negative magnitude so INT64_MIN is representable.
      int64_t acc = 0;
      const int64_t min = INT64_MIN;
      for (const char* p = first + (negative ? 1 : 0); p < text_.data() + int_end; ++p) {
        int digit = *p - '0';
        if (acc < min / 10 || acc * 10 < min + digit) {
          v.integer_overflow = true;
          break;
        }
        acc = acc * 10 - digit;
      }
      if (!v.integer_overflow) {
        if (negative) {
          v.integer = acc;
        } else if (acc == min) {
          v.integer_overflow = true;
        } else {
          v.integer = -acc;
        }
      }
    }
    return v;
  }

  std::string_view text_;
  const char* code_;
  const std::string& what_;
  int max_depth_;
  size_t pos_ = 0;
};

void dump_into(std::string& out, const Value& v, int indent, int level) {
  auto newline = [&](int lvl) {
    if (indent < 0) return;
    out.push_back('\n');
    out.append(static_cast<size_t>(indent) * static_cast<size_t>(lvl), ' ');
  };
  switch (v.type) {
    case Type::Null:
      out += "null";
      break;
    case Type::Bool:
      out += v.boolean ? "true" : "false";
      break;
    case Type::Number:
      if (v.is_integer && !v.integer_overflow) {
        out += std::to_string(v.integer);
      } else if (!std::isfinite(v.number)) {
        out += "null";
      } else {
        char buf[32];
        auto res = std::to_chars(buf, buf + sizeof buf, v.number);
        out.append(buf, res.ptr);
      }
      break;
    case Type::String:
      out += quote(v.string);
      break;
    case Type::Array:
      out.push_back('[');
      for (size_t i = 0; i < v.array.size(); ++i) {
        if (i) out.push_back(',');
        newline(level + 1);
        dump_into(out, v.array[i], indent, level + 1);
      }
      if (!v.array.empty()) newline(level);
      out.push_back(']');
      break;
    case Type::Object:
      out.push_back('{');
      for (size_t i = 0; i < v.object.size(); ++i) {
        if (i) out.push_back(',');
        newline(level + 1);
        out += quote(v.object[i].first);
        out += indent < 0 ? ":" : ": ";
        dump_into(out, v.object[i].second, indent, level + 1);
      }
      if (!v.object.empty()) newline(level);
      out.push_back('}');
      break;
  }
}

}  // namespace

Value parse(std::string_view text, const char* error_code, const std::string& what, int max_depth) {
  Parser parser(text, error_code, what, max_depth);
  return parser.parse_document();
}

std::string dump(const Value& v, int indent) {
  std::string out;
  dump_into(out, v, indent, 0);
  return out;
}

std::string quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace hs::json
