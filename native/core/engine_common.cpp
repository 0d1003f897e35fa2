// What every engine backend shares: the argument checks (each throws a typed hs::Error
// naming the offending argument before any compute starts, so a bad call never leaves
// partial work behind), the Engine front that runs them before the backend, and the
// greedy generation loop.
#include <algorithm>
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

void validate_hidden_layers(const ModelConfig& cfg, const std::vector<int>& hidden_layers) {
  for (size_t i = 0; i < hidden_layers.size(); ++i)
    if (hidden_layers[i] < 0 || hidden_layers[i] > cfg.num_layers)
      fail(code::kArgument, "hidden_layers[" + std::to_string(i) + "] = " + std::to_string(hidden_layers[i]) +
                                " is not a hidden-state index in [0, " + std::to_string(cfg.num_layers) + "]");
}

void validate_layer_stats(const ModelConfig& cfg, const std::vector<Sample>& samples, const Theta& theta,
                          const std::vector<int>& skip, const std::vector<int>& hidden_layers) {
  BatchOptions opts;
  opts.skip = skip;
  validate_batch(cfg, samples, theta, opts, false);
  validate_hidden_layers(cfg, hidden_layers);
}

// ---------------------------------------------------------------------------------------
// The Engine front: checks, then the backend.

LossResult Engine::loss(const std::vector<Sample>& samples, const Theta& theta, const BatchOptions& opts,
                        bool want_grad) {
  validate_batch(checked_cfg_, samples, theta, opts, true);
  return run_loss(samples, theta, opts, want_grad);
}

std::vector<float> Engine::logits(const std::vector<int32_t>& tokens, const Theta& theta,
                                  const std::vector<int>& skip) {
  validate_logits(checked_cfg_, tokens, theta, skip);
  return run_logits(tokens, theta, skip);
}

std::vector<std::vector<int32_t>> Engine::generate(const std::vector<std::vector<int32_t>>& prompts,
                                                   const Theta& theta, const GenerateOptions& opts) {
  validate_generate(checked_cfg_, prompts, theta, opts);
  if (prompts.empty() || opts.max_new_tokens <= 0) return std::vector<std::vector<int32_t>>(prompts.size());
  const std::unique_ptr<Decoder> decoder = open_decoder(theta, opts.skip);
  return generate_greedy(prompts, opts, generation_group(), *decoder);
}

LayerStats Engine::layer_stats(const std::vector<Sample>& samples, const Theta& theta, const std::vector<int>& skip,
                               const std::vector<int>& hidden_layers) {
  validate_layer_stats(checked_cfg_, samples, theta, skip, hidden_layers);
  return run_layer_stats(samples, theta, skip, hidden_layers);
}

// ---------------------------------------------------------------------------------------
// Greedy generation

std::vector<std::vector<int32_t>> generate_greedy(const std::vector<std::vector<int32_t>>& prompts,
                                                  const GenerateOptions& opts, size_t group, Decoder& decoder) {
  const size_t n = prompts.size();
  std::vector<std::vector<int32_t>> out(n);
  if (n == 0 || opts.max_new_tokens <= 0) return out;
  const int64_t max_new = opts.max_new_tokens;
  const size_t width = group == 0 ? n : group;
  auto is_stop = [&](int32_t t) { return std::find(opts.stop.begin(), opts.stop.end(), t) != opts.stop.end(); };
  for (size_t first = 0; first < n; first += width) {
    const size_t count = std::min(width, n - first);
    const std::vector<std::vector<int32_t>> batch(prompts.begin() + first, prompts.begin() + first + count);
    std::vector<int32_t> next(count);
    decoder.prefill(batch, max_new, next);
    // A stop token ends an output; it is kept as the output's last token with include_stop.
    // Returns whether prompt i goes on.
    auto take = [&](int i, int32_t tok) {
      std::vector<int32_t>& o = out[first + i];
      if (is_stop(tok)) {
        if (opts.include_stop) o.push_back(tok);
        return false;
      }
      o.push_back(tok);
      return static_cast<int64_t>(o.size()) < max_new;
    };
    std::vector<int> active;
    for (size_t i = 0; i < count; ++i)
      if (take(static_cast<int>(i), next[i])) active.push_back(static_cast<int>(i));
    // Decode: one token for every still-active prompt per step, together.
    while (!active.empty()) {
      std::vector<int32_t> tokens(active.size());
      std::vector<int64_t> positions(active.size());
      for (size_t r = 0; r < active.size(); ++r) {
        const std::vector<int32_t>& o = out[first + active[r]];
        tokens[r] = o.back();
        positions[r] = static_cast<int64_t>(batch[active[r]].size() + o.size()) - 1;
      }
      next.assign(active.size(), 0);
      decoder.decode(active, tokens, positions, next);
      std::vector<int> still;
      for (size_t r = 0; r < active.size(); ++r)
        if (take(active[r], next[r])) still.push_back(active[r]);
      active.swap(still);
    }
  }
  return out;
}

}  // namespace hs
