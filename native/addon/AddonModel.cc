// The JS Model class: owns a loaded checkpoint and one engine (CPU or CUDA).
// Every heavy method runs on the libuv pool and returns a promise. Calls on one
// model are serialised by a mutex; dispose() marks the model dead at once and the
// weights are freed when the last in-flight call finishes.
#include <atomic>
#include <mutex>

#include "common.h"
#include "weights.h"

namespace hsnapi {
namespace {

struct ModelState {
  std::mutex mu;
  std::unique_ptr<hs::LoadedModel> model;
  std::unique_ptr<hs::Engine> engine;
  std::atomic<bool> disposed{false};
  std::string device;
  std::string precision = "f32";  // the CPU engine's GEMM arithmetic
};
using StatePtr = std::shared_ptr<ModelState>;

// Runs fn with the engine locked; a disposed model is a typed error.
template <typename F>
void with_engine(const StatePtr& s, F&& fn) {
  if (s->disposed) hs::fail(hs::code::kDisposed, "the model was disposed");
  std::lock_guard<std::mutex> lock(s->mu);
  if (s->disposed || !s->engine) hs::fail(hs::code::kDisposed, "the model was disposed");
  fn(*s->engine, *s->model);
}

hs::BatchOptions get_batch_options(const Napi::Value& v) {
  hs::BatchOptions o;
  if (v.IsUndefined() || v.IsNull()) return o;
  if (!v.IsObject()) throw_arg("options must be an object");
  auto obj = v.As<Napi::Object>();
  o.skip = get_index_array(obj.Get("skip"), "skip");
  Napi::Value tm = obj.Get("tokenMean"), rc = obj.Get("recompute"), cap = obj.Get("tokenCap");
  o.token_mean = tm.IsBoolean() && tm.As<Napi::Boolean>().Value();
  o.recompute = rc.IsBoolean() && rc.As<Napi::Boolean>().Value();
  if (cap.IsNumber()) o.token_cap = cap.As<Napi::Number>().Int64Value();
  Napi::Value mm = obj.Get("maxMemory");
  if (mm.IsNumber()) o.max_memory = mm.As<Napi::Number>().Int64Value();
  return o;
}

}  // namespace

class AddonModel : public Napi::ObjectWrap<AddonModel> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Model",
                       {StaticMethod<&AddonModel::Load>("load"),
                        InstanceMethod<&AddonModel::Info>("info"),
                        InstanceMethod<&AddonModel::Loss>("loss"),
                        InstanceMethod<&AddonModel::Logits>("logits"),
                        InstanceMethod<&AddonModel::Generate>("generate"),
                        InstanceMethod<&AddonModel::LayerStats>("layerStats"),
                        InstanceMethod<&AddonModel::Dispose>("dispose")});
  }

  explicit AddonModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AddonModel>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw make_error(info.Env(), hs::code::kArgument, "use Model.load(dir, options) to create a model");
    state_ = *info[0].As<Napi::External<StatePtr>>().Data();
  }

  // Model.load(dir, { device: 'cpu'|'cuda', threads, precision: 'f32'|'bf16' }) -> Promise<Model>
  static Napi::Value Load(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      std::string dir = get_string(info[0], "dir");
      std::string device = "cpu";
      std::string precision = "f32";
      int threads = 0;
      if (info.Length() > 1 && info[1].IsObject()) {
        auto o = info[1].As<Napi::Object>();
        if (o.Get("device").IsString()) device = o.Get("device").As<Napi::String>().Utf8Value();
        if (o.Get("threads").IsNumber()) threads = o.Get("threads").As<Napi::Number>().Int32Value();
        if (o.Get("precision").IsString()) precision = o.Get("precision").As<Napi::String>().Utf8Value();
      }
      if (device != "cpu" && device != "cuda") throw_arg("device must be 'cpu' or 'cuda', got '" + device + "'");
      if (precision != "f32" && precision != "bf16")
        throw_arg("precision must be 'f32' or 'bf16', got '" + precision + "'");
      auto state = std::make_shared<ModelState>();
      state->device = device;
      // The CUDA engine computes in bf16 whatever is asked; precision shapes the CPU engine only.
      const bool bf16 = device == "cpu" && precision == "bf16";
      return PromiseWorker::run(
          env,
          [state, dir, device, threads, bf16] {
            hs::WeightOptions wo;
            wo.bf16 = bf16;
            state->model = hs::load_model_dir(dir, wo);
            state->engine = device == "cuda"
                                ? create_cuda_engine(*state->model)
                                : hs::make_cpu_engine(*state->model, threads, bf16 ? hs::Arith::BF16 : hs::Arith::F32);
            state->precision = bf16 ? "bf16" : "f32";
          },
          [state](Napi::Env env) -> Napi::Value {
            auto* data = env.GetInstanceData<InstanceData>();
            StatePtr copy = state;
            return data->model_ctor.New({Napi::External<StatePtr>::New(env, &copy)});
          });
    });
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      if (state_->disposed) hs::fail(hs::code::kDisposed, "the model was disposed");
      const auto& m = *state_->model;
      auto o = Napi::Object::New(env);
      auto cfg = config_to_js(env, m.config);
      cfg.Set("parameters", Napi::Number::New(env, static_cast<double>(m.weights->parameters)));
      cfg.Set("dtype", Napi::String::New(env, m.weights->source_dtype));
      o.Set("config", cfg);
      o.Set("device", Napi::String::New(env, state_->engine->device()));
      o.Set("fingerprint", Napi::String::New(env, m.fingerprint));
      o.Set("dir", Napi::String::New(env, m.dir));
      o.Set("weightBytes", Napi::Number::New(env, static_cast<double>(m.weights->bytes)));
      o.Set("weightDtype", Napi::String::New(env, m.weights->matrix_dtype));
      o.Set("precision", Napi::String::New(env, state_->precision));
      return o;
    });
  }

  // loss(samples, theta, options, wantGrad) -> Promise<{loss, responseTokens, sampleNll, peakBytes, grad?}>
  Napi::Value Loss(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      auto samples = std::make_shared<std::vector<hs::Sample>>(get_samples(info[0]));
      auto theta = std::make_shared<hs::Theta>(get_theta(info[1]));
      auto opts = get_batch_options(info[2]);
      bool want_grad = info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
      auto result = std::make_shared<hs::LossResult>();
      StatePtr s = state_;
      return PromiseWorker::run(
          env,
          [s, samples, theta, opts, want_grad, result] {
            with_engine(s, [&](hs::Engine& e, const hs::LoadedModel&) {
              *result = e.loss(*samples, *theta, opts, want_grad);
            });
          },
          [result, want_grad](Napi::Env env) -> Napi::Value {
            auto o = Napi::Object::New(env);
            o.Set("loss", Napi::Number::New(env, result->loss));
            o.Set("responseTokens", Napi::Number::New(env, static_cast<double>(result->response_tokens)));
            o.Set("sampleNll", float64_to_js(env, result->sample_nll));
            o.Set("peakBytes", Napi::Number::New(env, static_cast<double>(result->peak_bytes)));
            if (want_grad) o.Set("grad", theta_to_js(env, result->grad));
            return o;
          });
    });
  }

  // logits(tokens, theta, skip) -> Promise<Float32Array>
  Napi::Value Logits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      auto tokens = get_int_array(info[0], "tokens");
      auto theta = get_theta(info[1]);
      auto skip = get_index_array(info[2], "skip");
      auto out = std::make_shared<std::vector<float>>();
      StatePtr s = state_;
      return PromiseWorker::run(
          env,
          [s, tokens, theta, skip, out] {
            with_engine(s, [&](hs::Engine& e, const hs::LoadedModel&) { *out = e.logits(tokens, theta, skip); });
          },
          [out](Napi::Env env) -> Napi::Value { return float32_to_js(env, *out); });
    });
  }

  // generate(prompts, theta, { maxNewTokens, skip, stop, includeStop }) -> Promise<number[][]>
  Napi::Value Generate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      if (!info[0].IsArray()) throw_arg("prompts must be an array of token id arrays");
      auto arr = info[0].As<Napi::Array>();
      std::vector<std::vector<int32_t>> prompts(arr.Length());
      for (uint32_t i = 0; i < arr.Length(); ++i)
        prompts[i] = get_int_array(arr.Get(i), ("prompts[" + std::to_string(i) + "]").c_str());
      auto theta = get_theta(info[1]);
      hs::GenerateOptions opts;
      if (info[2].IsObject()) {
        auto o = info[2].As<Napi::Object>();
        if (o.Get("maxNewTokens").IsNumber()) opts.max_new_tokens = o.Get("maxNewTokens").As<Napi::Number>().Int32Value();
        opts.skip = get_index_array(o.Get("skip"), "skip");
        auto stop = o.Get("stop");
        if (!stop.IsUndefined() && !stop.IsNull()) opts.stop = get_int_array(stop, "stop");
        opts.include_stop = o.Get("includeStop").ToBoolean().Value();
      }
      auto out = std::make_shared<std::vector<std::vector<int32_t>>>();
      StatePtr s = state_;
      return PromiseWorker::run(
          env,
          [s, prompts, theta, opts, out] {
            with_engine(s, [&](hs::Engine& e, const hs::LoadedModel&) { *out = e.generate(prompts, theta, opts); });
          },
          [out](Napi::Env env) -> Napi::Value {
            auto a = Napi::Array::New(env, out->size());
            for (size_t i = 0; i < out->size(); ++i) {
              auto row = Napi::Array::New(env, (*out)[i].size());
              for (size_t j = 0; j < (*out)[i].size(); ++j) row.Set(j, Napi::Number::New(env, (*out)[i][j]));
              a.Set(i, row);
            }
            return a;
          });
    });
  }

  // layerStats(samples, theta, skip, hiddenLayers) -> Promise<{cosAttn, cosMlp, cosBlock, blockInfluence, hidden}>
  Napi::Value LayerStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      auto samples = get_samples(info[0]);
      auto theta = get_theta(info[1]);
      auto skip = get_index_array(info[2], "skip");
      auto layers = get_index_array(info[3], "hiddenLayers", hs::code::kArgument);
      auto out = std::make_shared<hs::LayerStats>();
      StatePtr s = state_;
      return PromiseWorker::run(
          env,
          [s, samples, theta, skip, layers, out] {
            with_engine(s, [&](hs::Engine& e, const hs::LoadedModel&) {
              *out = e.layer_stats(samples, theta, skip, layers);
            });
          },
          [out](Napi::Env env) -> Napi::Value {
            auto o = Napi::Object::New(env);
            auto arr = [&](const std::vector<double>& v) {
              auto a = Napi::Array::New(env, v.size());
              for (size_t i = 0; i < v.size(); ++i) a.Set(i, Napi::Number::New(env, v[i]));
              return a;
            };
            o.Set("cosAttn", arr(out->cos_attn));
            o.Set("cosMlp", arr(out->cos_mlp));
            o.Set("cosBlock", arr(out->cos_block));
            o.Set("blockInfluence", arr(out->block_influence));
            auto hidden = Napi::Array::New(env, out->hidden.size());
            for (size_t i = 0; i < out->hidden.size(); ++i) hidden.Set(i, float32_to_js(env, out->hidden[i]));
            o.Set("hidden", hidden);
            return o;
          });
    });
  }

  // Frees the engine now when idle, else when the last in-flight call finishes.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (state_ && !state_->disposed.exchange(true)) {
      StatePtr s = std::move(state_);
      state_ = std::make_shared<ModelState>();
      state_->disposed = true;
      std::unique_lock<std::mutex> lock(s->mu, std::try_to_lock);
      if (lock.owns_lock()) {
        s->engine.reset();
        s->model.reset();
      }
    }
    return info.Env().Undefined();
  }

 private:
  StatePtr state_;
};

Napi::Function init_model_class(Napi::Env env, InstanceData* data) {
  Napi::Function ctor = AddonModel::Define(env);
  data->model_ctor = Napi::Persistent(ctor);
  return ctor;
}

}  // namespace hsnapi
