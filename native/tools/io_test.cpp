// Test driver for the model-input layer: JSON parser, safetensors reader/writer,
// config parsing, weight loading and the model fingerprint. No framework: each
// check prints on failure, and the run ends with "N passed, M failed" and a
// non-zero exit status when anything failed.
//
// Usage: io_test [path/to/stories260k] [--corpus DIR]
//   default model: <source>/models/stories260k; --corpus also checks the files
//   written by `node test/fixtures/make-malformed.mjs DIR`.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "config.h"
#include "errors.h"
#include "json.h"
#include "safetensors.h"
#include "weights.h"

namespace {

// SHA-256 of the canonical fingerprint text of stories260k, computed independently
// with Python's hashlib from the raw file.
constexpr const char* kStoriesFingerprint = "82828bd7a8984560098951b6af98f1055afb6502391dd10206d290b386b0f533";

int g_passed = 0, g_failed = 0;
std::string g_section;

void check(bool ok, const std::string& what, int line) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAIL [%s] line %d: %s\n", g_section.c_str(), line, what.c_str());
  }
}

#define CHECK(cond) check((cond), #cond, __LINE__)
#define CHECK_EQ(a, b) check((a) == (b), std::string(#a " == " #b), __LINE__)

// Runs fn, expects hs::Error with `code` (and `needle` in the message when given).
void check_throws(const std::function<void()>& fn, const char* code, const std::string& what, int line,
                  const std::string& needle = "") {
  try {
    fn();
  } catch (const hs::Error& e) {
    bool ok = std::strcmp(e.code(), code) == 0 && (needle.empty() || std::string(e.what()).find(needle) != std::string::npos);
    check(ok, what + ": got " + e.code() + " \"" + e.what() + "\"", line);
    return;
  } catch (const std::exception& e) {
    check(false, what + ": non-hs exception " + e.what(), line);
    return;
  }
  check(false, what + ": did not throw (expected " + code + ")", line);
}
#define CHECK_THROWS(expr, code) check_throws([&] { (void)(expr); }, code, #expr, __LINE__)
#define CHECK_THROWS_MSG(expr, code, needle) check_throws([&] { (void)(expr); }, code, #expr, __LINE__, needle)

void section(const char* name) { g_section = name; }

// ---------------------------------------------------------------------------
// JSON

hs::json::Value jparse(const std::string& s, int depth = 64) {
  return hs::json::parse(s, hs::code::kConfigInvalid, "test", depth);
}

void test_json() {
  section("json");
  using hs::json::Type;
  auto v = jparse(R"( {"a": [1, -0, 12.5, 1e3, true, false, null], "b": {"c": "d"}, "a": 2} )");
  CHECK(v.is_object());
  CHECK_EQ(v.object.size(), 3u);  // duplicate key kept
  CHECK(v.find("a") == &v.object[0].second);
  const auto& arr = v.find("a")->array;
  CHECK_EQ(arr.size(), 7u);
  CHECK(arr[0].is_integer && arr[0].integer == 1);
  CHECK(arr[1].is_integer && arr[1].integer == 0);
  CHECK(!arr[2].is_integer && arr[2].number == 12.5);
  CHECK(!arr[3].is_integer && arr[3].number == 1000.0);
  CHECK(arr[4].is_bool() && arr[4].boolean);
  CHECK(arr[5].is_bool() && !arr[5].boolean);
  CHECK(arr[6].is_null());
  CHECK_EQ(v.find("b")->find("c")->string, "d");
  CHECK(v.find("zz") == nullptr);

  // Integers at and past the int64 edges.
  auto imin = jparse("-9223372036854775808");
  CHECK(imin.is_integer && !imin.integer_overflow && imin.integer == INT64_MIN);
  auto imax = jparse("9223372036854775807");
  CHECK(imax.is_integer && !imax.integer_overflow && imax.integer == INT64_MAX);
  CHECK(jparse("9223372036854775808").integer_overflow);
  CHECK(jparse("-9223372036854775809").integer_overflow);
  CHECK(jparse("123456789012345678901234567890").integer_overflow);
  CHECK_EQ(jparse("1E-2").number, 0.01);
  CHECK_EQ(jparse("-1.5e+2").number, -150.0);
  CHECK_EQ(jparse("1e-400").number, 0.0);  // underflow is not an error
  CHECK_EQ(jparse(("0." + std::string(400, '0') + "1").c_str()).number, 0.0);
  CHECK_EQ(jparse("1000e-402").number, 0.0);
  CHECK_THROWS(jparse("0.001e400"), hs::code::kConfigInvalid);
  CHECK_THROWS(jparse(("1" + std::string(400, '0') + ".5").c_str()), hs::code::kConfigInvalid);
  CHECK_THROWS(jparse("1" + std::string(400, '0')), hs::code::kConfigInvalid);

  // Strings and escapes.
  CHECK_EQ(jparse(R"("a\"b\\c\/d\b\f\n\r\t")").string, std::string("a\"b\\c/d\b\f\n\r\t"));
  CHECK_EQ(jparse(R"("\u00e9")").string, "\xc3\xa9");
  CHECK_EQ(jparse(R"("\u20AC")").string, "\xe2\x82\xac");
  CHECK_EQ(jparse(R"("\ud83d\ude00")").string, "\xf0\x9f\x98\x80");
  CHECK_EQ(jparse(R"("\u0000")").string, std::string("\0", 1));
  CHECK_EQ(jparse("\"\xf0\x9f\x98\x80 ok\"").string, "\xf0\x9f\x98\x80 ok");

  // Rejections, each with the caller's code.
  const char* bad[] = {
      "",           " ",         "01",          "-01",        "-",         "1.",       ".5",          "+1",
      "1e",         "1e+",       "NaN",         "Infinity",   "-Infinity", "[1,]",     "{\"a\":1,}",  "[,1]",
      "{} x",       "[1 2]",     "{'a':1}",     "tru",        "nul",       "[",        "{\"a\"}",     "{\"a\":}",
      "{1:2}",      "\"abc",     "\"\\x\"",     "\"\\u12\"",  "\"\\u12G4\"", "\"\\ud800\"", "\"\\udc00\"",
      "\"\\ud800\\u0041\"",     "1e999",       "-1e999",     "[1]]",      "\"\x01\"", "\"a\tb\"",
      "\"\xff\"",   "\"\xc0\xaf\"", "\"\xe0\x80\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xc3\"",
      "/* c */ 1",  "0x10",      "[1,2,]"};
  for (const char* s : bad) {
    check_throws([&] { jparse(s); }, hs::code::kConfigInvalid, std::string("reject ") + s, __LINE__);
  }
  CHECK_THROWS_MSG(hs::json::parse("[1,]", hs::code::kSafetensorsHeader, "file.bin"), hs::code::kSafetensorsHeader,
                   "file.bin");
  CHECK_THROWS_MSG(jparse("[1,  x]"), hs::code::kConfigInvalid, "at byte 5");

  // Depth limit: 64 nested arrays pass, 65 fail.
  std::string deep64 = std::string(64, '[') + std::string(64, ']');
  std::string deep65 = std::string(65, '[') + std::string(65, ']');
  CHECK(jparse(deep64).is_array());
  CHECK_THROWS_MSG(jparse(deep65), hs::code::kConfigInvalid, "nesting");
  CHECK_THROWS(jparse("{\"a\":{\"b\":1}}", 1), hs::code::kConfigInvalid);
  std::string very_deep = std::string(100000, '[');
  CHECK_THROWS(jparse(very_deep), hs::code::kConfigInvalid);

  // dump / quote.
  CHECK_EQ(hs::json::quote("a\"\\\n\x01"), "\"a\\\"\\\\\\n\\u0001\"");
  const std::string doc = R"({"a":[1,-2,0.5,true,null],"b":{"c":"\u00e9\n"},"n":-9223372036854775808})";
  auto parsed = jparse(doc);
  std::string compact = hs::json::dump(parsed);
  CHECK_EQ(compact, "{\"a\":[1,-2,0.5,true,null],\"b\":{\"c\":\"\xc3\xa9\\n\"},\"n\":-9223372036854775808}");
  CHECK_EQ(hs::json::dump(jparse(compact)), compact);
  CHECK_EQ(hs::json::dump(jparse(hs::json::dump(parsed, 2))), compact);
  CHECK_EQ(hs::json::dump(jparse("[0.1]")), "[0.1]");
  CHECK_EQ(hs::json::dump(jparse("{}"), 2), "{}");
  CHECK_EQ(hs::json::dump(jparse("{\"a\":[]}"), 2), "{\n  \"a\": []\n}");
}

// ---------------------------------------------------------------------------
// safetensors images in memory

std::vector<uint8_t> image(const std::string& header, size_t data_bytes, uint64_t length_override = 0) {
  std::vector<uint8_t> out(8 + header.size() + data_bytes, 0);
  uint64_t n = length_override ? length_override : header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  std::memcpy(out.data() + 8, header.data(), header.size());
  for (size_t i = 0; i < data_bytes; ++i) out[8 + header.size() + i] = static_cast<uint8_t>(i * 7 + 1);
  return out;
}

std::unique_ptr<hs::SafetensorsFile> from_image(const std::vector<uint8_t>& img) {
  return hs::SafetensorsFile::from_memory(img.data(), img.size(), "mem.safetensors");
}

void test_safetensors_memory() {
  section("safetensors/memory");
  using namespace hs;
  {
    auto img = image(R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F16","shape":[3],"data_offsets":[8,14]},)"
                     R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"z":{"dtype":"U8","shape":[0],"data_offsets":[14,14]}})",
                     14);
    auto f = from_image(img);
    CHECK_EQ(f->tensors().size(), 3u);
    CHECK_EQ(f->metadata().at("format"), "pt");
    const TensorView* a = f->find("a");
    const TensorView* b = f->find("b");
    CHECK(a && b && f->find("z") && !f->find("__metadata__"));
    CHECK(a->dtype == DType::F32 && a->nbytes == 8 && a->numel() == 2);
    CHECK(b->dtype == DType::F16 && b->nbytes == 6 && b->shape == std::vector<int64_t>{3});
    CHECK(a->data == img.data() + 8 + f->header_size());
    CHECK(b->data == img.data() + 8 + f->header_size() + 8);
    CHECK_EQ(f->find("z")->numel(), 0);
    CHECK_EQ(a->file, "mem.safetensors");
  }
  // An empty checkpoint is a valid file.
  CHECK_EQ(from_image(image("{}", 0))->tensors().size(), 0u);

  const std::string ok_entry = R"("t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})";
  struct Case {
    const char* name;
    std::vector<uint8_t> img;
    const char* code;
    const char* needle;
  };
  std::vector<Case> cases = {
      {"truncated length", std::vector<uint8_t>{1, 0, 0}, code::kSafetensorsHeader, "too short"},
      {"length past EOF", image("{" + ok_entry + "}", 16, 10000), code::kSafetensorsHeader, "past the end"},
      {"huge length", image("{}", 0, 1ull << 62), code::kSafetensorsHeader, "limit"},
      {"length max", image("{}", 0, ~0ull), code::kSafetensorsHeader, "limit"},
      {"bad json", image("{\"t\":", 0), code::kSafetensorsHeader, "invalid JSON"},
      {"trailing comma", image("{" + ok_entry + ",}", 16), code::kSafetensorsHeader, "invalid JSON"},
      {"array header", image("[]", 0), code::kSafetensorsHeader, "not a JSON object"},
      {"entry not object", image(R"({"t":[1]})", 0), code::kSafetensorsHeader, "'t'"},
      {"missing dtype", image(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", 4), code::kSafetensorsHeader, "dtype"},
      {"missing shape", image(R"({"t":{"dtype":"F32","data_offsets":[0,4]}})", 4), code::kSafetensorsHeader, "shape"},
      {"missing offsets", image(R"({"t":{"dtype":"F32","shape":[1]}})", 4), code::kSafetensorsHeader, "data_offsets"},
      {"extra field", image(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4),
       code::kSafetensorsHeader, "'x'"},
      {"dtype not string", image(R"({"t":{"dtype":1,"shape":[1],"data_offsets":[0,4]}})", 4),
       code::kSafetensorsHeader, "dtype"},
      {"unknown dtype", image(R"({"t":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", 1),
       code::kSafetensorsDtype, "F8_E4M3"},
      {"lowercase dtype", image(R"({"t":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", 4),
       code::kSafetensorsDtype, "'t'"},
      {"negative shape", image(R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
       code::kSafetensorsHeader, "non-negative"},
      {"fractional shape", image(R"({"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4),
       code::kSafetensorsHeader, "non-negative"},
      {"shape overflow", image(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4),
       code::kSafetensorsLayout, "overflow"},
      {"shape x dtype overflow",
       image(R"({"t":{"dtype":"F64","shape":[2305843009213693952,4],"data_offsets":[0,8]}})", 8),
       code::kSafetensorsLayout, "overflow"},
      {"shape int64 overflow", image(R"({"t":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}})", 4),
       code::kSafetensorsHeader, "'t'"},
      {"offsets one value", image(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4),
       code::kSafetensorsHeader, "data_offsets"},
      {"offsets negative", image(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 4),
       code::kSafetensorsHeader, "data_offsets"},
      {"end before begin", image(R"({"t":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", 4),
       code::kSafetensorsLayout, "before begin"},
      {"size mismatch", image(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
       code::kSafetensorsLayout, "needs 12"},
      {"past EOF", image(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8), code::kSafetensorsLayout,
       "past the end"},
      {"gap", image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12),
       code::kSafetensorsLayout, "gap"},
      {"gap at start", image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), code::kSafetensorsLayout,
       "gap"},
      {"overlap", image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
       code::kSafetensorsLayout, "overlaps"},
      {"aliased", image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
       code::kSafetensorsLayout, "overlaps"},
      {"trailing bytes", image("{" + ok_entry + "}", 20), code::kSafetensorsLayout, "trailing"},
      {"data without tensors", image("{}", 4), code::kSafetensorsLayout, "trailing"},
      {"duplicate name", image("{" + ok_entry + "," + ok_entry + "}", 16), code::kSafetensorsHeader, "duplicate"},
      {"duplicate field", image(R"({"t":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4),
       code::kSafetensorsHeader, "duplicate"},
      {"metadata not object", image(R"({"__metadata__":[],"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4),
       code::kSafetensorsHeader, "__metadata__"},
      {"metadata not string", image(R"({"__metadata__":{"k":1}})", 0), code::kSafetensorsHeader, "'k'"},
      {"metadata null", image(R"({"__metadata__":{"k":null}})", 0), code::kSafetensorsHeader, "'k'"},
      {"two metadata", image(R"({"__metadata__":{},"__metadata__":{}})", 0), code::kSafetensorsHeader,
       "duplicate"},
  };
  for (const Case& c : cases) {
    check_throws([&] { from_image(c.img); }, c.code, c.name, __LINE__, c.needle);
  }
  // Errors name the file and the tensor.
  CHECK_THROWS_MSG(from_image(image(R"({"w.q":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)),
                   code::kSafetensorsLayout, "mem.safetensors: tensor 'w.q'");
}

// ---------------------------------------------------------------------------
// Files on disk

std::string make_temp_dir() {
  char tmpl[] = "/tmp/hs-io-test-XXXXXX";
  char* d = mkdtemp(tmpl);
  if (!d) {
    std::perror("mkdtemp");
    std::exit(2);
  }
  return d;
}

void remove_tree(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    std::string p = dir + "/" + n;
    struct stat st;
    if (lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      remove_tree(p);
    } else {
      unlink(p.c_str());
    }
  }
  closedir(d);
  rmdir(dir.c_str());
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") out.push_back(n);
    }
    closedir(d);
  }
  return out;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

off_t file_size(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

float bits_to_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

void test_writer_roundtrip(const std::string& dir) {
  section("safetensors/writer");
  using namespace hs;
  const std::string path = dir + "/rt.safetensors";
  const std::vector<float> f32 = {1.0f, -2.5f, 3.25f, 1e-30f, -0.0f, 65504.0f};
  // Known bit patterns and their exact f32 values.
  const std::vector<uint16_t> bf16 = {0x3F80, 0xC000, 0x4049, 0x7F80, 0xFF80, 0x0001, 0x8000, 0x3EAB};
  const std::vector<float> bf16_want = {1.0f, -2.0f, 3.140625f, INFINITY, -INFINITY, bits_to_float(0x00010000),
                                        -0.0f, 0.333984375f};
  const std::vector<uint16_t> f16 = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x0400, 0x7C00, 0xFC00, 0x8000, 0x3555, 0x8001};
  const std::vector<float> f16_want = {1.0f,
                                       -2.0f,
                                       65504.0f,
                                       std::ldexp(1.0f, -24),
                                       std::ldexp(1023.0f, -24),
                                       std::ldexp(1.0f, -14),
                                       INFINITY,
                                       -INFINITY,
                                       -0.0f,
                                       0.333251953125f,
                                       -std::ldexp(1.0f, -24)};
  const std::vector<int32_t> i32 = {7, -7, 1 << 30};
  {
    SafetensorsWriter w(path,
                        {{"f32", DType::F32, {2, 3}},
                         {"bf16", DType::BF16, {8}},
                         {"empty", DType::F32, {0, 4}},
                         {"f16", DType::F16, {11}},
                         {"i32", DType::I32, {3}}},
                        {{"format", "pt"}, {"note", "quote\" and \xc3\xa9"}}, false);
    w.write_data(f32.data(), 12);  // split one tensor over two writes
    w.write_data(f32.data() + 3, 12);
    w.write_data(bf16.data(), bf16.size() * 2);
    w.write_data(f16.data(), f16.size() * 2);
    w.write_data(i32.data(), i32.size() * 4);
    size_t total = w.finish();
    CHECK_EQ(static_cast<off_t>(total), file_size(path));
  }
  auto f = SafetensorsFile::open(path);
  CHECK_EQ((8 + f->header_size()) % 8, 0u);
  CHECK_EQ(f->tensors().size(), 5u);
  CHECK_EQ(f->tensors()[0].name, "f32");  // declaration order kept
  CHECK_EQ(f->tensors()[4].name, "i32");
  CHECK_EQ(f->metadata().at("note"), "quote\" and \xc3\xa9");
  CHECK_EQ(f->metadata().size(), 2u);
  const TensorView* t = f->find("f32");
  CHECK(t && t->shape == (std::vector<int64_t>{2, 3}) && std::memcmp(t->data, f32.data(), 24) == 0);
  CHECK(f->find("empty") && f->find("empty")->nbytes == 0);
  CHECK(std::memcmp(f->find("i32")->data, i32.data(), 12) == 0);

  std::vector<float> out(16);
  convert_to_f32(*f->find("f32"), out.data());
  CHECK(std::memcmp(out.data(), f32.data(), 24) == 0);
  convert_to_f32(*f->find("bf16"), out.data());
  bool bf_ok = true;
  for (size_t i = 0; i < bf16.size(); ++i) bf_ok = bf_ok && std::memcmp(&out[i], &bf16_want[i], 4) == 0;
  CHECK(bf_ok);
  CHECK(std::signbit(out[6]));
  convert_to_f32(*f->find("f16"), out.data());
  bool f16_ok = true;
  for (size_t i = 0; i < f16.size(); ++i) {
    if (std::memcmp(&out[i], &f16_want[i], 4) != 0) {
      f16_ok = false;
      std::printf("  f16 %04x -> %.10g, want %.10g\n", f16[i], out[i], f16_want[i]);
    }
  }
  CHECK(f16_ok);
  CHECK_THROWS_MSG(convert_to_f32(*f->find("i32"), out.data()), code::kSafetensorsDtype, "I32");

  // F16 NaN stays NaN; every finite F16 value survives a trip through float and back.
  {
    const std::string header = R"({"h":{"dtype":"F16","shape":[65536],"data_offsets":[0,131072]}})";
    auto img = image(header, 131072);
    uint8_t* data = img.data() + 8 + header.size();
    for (uint32_t i = 0; i < 65536; ++i) {
      data[2 * i] = static_cast<uint8_t>(i);
      data[2 * i + 1] = static_cast<uint8_t>(i >> 8);
    }
    auto hf = from_image(img);
    std::vector<float> all(65536);
    convert_to_f32(*hf->find("h"), all.data());
    int bad = 0;
    for (uint32_t i = 0; i < 65536; ++i) {
      uint32_t exp = (i >> 10) & 0x1F, mant = i & 0x3FF;
      float want;
      if (exp == 0x1F) {
        want = mant ? NAN : INFINITY;
      } else if (exp == 0) {
        want = std::ldexp(static_cast<float>(mant), -24);
      } else {
        want = std::ldexp(static_cast<float>(mant | 0x400), static_cast<int>(exp) - 25);
      }
      if (i & 0x8000) want = -want;
      bool same = std::isnan(want) ? std::isnan(all[i]) : (all[i] == want && std::signbit(all[i]) == std::signbit(want));
      if (!same) ++bad;
    }
    CHECK_EQ(bad, 0);
  }

  // Unaligned source: a header of odd length puts the data at an odd address.
  {
    std::string header = R"({"u":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]}})";
    if (header.size() % 2 == 0) header += ' ';
    auto img = image(header, 6);
    const uint16_t vals[3] = {0x3F80, 0x4000, 0xBF00};
    std::memcpy(img.data() + 8 + header.size(), vals, 6);
    auto uf = from_image(img);
    CHECK(reinterpret_cast<uintptr_t>(uf->find("u")->data) % 2 == 1);
    float o[3];
    convert_to_f32(*uf->find("u"), o);
    CHECK(o[0] == 1.0f && o[1] == 2.0f && o[2] == -0.5f);
    std::string h32 = R"({"u":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    if (h32.size() % 4 == 0) h32 += ' ';
    auto img32 = image(h32, 8);
    const float fv[2] = {1.5f, -3.0f};
    std::memcpy(img32.data() + 8 + h32.size(), fv, 8);
    auto uf32 = from_image(img32);
    convert_to_f32(*uf32->find("u"), o);
    CHECK(o[0] == 1.5f && o[1] == -3.0f);
  }

  // Existing target: refused unless overwrite.
  CHECK_THROWS_MSG(SafetensorsWriter(path, {{"x", DType::F32, {1}}}, {}, false), code::kExists, path);
  {
    SafetensorsWriter w(path, {{"x", DType::F32, {1}}}, {}, true);
    float one = 1.0f;
    w.write_data(&one, 4);
    w.finish();
  }
  auto g = SafetensorsFile::open(path);
  CHECK(g->tensors().size() == 1 && g->metadata().empty());
  CHECK_EQ(static_cast<off_t>(8 + g->header_size() + 4), file_size(path));

  // Short and long writes are internal errors; the unfinished temp file disappears.
  const std::string p2 = dir + "/short.safetensors";
  {
    SafetensorsWriter w(p2, {{"x", DType::F32, {2}}}, {}, false);
    float one = 1.0f;
    w.write_data(&one, 4);
    CHECK_THROWS_MSG(w.finish(), code::kInternal, "declared 8");
    CHECK_THROWS(w.write_data(&one, 8), code::kInternal);
    bool has_tmp = false;
    for (const auto& n : list_dir(dir)) has_tmp = has_tmp || n.find(".tmp-") != std::string::npos;
    CHECK(has_tmp);
  }
  bool leftover = false;
  for (const auto& n : list_dir(dir)) leftover = leftover || n.find(".tmp-") != std::string::npos;
  CHECK(!leftover);
  CHECK_EQ(file_size(p2), -1);
  CHECK_THROWS(SafetensorsWriter(p2, {{"a", DType::F32, {1}}, {"a", DType::F32, {1}}}, {}, false), code::kArgument);
  CHECK_THROWS(SafetensorsWriter(p2, {{"a", DType::F32, {-1}}}, {}, false), code::kArgument);
  CHECK_THROWS(SafetensorsWriter(dir + "/no/such/dir/x.safetensors", {}, {}, false), code::kIo);

  // Reader I/O errors.
  CHECK_THROWS_MSG(SafetensorsFile::open(dir + "/missing.safetensors"), code::kIo, "missing.safetensors");
  CHECK_THROWS(SafetensorsFile::open(dir), code::kIo);
  write_text(dir + "/tiny.safetensors", "abc");
  CHECK_THROWS_MSG(SafetensorsFile::open(dir + "/tiny.safetensors"), code::kSafetensorsHeader, "tiny.safetensors");
  write_text(dir + "/empty.safetensors", "");
  CHECK_THROWS(SafetensorsFile::open(dir + "/empty.safetensors"), code::kSafetensorsHeader);
}

void write_tensor_file(const std::string& path, const std::vector<std::pair<std::string, std::vector<int64_t>>>& specs,
                       float base) {
  std::vector<hs::SafetensorsWriter::Entry> entries;
  for (const auto& s : specs) entries.push_back({s.first, hs::DType::F32, s.second});
  hs::SafetensorsWriter w(path, entries, {{"format", "pt"}}, true);
  float x = base;
  for (const auto& s : specs) {
    int64_t n = 1;
    for (int64_t d : s.second) n *= d;
    std::vector<float> data(static_cast<size_t>(n));
    for (auto& v : data) v = (x += 0.25f);
    w.write_data(data.data(), data.size() * 4);
  }
  w.finish();
}

void test_index_and_shards(const std::string& dir) {
  section("safetensors/index");
  using namespace hs;
  auto m = parse_safetensors_index(R"({"metadata":{"total_size":8},"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})",
                                   "idx");
  CHECK(m.size() == 2 && m.at("a") == "s1.safetensors");
  const char* bad_shards[] = {"../x.safetensors", "/abs.safetensors", "sub/x.safetensors", "sub\\\\x.safetensors",
                              "..", ".", ""};
  for (const char* s : bad_shards) {
    std::string text = std::string(R"({"weight_map":{"a":")") + s + "\"}}";
    check_throws([&] { parse_safetensors_index(text, "idx"); }, code::kSafetensorsIndex,
                 std::string("shard name ") + s, __LINE__);
  }
  CHECK_THROWS(parse_safetensors_index(R"({"weight_map":{"a":1}})", "idx"), code::kSafetensorsIndex);
  CHECK_THROWS(parse_safetensors_index(R"({"metadata":{}})", "idx"), code::kSafetensorsIndex);
  CHECK_THROWS(parse_safetensors_index(R"({"weight_map":[]})", "idx"), code::kSafetensorsIndex);
  CHECK_THROWS(parse_safetensors_index(R"({"weight_map":{"a":"x","a":"y"}})", "idx"), code::kSafetensorsIndex);
  CHECK_THROWS(parse_safetensors_index("[", "idx"), code::kSafetensorsIndex);

  const std::string sd = dir + "/sharded";
  mkdir(sd.c_str(), 0755);
  write_tensor_file(sd + "/s1.safetensors", {{"a", {2}}, {"c", {3}}}, 0.0f);
  write_tensor_file(sd + "/s2.safetensors", {{"b", {4}}}, 10.0f);
  write_text(sd + "/model.safetensors.index.json",
             R"({"metadata":{},"weight_map":{"a":"s1.safetensors","b":"s2.safetensors","c":"s1.safetensors"}})");
  auto ck = Checkpoint::open_dir(sd);
  CHECK_EQ(ck->files().size(), 2u);  // each shard opened once
  CHECK((ck->names() == std::vector<std::string>{"a", "b", "c"}));
  CHECK(ck->find("b") && ck->find("b")->numel() == 4 && ck->find("b")->file == sd + "/s2.safetensors");
  float v = 0;
  std::memcpy(&v, ck->find("b")->data, 4);
  CHECK_EQ(v, 10.25f);

  write_text(sd + "/model.safetensors.index.json", R"({"weight_map":{"a":"s2.safetensors"}})");
  CHECK_THROWS_MSG(Checkpoint::open_dir(sd), code::kSafetensorsIndex, "'a'");
  write_text(sd + "/model.safetensors.index.json", R"({"weight_map":{"a":"s9.safetensors"}})");
  CHECK_THROWS_MSG(Checkpoint::open_dir(sd), code::kSafetensorsIndex, "s9.safetensors");
  write_text(sd + "/model.safetensors.index.json", R"({"weight_map":{"a":"../sharded/s1.safetensors"}})");
  CHECK_THROWS(Checkpoint::open_dir(sd), code::kSafetensorsIndex);

  const std::string empty = dir + "/emptydir";
  mkdir(empty.c_str(), 0755);
  CHECK_THROWS_MSG(Checkpoint::open_dir(empty), code::kIo, "emptydir");
}

// ---------------------------------------------------------------------------
// Config

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void test_config(const std::string& model_dir) {
  section("config");
  using namespace hs;
  {
    ModelConfig c = parse_config(read_file(model_dir + "/config.json"), "stories260k/config.json");
    CHECK_EQ(c.arch, "LlamaForCausalLM");
    CHECK_EQ(c.model_type, "llama");
    CHECK(c.num_layers == 5 && c.hidden == 64 && c.intermediate == 172 && c.num_heads == 8 && c.num_kv_heads == 4 &&
          c.head_dim == 8 && c.vocab == 512 && c.max_position == 512);
    CHECK_EQ(c.rms_eps, 1e-5);
    CHECK(c.rope.type == RopeType::Default && c.rope.theta == 10000.0);
    CHECK(c.tie_embeddings && !c.qkv_bias && !c.o_bias && !c.mlp_bias && !c.qk_norm);
    CHECK(std::fabs(c.attention_scale - 1.0 / std::sqrt(8.0)) < 1e-15);
    CHECK(c.bos_ids == std::vector<int>{1} && c.eos_ids == std::vector<int>{2});
    CHECK_EQ(c.torch_dtype, "float32");
    CHECK(c.attention_absent.size() == 5 && c.attention_absent[0] == false);
  }
  const std::string base =
      R"("hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,)"
      R"("vocab_size":128256,"max_position_embeddings":131072,"rms_norm_eps":1e-05,"hidden_act":"silu")";
  {
    ModelConfig c = parse_config(
        R"({"architectures":["LlamaForCausalLM"],"model_type":"llama",)" + base +
            R"(,"num_key_value_heads":8,"rope_theta":500000.0,"attention_bias":true,"mlp_bias":true,"bos_token_id":128000,)"
            R"("eos_token_id":[128001,128008,128009],"rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,)"
            R"("original_max_position_embeddings":8192,"rope_type":"llama3"}})",
        "llama3");
    CHECK(c.num_kv_heads == 8 && c.head_dim == 128 && c.tie_embeddings == false);
    CHECK(c.rope.type == RopeType::Llama3 && c.rope.factor == 8.0 && c.rope.theta == 500000.0 &&
          c.rope.original_max_position == 8192 && c.rope.high_freq_factor == 4.0);
    CHECK(c.qkv_bias && c.o_bias && c.mlp_bias);
    CHECK((c.eos_ids == std::vector<int>{128001, 128008, 128009}));
  }
  {
    ModelConfig c = parse_config(R"({"architectures":["LlamaForCausalLM"],)" + base +
                                     R"(,"rope_scaling":{"type":"linear","factor":2.0}})",
                                 "linear");
    CHECK(c.rope.type == RopeType::Linear && c.rope.factor == 2.0 && c.num_kv_heads == 32);
  }
  {
    ModelConfig c = parse_config(R"({"architectures":["MistralForCausalLM"],"model_type":"mistral",)" + base +
                                     R"(,"num_key_value_heads":8,"sliding_window":4096,"rope_theta":1000000.0})",
                                 "mistral");
    CHECK(c.arch == "MistralForCausalLM" && c.num_kv_heads == 8 && c.rope.theta == 1e6 && !c.qkv_bias);
    ModelConfig c2 = parse_config(R"({"architectures":["MistralForCausalLM"],)" + base + R"(,"sliding_window":null})",
                                  "mistral-null");
    CHECK_EQ(c2.model_type, "mistral");
  }
  {
    ModelConfig c = parse_config(
        R"({"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,)"
        R"("num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"vocab_size":151936,)"
        R"("max_position_embeddings":32768,"rms_norm_eps":1e-06,"rope_theta":1000000.0,"tie_word_embeddings":true,)"
        R"("hidden_act":"silu","use_sliding_window":false,"sliding_window":32768,"bos_token_id":151643,"eos_token_id":151645})",
        "qwen2");
    CHECK(c.qkv_bias && !c.o_bias && !c.qk_norm && c.head_dim == 64 && c.num_kv_heads == 2 && c.tie_embeddings);
  }
  {
    ModelConfig c = parse_config(
        R"({"architectures":["Qwen3ForCausalLM"],"model_type":"qwen3","hidden_size":1024,"intermediate_size":3072,)"
        R"("num_hidden_layers":28,"num_attention_heads":16,"num_key_value_heads":8,"head_dim":128,"vocab_size":151936,)"
        R"("max_position_embeddings":40960,"rms_norm_eps":1e-06,"rope_theta":1000000,"attention_bias":false,)"
        R"("tie_word_embeddings":true,"hidden_act":"silu","rope_scaling":null,"torch_dtype":"bfloat16"})",
        "qwen3");
    CHECK(c.qk_norm && !c.qkv_bias && !c.o_bias && c.head_dim == 128 && c.num_heads == 16);
    CHECK(std::fabs(c.attention_scale - 1.0 / std::sqrt(128.0)) < 1e-15);
    CHECK(c.rope.theta == 1e6 && c.torch_dtype == "bfloat16");
    ModelConfig b = parse_config(
        R"({"architectures":["Qwen3ForCausalLM"],"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,)"
        R"("num_attention_heads":4,"head_dim":32,"vocab_size":100,"max_position_embeddings":64,"attention_bias":true})",
        "qwen3-bias");
    CHECK(b.qkv_bias && b.o_bias && b.qk_norm && b.head_dim == 32);
  }
  {
    ModelConfig c = parse_config(
        R"({"architectures":["GraniteForCausalLM"],"model_type":"granite","hidden_size":2048,"intermediate_size":8192,)"
        R"("num_hidden_layers":40,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":49155,)"
        R"("max_position_embeddings":4096,"rms_norm_eps":1e-05,"rope_theta":10000.0,"embedding_multiplier":12.0,)"
        R"("residual_multiplier":0.22,"attention_multiplier":0.015625,"logits_scaling":8.0,"tie_word_embeddings":true,)"
        R"("hidden_act":"silu","attention_bias":false,"mlp_bias":false})",
        "granite");
    CHECK(c.embedding_multiplier == 12.0 && c.residual_multiplier == 0.22 && c.attention_scale == 0.015625 &&
          c.logits_scaling == 8.0 && c.head_dim == 64);
  }
  const std::string deci_head =
      R"({"architectures":["DeciLMForCausalLM"],"model_type":"nemotron-nas","hidden_size":64,"num_hidden_layers":3,)"
      R"("num_attention_heads":8,"vocab_size":128,"max_position_embeddings":256,"hidden_act":"silu",)";
  {
    ModelConfig c = parse_config(
        deci_head + R"("intermediate_size":172,"block_configs":[)"
                    R"({"attention":{"n_heads_in_group":4,"no_op":false,"replace_with_linear":false},"ffn":{"ffn_mult":2.0}},)"
                    R"({"attention":{"n_heads_in_group":null,"no_op":true},"ffn":{"ffn_mult":2.0}},)"
                    R"({"attention":{"n_heads_in_group":4},"ffn":{"ffn_mult":2.0}}]})",
        "decilm");
    CHECK(c.arch == "DeciLMForCausalLM" && c.num_kv_heads == 2 && c.intermediate == 172);
    CHECK((c.attention_absent == std::vector<bool>{false, true, false}));
    ModelConfig d = parse_config(
        deci_head + R"("block_configs":[{"attention":{"n_heads_in_group":8},"ffn":{"ffn_mult":2.625}},)"
                    R"({"attention":{"no_op":true},"ffn":{"ffn_mult":2.625}},{"attention":{"n_heads_in_group":8},"ffn":{"ffn_mult":2.625}}]})",
        "decilm-derived");
    CHECK(d.num_kv_heads == 1 && d.intermediate == 256);  // int(2/3*2.625*64) = 112 -> 256
    ModelConfig e = parse_config(R"({"model_type":"nemotron-nas","hidden_size":64,"num_hidden_layers":1,)"
                                 R"("num_attention_heads":8,"vocab_size":128,"max_position_embeddings":256,"intermediate_size":256,)"
                                 R"("block_configs":[{"attention":{"n_heads_in_group":2},"ffn":{"ffn_mult":1.0}}]})",
                                 "decilm-model-type");
    CHECK(e.arch == "DeciLMForCausalLM" && e.num_kv_heads == 4);
    CHECK_THROWS_MSG(parse_config(deci_head + R"("intermediate_size":172,"block_configs":[)"
                                              R"({"attention":{"n_heads_in_group":4},"ffn":{"ffn_mult":2.0}},)"
                                              R"({"attention":{"no_op":true},"ffn":{"ffn_mult":5.0}},)"
                                              R"({"attention":{"n_heads_in_group":4},"ffn":{"ffn_mult":2.0}}]})",
                                  "decilm-het"),
                     code::kConfigUnsupported, "heterogeneous");
    CHECK_THROWS_MSG(parse_config(deci_head + R"("intermediate_size":172,"block_configs":[)"
                                              R"({"attention":{"n_heads_in_group":4},"ffn":{"ffn_mult":2.0}},)"
                                              R"({"attention":{"n_heads_in_group":2},"ffn":{"ffn_mult":2.0}},)"
                                              R"({"attention":{"n_heads_in_group":4},"ffn":{"ffn_mult":2.0}}]})",
                                  "decilm-kv"),
                     code::kConfigUnsupported, "block_configs[1]");
    CHECK_THROWS_MSG(parse_config(deci_head + R"("intermediate_size":172,"block_configs":[]})", "decilm-len"),
                     code::kConfigInvalid, "block_configs");
    CHECK_THROWS_MSG(parse_config(deci_head + R"("intermediate_size":172,"block_configs":[)"
                                              R"({"attention":{"n_heads_in_group":4},"ffn":{"ffn_mult":2.0}},)"
                                              R"({"attention":{"replace_with_linear":true},"ffn":{"ffn_mult":2.0}},)"
                                              R"({"attention":{"n_heads_in_group":3},"ffn":{"ffn_mult":2.0}}]})",
                                  "decilm-linear"),
                     code::kConfigUnsupported, "replace_with_linear");
  }

  // Refusals.
  const std::string llama = R"({"architectures":["LlamaForCausalLM"],)";
  CHECK_THROWS_MSG(parse_config(R"({"architectures":["GPT2LMHeadModel"],)" + base + "}", "gpt2"),
                   code::kConfigUnsupported, "LlamaForCausalLM");
  CHECK_THROWS_MSG(parse_config(R"({"architectures":["GPT2LMHeadModel"],)" + base + "}", "gpt2"),
                   code::kConfigUnsupported, "GPT2LMHeadModel");
  CHECK_THROWS_MSG(parse_config("{" + base + "}", "none"), code::kConfigUnsupported, "supported");
  CHECK_THROWS_MSG(parse_config(llama + base + R"(,"rope_scaling":{"rope_type":"yarn","factor":4.0}})", "yarn"),
                   code::kConfigUnsupported, "yarn");
  CHECK_THROWS_MSG(parse_config(llama + base + R"(,"rope_scaling":{"type":"dynamic","factor":2.0}})", "dyn"),
                   code::kConfigUnsupported, "dynamic");
  CHECK_THROWS_MSG(parse_config(llama + base + R"(,"rope_scaling":{"rope_type":"linear"}})", "lin"),
                   code::kConfigInvalid, "rope_scaling.factor");
  std::string gelu = base;
  gelu.replace(gelu.find("\"silu\""), 6, "\"gelu\"");
  CHECK_THROWS_MSG(parse_config(llama + gelu + "}", "gelu"), code::kConfigUnsupported, "gelu");
  CHECK_THROWS_MSG(parse_config(llama + base + R"(,"num_key_value_heads":5})", "gqa"), code::kConfigInvalid,
                   "num_key_value_heads");
  CHECK_THROWS_MSG(parse_config(llama + base + R"(,"num_key_value_heads":64})", "gqa"), code::kConfigInvalid,
                   "num_key_value_heads");
  CHECK_THROWS_MSG(parse_config(R"({"architectures":["LlamaForCausalLM"],"intermediate_size":1,"num_hidden_layers":1,)"
                                R"("num_attention_heads":1,"vocab_size":1,"max_position_embeddings":1})",
                                "nohidden"),
                   code::kConfigInvalid, "hidden_size is missing");
  CHECK_THROWS_MSG(parse_config(llama + R"("hidden_size":"64","intermediate_size":1,"num_hidden_layers":1,)"
                                        R"("num_attention_heads":1,"vocab_size":1,"max_position_embeddings":1})",
                                "strhidden"),
                   code::kConfigInvalid, "hidden_size must be an integer");
  CHECK_THROWS_MSG(parse_config(llama + R"("hidden_size":64,"intermediate_size":1,"num_hidden_layers":0,)"
                                        R"("num_attention_heads":1,"vocab_size":1,"max_position_embeddings":1})",
                                "zerolayers"),
                   code::kConfigInvalid, "num_hidden_layers");
  CHECK_THROWS_MSG(parse_config(llama + R"("hidden_size":-64,"intermediate_size":1,"num_hidden_layers":1,)"
                                        R"("num_attention_heads":1,"vocab_size":1,"max_position_embeddings":1})",
                                "neg"),
                   code::kConfigInvalid, "hidden_size");
  CHECK_THROWS_MSG(parse_config(llama + R"("hidden_size":65,"intermediate_size":1,"num_hidden_layers":1,)"
                                        R"("num_attention_heads":2,"vocab_size":4,"max_position_embeddings":1})",
                                "indivisible"),
                   code::kConfigInvalid, "hidden_size");
  std::string no_eps = base;
  no_eps.replace(no_eps.find(",\"rms_norm_eps\":1e-05"), 21, "");
  CHECK_THROWS_MSG(parse_config(llama + no_eps + R"(,"rms_norm_eps":0})", "eps"), code::kConfigInvalid, "rms_norm_eps");
  CHECK_EQ(parse_config(llama + no_eps + "}", "eps-default").rms_eps, 1e-6);
  CHECK_THROWS_MSG(parse_config(llama + base + R"(,"rms_norm_eps":1e-06})", "dup"), code::kConfigInvalid,
                   "duplicate key 'rms_norm_eps'");
  CHECK_THROWS_MSG(parse_config(llama + base + R"(,"rope_scaling":{"type":"linear","factor":2,"factor":3}})", "dup2"),
                   code::kConfigInvalid, "rope_scaling.factor");
  CHECK_THROWS_MSG(parse_config(llama + base + R"(,"tie_word_embeddings":1})", "tie"), code::kConfigInvalid,
                   "tie_word_embeddings");
  CHECK_THROWS_MSG(parse_config(llama + base + R"(,"eos_token_id":[1,"x"]})", "eos"), code::kConfigInvalid,
                   "eos_token_id[1]");
  CHECK_THROWS_MSG(parse_config("[1]", "arr"), code::kConfigInvalid, "arr");
  CHECK_THROWS_MSG(parse_config("{", "broken.json"), code::kConfigInvalid, "broken.json");
  CHECK_THROWS(parse_config(R"({"architectures":["Qwen3ForCausalLM"],)" + base + "}", "qwen3-nohd"),
               code::kConfigInvalid);
}

// ---------------------------------------------------------------------------
// Weights

hs::ModelConfig tiny_config(bool tied, bool qkv_bias = false) {
  hs::ModelConfig c;
  c.arch = "LlamaForCausalLM";
  c.model_type = "llama";
  c.num_layers = 2;
  c.hidden = 8;
  c.intermediate = 12;
  c.num_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 4;
  c.vocab = 16;
  c.max_position = 32;
  c.tie_embeddings = tied;
  c.qkv_bias = qkv_bias;
  c.attention_absent.assign(2, false);
  return c;
}

void test_weights(const std::string& dir, const std::string& model_dir) {
  section("weights");
  using namespace hs;
  {
    ModelConfig c = tiny_config(false, true);
    c.o_bias = true;
    c.mlp_bias = true;
    c.qk_norm = true;
    auto ex = expected_tensors(c);
    // 1 embed + 2 x (2 norms + 4 proj + 3 qkv bias + 1 o bias + 2 qk norms + 3 mlp + 3 mlp bias) + norm + lm_head
    CHECK_EQ(ex.size(), 1u + 2u * 18u + 2u);
    auto find = [&](const std::string& n) -> const ExpectedTensor* {
      for (const auto& e : ex)
        if (e.name == n) return &e;
      return nullptr;
    };
    CHECK(find("model.layers.1.self_attn.k_proj.weight")->shape == (std::vector<int64_t>{4, 8}));
    CHECK(find("model.layers.1.self_attn.o_proj.weight")->shape == (std::vector<int64_t>{8, 8}));
    CHECK(find("model.layers.0.self_attn.q_norm.weight")->shape == (std::vector<int64_t>{4}));
    CHECK(find("model.layers.0.mlp.down_proj.weight")->shape == (std::vector<int64_t>{8, 12}));
    CHECK(find("model.layers.0.mlp.down_proj.bias")->shape == (std::vector<int64_t>{8}));
    CHECK(find("lm_head.weight") && !find("lm_head.weight")->optional);
    c.attention_absent = {true, false};
    auto ex2 = expected_tensors(c);
    CHECK_EQ(ex2.size(), ex.size() - 11);  // q/k/v/o, 3 biases, o bias, 2 qk norms, input norm
    bool has_attn0 = false;
    for (const auto& e : ex2) has_attn0 = has_attn0 || e.name.find("layers.0.self_attn") != std::string::npos;
    CHECK(!has_attn0);
  }

  auto specs_for = [](const ModelConfig& c, bool with_lm_head) {
    std::vector<std::pair<std::string, std::vector<int64_t>>> specs;
    for (const auto& e : expected_tensors(c)) {
      if (e.name == "lm_head.weight" && !with_lm_head) continue;
      specs.push_back({e.name, e.shape});
    }
    return specs;
  };

  // Tied, lm_head stored anyway: it is used.
  {
    const std::string d = dir + "/tied";
    mkdir(d.c_str(), 0755);
    ModelConfig c = tiny_config(true);
    write_tensor_file(d + "/model.safetensors", specs_for(c, true), 0.0f);
    auto ck = Checkpoint::open_dir(d);
    auto w = load_weights(c, *ck);
    CHECK(w->lm_head != w->embed);
    std::vector<float> lm(16 * 8);
    convert_to_f32(*ck->find("lm_head.weight"), lm.data());
    CHECK(std::memcmp(w->lm_head.data, lm.data(), lm.size() * 4) == 0);
    CHECK_EQ(w->source_dtype, "F32");
  }
  // Tied without lm_head: lm_head aliases the embedding.
  {
    const std::string d = dir + "/tied2";
    mkdir(d.c_str(), 0755);
    ModelConfig c = tiny_config(true);
    write_tensor_file(d + "/model.safetensors", specs_for(c, false), 0.0f);
    auto ck = Checkpoint::open_dir(d);
    auto w = load_weights(c, *ck);
    CHECK(w->lm_head == w->embed && w->embed);
    CHECK(w->layers.size() == 2 && w->layers[1].q && w->layers[1].down && !w->layers[1].q_bias);
    float first;
    std::memcpy(&first, ck->find("model.embed_tokens.weight")->data, 4);
    CHECK_EQ(w->embed.get(0), first);
  }
  // DeciLM-style absent attention: no q/k/v/o for that layer.
  {
    const std::string d = dir + "/absent";
    mkdir(d.c_str(), 0755);
    ModelConfig c = tiny_config(false);
    c.attention_absent = {false, true};
    write_tensor_file(d + "/model.safetensors", specs_for(c, true), 0.0f);
    auto ck = Checkpoint::open_dir(d);
    auto w = load_weights(c, *ck);
    CHECK(w->layers[0].q && !w->layers[1].q && !w->layers[1].o && !w->layers[1].input_norm && w->layers[1].gate);
  }
  // All missing names and shape mismatches reported at once.
  {
    const std::string d = dir + "/broken";
    mkdir(d.c_str(), 0755);
    ModelConfig c = tiny_config(false);
    auto specs = specs_for(c, true);
    std::vector<std::pair<std::string, std::vector<int64_t>>> kept;
    for (auto& s : specs) {
      if (s.first == "model.layers.0.mlp.up_proj.weight" || s.first == "lm_head.weight") continue;
      if (s.first == "model.layers.1.self_attn.k_proj.weight") s.second = {8, 8};
      if (s.first == "model.norm.weight") s.second = {9};
      kept.push_back(s);
    }
    write_tensor_file(d + "/model.safetensors", kept, 0.0f);
    auto ck = Checkpoint::open_dir(d);
    std::string msg;
    try {
      load_weights(c, *ck);
    } catch (const Error& e) {
      CHECK_EQ(std::string(e.code()), std::string(code::kMissingTensor));
      msg = e.what();
    }
    CHECK(msg.find("model.layers.0.mlp.up_proj.weight") != std::string::npos);
    CHECK(msg.find("lm_head.weight") != std::string::npos);
    CHECK(msg.find("model.layers.1.self_attn.k_proj.weight is [8, 8], expected [4, 8]") != std::string::npos);
    CHECK(msg.find("model.norm.weight is [9]") != std::string::npos);
    CHECK(msg.find("2 missing") != std::string::npos);

    c.tie_embeddings = true;  // now lm_head is optional; only one name is missing
    CHECK_THROWS_MSG(load_weights(c, *ck), code::kMissingTensor, "1 missing");
    ModelConfig shapes_only = tiny_config(true);
    shapes_only.intermediate = 13;  // every mlp tensor mismatches, none missing
    const std::string d2 = dir + "/shape";
    mkdir(d2.c_str(), 0755);
    write_tensor_file(d2 + "/model.safetensors", specs_for(tiny_config(true), false), 0.0f);
    auto ck2 = Checkpoint::open_dir(d2);
    CHECK_THROWS_MSG(load_weights(shapes_only, *ck2), code::kShape, "6 shape mismatch");
  }

  // The real checkpoint.
  section("stories260k");
  auto m = load_model_dir(model_dir);
  const Weights& w = *m->weights;
  CHECK_EQ(m->config.arch, "LlamaForCausalLM");
  CHECK_EQ(w.parameters, 260032);
  CHECK_EQ(w.bytes, 260032u * 4u);
  // Norms are fp32 copies (5 layers x 2 + final, 64 wide); the matrices point into the mapping.
  CHECK_EQ(w.storage.size(), 11u);
  CHECK_EQ(w.copied_bytes, 11u * 64u * 4u);
  CHECK(w.storage16.empty());
  CHECK_EQ(w.source_dtype, "F32");
  CHECK_EQ(w.matrix_dtype, "F32");
  CHECK(w.lm_head == w.embed);
  CHECK_EQ(w.layers.size(), 5u);
  {
    const auto& f = *m->checkpoint->files()[0];
    const uint8_t* p = static_cast<const uint8_t*>(w.layers[4].down.data);
    CHECK(p >= f.bytes() && p + 64 * 172 * 4 <= f.bytes() + f.size());
  }
  // Reference values read from the file independently (Python struct).
  CHECK_EQ(w.final_norm[0], 2.45830894f);
  CHECK_EQ(w.final_norm[3], 1.10783184f);
  CHECK_EQ(w.embed.get(1), 0.561895609f);
  CHECK_EQ(w.layers[4].down.get(3), 0.203118116f);
  CHECK_EQ(w.layers[4].down.get(64 * 172 - 1), -0.0035068716388195753f);
  auto ck = Checkpoint::open_dir(model_dir);
  CHECK_EQ(ck->names().size(), 47u);
  CHECK_EQ(ck->files()[0]->metadata().at("format"), "pt");

  // Fingerprint: stable, sensitive to config and to sampled bytes, and equal to a
  // reference digest computed outside this code (Python hashlib over the same
  // canonical text).
  section("fingerprint");
  CHECK_EQ(m->fingerprint.size(), 64u);
  CHECK_EQ(m->fingerprint, load_model_dir(model_dir)->fingerprint);
  CHECK_EQ(m->fingerprint, model_fingerprint(m->config, *ck));
  ModelConfig other = m->config;
  other.rope.theta = 10001.0;
  CHECK(model_fingerprint(other, *ck) != m->fingerprint);
  CHECK_EQ(m->fingerprint, std::string(kStoriesFingerprint));
  {
    const std::string d = dir + "/fp";
    mkdir(d.c_str(), 0755);
    ModelConfig c = tiny_config(true);
    write_tensor_file(d + "/model.safetensors", specs_for(c, false), 0.0f);
    std::string a = model_fingerprint(c, *Checkpoint::open_dir(d));
    write_tensor_file(d + "/model.safetensors", specs_for(c, false), 1.0f);
    std::string b = model_fingerprint(c, *Checkpoint::open_dir(d));
    CHECK(a != b);
  }

  CHECK_THROWS_MSG(load_model_dir(dir + "/emptydir"), code::kIo, "config.json");
}

// Opens every file listed in DIR/manifest.json (written by
// test/fixtures/make-malformed.mjs) and checks the error code it names.
void test_corpus(const std::string& corpus) {
  section("corpus");
  const std::string manifest_path = corpus + "/manifest.json";
  auto manifest = hs::json::parse(read_file(manifest_path), hs::code::kIo, manifest_path);
  CHECK(manifest.is_array() && !manifest.array.empty());
  for (const auto& item : manifest.array) {
    const std::string file = item.find("file")->string;
    const hs::json::Value* code = item.find("expectedCode");
    const std::string path = corpus + "/" + file;
    if (code->is_null()) {
      bool opened = false;
      try {
        opened = hs::SafetensorsFile::open(path)->tensors().size() > 0;
      } catch (const hs::Error& e) {
        std::printf("  %s: %s\n", file.c_str(), e.what());
      }
      check(opened, file + " opens", __LINE__);
    } else {
      check_throws([&] { hs::SafetensorsFile::open(path); }, code->string.c_str(), file, __LINE__, file);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir = HOPSCOTCH_SOURCE_DIR "/models/stories260k";
  std::string corpus;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--corpus" && i + 1 < argc) {
      corpus = argv[++i];
    } else {
      model_dir = arg;
    }
  }
  const std::string dir = make_temp_dir();
  try {
    if (!corpus.empty()) test_corpus(corpus);
    test_json();
    test_safetensors_memory();
    test_writer_roundtrip(dir);
    test_index_and_shards(dir);
    test_config(model_dir);
    test_weights(dir, model_dir);
  } catch (const hs::Error& e) {
    ++g_failed;
    std::printf("FAIL [%s] unexpected %s: %s\n", g_section.c_str(), e.code(), e.what());
  } catch (const std::exception& e) {
    ++g_failed;
    std::printf("FAIL [%s] unexpected exception: %s\n", g_section.c_str(), e.what());
  }
  remove_tree(dir);
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
