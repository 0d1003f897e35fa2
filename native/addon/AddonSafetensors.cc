// Free functions over checkpoint files: inspect a safetensors file or a model folder
// (headers and config only, no weights loaded), read one tensor as fp32, and write a
// safetensors file atomically.
#include <cstring>

#include "common.h"
#include "config.h"
#include "safetensors.h"
#include "weights.h"

namespace hsnapi {

hs::DType parse_dtype(const std::string& s) {
  static const std::pair<const char*, hs::DType> table[] = {
      {"F32", hs::DType::F32}, {"F16", hs::DType::F16}, {"BF16", hs::DType::BF16}, {"F64", hs::DType::F64},
      {"I64", hs::DType::I64}, {"I32", hs::DType::I32}, {"I16", hs::DType::I16}, {"I8", hs::DType::I8},
      {"U8", hs::DType::U8},   {"BOOL", hs::DType::BOOL}};
  for (const auto& [name, d] : table)
    if (s == name) return d;
  hs::fail(hs::code::kSafetensorsDtype, "unknown dtype '" + s + "'");
}

namespace {

Napi::Object tensor_to_js(Napi::Env env, const hs::TensorView& t, const uint8_t* base) {
  auto o = Napi::Object::New(env);
  o.Set("name", t.name);
  o.Set("dtype", hs::dtype_name(t.dtype));
  auto shape = Napi::Array::New(env, t.shape.size());
  for (size_t i = 0; i < t.shape.size(); ++i) shape.Set(i, Napi::Number::New(env, static_cast<double>(t.shape[i])));
  o.Set("shape", shape);
  o.Set("offset", Napi::Number::New(env, static_cast<double>(t.data - base)));
  o.Set("bytes", Napi::Number::New(env, static_cast<double>(t.nbytes)));
  return o;
}

// inspectSafetensors(path) -> { tensors: [{name, dtype, shape, offset, bytes}], metadata, headerSize, fileSize }
Napi::Value InspectSafetensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto f = hs::SafetensorsFile::open(get_string(info[0], "path"));
    auto o = Napi::Object::New(env);
    auto arr = Napi::Array::New(env, f->tensors().size());
    for (size_t i = 0; i < f->tensors().size(); ++i) arr.Set(i, tensor_to_js(env, f->tensors()[i], f->bytes()));
    o.Set("tensors", arr);
    auto meta = Napi::Object::New(env);
    for (const auto& [k, v] : f->metadata()) meta.Set(k, v);
    o.Set("metadata", meta);
    o.Set("headerSize", Napi::Number::New(env, static_cast<double>(f->header_size())));
    o.Set("fileSize", Napi::Number::New(env, static_cast<double>(f->size())));
    return o;
  });
}

// inspectModel(dir) -> { config, tensors, files, parameters, dtype, fingerprint } without loading weights.
Napi::Value InspectModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    std::string dir = get_string(info[0], "dir");
    auto cfg = hs::read_model_config(dir);
    auto ckpt = hs::Checkpoint::open_dir(dir);
    // Same checks as a load: every expected tensor present with the right shape.
    std::string missing, mismatched;
    int64_t params = 0;
    std::map<std::string, int64_t> dtype_count;
    for (const auto& e : hs::expected_tensors(cfg)) {
      const hs::TensorView* t = ckpt->find(e.name);
      if (!t) {
        if (!e.optional) missing += (missing.empty() ? "" : ", ") + e.name;
        continue;
      }
      if (t->shape != e.shape) mismatched += (mismatched.empty() ? "" : ", ") + e.name;
      params += t->numel();
      dtype_count[hs::dtype_name(t->dtype)] += 1;
    }
    if (!missing.empty()) hs::fail(hs::code::kMissingTensor, dir + ": missing tensors: " + missing);
    if (!mismatched.empty()) hs::fail(hs::code::kShape, dir + ": tensors with unexpected shapes: " + mismatched);
    std::string dtype;
    for (const auto& [k, n] : dtype_count) dtype += (dtype.empty() ? "" : "+") + k;
    auto o = Napi::Object::New(env);
    auto c = config_to_js(env, cfg);
    c.Set("parameters", Napi::Number::New(env, static_cast<double>(params)));
    c.Set("dtype", dtype);
    o.Set("config", c);
    o.Set("tensors", Napi::Number::New(env, static_cast<double>(ckpt->names().size())));
    o.Set("files", Napi::Number::New(env, static_cast<double>(ckpt->files().size())));
    o.Set("fingerprint", hs::model_fingerprint(cfg, *ckpt));
    return o;
  });
}

// inspectCheckpoint(dir) -> [{name, dtype, shape, offset, bytes, file}]: every tensor of a
// model folder (model.safetensors, or the shards of a validated index), headers only.
Napi::Value InspectCheckpoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto ckpt = hs::Checkpoint::open_dir(get_string(info[0], "dir"));
    auto arr = Napi::Array::New(env);
    uint32_t at = 0;
    for (const auto& f : ckpt->files())
      for (const auto& t : f->tensors()) {
        if (ckpt->find(t.name) != &t) continue;  // in a shard, but not in the index
        auto o = tensor_to_js(env, t, f->bytes());
        o.Set("file", f->path());
        arr.Set(at++, o);
      }
    return arr;
  });
}

// readTensor(path, name) -> Promise<Float32Array> (F32/F16/BF16 converted)
Napi::Value ReadTensor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    std::string path = get_string(info[0], "path"), name = get_string(info[1], "name");
    auto values = std::make_shared<std::vector<float>>();
    return PromiseWorker::run(
        env,
        [path, name, values] {
          auto f = hs::SafetensorsFile::open(path);
          const hs::TensorView* t = f->find(name);
          if (!t) hs::fail(hs::code::kMissingTensor, path + ": no tensor named '" + name + "'");
          values->resize(static_cast<size_t>(t->numel()));
          hs::convert_to_f32(*t, values->data());
        },
        [values](Napi::Env env) -> Napi::Value { return float32_to_js(env, *values); });
  });
}

// writeSafetensors(path, [{name, dtype, shape, data: TypedArray}], metadata, overwrite) -> Promise<bytes>
Napi::Value WriteSafetensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    std::string path = get_string(info[0], "path");
    if (!info[1].IsArray()) throw_arg("tensors must be an array");
    auto arr = info[1].As<Napi::Array>();
    auto entries = std::make_shared<std::vector<hs::SafetensorsWriter::Entry>>();
    auto blobs = std::make_shared<std::vector<std::vector<uint8_t>>>();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      auto o = arr.Get(i).As<Napi::Object>();
      hs::SafetensorsWriter::Entry e;
      e.name = get_string(o.Get("name"), "tensor name");
      e.dtype = parse_dtype(get_string(o.Get("dtype"), "tensor dtype"));
      auto shape = o.Get("shape").As<Napi::Array>();
      int64_t numel = 1;
      for (uint32_t k = 0; k < shape.Length(); ++k) {
        e.shape.push_back(shape.Get(k).As<Napi::Number>().Int64Value());
        numel *= e.shape.back();
      }
      Napi::Value d = o.Get("data");
      if (!d.IsTypedArray()) throw_arg("tensor '" + e.name + "' data must be a typed array");
      auto ta = d.As<Napi::TypedArray>();
      const uint8_t* p = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
      if (static_cast<int64_t>(ta.ByteLength()) != numel * static_cast<int64_t>(hs::dtype_size(e.dtype)))
        hs::fail(hs::code::kShape, "tensor '" + e.name + "': data has " + std::to_string(ta.ByteLength()) +
                                       " bytes, shape and dtype need " +
                                       std::to_string(numel * static_cast<int64_t>(hs::dtype_size(e.dtype))));
      blobs->emplace_back(p, p + ta.ByteLength());
      entries->push_back(std::move(e));
    }
    std::map<std::string, std::string> meta = get_string_map(info[2], "metadata value");
    bool overwrite = info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
    auto written = std::make_shared<size_t>(0);
    return PromiseWorker::run(
        env,
        [path, entries, blobs, meta, overwrite, written] {
          hs::SafetensorsWriter w(path, *entries, meta, overwrite);
          for (const auto& b : *blobs) w.write_data(b.data(), b.size());
          *written = w.finish();
        },
        [written](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(*written)); });
  });
}

}  // namespace

Napi::Object config_to_js(Napi::Env env, const hs::ModelConfig& c) {
  auto o = Napi::Object::New(env);
  auto ids = [&](const std::vector<int>& v) {
    auto a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); ++i) a.Set(i, Napi::Number::New(env, v[i]));
    return a;
  };
  o.Set("arch", c.arch);
  o.Set("modelType", c.model_type);
  o.Set("numLayers", c.num_layers);
  o.Set("hiddenSize", c.hidden);
  o.Set("intermediateSize", c.intermediate);
  o.Set("numHeads", c.num_heads);
  o.Set("numKvHeads", c.num_kv_heads);
  o.Set("headDim", c.head_dim);
  o.Set("vocabSize", c.vocab);
  o.Set("maxPositionEmbeddings", Napi::Number::New(env, static_cast<double>(c.max_position)));
  o.Set("rmsNormEps", c.rms_eps);
  o.Set("ropeTheta", c.rope.theta);
  o.Set("ropeType", c.rope.type == hs::RopeType::Llama3 ? "llama3" : c.rope.type == hs::RopeType::Linear ? "linear" : "default");
  o.Set("tieWordEmbeddings", c.tie_embeddings);
  o.Set("qkvBias", c.qkv_bias);
  o.Set("qkNorm", c.qk_norm);
  o.Set("bosTokenIds", ids(c.bos_ids));
  o.Set("eosTokenIds", ids(c.eos_ids));
  std::vector<int> absent;
  for (size_t l = 0; l < c.attention_absent.size(); ++l)
    if (c.attention_absent[l]) absent.push_back(static_cast<int>(l));
  o.Set("attentionAbsent", ids(absent));
  return o;
}

void init_safetensors(Napi::Env env, Napi::Object exports) {
  exports.Set("inspectSafetensors", Napi::Function::New(env, InspectSafetensors, "inspectSafetensors"));
  exports.Set("inspectModel", Napi::Function::New(env, InspectModel, "inspectModel"));
  exports.Set("inspectCheckpoint", Napi::Function::New(env, InspectCheckpoint, "inspectCheckpoint"));
  exports.Set("readTensor", Napi::Function::New(env, ReadTensor, "readTensor"));
  exports.Set("writeSafetensors", Napi::Function::New(env, WriteSafetensors, "writeSafetensors"));
}

}  // namespace hsnapi
