// Checkpoint -> weights.
//
// expected_tensors() lists the Hugging Face tensor names and shapes a config needs.
// load_weights() checks the whole list against the checkpoint first and reports
// every missing name and every shape mismatch in one error, then wires each matrix
// to the checkpoint's mapping in its own dtype (a copy only where the file's bytes
// are misaligned for the dtype, or where the options ask for one), copies the
// norms and biases to fp32, and wires the per-layer pointers.
#include "weights.h"

#include <cstdlib>
#include <cstring>
#include <set>

#include "errors.h"
#include "half.h"

namespace hs {

namespace {


std::string layer_name(int l, const char* suffix) { return "model.layers." + std::to_string(l) + "." + suffix; }


}  // namespace

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& cfg) {
  const int64_t H = cfg.hidden, V = cfg.vocab, I = cfg.intermediate, D = cfg.head_dim;
  const int64_t QD = static_cast<int64_t>(cfg.num_heads) * D, KVD = static_cast<int64_t>(cfg.num_kv_heads) * D;
  std::vector<ExpectedTensor> out;
  out.push_back({"model.embed_tokens.weight", {V, H}, false});
  for (int l = 0; l < cfg.num_layers; ++l) {
    const bool attention = l >= static_cast<int>(cfg.attention_absent.size()) || !cfg.attention_absent[l];
    if (attention) {
      // A layer without attention has no input norm either (DeciLM no_op layers).
      out.push_back({layer_name(l, "input_layernorm.weight"), {H}, false});
      out.push_back({layer_name(l, "self_attn.q_proj.weight"), {QD, H}, false});
      out.push_back({layer_name(l, "self_attn.k_proj.weight"), {KVD, H}, false});
      out.push_back({layer_name(l, "self_attn.v_proj.weight"), {KVD, H}, false});
      out.push_back({layer_name(l, "self_attn.o_proj.weight"), {H, QD}, false});
      if (cfg.qkv_bias) {
        out.push_back({layer_name(l, "self_attn.q_proj.bias"), {QD}, false});
        out.push_back({layer_name(l, "self_attn.k_proj.bias"), {KVD}, false});
        out.push_back({layer_name(l, "self_attn.v_proj.bias"), {KVD}, false});
      }
      if (cfg.o_bias) out.push_back({layer_name(l, "self_attn.o_proj.bias"), {H}, false});
      if (cfg.qk_norm) {
        out.push_back({layer_name(l, "self_attn.q_norm.weight"), {D}, false});
        out.push_back({layer_name(l, "self_attn.k_norm.weight"), {D}, false});
      }
    }
    out.push_back({layer_name(l, "post_attention_layernorm.weight"), {H}, false});
    out.push_back({layer_name(l, "mlp.gate_proj.weight"), {I, H}, false});
    out.push_back({layer_name(l, "mlp.up_proj.weight"), {I, H}, false});
    out.push_back({layer_name(l, "mlp.down_proj.weight"), {H, I}, false});
    if (cfg.mlp_bias) {
      out.push_back({layer_name(l, "mlp.gate_proj.bias"), {I}, false});
      out.push_back({layer_name(l, "mlp.up_proj.bias"), {I}, false});
      out.push_back({layer_name(l, "mlp.down_proj.bias"), {H}, false});
    }
  }
  out.push_back({"model.norm.weight", {H}, false});
  // Tied checkpoints normally omit lm_head; when one is stored anyway it is used.
  out.push_back({"lm_head.weight", {V, H}, cfg.tie_embeddings});
  return out;
}

std::unique_ptr<Weights> load_weights(const ModelConfig& cfg, const Checkpoint& ckpt, const WeightOptions& opts) {
  const std::vector<ExpectedTensor> expected = expected_tensors(cfg);

  // Pass 1: check everything, report everything.
  std::vector<std::string> missing, mismatched, bad_dtype;
  std::vector<const TensorView*> views(expected.size(), nullptr);
  for (size_t i = 0; i < expected.size(); ++i) {
    const ExpectedTensor& e = expected[i];
    const TensorView* t = ckpt.find(e.name);
    if (!t) {
      if (!e.optional) missing.push_back(e.name);
      continue;
    }
    if (t->shape != e.shape) {
      mismatched.push_back(e.name + " is " + shape_text(t->shape) + ", expected " + shape_text(e.shape));
    }
    if (t->dtype != DType::F32 && t->dtype != DType::F16 && t->dtype != DType::BF16) {
      bad_dtype.push_back(e.name + " is " + dtype_name(t->dtype));
    }
    views[i] = t;
  }
  const std::string where = ckpt.files().empty() ? std::string("checkpoint") : ckpt.files().front()->path();
  auto join = [](const std::vector<std::string>& items) {
    std::string s;
    for (const auto& x : items) s += (s.empty() ? "" : "; ") + x;
    return s;
  };
  if (!missing.empty()) {
    std::string msg = where + ": " + std::to_string(missing.size()) + " missing tensor(s): " + join(missing);
    if (!mismatched.empty()) msg += "; and shape mismatches: " + join(mismatched);
    fail(code::kMissingTensor, msg);
  }
  if (!mismatched.empty()) {
    fail(code::kShape, where + ": " + std::to_string(mismatched.size()) + " shape mismatch(es): " + join(mismatched));
  }
  if (!bad_dtype.empty()) {
    fail(code::kSafetensorsDtype, where + ": tensors must be F32, F16 or BF16: " + join(bad_dtype));
  }

  // Pass 2: hold. Matrices (2-D) stay in the mapping; vectors become fp32 copies.
  auto w = std::make_unique<Weights>();
  w->layers.resize(static_cast<size_t>(cfg.num_layers));
  std::set<std::string> dtypes, held;
  std::vector<MatRef> refs(expected.size());
  w->storage.reserve(expected.size());
  w->storage16.reserve(expected.size());
  auto copy_f32 = [&](const TensorView& t) {
    w->storage.emplace_back(static_cast<size_t>(t.numel()));
    convert_to_f32(t, w->storage.back().data());
    w->copied_bytes += w->storage.back().size() * sizeof(float);
    return MatRef(w->storage.back().data());
  };
  for (size_t i = 0; i < expected.size(); ++i) {
    const TensorView* t = views[i];
    if (!t) continue;
    w->parameters += t->numel();
    dtypes.insert(dtype_name(t->dtype));
    const size_t n = static_cast<size_t>(t->numel());
    const WType src = t->dtype == DType::BF16 ? WType::BF16 : t->dtype == DType::F16 ? WType::F16 : WType::F32;
    const bool matrix = expected[i].shape.size() == 2;
    const bool aligned = reinterpret_cast<uintptr_t>(t->data) % static_cast<uintptr_t>(wtype_size(src)) == 0;
    if (!matrix || opts.f32_copy) {
      refs[i] = copy_f32(*t);
    } else if (opts.bf16 && src != WType::BF16) {
      std::vector<float> wide(n);
      convert_to_f32(*t, wide.data());
      w->storage16.emplace_back(n);
      for (size_t j = 0; j < n; ++j) w->storage16.back()[j] = f32_to_bf16(wide[j]);
      w->copied_bytes += n * 2;
      refs[i] = MatRef(w->storage16.back().data(), WType::BF16);
    } else if (!aligned && src == WType::F32) {
      refs[i] = copy_f32(*t);
    } else if (!aligned) {
      w->storage16.emplace_back(n);
      std::memcpy(w->storage16.back().data(), t->data, n * 2);
      w->copied_bytes += n * 2;
      refs[i] = MatRef(w->storage16.back().data(), src);
    } else if (src == WType::F32) {
      refs[i] = MatRef(reinterpret_cast<const float*>(t->data));
    } else {
      refs[i] = MatRef(reinterpret_cast<const uint16_t*>(t->data), src);
    }
    w->bytes += n * static_cast<size_t>(wtype_size(refs[i].type));
    if (matrix) held.insert(wtype_name(refs[i].type));
  }
  w->source_dtype = dtypes.size() == 1 ? *dtypes.begin() : "mixed";
  w->matrix_dtype = held.size() == 1 ? *held.begin() : "mixed";

  // Wire the pointers by name.
  const std::string layers_prefix = "model.layers.";
  for (size_t i = 0; i < expected.size(); ++i) {
    const std::string& name = expected[i].name;
    const MatRef m = refs[i];
    if (name == "model.embed_tokens.weight") {
      w->embed = m;
    } else if (name == "model.norm.weight") {
      w->final_norm = m.f32();
    } else if (name == "lm_head.weight") {
      w->lm_head = m;
    } else if (name.compare(0, layers_prefix.size(), layers_prefix) == 0) {
      size_t dot = name.find('.', layers_prefix.size());
      size_t l = std::stoul(name.substr(layers_prefix.size(), dot - layers_prefix.size()));
      const std::string field = name.substr(dot + 1);
      LayerWeights& L = w->layers[l];
      static const struct {
        const char* suffix;
        MatRef LayerWeights::*member;
      } kMatrices[] = {
          {"self_attn.q_proj.weight", &LayerWeights::q},  {"self_attn.k_proj.weight", &LayerWeights::k},
          {"self_attn.v_proj.weight", &LayerWeights::v},  {"self_attn.o_proj.weight", &LayerWeights::o},
          {"mlp.gate_proj.weight", &LayerWeights::gate}, {"mlp.up_proj.weight", &LayerWeights::up},
          {"mlp.down_proj.weight", &LayerWeights::down},
      };
      static const struct {
        const char* suffix;
        const float* LayerWeights::*member;
      } kVectors[] = {
          {"input_layernorm.weight", &LayerWeights::input_norm},
          {"self_attn.q_proj.bias", &LayerWeights::q_bias},
          {"self_attn.k_proj.bias", &LayerWeights::k_bias},
          {"self_attn.v_proj.bias", &LayerWeights::v_bias},
          {"self_attn.o_proj.bias", &LayerWeights::o_bias},
          {"self_attn.q_norm.weight", &LayerWeights::q_norm},
          {"self_attn.k_norm.weight", &LayerWeights::k_norm},
          {"post_attention_layernorm.weight", &LayerWeights::post_norm},
          {"mlp.gate_proj.bias", &LayerWeights::gate_bias},
          {"mlp.up_proj.bias", &LayerWeights::up_bias},
          {"mlp.down_proj.bias", &LayerWeights::down_bias},
      };
      bool wired = false;
      for (const auto& f : kMatrices) {
        if (field == f.suffix) {
          L.*(f.member) = m;
          wired = true;
          break;
        }
      }
      for (const auto& f : kVectors) {
        if (!wired && field == f.suffix) {
          L.*(f.member) = m.f32();
          wired = true;
          break;
        }
      }
      if (!wired) fail(code::kInternal, "no weight slot for expected tensor " + name);
    } else {
      fail(code::kInternal, "no weight slot for expected tensor " + name);
    }
  }
  if (!w->lm_head) w->lm_head = w->embed;
  return w;
}

ModelConfig read_model_config(const std::string& dir) {
  const std::string path = (!dir.empty() && dir.back() == '/') ? dir + "config.json" : dir + "/config.json";
  return parse_config(read_small_file(path, size_t(16) << 20, code::kConfigInvalid), path);
}

std::unique_ptr<LoadedModel> load_model_dir(const std::string& dir, const WeightOptions& options) {
  WeightOptions opts = options;
  if (const char* v = std::getenv("HOPSCOTCH_WEIGHTS")) {
    if (std::string(v) == "f32-copy") opts.f32_copy = true;
  }
  auto model = std::make_unique<LoadedModel>();
  model->dir = dir;
  model->config = read_model_config(dir);
  model->checkpoint = Checkpoint::open_dir(dir);
  model->weights = load_weights(model->config, *model->checkpoint, opts);
  model->fingerprint = model_fingerprint(model->config, *model->checkpoint);
  // Every weight copied (f32_copy, or bf16 from an F32/F16 checkpoint): nothing points into
  // the mapping any more, so unmap it rather than keep the pages the copy read resident.
  if (model->weights->copied_bytes == model->weights->bytes) model->checkpoint.reset();
  return model;
}

}  // namespace hs
