// Module entry: registers the Model class and the free functions
// (loadModel, inspectModel, safetensors read/write, GGUF export/inspect, cuda probe).
#include <napi.h>

#include <cstring>

#include "common.h"
#include "gemm.h"

namespace hsnapi {

Napi::Error make_error(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

void throw_arg(const std::string& message) { throw hs::Error(hs::code::kArgument, message); }

std::string get_string(const Napi::Value& v, const char* what) {
  if (!v.IsString()) throw_arg(std::string(what) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

std::map<std::string, std::string> get_string_map(const Napi::Value& v, const char* what) {
  std::map<std::string, std::string> out;
  if (!v.IsObject()) return out;
  auto o = v.As<Napi::Object>();
  auto keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    std::string k = keys.Get(i).As<Napi::String>().Utf8Value();
    out[k] = get_string(o.Get(k), what);
  }
  return out;
}

std::vector<int32_t> get_int_array(const Napi::Value& v, const char* what) {
  std::vector<int32_t> out;
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
    auto a = v.As<Napi::Int32Array>();
    out.assign(a.Data(), a.Data() + a.ElementLength());
    return out;
  }
  if (!v.IsArray()) throw_arg(std::string(what) + " must be an array of token ids");
  auto a = v.As<Napi::Array>();
  out.resize(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value x = a.Get(i);
    if (!x.IsNumber()) throw_arg(std::string(what) + "[" + std::to_string(i) + "] is not a number");
    double d = x.As<Napi::Number>().DoubleValue();
    if (d != static_cast<double>(static_cast<int64_t>(d)) || d < -2147483648.0 || d > 2147483647.0)
      throw hs::Error(hs::code::kTokenRange, std::string(what) + "[" + std::to_string(i) + "] is not an integer token id");
    out[i] = static_cast<int32_t>(d);
  }
  return out;
}

std::vector<int> get_index_array(const Napi::Value& v, const char* what, const char* code) {
  if (v.IsUndefined() || v.IsNull()) return {};
  if (!v.IsArray()) throw hs::Error(code, std::string(what) + " must be an array of layer indices");
  auto a = v.As<Napi::Array>();
  std::vector<int> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value x = a.Get(i);
    double d = x.IsNumber() ? x.As<Napi::Number>().DoubleValue() : -1.0;
    if (!x.IsNumber() || d != static_cast<double>(static_cast<int64_t>(d)) || d < 0 || d > 1e9)
      throw hs::Error(code, std::string(what) + "[" + std::to_string(i) + "] is not a layer index");
    out[i] = static_cast<int>(d);
  }
  return out;
}

std::vector<float> get_float32(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw hs::Error(hs::code::kTheta, std::string(what) + " must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}

std::vector<hs::Sample> get_samples(const Napi::Value& v) {
  if (!v.IsArray()) throw_arg("samples must be an array of { prompt, response }");
  auto a = v.As<Napi::Array>();
  std::vector<hs::Sample> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value s = a.Get(i);
    if (!s.IsObject()) throw_arg("samples[" + std::to_string(i) + "] must be an object");
    auto o = s.As<Napi::Object>();
    std::string p = "samples[" + std::to_string(i) + "].prompt", r = "samples[" + std::to_string(i) + "].response";
    out[i].prompt = get_int_array(o.Get("prompt"), p.c_str());
    out[i].response = get_int_array(o.Get("response"), r.c_str());
  }
  return out;
}

hs::Theta get_theta(const Napi::Value& v) {
  if (!v.IsObject()) throw hs::Error(hs::code::kTheta, "theta must be an object with bAtt, sAtt, bMlp, sMlp");
  auto o = v.As<Napi::Object>();
  hs::Theta t;
  t.b_att = get_float32(o.Get("bAtt"), "theta.bAtt");
  t.s_att = get_float32(o.Get("sAtt"), "theta.sAtt");
  t.b_mlp = get_float32(o.Get("bMlp"), "theta.bMlp");
  t.s_mlp = get_float32(o.Get("sMlp"), "theta.sMlp");
  return t;
}

Napi::Float32Array float32_to_js(Napi::Env env, const std::vector<float>& v) {
  auto a = Napi::Float32Array::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(float));
  return a;
}

Napi::Float64Array float64_to_js(Napi::Env env, const std::vector<double>& v) {
  auto a = Napi::Float64Array::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(double));
  return a;
}

Napi::Object theta_to_js(Napi::Env env, const hs::Theta& t) {
  auto o = Napi::Object::New(env);
  o.Set("bAtt", float32_to_js(env, t.b_att));
  o.Set("sAtt", float32_to_js(env, t.s_att));
  o.Set("bMlp", float32_to_js(env, t.b_mlp));
  o.Set("sMlp", float32_to_js(env, t.s_mlp));
  return o;
}

PromiseWorker::PromiseWorker(Napi::Env env, Work work, Done done)
    : Napi::AsyncWorker(env, "hopscotch"), deferred_(Napi::Promise::Deferred::New(env)),
      work_(std::move(work)), done_(std::move(done)) {}

Napi::Promise PromiseWorker::run(Napi::Env env, Work work, Done done) {
  auto* w = new PromiseWorker(env, std::move(work), std::move(done));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

void PromiseWorker::Execute() {
  try {
    work_();
  } catch (const hs::Error& e) {
    code_ = e.code();
    SetError(e.what());
  } catch (const std::bad_alloc&) {
    code_ = hs::code::kInternal;
    SetError("out of memory");
  } catch (const std::exception& e) {
    code_ = hs::code::kInternal;
    SetError(e.what());
  } catch (...) {
    code_ = hs::code::kInternal;
    SetError("unknown native error");
  }
}

void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  try {
    deferred_.Resolve(guard(env, [&] { return done_(env); }));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  }
}

void PromiseWorker::OnError(const Napi::Error& e) {
  Napi::Env env = Env();
  deferred_.Reject(make_error(env, code_.c_str(), e.Message()).Value());
}

// Defined in the other addon files.
Napi::Function init_model_class(Napi::Env env, InstanceData* data);
void init_safetensors(Napi::Env env, Napi::Object exports);
void init_gguf(Napi::Env env, Napi::Object exports);
void init_export(Napi::Env env, Napi::Object exports);
void init_eval(Napi::Env env, Napi::Object exports);
void init_cuda(Napi::Env env, Napi::Object exports);

}  // namespace hsnapi

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new hsnapi::InstanceData();
  env.SetInstanceData(data);
  exports.Set("Model", hsnapi::init_model_class(env, data));
  hsnapi::init_safetensors(env, exports);
  hsnapi::init_gguf(env, exports);
  hsnapi::init_export(env, exports);
  hsnapi::init_eval(env, exports);
  hsnapi::init_cuda(env, exports);
  exports.Set("gemmKernel", Napi::String::New(env, hs::gemm_kernel_name()));
  exports.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  return exports;
}

NODE_API_MODULE(hopscotch, Init)
