// The engine interface: tensor work only. Algorithms (Adam, selection loops) live in
// TypeScript and call these once per batch.
//
// Block l with input h (tokens x hidden), theta = {b_att, s_att, b_mlp, s_mlp}:
//   A      = Attention(RMSNorm(h))      (x residual_multiplier for Granite)
//   x1     = b_att[l] * A + s_att[l] * h          (skipped layer: A is never computed)
//   M      = MLP(RMSNorm(x1))           (x residual_multiplier for Granite)
//   h_next = b_mlp[l] * M + s_mlp[l] * x1
// Loss L = (1/N) sum_i sum_{t in response_i} -log p(y_t | ...), or / response tokens
// with token_mean. Samples are packed without padding; positions restart per sample.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "weights.h"

namespace hs {

struct Sample {
  std::vector<int32_t> prompt;
  std::vector<int32_t> response;
};

struct Theta {
  std::vector<float> b_att, s_att, b_mlp, s_mlp;
  static Theta ones(int layers);
};

struct BatchOptions {
  std::vector<int> skip;        // layers whose attention is skipped (b_att treated as 0)
  bool token_mean = false;
  bool recompute = false;       // keep only each layer's input; recompute internals in backward
  int64_t token_cap = 0;        // 0 = no cap; else a batch above it is an error
  // CUDA: bytes the engine may hold on the device, weights included (0 = as much as is
  // free). lossAndGrad keeps every layer's internals when they fit, else recomputes
  // the layers that do not (recompute = true forces recomputation of all but the last).
  int64_t max_memory = 0;
};

struct LossResult {
  double loss = 0.0;
  int64_t response_tokens = 0;
  Theta grad;                        // empty when no gradient was asked for
  std::vector<double> sample_nll;    // per-sample sum of response-token NLL
  size_t peak_bytes = 0;             // peak activation/workspace bytes of this call
  size_t weight_bytes = 0;           // device bytes of the weights (CUDA; 0 on the CPU)
  int recomputed_layers = 0;         // layer forwards the backward repeated (CUDA memory plan)
  bool thin_checkpoints = false;     // only even layers' inputs were stored (CUDA, smallest plan)
};

struct GenerateOptions {
  int max_new_tokens = 64;
  std::vector<int> skip;
  std::vector<int32_t> stop;        // stop ids (in addition to nothing: caller passes eos)
  bool include_stop = false;        // end a finished output with the stop token that ended it
};

struct LayerStats {
  // Per layer, mean over tokens of cosine similarities.
  std::vector<double> cos_attn;     // cos(h, x1)
  std::vector<double> cos_mlp;      // cos(x1, h_next)
  std::vector<double> cos_block;    // cos(h, h_next)
  std::vector<double> block_influence;  // ShortGPT BI = 1 - cos(h, h_next)
  // Requested hidden states: index i is the input of layer hidden_layers[i]
  // (numLayers = final, before the final norm), tokens x hidden.
  std::vector<std::vector<float>> hidden;
};

// The engine-specific half of greedy generation: forwards new tokens of several
// sequences through the model with their KV caches and gives each one's greedy next
// token. generate_greedy (below) runs the other half, the same for every engine.
class Decoder {
 public:
  virtual ~Decoder() = default;
  // Opens KV caches for a group of `prompts` (each grows to its prompt plus max_new
  // tokens; the caches of an earlier group are dropped), runs every prompt and writes
  // each one's next token into next[i].
  virtual void prefill(const std::vector<std::vector<int32_t>>& prompts, int64_t max_new,
                       std::vector<int32_t>& next) = 0;
  // One step: tokens[r] of prompt seqs[r] (an index into the prefilled prompts) at
  // position positions[r]; writes that sequence's next token into next[r].
  virtual void decode(const std::vector<int>& seqs, const std::vector<int32_t>& tokens,
                      const std::vector<int64_t>& positions, std::vector<int32_t>& next) = 0;
};

// The greedy step loop shared by every engine: prompts run in groups of `group`
// (0 = all at once), a prompt stops at a stop token (kept with include_stop) or after
// max_new_tokens. Expects arguments validate_generate accepted.
std::vector<std::vector<int32_t>> generate_greedy(const std::vector<std::vector<int32_t>>& prompts,
                                                  const GenerateOptions& opts, size_t group, Decoder& decoder);

// Every call checks its arguments here, in one place for all backends (validate_*
// below, in engine_common.cpp), before the backend's compute sees them: a bad call
// throws a typed hs::Error and leaves no partial work, on a machine without a GPU too.
class Engine {
 public:
  virtual ~Engine() = default;
  virtual const char* device() const = 0;
  // want_grad=false computes the loss only.
  LossResult loss(const std::vector<Sample>& samples, const Theta& theta, const BatchOptions& opts, bool want_grad);
  // Logits for one sequence (positions 0..T-1), T x vocab row-major.
  std::vector<float> logits(const std::vector<int32_t>& tokens, const Theta& theta, const std::vector<int>& skip);
  // Greedy generation with a KV cache; returns only the new tokens of each prompt.
  std::vector<std::vector<int32_t>> generate(const std::vector<std::vector<int32_t>>& prompts, const Theta& theta,
                                             const GenerateOptions& opts);
  LayerStats layer_stats(const std::vector<Sample>& samples, const Theta& theta, const std::vector<int>& skip,
                         const std::vector<int>& hidden_layers);

 protected:
  explicit Engine(const ModelConfig& cfg) : checked_cfg_(cfg) {}
  // The backend's compute, called with checked arguments only.
  virtual LossResult run_loss(const std::vector<Sample>& samples, const Theta& theta, const BatchOptions& opts,
                              bool want_grad) = 0;
  virtual std::vector<float> run_logits(const std::vector<int32_t>& tokens, const Theta& theta,
                                        const std::vector<int>& skip) = 0;
  virtual LayerStats run_layer_stats(const std::vector<Sample>& samples, const Theta& theta,
                                     const std::vector<int>& skip, const std::vector<int>& hidden_layers) = 0;
  // Generation: prompts per prefill (0 = all of them), and a decoder for one group.
  virtual size_t generation_group() const = 0;
  virtual std::unique_ptr<Decoder> open_decoder(const Theta& theta, const std::vector<int>& skip) = 0;

 private:
  ModelConfig checked_cfg_;
};

// Argument checks shared by all backends: throw typed errors before any compute.
void validate_batch(const ModelConfig& cfg, const std::vector<Sample>& samples, const Theta& theta,
                    const BatchOptions& opts, bool require_response);
void validate_theta(const ModelConfig& cfg, const Theta& theta);
void validate_skip(const ModelConfig& cfg, const std::vector<int>& skip);
void validate_tokens(const ModelConfig& cfg, const std::vector<int32_t>& tokens, const char* what);
// The longest sequence (prompt + response, or prompt + new tokens) the engines accept:
// config.json's max_position_embeddings. For llama3 rope scaling that value is already the
// extended context (original_max_position_embeddings is the pre-training length the
// frequencies are rescaled from), as in transformers.
int64_t context_length(const ModelConfig& cfg);
// HOPSCOTCH_ERR_CONTEXT unless `length` <= context_length(cfg); `what` names the sequence
// and `detail` (may be empty) how its length is made up.
void validate_context(const ModelConfig& cfg, int64_t length, const std::string& what, const std::string& detail);
// Every argument check of logits(), generate() and layer_stats(), in one place for all backends.
void validate_logits(const ModelConfig& cfg, const std::vector<int32_t>& tokens, const Theta& theta,
                     const std::vector<int>& skip);
void validate_generate(const ModelConfig& cfg, const std::vector<std::vector<int32_t>>& prompts, const Theta& theta,
                       const GenerateOptions& opts);
// HOPSCOTCH_ERR_ARGUMENT unless every hidden-state index is in [0, num_layers] (num_layers =
// the final hidden state, before the final norm).
void validate_hidden_layers(const ModelConfig& cfg, const std::vector<int>& hidden_layers);
void validate_layer_stats(const ModelConfig& cfg, const std::vector<Sample>& samples, const Theta& theta,
                          const std::vector<int>& skip, const std::vector<int>& hidden_layers);

// arith BF16: every weight GEMM rounds its activation operand to bf16 (load the
// weights with WeightOptions::bf16 so both operands are bf16); attention, norms and
// the theta reductions stay fp32.
std::unique_ptr<Engine> make_cpu_engine(const LoadedModel& model, int threads, Arith arith = Arith::F32);

}  // namespace hs
