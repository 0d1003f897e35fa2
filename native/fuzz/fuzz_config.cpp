// libFuzzer target for parse_config (config.json -> ModelConfig).
//
// Any input either fails with HOPSCOTCH_ERR_CONFIG_INVALID or _CONFIG_UNSUPPORTED,
// or yields a configuration the engines can size buffers from: positive dimensions,
// heads divisible by kv heads, one attention flag per layer, token ids inside the
// vocabulary, and finite positive scales.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "config.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  hs::ModelConfig cfg;
  try {
    cfg = hs::parse_config(text, "config.json");
  } catch (const hs::Error& e) {
    hs::fuzz::expect_code(e, {hs::code::kConfigInvalid, hs::code::kConfigUnsupported});
    return 0;
  }
  FUZZ_CHECK(!cfg.arch.empty());
  FUZZ_CHECK(cfg.num_layers > 0 && cfg.hidden > 0 && cfg.intermediate > 0);
  FUZZ_CHECK(cfg.num_heads > 0 && cfg.num_kv_heads > 0 && cfg.head_dim > 0 && cfg.vocab > 0);
  FUZZ_CHECK(cfg.num_heads % cfg.num_kv_heads == 0);
  FUZZ_CHECK(cfg.max_position > 0);
  FUZZ_CHECK(cfg.attention_absent.size() == static_cast<size_t>(cfg.num_layers));
  for (int id : cfg.bos_ids) FUZZ_CHECK(id >= 0 && id < cfg.vocab);
  for (int id : cfg.eos_ids) FUZZ_CHECK(id >= 0 && id < cfg.vocab);
  for (double x : {cfg.rms_eps, cfg.rope.theta, cfg.rope.factor, cfg.embedding_multiplier, cfg.residual_multiplier,
                   cfg.attention_scale, cfg.logits_scaling}) {
    FUZZ_CHECK(std::isfinite(x) && x > 0.0);
  }
  if (cfg.rope.type == hs::RopeType::Llama3) {
    FUZZ_CHECK(cfg.rope.high_freq_factor > cfg.rope.low_freq_factor);
    FUZZ_CHECK(cfg.rope.original_max_position > 0);
  }
  return 0;
}
