// Hugging Face config.json -> ModelConfig.
//
// Reads the fields each supported architecture uses, fills the documented defaults
// (head_dim = hidden / heads, kv heads = heads, attention scale = 1/sqrt(head_dim)),
// and validates every value before an engine sees it. Problems name the file and
// the field. Architectures or features the engines do not implement are refused
// with HOPSCOTCH_ERR_CONFIG_UNSUPPORTED rather than silently approximated.
#include "config.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <string_view>

#include "errors.h"
#include "json.h"

namespace hs {

namespace {

struct ArchInfo {
  const char* arch;
  const char* model_type;
};

constexpr ArchInfo kArchitectures[] = {
    {"LlamaForCausalLM", "llama"},     {"MistralForCausalLM", "mistral"},     {"Qwen2ForCausalLM", "qwen2"},
    {"Qwen3ForCausalLM", "qwen3"},     {"GraniteForCausalLM", "granite"},     {"DeciLMForCausalLM", "nemotron-nas"},
};

std::string supported_list() {
  std::string s;
  for (const auto& a : kArchitectures) {
    if (!s.empty()) s += ", ";
    s += a.arch;
  }
  return s;
}

// Field access with typed errors naming `label` and the field path.
class Fields {
 public:
  Fields(const json::Value& obj, std::string label, std::string prefix = "")
      : obj_(obj), label_(std::move(label)), prefix_(std::move(prefix)) {}

  [[noreturn]] void invalid(const std::string& field, const std::string& why) const {
    fail(code::kConfigInvalid, label_ + ": " + prefix_ + field + " " + why);
  }

  // Present and not null.
  const json::Value* get(const char* field) const {
    const json::Value* v = obj_.find(field);
    return v && !v->is_null() ? v : nullptr;
  }

  int64_t integer(const char* field, int64_t min, int64_t max) const {
    const json::Value* v = get(field);
    if (!v) invalid(field, "is missing");
    return integer_value(field, *v, min, max);
  }

  int64_t integer_or(const char* field, int64_t fallback, int64_t min, int64_t max) const {
    const json::Value* v = get(field);
    return v ? integer_value(field, *v, min, max) : fallback;
  }

  int64_t integer_value(const std::string& field, const json::Value& v, int64_t min, int64_t max) const {
    if (!v.is_number() || !v.is_integer) invalid(field, "must be an integer");
    if (v.integer_overflow || v.integer < min || v.integer > max) {
      invalid(field, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    }
    return v.integer;
  }

  double number_or(const char* field, double fallback) const {
    const json::Value* v = get(field);
    if (!v) return fallback;
    if (!v->is_number()) invalid(field, "must be a number");
    return v->number;
  }

  double positive_or(const char* field, double fallback) const {
    double x = number_or(field, fallback);
    if (!(x > 0.0) || !std::isfinite(x)) invalid(field, "must be a positive number");
    return x;
  }

  double positive(const char* field) const {
    if (!get(field)) invalid(field, "is missing");
    return positive_or(field, 0.0);
  }

  bool boolean_or(const char* field, bool fallback) const {
    const json::Value* v = get(field);
    if (!v) return fallback;
    if (!v->is_bool()) invalid(field, "must be true or false");
    return v->boolean;
  }

  std::string string_or(const char* field, const std::string& fallback) const {
    const json::Value* v = get(field);
    if (!v) return fallback;
    if (!v->is_string()) invalid(field, "must be a string");
    return v->string;
  }

  // An int, a list of ints, or absent.
  std::vector<int> token_ids(const char* field) const {
    std::vector<int> out;
    const json::Value* v = get(field);
    if (!v) return out;
    if (v->is_array()) {
      for (size_t i = 0; i < v->array.size(); ++i) {
        out.push_back(static_cast<int>(
            integer_value(std::string(field) + "[" + std::to_string(i) + "]", v->array[i], 0, INT32_MAX)));
      }
    } else {
      out.push_back(static_cast<int>(integer_value(field, *v, 0, INT32_MAX)));
    }
    return out;
  }

  const std::string& label() const { return label_; }

 private:
  const json::Value& obj_;
  std::string label_;
  std::string prefix_;
};

void parse_rope(const Fields& f, const json::Value& root, ModelConfig& cfg) {
  cfg.rope.theta = f.positive_or("rope_theta", 10000.0);
  const json::Value* scaling = root.find("rope_scaling");
  if (!scaling || scaling->is_null()) return;
  if (!scaling->is_object()) f.invalid("rope_scaling", "must be an object or null");
  Fields rs(*scaling, f.label(), "rope_scaling.");
  std::string type = rs.string_or("rope_type", "");
  if (type.empty()) type = rs.string_or("type", "");
  if (type.empty()) rs.invalid("rope_type", "is missing");
  if (type == "default") {
    cfg.rope.type = RopeType::Default;
  } else if (type == "linear") {
    cfg.rope.type = RopeType::Linear;
    cfg.rope.factor = rs.positive("factor");
  } else if (type == "llama3") {
    cfg.rope.type = RopeType::Llama3;
    cfg.rope.factor = rs.positive("factor");
    cfg.rope.low_freq_factor = rs.positive_or("low_freq_factor", 1.0);
    cfg.rope.high_freq_factor = rs.positive_or("high_freq_factor", 4.0);
    cfg.rope.original_max_position = rs.integer_or("original_max_position_embeddings", 8192, 1, INT64_MAX);
    if (cfg.rope.high_freq_factor <= cfg.rope.low_freq_factor) {
      rs.invalid("high_freq_factor", "must be greater than low_freq_factor");
    }
  } else {
    fail(code::kConfigUnsupported, f.label() + ": rope_scaling type '" + type +
                                       "' is not supported (supported: default, linear, llama3)");
  }
}

// DeciLM (nemotron-nas) per-layer block_configs: attention no_op layers and a
// uniform GQA group; the FFN must be homogeneous.
void parse_block_configs(const Fields& f, const json::Value& root, ModelConfig& cfg, bool has_intermediate) {
  const json::Value* blocks = root.find("block_configs");
  if (!blocks || !blocks->is_array()) f.invalid("block_configs", "must be a list with one entry per layer");
  if (static_cast<int64_t>(blocks->array.size()) != cfg.num_layers) {
    f.invalid("block_configs", "has " + std::to_string(blocks->array.size()) + " entries but num_hidden_layers is " +
                                   std::to_string(cfg.num_layers));
  }
  cfg.attention_absent.assign(static_cast<size_t>(cfg.num_layers), false);
  int kv_heads = 0;
  std::vector<double> ffn_mults;
  for (int l = 0; l < cfg.num_layers; ++l) {
    const std::string prefix = "block_configs[" + std::to_string(l) + "].";
    const json::Value& block = blocks->array[static_cast<size_t>(l)];
    if (!block.is_object()) f.invalid("block_configs[" + std::to_string(l) + "]", "must be an object");
    Fields bf(block, f.label(), prefix);

    const json::Value* attn = block.find("attention");
    if (!attn || !attn->is_object()) bf.invalid("attention", "must be an object");
    Fields af(*attn, f.label(), prefix + "attention.");
    if (af.boolean_or("replace_with_linear", false)) {
      fail(code::kConfigUnsupported,
           f.label() + ": " + prefix + "attention.replace_with_linear is not supported (only no_op or full attention)");
    }
    for (const char* field : {"sparsify", "window_length", "num_sink_tokens"}) {
      if (af.get(field)) {
        fail(code::kConfigUnsupported, f.label() + ": " + prefix + "attention." + field + " is not supported");
      }
    }
    if (af.boolean_or("no_op", false)) {
      cfg.attention_absent[static_cast<size_t>(l)] = true;
    } else {
      int64_t group = af.integer("n_heads_in_group", 1, cfg.num_heads);
      if (cfg.num_heads % group != 0) {
        af.invalid("n_heads_in_group", "(" + std::to_string(group) + ") must divide num_attention_heads (" +
                                           std::to_string(cfg.num_heads) + ")");
      }
      int kv = static_cast<int>(cfg.num_heads / group);
      if (kv_heads != 0 && kv != kv_heads) {
        fail(code::kConfigUnsupported, f.label() + ": " + prefix + "attention.n_heads_in_group gives " +
                                           std::to_string(kv) + " kv heads but an earlier layer has " +
                                           std::to_string(kv_heads) + "; per-layer kv heads are not supported");
      }
      kv_heads = kv;
    }

    const json::Value* ffn = block.find("ffn");
    if (!ffn || !ffn->is_object()) bf.invalid("ffn", "must be an object");
    Fields ff(*ffn, f.label(), prefix + "ffn.");
    if (ff.boolean_or("no_op", false) || ff.boolean_or("replace_with_linear", false)) {
      fail(code::kConfigUnsupported, f.label() + ": " + prefix + "ffn no_op / replace_with_linear is not supported");
    }
    ffn_mults.push_back(ff.positive("ffn_mult"));
  }
  // Every attention layer agrees on the group size; all-no_op models keep the default.
  if (kv_heads != 0) cfg.num_kv_heads = kv_heads;
  // DeciLM's own rule: int(2/3 * ffn_mult * hidden), rounded up to a multiple of 256.
  auto ffn_size = [&](double mult) {
    const double raw = 2.0 * mult * cfg.hidden / 3.0;
    if (!(raw > 0.0 && raw <= static_cast<double>(1 << 24)))
    {
      char text[64];
      std::snprintf(text, sizeof(text), "%g", mult);
      fail(code::kConfigInvalid, f.label() + ": ffn_mult " + text + " gives an FFN size outside (0, 2^24]");
    }
    int64_t size = static_cast<int64_t>(raw);
    if (size % 256 != 0) size += 256 - size % 256;
    return size;
  };
  bool uniform = true;
  for (double m : ffn_mults) uniform = uniform && m == ffn_mults[0];
  if (has_intermediate) {
    // Heterogeneous ffn_mult is fine only if every layer still lands on intermediate_size.
    for (int l = 0; l < cfg.num_layers && !uniform; ++l) {
      if (ffn_size(ffn_mults[static_cast<size_t>(l)]) != cfg.intermediate) {
        fail(code::kConfigUnsupported, f.label() + ": block_configs[" + std::to_string(l) +
                                           "].ffn.ffn_mult gives FFN size " +
                                           std::to_string(ffn_size(ffn_mults[static_cast<size_t>(l)])) +
                                           " but intermediate_size is " + std::to_string(cfg.intermediate) +
                                           "; heterogeneous FFN sizes are not supported");
      }
    }
    return;
  }
  if (!uniform) {
    fail(code::kConfigUnsupported,
         f.label() + ": block_configs ffn.ffn_mult differs across layers; heterogeneous FFN sizes are not supported");
  }
  int64_t size = ffn_size(ffn_mults[0]);
  if (size <= 0 || size > (1 << 24)) f.invalid("block_configs[0].ffn.ffn_mult", "gives an invalid FFN size");
  cfg.intermediate = static_cast<int>(size);
}

// Duplicate keys are legal JSON but ambiguous (readers disagree on which wins).
void reject_duplicate_keys(const json::Value& v, const std::string& label, const std::string& path) {
  if (v.is_array()) {
    for (size_t i = 0; i < v.array.size(); ++i) {
      reject_duplicate_keys(v.array[i], label, path + "[" + std::to_string(i) + "]");
    }
    return;
  }
  if (!v.is_object()) return;
  std::set<std::string_view> seen;
  for (size_t i = 0; i < v.object.size(); ++i) {
    const std::string& key = v.object[i].first;
    const std::string field = path.empty() ? key : path + "." + key;
    if (!seen.insert(key).second) fail(code::kConfigInvalid, label + ": duplicate key '" + key + "' (" + field + ")");
    reject_duplicate_keys(v.object[i].second, label, field);
  }
}

}  // namespace

ModelConfig parse_config(const std::string& text, const std::string& label) {
  json::Value root = json::parse(text, code::kConfigInvalid, label);
  if (!root.is_object()) fail(code::kConfigInvalid, label + ": config is not a JSON object");
  reject_duplicate_keys(root, label, "");
  Fields f(root, label);
  ModelConfig cfg;

  // Architecture: the first supported entry of "architectures", else model_type.
  const json::Value* archs = root.find("architectures");
  std::string model_type = f.string_or("model_type", "");
  const ArchInfo* info = nullptr;
  std::string seen;
  if (archs && !archs->is_null()) {
    if (!archs->is_array()) f.invalid("architectures", "must be a list of strings");
    for (const auto& a : archs->array) {
      if (!a.is_string()) f.invalid("architectures", "must be a list of strings");
      if (!seen.empty()) seen += ", ";
      seen += a.string;
      for (const auto& k : kArchitectures) {
        if (!info && a.string == k.arch) info = &k;
      }
    }
  } else {
    seen = "model_type '" + model_type + "'";
    for (const auto& k : kArchitectures) {
      if (!info && model_type == k.model_type) info = &k;
    }
  }
  if (!info) {
    fail(code::kConfigUnsupported, label + ": unsupported architecture (" + (seen.empty() ? "none given" : seen) +
                                       "); supported: " + supported_list());
  }
  cfg.arch = info->arch;
  cfg.model_type = model_type.empty() ? info->model_type : model_type;
  const std::string arch = cfg.arch;
  const bool decilm = arch == "DeciLMForCausalLM";

  const std::string act = f.string_or("hidden_act", "silu");
  if (act != "silu") {
    fail(code::kConfigUnsupported, label + ": hidden_act '" + act + "' is not supported (only silu)");
  }

  cfg.num_layers = static_cast<int>(f.integer("num_hidden_layers", 1, 1 << 20));
  cfg.hidden = static_cast<int>(f.integer("hidden_size", 1, 1 << 20));
  cfg.num_heads = static_cast<int>(f.integer("num_attention_heads", 1, 1 << 16));
  cfg.vocab = static_cast<int>(f.integer("vocab_size", 1, INT32_MAX));
  cfg.max_position = f.integer("max_position_embeddings", 1, INT64_MAX);
  const bool has_intermediate = f.get("intermediate_size") != nullptr;
  if (has_intermediate || !decilm) cfg.intermediate = static_cast<int>(f.integer("intermediate_size", 1, 1 << 24));
  cfg.num_kv_heads = static_cast<int>(f.integer_or("num_key_value_heads", cfg.num_heads, 1, cfg.num_heads));
  if (f.get("head_dim")) {
    cfg.head_dim = static_cast<int>(f.integer("head_dim", 1, 1 << 16));
  } else {
    if (cfg.hidden % cfg.num_heads != 0) {
      f.invalid("hidden_size", "(" + std::to_string(cfg.hidden) + ") is not divisible by num_attention_heads (" +
                                   std::to_string(cfg.num_heads) + ") and head_dim is not given");
    }
    cfg.head_dim = cfg.hidden / cfg.num_heads;
  }
  cfg.rms_eps = f.positive_or("rms_norm_eps", 1e-6);
  parse_rope(f, root, cfg);
  cfg.tie_embeddings = f.boolean_or("tie_word_embeddings", false);
  cfg.bos_ids = f.token_ids("bos_token_id");
  cfg.eos_ids = f.token_ids("eos_token_id");
  cfg.torch_dtype = f.string_or("torch_dtype", f.string_or("dtype", ""));

  const bool attention_bias = f.boolean_or("attention_bias", false);
  if (arch == "Qwen2ForCausalLM") {
    cfg.qkv_bias = true;
  } else {
    cfg.qkv_bias = attention_bias;
    cfg.o_bias = attention_bias;
  }
  cfg.mlp_bias = f.boolean_or("mlp_bias", false);
  if (arch == "Qwen3ForCausalLM") {
    cfg.qk_norm = true;
    if (!f.get("head_dim")) f.invalid("head_dim", "is missing (Qwen3 requires it)");
  }
  if (arch == "Qwen2ForCausalLM" || arch == "Qwen3ForCausalLM") {
    if (f.boolean_or("use_sliding_window", false)) {
      fail(code::kConfigUnsupported, label + ": use_sliding_window=true is not supported");
    }
  }
  // Mistral's sliding_window (null or a size) is accepted; the engines attend over the full causal prefix.
  if (const json::Value* sw = f.get("sliding_window")) {
    f.integer_value("sliding_window", *sw, 1, INT64_MAX);
  }

  cfg.attention_scale = 1.0 / std::sqrt(static_cast<double>(cfg.head_dim));
  if (arch == "GraniteForCausalLM") {
    cfg.embedding_multiplier = f.positive_or("embedding_multiplier", 1.0);
    cfg.residual_multiplier = f.positive_or("residual_multiplier", 1.0);
    // As in transformers' GraniteConfig, an absent attention_multiplier means 1.0.
    cfg.attention_scale = f.positive_or("attention_multiplier", 1.0);
    cfg.logits_scaling = f.positive_or("logits_scaling", 1.0);
  }

  if (decilm) {
    parse_block_configs(f, root, cfg, has_intermediate);
  } else {
    cfg.attention_absent.assign(static_cast<size_t>(cfg.num_layers), false);
  }

  if (cfg.num_heads % cfg.num_kv_heads != 0) {
    f.invalid("num_attention_heads", "(" + std::to_string(cfg.num_heads) +
                                         ") is not a multiple of num_key_value_heads (" +
                                         std::to_string(cfg.num_kv_heads) + ")");
  }
  for (int id : cfg.bos_ids) {
    if (id >= cfg.vocab) f.invalid("bos_token_id", std::to_string(id) + " is outside vocab_size");
  }
  for (int id : cfg.eos_ids) {
    if (id >= cfg.vocab) f.invalid("eos_token_id", std::to_string(id) + " is outside vocab_size");
  }
  return cfg;
}

}  // namespace hs
