// Every kind of mistake an engine call can make, each with the one error code it must
// raise, for any model config. The native drivers run them through every engine:
// engine_test through the CPU engine and through the Engine front with no device behind
// it (the checks the CUDA engine runs, on a machine without a GPU), the CUDA self-test
// through the CUDA engine itself.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine.h"
#include "errors.h"

namespace hs::test {

struct Mistake {
  const char* code;
  std::string what;
  std::function<void(Engine&)> call;
};

// The layers a valid call must skip: those without attention weights.
inline std::vector<int> absent_layers(const ModelConfig& c) {
  std::vector<int> out;
  for (size_t l = 0; l < c.attention_absent.size(); ++l)
    if (c.attention_absent[l]) out.push_back(static_cast<int>(l));
  return out;
}

// `n` random token ids of the vocabulary (ids 1 .. vocab-1).
inline std::vector<int32_t> some_tokens(const ModelConfig& c, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = 1 + static_cast<int32_t>(rng() % static_cast<uint32_t>(c.vocab - 1));
  return t;
}

// One mistake per check of engine_common.cpp, each in a call that is otherwise valid for `c`
// (a model of at least 2 layers, a context of at least 8 tokens).
inline std::vector<Mistake> engine_mistakes(const ModelConfig& c) {
  const int L = c.num_layers;
  const std::vector<int> base = absent_layers(c);
  auto skip_plus = [base](std::vector<int> extra) {
    std::vector<int> s = base;
    s.insert(s.end(), extra.begin(), extra.end());
    return s;
  };
  const Theta th = Theta::ones(L);
  Sample ok;
  ok.prompt = some_tokens(c, 3, 1);
  ok.response = some_tokens(c, 3, 2);
  BatchOptions bo;
  bo.skip = base;
  GenerateOptions go;
  go.skip = base;
  go.max_new_tokens = 2;
  auto edited = [ok](const std::function<void(Sample&)>& edit) {
    Sample s = ok;
    edit(s);
    return std::vector<Sample>{s};
  };
  auto with_skip = [bo](std::vector<int> skip) {
    BatchOptions o = bo;
    o.skip = std::move(skip);
    return o;
  };
  Theta short_theta = th, nan_theta = th;
  short_theta.s_att.pop_back();
  nan_theta.b_mlp[L - 1] = NAN;
  BatchOptions capped = bo;
  capped.token_cap = 5;
  GenerateOptions bad_stop = go, long_gen = go;
  bad_stop.stop = {c.vocab};
  long_gen.max_new_tokens = static_cast<int>(c.max_position);
  const std::vector<int32_t> too_long = some_tokens(c, static_cast<size_t>(c.max_position) + 1, 3);
  Sample long_sample = ok;
  long_sample.prompt = too_long;

  std::vector<Mistake> m = {
      {code::kEmptyBatch, "loss: no samples", [=](Engine& e) { e.loss({}, th, bo, false); }},
      {code::kEmptyBatch, "logits: no tokens", [=](Engine& e) { e.logits({}, th, base); }},
      {code::kEmptyBatch, "layer_stats: a sample with no tokens",
       [=](Engine& e) { e.layer_stats(edited([](Sample& s) { s.prompt.clear(), s.response.clear(); }), th, base, {}); }},
      {code::kTokenRange, "loss: token >= vocab",
       [=](Engine& e) { e.loss(edited([&](Sample& s) { s.response[1] = c.vocab; }), th, bo, true); }},
      {code::kTokenRange, "loss: token < 0", [=](Engine& e) { e.loss(edited([](Sample& s) { s.prompt[0] = -1; }), th, bo, true); }},
      {code::kTokenRange, "logits: token >= vocab", [=](Engine& e) { e.logits({1, c.vocab}, th, base); }},
      {code::kTokenRange, "generate: prompt token >= vocab", [=](Engine& e) { e.generate({{1, c.vocab}}, th, go); }},
      {code::kTokenRange, "generate: stop token >= vocab", [=](Engine& e) { e.generate({{1, 2}}, th, bad_stop); }},
      {code::kEmptyResponse, "loss: empty response",
       [=](Engine& e) { e.loss(edited([](Sample& s) { s.response.clear(); }), th, bo, true); }},
      {code::kArgument, "loss: empty prompt", [=](Engine& e) { e.loss(edited([](Sample& s) { s.prompt.clear(); }), th, bo, true); }},
      {code::kArgument, "generate: empty prompt", [=](Engine& e) { e.generate({{1}, {}}, th, go); }},
      {code::kArgument, "layer_stats: hidden layer > num_layers", [=](Engine& e) { e.layer_stats({ok}, th, base, {0, L + 1}); }},
      {code::kArgument, "layer_stats: hidden layer < 0", [=](Engine& e) { e.layer_stats({ok}, th, base, {-1}); }},
      {code::kTokenCap, "loss: batch above the token cap", [=](Engine& e) { e.loss({ok}, th, capped, false); }},
      {code::kContext, "loss: sample longer than the context", [=](Engine& e) { e.loss({long_sample}, th, bo, false); }},
      {code::kContext, "logits: tokens longer than the context", [=](Engine& e) { e.logits(too_long, th, base); }},
      {code::kContext, "generate: prompt + max_new_tokens longer than the context",
       [=](Engine& e) { e.generate({{1, 2}}, th, long_gen); }},
      {code::kTheta, "loss: theta too short", [=](Engine& e) { e.loss({ok}, short_theta, bo, true); }},
      {code::kTheta, "logits: NaN in theta", [=](Engine& e) { e.logits({1, 2}, nan_theta, base); }},
      {code::kTheta, "generate: NaN in theta", [=](Engine& e) { e.generate({{1, 2}}, nan_theta, go); }},
      {code::kTheta, "layer_stats: theta too short", [=](Engine& e) { e.layer_stats({ok}, short_theta, base, {}); }},
      {code::kSkip, "loss: skip lists a layer twice", [=](Engine& e) { e.loss({ok}, th, with_skip(skip_plus({0, 0})), false); }},
      {code::kSkip, "loss: skip index = num_layers", [=](Engine& e) { e.loss({ok}, th, with_skip(skip_plus({L})), false); }},
      {code::kSkip, "logits: skip index < 0", [=](Engine& e) { e.logits({1, 2}, th, skip_plus({-1})); }},
      {code::kSkip, "layer_stats: skip lists a layer twice", [=](Engine& e) { e.layer_stats({ok}, th, skip_plus({1, 1}), {}); }},
  };
  if (!base.empty())
    m.push_back({code::kSkip, "loss: a layer without attention weights not skipped",
                 [=](Engine& e) { e.loss({ok}, th, with_skip({}), false); }});
  return m;
}

}  // namespace hs::test
