// exportSafetensors: writes one safetensors file of an `hf` / `decilm` export straight
// from the checkpoint, on the libuv pool (safetensors_export.h): the tensors never pass
// through JS, and the abort flag is polled between tensors.
#include <cmath>

#include "common.h"
#include "safetensors_export.h"

namespace hsnapi {
namespace {

// exportSafetensors(modelDir, path, [{name, dtype, shape, source?, scale?}], metadata, abort?) -> Promise<bytes>
Napi::Value ExportSafetensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    std::string dir = get_string(info[0], "modelDir"), path = get_string(info[1], "path");
    if (!info[2].IsArray()) throw_arg("tensors must be an array");
    auto arr = info[2].As<Napi::Array>();
    auto tensors = std::make_shared<std::vector<hs::FoldedTensor>>();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      if (!arr.Get(i).IsObject()) throw_arg("tensors[" + std::to_string(i) + "] must be an object");
      auto o = arr.Get(i).As<Napi::Object>();
      hs::FoldedTensor t;
      t.name = get_string(o.Get("name"), "tensor name");
      t.dtype = parse_dtype(get_string(o.Get("dtype"), "tensor dtype"));
      if (!o.Get("shape").IsArray()) throw_arg("tensor '" + t.name + "': shape must be an array");
      auto shape = o.Get("shape").As<Napi::Array>();
      for (uint32_t k = 0; k < shape.Length(); ++k) {
        Napi::Value d = shape.Get(k);
        double x = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : -1.0;
        if (x < 0 || x != static_cast<double>(static_cast<int64_t>(x)))
          throw_arg("tensor '" + t.name + "': shape entries must be non-negative integers");
        t.shape.push_back(static_cast<int64_t>(x));
      }
      Napi::Value source = o.Get("source");
      if (!source.IsUndefined()) t.source = get_string(source, "tensor source");
      Napi::Value scale = o.Get("scale");
      if (!scale.IsUndefined()) {
        if (!scale.IsNumber()) throw_arg("tensor '" + t.name + "': scale must be a number");
        t.scaled = true;
        t.scale = scale.As<Napi::Number>().DoubleValue();
        if (!std::isfinite(t.scale)) hs::fail(hs::code::kExport, "tensor '" + t.name + "': the fold factor is not finite");
      }
      tensors->push_back(std::move(t));
    }
    auto meta = std::make_shared<std::map<std::string, std::string>>(get_string_map(info[3], "metadata value"));
    auto abort = std::make_shared<AbortFlag>(info[4]);
    auto written = std::make_shared<size_t>(0);
    return PromiseWorker::run(
        env,
        [dir, path, tensors, meta, abort, written] {
          *written = hs::write_folded_safetensors(dir, path, *tensors, *meta, abort->poll());
        },
        [written](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(*written)); });
  });
}

}  // namespace

void init_export(Napi::Env env, Napi::Object exports) {
  exports.Set("exportSafetensors", Napi::Function::New(env, ExportSafetensors, "exportSafetensors"));
}

}  // namespace hsnapi
