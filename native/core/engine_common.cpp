// Argument checks shared by every engine backend. Each check throws a typed
// hs::Error naming the offending argument before any compute starts, so a bad
// call never leaves partial work behind.
#include <cmath>
#include <string>
#include <vector>

#include "engine.h"
#include "errors.h"

namespace hs {

Theta Theta::ones(int layers) {
  Theta t;
  const size_t n = layers > 0 ? static_cast<size_t>(layers) : 0;
  t.b_att.assign(n, 1.0f);
  t.s_att.assign(n, 1.0f);
  t.b_mlp.assign(n, 1.0f);
  t.s_mlp.assign(n, 1.0f);
  return t;
}

void validate_tokens(const ModelConfig& cfg, const std::vector<int32_t>& tokens, const char* what) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    if (t < 0 || t >= cfg.vocab)
      fail(code::kTokenRange, std::string(what) + "[" + std::to_string(i) + "] = " + std::to_string(t) +
                                  " is outside the vocabulary [0, " + std::to_string(cfg.vocab) + ")");
  }
}

int64_t context_length(const ModelConfig& cfg) { return cfg.max_position; }

void validate_context(const ModelConfig& cfg, int64_t length, const std::string& what, const std::string& detail) {
  const int64_t ctx = context_length(cfg);
  if (ctx > 0 && length > ctx)
    fail(code::kContext, what + " has " + std::to_string(length) + " tokens" + (detail.empty() ? "" : " (" + detail + ")") +
                             ", more than the model's context of " + std::to_string(ctx) +
                             " tokens (max_position_embeddings)");
}

void validate_theta(const ModelConfig& cfg, const Theta& theta) {
  const struct {
    const char* name;
    const std::vector<float>* v;
  } parts[] = {{"theta.b_att", &theta.b_att},
               {"theta.s_att", &theta.s_att},
               {"theta.b_mlp", &theta.b_mlp},
               {"theta.s_mlp", &theta.s_mlp}};
  for (const auto& p : parts) {
    if (p.v->size() != static_cast<size_t>(cfg.num_layers))
      fail(code::kTheta, std::string(p.name) + " has length " + std::to_string(p.v->size()) + ", expected " +
                             std::to_string(cfg.num_layers) + " (one per layer)");
    for (size_t i = 0; i < p.v->size(); ++i)
      if (!std::isfinite((*p.v)[i]))
        fail(code::kTheta, std::string(p.name) + "[" + std::to_string(i) + "] is not finite");
  }
}

void validate_skip(const ModelConfig& cfg, const std::vector<int>& skip) {
  std::vector<bool> seen(cfg.num_layers > 0 ? cfg.num_layers : 0, false);
  for (size_t i = 0; i < skip.size(); ++i) {
    const int l = skip[i];
    if (l < 0 || l >= cfg.num_layers)
      fail(code::kSkip, "skip[" + std::to_string(i) + "] = " + std::to_string(l) + " is not a layer index in [0, " +
                            std::to_string(cfg.num_layers) + ")");
    if (seen[l]) fail(code::kSkip, "skip lists layer " + std::to_string(l) + " more than once");
    seen[l] = true;
  }
  for (size_t l = 0; l < cfg.attention_absent.size() && l < seen.size(); ++l)
    if (cfg.attention_absent[l] && !seen[l])
      fail(code::kSkip, "layer " + std::to_string(l) +
                            " has no attention weights in the checkpoint (no_op attention); it must be in the skip list");
}

void validate_batch(const ModelConfig& cfg, const std::vector<Sample>& samples, const Theta& theta,
                    const BatchOptions& opts, bool require_response) {
  if (samples.empty()) fail(code::kEmptyBatch, "the batch has no samples");
  int64_t total = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const Sample& s = samples[i];
    const std::string prefix = "samples[" + std::to_string(i) + "]";
    validate_tokens(cfg, s.prompt, (prefix + ".prompt").c_str());
    validate_tokens(cfg, s.response, (prefix + ".response").c_str());
    if (require_response) {
      if (s.response.empty()) fail(code::kEmptyResponse, prefix + " has an empty response: it carries no loss");
      if (s.prompt.empty())
        fail(code::kArgument, prefix + " has an empty prompt: the first response token needs at least one "
                                       "preceding token (e.g. BOS) to be predicted");
    } else if (s.prompt.empty() && s.response.empty()) {
      fail(code::kEmptyBatch, prefix + " has no tokens");
    }
    validate_context(cfg, static_cast<int64_t>(s.prompt.size() + s.response.size()), prefix,
                     "prompt " + std::to_string(s.prompt.size()) + " + response " + std::to_string(s.response.size()));
    total += static_cast<int64_t>(s.prompt.size() + s.response.size());
  }
  if (opts.token_cap > 0 && total > opts.token_cap)
    fail(code::kTokenCap, "the batch has " + std::to_string(total) + " tokens, above the token cap of " +
                              std::to_string(opts.token_cap));
  validate_theta(cfg, theta);
  validate_skip(cfg, opts.skip);
}

void validate_logits(const ModelConfig& cfg, const std::vector<int32_t>& tokens, const Theta& theta,
                     const std::vector<int>& skip) {
  if (tokens.empty()) fail(code::kEmptyBatch, "logits: tokens is empty");
  validate_tokens(cfg, tokens, "tokens");
  validate_context(cfg, static_cast<int64_t>(tokens.size()), "logits: tokens", "");
  validate_theta(cfg, theta);
  validate_skip(cfg, skip);
}

void validate_generate(const ModelConfig& cfg, const std::vector<std::vector<int32_t>>& prompts, const Theta& theta,
                       const GenerateOptions& opts) {
  const int64_t max_new = opts.max_new_tokens > 0 ? opts.max_new_tokens : 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string name = "prompts[" + std::to_string(i) + "]";
    if (prompts[i].empty()) fail(code::kArgument, "generate: " + name + " is empty: generation needs at least one token");
    validate_tokens(cfg, prompts[i], name.c_str());
    validate_context(cfg, static_cast<int64_t>(prompts[i].size()) + max_new, "generate: " + name,
                     "prompt " + std::to_string(prompts[i].size()) + " + maxNewTokens " + std::to_string(max_new));
  }
  validate_theta(cfg, theta);
  validate_skip(cfg, opts.skip);
  validate_tokens(cfg, opts.stop, "stop");
}

}  // namespace hs
