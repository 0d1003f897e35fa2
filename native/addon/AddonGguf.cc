// GGUF free functions: exportGguf (async, streaming), inspectGguf (header only) and
// readGgufTensor (one tensor as f32, for checks and tests).
#include "common.h"
#include "gguf.h"
#include "gguf_export.h"

namespace hsnapi {
namespace {

using hs::gguf::ValueType;

ValueType parse_value_type(const std::string& s, const std::string& key) {
  static const std::pair<const char*, ValueType> table[] = {
      {"u8", ValueType::U8},   {"i8", ValueType::I8},   {"u16", ValueType::U16},   {"i16", ValueType::I16},
      {"u32", ValueType::U32}, {"i32", ValueType::I32}, {"f32", ValueType::F32},   {"bool", ValueType::BOOL},
      {"string", ValueType::STRING}, {"array", ValueType::ARRAY}, {"u64", ValueType::U64}, {"i64", ValueType::I64},
      {"f64", ValueType::F64}};
  for (const auto& [name, t] : table)
    if (s == name) return t;
  throw_arg("gguf key '" + key + "': unknown value type '" + s + "'");
}

hs::gguf::Value scalar_from_js(const Napi::Value& v, ValueType t, const std::string& key) {
  hs::gguf::Value out;
  out.type = t;
  auto number = [&]() {
    if (!v.IsNumber()) throw_arg("gguf key '" + key + "': value must be a number");
    return v.As<Napi::Number>().DoubleValue();
  };
  auto integer = [&](double lo, double hi) {
    double d = number();
    if (d != static_cast<double>(static_cast<int64_t>(d)) || d < lo || d > hi)
      throw_arg("gguf key '" + key + "': " + std::to_string(d) + " is not a " + hs::gguf::value_type_name(t));
    return static_cast<int64_t>(d);
  };
  switch (t) {
    case ValueType::U8: out.u = static_cast<uint64_t>(integer(0, 255)); break;
    case ValueType::U16: out.u = static_cast<uint64_t>(integer(0, 65535)); break;
    case ValueType::U32: out.u = static_cast<uint64_t>(integer(0, 4294967295.0)); break;
    case ValueType::U64: out.u = static_cast<uint64_t>(integer(0, 9007199254740991.0)); break;
    case ValueType::I8: out.i = integer(-128, 127); break;
    case ValueType::I16: out.i = integer(-32768, 32767); break;
    case ValueType::I32: out.i = integer(-2147483648.0, 2147483647.0); break;
    case ValueType::I64: out.i = integer(-9007199254740991.0, 9007199254740991.0); break;
    case ValueType::F32:
    case ValueType::F64: out.f = number(); break;
    case ValueType::BOOL:
      if (!v.IsBoolean()) throw_arg("gguf key '" + key + "': value must be a boolean");
      out.u = v.As<Napi::Boolean>().Value() ? 1 : 0;
      break;
    case ValueType::STRING: out.s = get_string(v, "gguf string value"); break;
    case ValueType::ARRAY: throw_arg("gguf key '" + key + "': nested arrays are not supported");
  }
  return out;
}

// [{ key, type, elemType?, value }]
std::vector<hs::gguf::KeyValue> kvs_from_js(const Napi::Value& v) {
  if (!v.IsArray()) throw_arg("metadata must be an array of { key, type, value }");
  auto a = v.As<Napi::Array>();
  std::vector<hs::gguf::KeyValue> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    auto o = a.Get(i).As<Napi::Object>();
    hs::gguf::KeyValue kv;
    kv.key = get_string(o.Get("key"), "metadata key");
    ValueType t = parse_value_type(get_string(o.Get("type"), "metadata type"), kv.key);
    if (t == ValueType::ARRAY) {
      kv.value.type = ValueType::ARRAY;
      kv.value.elem = parse_value_type(get_string(o.Get("elemType"), "metadata elemType"), kv.key);
      Napi::Value items = o.Get("value");
      if (!items.IsArray()) throw_arg("gguf key '" + kv.key + "': array value must be an array");
      auto arr = items.As<Napi::Array>();
      kv.value.items.reserve(arr.Length());
      for (uint32_t k = 0; k < arr.Length(); ++k) kv.value.items.push_back(scalar_from_js(arr.Get(k), kv.value.elem, kv.key));
    } else {
      kv.value = scalar_from_js(o.Get("value"), t, kv.key);
    }
    out.push_back(std::move(kv));
  }
  return out;
}

hs::gguf::TensorType parse_tensor_type(const std::string& s) {
  if (s == "F32") return hs::gguf::TensorType::F32;
  if (s == "F16") return hs::gguf::TensorType::F16;
  if (s == "BF16") return hs::gguf::TensorType::BF16;
  if (s == "Q8_0") return hs::gguf::TensorType::Q8_0;
  throw_arg("gguf tensor type must be F32, F16, BF16 or Q8_0, got '" + s + "'");
}

// [{ name, source?, values?: Float32Array, shape, scale?, permuteHeads?, type }]
std::vector<hs::GgufExportTensor> tensors_from_js(const Napi::Value& v) {
  if (!v.IsArray()) throw_arg("tensors must be an array");
  auto a = v.As<Napi::Array>();
  std::vector<hs::GgufExportTensor> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    auto o = a.Get(i).As<Napi::Object>();
    hs::GgufExportTensor t;
    t.name = get_string(o.Get("name"), "tensor name");
    if (o.Has("source") && !o.Get("source").IsUndefined()) t.source = get_string(o.Get("source"), "tensor source");
    if (o.Has("values") && !o.Get("values").IsUndefined()) t.values = get_float32(o.Get("values"), "tensor values");
    auto shape = o.Get("shape");
    if (!shape.IsArray()) throw_arg("tensor '" + t.name + "': shape must be an array");
    auto sa = shape.As<Napi::Array>();
    for (uint32_t k = 0; k < sa.Length(); ++k) t.shape.push_back(sa.Get(k).As<Napi::Number>().Int64Value());
    if (o.Has("scale") && o.Get("scale").IsNumber()) t.scale = o.Get("scale").As<Napi::Number>().DoubleValue();
    if (o.Has("permuteHeads") && o.Get("permuteHeads").IsNumber()) t.permute_heads = o.Get("permuteHeads").As<Napi::Number>().Int32Value();
    t.type = parse_tensor_type(get_string(o.Get("type"), "tensor type"));
    out.push_back(std::move(t));
  }
  return out;
}

Napi::Value scalar_to_js(Napi::Env env, const hs::gguf::Value& v, ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::U16: case ValueType::U32: case ValueType::U64:
      return Napi::Number::New(env, static_cast<double>(v.u));
    case ValueType::I8: case ValueType::I16: case ValueType::I32: case ValueType::I64:
      return Napi::Number::New(env, static_cast<double>(v.i));
    case ValueType::F32: case ValueType::F64: return Napi::Number::New(env, v.f);
    case ValueType::BOOL: return Napi::Boolean::New(env, v.u != 0);
    case ValueType::STRING: return Napi::String::New(env, v.s);
    case ValueType::ARRAY: break;
  }
  return env.Undefined();
}

// exportGguf(modelDir, out, metadata, tensors, overwrite) -> Promise<{ bytes, tensorBytes, parameters }>
Napi::Value ExportGguf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    std::string dir = get_string(info[0], "modelDir"), out = get_string(info[1], "out");
    auto kvs = std::make_shared<std::vector<hs::gguf::KeyValue>>(kvs_from_js(info[2]));
    auto tensors = std::make_shared<std::vector<hs::GgufExportTensor>>(tensors_from_js(info[3]));
    bool overwrite = info[4].IsBoolean() && info[4].As<Napi::Boolean>().Value();
    auto result = std::make_shared<hs::GgufExportResult>();
    return PromiseWorker::run(
        env, [dir, out, kvs, tensors, overwrite, result] { *result = hs::export_gguf(dir, *kvs, *tensors, out, overwrite); },
        [result](Napi::Env env) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("bytes", Napi::Number::New(env, static_cast<double>(result->bytes)));
          o.Set("tensorBytes", Napi::Number::New(env, static_cast<double>(result->tensor_bytes)));
          o.Set("parameters", Napi::Number::New(env, static_cast<double>(result->parameters)));
          return o;
        });
  });
}

// inspectGguf(path) -> { version, alignment, dataOffset, fileSize, metadata: [{key, type, elemType?, value}], tensors: [...] }
Napi::Value InspectGguf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto f = hs::gguf::File::open(get_string(info[0], "path"));
    auto o = Napi::Object::New(env);
    o.Set("version", Napi::Number::New(env, f->version()));
    o.Set("alignment", Napi::Number::New(env, f->alignment()));
    o.Set("dataOffset", Napi::Number::New(env, static_cast<double>(f->data_offset())));
    o.Set("fileSize", Napi::Number::New(env, static_cast<double>(f->size())));
    auto meta = Napi::Array::New(env, f->metadata().size());
    for (size_t i = 0; i < f->metadata().size(); ++i) {
      const auto& kv = f->metadata()[i];
      auto m = Napi::Object::New(env);
      m.Set("key", kv.key);
      m.Set("type", hs::gguf::value_type_name(kv.value.type));
      if (kv.value.type == ValueType::ARRAY) {
        m.Set("elemType", hs::gguf::value_type_name(kv.value.elem));
        auto arr = Napi::Array::New(env, kv.value.items.size());
        for (size_t k = 0; k < kv.value.items.size(); ++k) arr.Set(k, scalar_to_js(env, kv.value.items[k], kv.value.elem));
        m.Set("value", arr);
      } else {
        m.Set("value", scalar_to_js(env, kv.value, kv.value.type));
      }
      meta.Set(i, m);
    }
    o.Set("metadata", meta);
    auto ts = Napi::Array::New(env, f->tensors().size());
    for (size_t i = 0; i < f->tensors().size(); ++i) {
      const auto& t = f->tensors()[i];
      auto x = Napi::Object::New(env);
      x.Set("name", t.name);
      x.Set("type", hs::gguf::type_name(t.type));
      auto ne = Napi::Array::New(env, t.ne.size());
      for (size_t k = 0; k < t.ne.size(); ++k) ne.Set(k, Napi::Number::New(env, static_cast<double>(t.ne[k])));
      x.Set("ne", ne);
      x.Set("offset", Napi::Number::New(env, static_cast<double>(t.offset)));
      x.Set("bytes", Napi::Number::New(env, static_cast<double>(t.nbytes)));
      ts.Set(i, x);
    }
    o.Set("tensors", ts);
    return o;
  });
}

// readGgufTensor(path, name) -> Float32Array (F32 / F16 / BF16 / Q8_0 dequantized)
Napi::Value ReadGgufTensor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    std::string path = get_string(info[0], "path"), name = get_string(info[1], "name");
    auto f = hs::gguf::File::open(path);
    const hs::gguf::TensorInfo* t = f->find_tensor(name);
    if (!t) hs::fail(hs::code::kMissingTensor, path + ": no tensor named '" + name + "'");
    auto a = Napi::Float32Array::New(env, static_cast<size_t>(t->numel()));
    hs::gguf::tensor_to_f32(*f, *t, a.Data());
    return a;
  });
}

}  // namespace

void init_gguf(Napi::Env env, Napi::Object exports) {
  exports.Set("exportGguf", Napi::Function::New(env, ExportGguf, "exportGguf"));
  exports.Set("inspectGguf", Napi::Function::New(env, InspectGguf, "inspectGguf"));
  exports.Set("readGgufTensor", Napi::Function::New(env, ReadGgufTensor, "readGgufTensor"));
}

}  // namespace hsnapi
