// Shared napi glue: typed-error conversion, argument readers, the promise worker.
#pragma once
#include <napi.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine.h"
#include "errors.h"

namespace hsnapi {

// Per-environment state (SetInstanceData): constructors of the wrapped classes.
struct InstanceData {
  Napi::FunctionReference model_ctor;
};

// A JS Error with .code set.
Napi::Error make_error(Napi::Env env, const char* code, const std::string& message);
[[noreturn]] void throw_arg(const std::string& message);  // throws hs::Error(kArgument)

// Argument readers: throw hs::Error(kArgument) naming `what` on a type mismatch.
std::string get_string(const Napi::Value& v, const char* what);
// An object of strings (safetensors metadata); anything but an object is an empty map.
std::map<std::string, std::string> get_string_map(const Napi::Value& v, const char* what);
std::vector<int32_t> get_int_array(const Napi::Value& v, const char* what);
// Layer indices: a mistake is `code` (HOPSCOTCH_ERR_SKIP for a skip list, as the engine's
// own check; HOPSCOTCH_ERR_ARGUMENT for hidden-state layers).
std::vector<int> get_index_array(const Napi::Value& v, const char* what, const char* code = hs::code::kSkip);
std::vector<float> get_float32(const Napi::Value& v, const char* what);
std::vector<hs::Sample> get_samples(const Napi::Value& v);
hs::Theta get_theta(const Napi::Value& v);
Napi::Object theta_to_js(Napi::Env env, const hs::Theta& t);
Napi::Float32Array float32_to_js(Napi::Env env, const std::vector<float>& v);
Napi::Float64Array float64_to_js(Napi::Env env, const std::vector<double>& v);

// "F32", "BF16", ... -> DType; throws HOPSCOTCH_ERR_SAFETENSORS_DTYPE for an unknown name.
hs::DType parse_dtype(const std::string& s);

// A cancellation flag shared with JS: an Int32Array over a SharedArrayBuffer that the
// library sets (Atomics.store) when an AbortSignal fires (src/native/binding.ts
// withAbortFlag). A worker polls it between units of work; the reference keeps the
// memory alive until the worker is deleted, on the main thread.
class AbortFlag {
 public:
  // undefined or null: a flag that is never set.
  explicit AbortFlag(const Napi::Value& v) {
    if (v.IsUndefined() || v.IsNull()) return;
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        v.As<Napi::Int32Array>().ElementLength() < 1)
      throw_arg("the abort flag must be an Int32Array");
    auto a = v.As<Napi::Int32Array>();
    word_ = a.Data();
    ref_ = Napi::Persistent(a);
  }
  bool aborted() const { return word_ != nullptr && __atomic_load_n(word_, __ATOMIC_ACQUIRE) != 0; }
  // A poll for the core functions; valid while this flag lives.
  std::function<bool()> poll() const {
    return [this] { return aborted(); };
  }

 private:
  int32_t* word_ = nullptr;
  Napi::Reference<Napi::Int32Array> ref_;
};

// Runs `work` on the libuv pool and settles a promise with `done(env)`'s value.
// `work` touches no JS; any exception becomes a rejected promise with its code.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;
  PromiseWorker(Napi::Env env, Work work, Done done);
  static Napi::Promise run(Napi::Env env, Work work, Done done);
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  std::string code_ = hs::code::kInternal;
};

// Calls fn and converts hs::Error / std::exception into a JS exception with code.
template <typename F>
auto guard(Napi::Env env, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const hs::Error& e) {
    throw make_error(env, e.code(), e.what());
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw make_error(env, hs::code::kInternal, e.what());
  }
}

}  // namespace hsnapi

namespace hsnapi {
// config.json as the JS ModelConfig shape (parameters/dtype filled by the caller).
Napi::Object config_to_js(Napi::Env env, const hs::ModelConfig& c);
// Creates the CUDA engine through the runtime-loaded backend (throws kCuda when unavailable).
std::unique_ptr<hs::Engine> create_cuda_engine(const hs::LoadedModel& model);
}  // namespace hsnapi
