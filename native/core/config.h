// Model configuration: parsed from a Hugging Face config.json into one normalised
// description the engines use. Supported: LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM, Qwen3ForCausalLM, GraniteForCausalLM, and our own reading of
// DeciLMForCausalLM (nemotron-nas) with attention no_op layers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hs {

enum class RopeType { Default, Linear, Llama3 };

struct RopeConfig {
  RopeType type = RopeType::Default;
  double theta = 10000.0;
  double factor = 1.0;              // linear / llama3
  double low_freq_factor = 1.0;     // llama3
  double high_freq_factor = 4.0;    // llama3
  int64_t original_max_position = 8192;  // llama3
};

struct ModelConfig {
  std::string arch;        // e.g. "LlamaForCausalLM"
  std::string model_type;  // e.g. "llama"
  int num_layers = 0;
  int hidden = 0;
  int intermediate = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int vocab = 0;
  int64_t max_position = 0;
  double rms_eps = 1e-6;
  RopeConfig rope;
  bool tie_embeddings = false;
  bool qkv_bias = false;     // Qwen2, Llama attention_bias
  bool o_bias = false;       // Llama attention_bias
  bool mlp_bias = false;     // Llama mlp_bias (gate/up/down biases)
  bool qk_norm = false;      // Qwen3
  // Granite multipliers (1.0 elsewhere). attention_scale defaults to 1/sqrt(head_dim).
  double embedding_multiplier = 1.0;
  double residual_multiplier = 1.0;
  double attention_scale = 0.0;
  double logits_scaling = 1.0;   // logits are divided by this
  std::vector<int> bos_ids, eos_ids;
  std::string torch_dtype;
  // Layers whose attention weights are absent from the checkpoint (DeciLM no_op).
  std::vector<bool> attention_absent;
};

// Parses config.json text. Unsupported architectures / rope types throw
// HOPSCOTCH_ERR_CONFIG_UNSUPPORTED; malformed or inconsistent values throw
// HOPSCOTCH_ERR_CONFIG_INVALID. `label` names the file in messages.
ModelConfig parse_config(const std::string& text, const std::string& label);

}  // namespace hs
