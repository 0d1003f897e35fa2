// Evaluation kernels on the libuv pool: the largest singular value of a matrix given as
// values or read from a checkpoint file (spectral.h), and the unbiased MMD^2 of two
// samples (mmd.h). Inputs are copied into the worker; the abort flag is polled between
// iterations / stages.
#include <cmath>
#include <cstring>

#include "common.h"
#include "mmd.h"
#include "safetensors.h"
#include "spectral.h"

namespace hsnapi {
namespace {

// A Float32Array or Float64Array, copied as float64.
std::vector<double> get_vectors(const Napi::Value& v, const char* what) {
  if (v.IsTypedArray()) {
    auto ta = v.As<Napi::TypedArray>();
    if (ta.TypedArrayType() == napi_float64_array) {
      auto a = v.As<Napi::Float64Array>();
      return std::vector<double>(a.Data(), a.Data() + a.ElementLength());
    }
    if (ta.TypedArrayType() == napi_float32_array) {
      auto a = v.As<Napi::Float32Array>();
      return std::vector<double>(a.Data(), a.Data() + a.ElementLength());
    }
  }
  throw_arg(std::string(what) + " must be a Float32Array or Float64Array");
}

int64_t get_count(const Napi::Value& v, const char* what) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1.0;
  if (!(d > 0) || d != std::floor(d) || d > 9007199254740991.0) throw_arg(std::string(what) + " must be a positive integer");
  return static_cast<int64_t>(d);
}

// { start: Float64Array, tolerance, maxIterations }
hs::PowerIteration get_power_iteration(const Napi::Value& v) {
  if (!v.IsObject()) throw_arg("power iteration options must be an object");
  auto o = v.As<Napi::Object>();
  hs::PowerIteration p;
  p.start = get_vectors(o.Get("start"), "start");
  Napi::Value tol = o.Get("tolerance"), max = o.Get("maxIterations");
  if (!tol.IsNumber() || !max.IsNumber()) throw_arg("tolerance and maxIterations must be numbers");
  p.tolerance = tol.As<Napi::Number>().DoubleValue();
  const double m = max.As<Napi::Number>().DoubleValue();
  if (!(m >= 0) || m != std::floor(m) || m > 2147483647.0) throw_arg("maxIterations must be a non-negative integer");
  p.max_iterations = static_cast<int>(m);
  return p;
}

Napi::Value singular_value_to_js(Napi::Env env, const hs::SingularValue& r) {
  auto o = Napi::Object::New(env);
  o.Set("sigma", Napi::Number::New(env, r.sigma));
  o.Set("iterations", Napi::Number::New(env, r.iterations));
  o.Set("converged", Napi::Boolean::New(env, r.converged));
  return o;
}

// topSingularValue(values, rows, cols, { start, tolerance, maxIterations }, abort?) -> Promise<{ sigma, iterations, converged }>
Napi::Value TopSingularValue(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto w = std::make_shared<std::vector<double>>(get_vectors(info[0], "matrix"));
    const int64_t rows = get_count(info[1], "rows"), cols = get_count(info[2], "cols");
    if (static_cast<int64_t>(w->size()) / rows != cols || static_cast<int64_t>(w->size()) % rows != 0)
      throw_arg("matrix has " + std::to_string(w->size()) + " values, expected " + std::to_string(rows) + " x " + std::to_string(cols));
    auto opts = std::make_shared<hs::PowerIteration>(get_power_iteration(info[3]));
    auto abort = std::make_shared<AbortFlag>(info[4]);
    auto out = std::make_shared<hs::SingularValue>();
    return PromiseWorker::run(
        env,
        [w, rows, cols, opts, abort, out] {
          hs::ThreadPool pool(0);
          *out = hs::top_singular_value(w->data(), rows, cols, *opts, pool, abort->poll());
        },
        [out](Napi::Env env) { return singular_value_to_js(env, *out); });
  });
}

// tensorTopSingularValue(path, name, { start, tolerance, maxIterations }, abort?) -> Promise<{ sigma, iterations, converged }>:
// a 2-D F32/F16/BF16 tensor of a safetensors file, widened to fp32 once.
Napi::Value TensorTopSingularValue(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    std::string path = get_string(info[0], "path"), name = get_string(info[1], "name");
    auto opts = std::make_shared<hs::PowerIteration>(get_power_iteration(info[2]));
    auto abort = std::make_shared<AbortFlag>(info[3]);
    auto out = std::make_shared<hs::SingularValue>();
    return PromiseWorker::run(
        env,
        [path, name, opts, abort, out] {
          auto f = hs::SafetensorsFile::open(path);
          const hs::TensorView* t = f->find(name);
          if (!t) hs::fail(hs::code::kMissingTensor, path + ": no tensor named '" + name + "'");
          if (t->shape.size() != 2 || t->shape[0] <= 0 || t->shape[1] <= 0)
            hs::fail(hs::code::kShape, name + " in " + path + " has shape " + hs::shape_text(t->shape) + ", expected a matrix");
          std::vector<float> w(static_cast<size_t>(t->numel()));
          hs::convert_to_f32(*t, w.data());
          hs::ThreadPool pool(0);
          *out = hs::top_singular_value(w.data(), t->shape[0], t->shape[1], *opts, pool, abort->poll());
        },
        [out](Napi::Env env) { return singular_value_to_js(env, *out); });
  });
}

// mmd2(x, y, dim, bandwidth?, abort?) -> Promise<{ mmd2, bandwidth }>
Napi::Value Mmd2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    std::vector<double> x = get_vectors(info[0], "x"), y = get_vectors(info[1], "y");
    const int64_t dim = get_count(info[2], "dim");
    if (x.size() % static_cast<size_t>(dim) != 0 || y.size() % static_cast<size_t>(dim) != 0)
      throw_arg("sample lengths " + std::to_string(x.size()) + " and " + std::to_string(y.size()) +
                " are not multiples of dim " + std::to_string(dim));
    std::optional<double> bandwidth;
    if (!info[3].IsUndefined() && !info[3].IsNull()) {
      if (!info[3].IsNumber()) throw_arg("bandwidth must be a number");
      bandwidth = info[3].As<Napi::Number>().DoubleValue();
    }
    const int64_t m = static_cast<int64_t>(x.size()) / dim, n = static_cast<int64_t>(y.size()) / dim;
    auto z = std::make_shared<std::vector<double>>(std::move(x));
    z->insert(z->end(), y.begin(), y.end());
    auto abort = std::make_shared<AbortFlag>(info[4]);
    auto out = std::make_shared<hs::Mmd2>();
    return PromiseWorker::run(
        env,
        [z, m, n, dim, bandwidth, abort, out] {
          hs::ThreadPool pool(0);
          *out = hs::mmd2_unbiased(z->data(), m, n, dim, bandwidth, pool, abort->poll());
        },
        [out](Napi::Env env) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("mmd2", Napi::Number::New(env, out->mmd2));
          o.Set("bandwidth", Napi::Number::New(env, out->bandwidth));
          return o;
        });
  });
}

}  // namespace

void init_eval(Napi::Env env, Napi::Object exports) {
  exports.Set("topSingularValue", Napi::Function::New(env, TopSingularValue, "topSingularValue"));
  exports.Set("tensorTopSingularValue", Napi::Function::New(env, TensorTopSingularValue, "tensorTopSingularValue"));
  exports.Set("mmd2", Napi::Function::New(env, Mmd2, "mmd2"));
}

}  // namespace hsnapi
