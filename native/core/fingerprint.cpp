// Model fingerprint: SHA-256 over a canonical description of a checkpoint.
//
// The digest covers every config field the engines read, each tensor's name, dtype
// and shape (sorted by name), and up to 4 KiB of each tensor's bytes sampled from
// its start, middle and end. Adapters store it so that loading them on a different
// base model is caught; it never reads whole tensors.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "weights.h"

namespace hs {

namespace {

class Sha256 {
 public:
  void update(const void* data, size_t n) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    total_ += n;
    while (n > 0) {
      size_t take = std::min(n, sizeof(block_) - used_);
      std::memcpy(block_ + used_, p, take);
      used_ += take;
      p += take;
      n -= take;
      if (used_ == sizeof(block_)) {
        compress(block_);
        used_ = 0;
      }
    }
  }
  void update(const std::string& s) { update(s.data(), s.size()); }

  std::string hex() {
    const uint64_t bits = total_ * 8;
    const uint8_t one = 0x80, zero = 0;
    update(&one, 1);
    while (used_ != 56) update(&zero, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(bits >> (56 - 8 * i));
    update(len, 8);
    std::string out;
    char buf[9];
    for (uint32_t word : h_) {
      std::snprintf(buf, sizeof buf, "%08x", word);
      out += buf;
    }
    return out;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  void compress(const uint8_t* block) {
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i) {
      w[i] = (uint32_t(block[4 * i]) << 24) | (uint32_t(block[4 * i + 1]) << 16) | (uint32_t(block[4 * i + 2]) << 8) |
             uint32_t(block[4 * i + 3]);
    }
    for (int i = 16; i < 64; ++i) {
      uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h_[0] += a;
    h_[1] += b;
    h_[2] += c;
    h_[3] += d;
    h_[4] += e;
    h_[5] += f;
    h_[6] += g;
    h_[7] += h;
  }

  uint32_t h_[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  uint8_t block_[64];
  size_t used_ = 0;
  uint64_t total_ = 0;
};

std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

std::string ints(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

// One line per field, in a fixed order; bump the version tag when it changes.
std::string canonical_config(const ModelConfig& c) {
  std::string s = "hopscotch-fingerprint-v1\n";
  auto field = [&](const char* key, const std::string& value) { s += std::string(key) + "=" + value + "\n"; };
  field("arch", c.arch);
  field("model_type", c.model_type);
  field("num_layers", std::to_string(c.num_layers));
  field("hidden", std::to_string(c.hidden));
  field("intermediate", std::to_string(c.intermediate));
  field("num_heads", std::to_string(c.num_heads));
  field("num_kv_heads", std::to_string(c.num_kv_heads));
  field("head_dim", std::to_string(c.head_dim));
  field("vocab", std::to_string(c.vocab));
  field("max_position", std::to_string(c.max_position));
  field("rms_eps", num(c.rms_eps));
  field("rope.type", std::to_string(static_cast<int>(c.rope.type)));
  field("rope.theta", num(c.rope.theta));
  field("rope.factor", num(c.rope.factor));
  field("rope.low_freq_factor", num(c.rope.low_freq_factor));
  field("rope.high_freq_factor", num(c.rope.high_freq_factor));
  field("rope.original_max_position", std::to_string(c.rope.original_max_position));
  field("tie_embeddings", c.tie_embeddings ? "1" : "0");
  field("qkv_bias", c.qkv_bias ? "1" : "0");
  field("o_bias", c.o_bias ? "1" : "0");
  field("mlp_bias", c.mlp_bias ? "1" : "0");
  field("qk_norm", c.qk_norm ? "1" : "0");
  field("embedding_multiplier", num(c.embedding_multiplier));
  field("residual_multiplier", num(c.residual_multiplier));
  field("attention_scale", num(c.attention_scale));
  field("logits_scaling", num(c.logits_scaling));
  field("bos_ids", ints(c.bos_ids));
  field("eos_ids", ints(c.eos_ids));
  std::string absent;
  for (bool a : c.attention_absent) absent += a ? '1' : '0';
  field("attention_absent", absent);
  return s;
}

constexpr size_t kSampleBytes = 4096;

}  // namespace

std::string model_fingerprint(const ModelConfig& cfg, const Checkpoint& ckpt) {
  Sha256 sha;
  sha.update(canonical_config(cfg));
  for (const std::string& name : ckpt.names()) {  // names() is sorted
    const TensorView* t = ckpt.find(name);
    std::string line = "tensor " + name + " " + dtype_name(t->dtype) + " [";
    for (size_t i = 0; i < t->shape.size(); ++i) line += (i ? "," : "") + std::to_string(t->shape[i]);
    line += "] " + std::to_string(t->nbytes) + "\n";
    sha.update(line);
    if (t->nbytes <= kSampleBytes) {
      sha.update(t->data, t->nbytes);
    } else {
      const size_t chunk = kSampleBytes / 4;  // start, middle (two chunks), end
      sha.update(t->data, chunk);
      sha.update(t->data + t->nbytes / 2 - chunk, 2 * chunk);
      sha.update(t->data + t->nbytes - chunk, chunk);
    }
  }
  return sha.hex();
}

}  // namespace hs
