// Typed errors for the engine. Every error carries a stable code string
// (HOPSCOTCH_ERR_*) that crosses the Node boundary unchanged as `err.code`.
#pragma once
#include <stdexcept>
#include <string>

namespace hs {

namespace code {
inline constexpr const char* kIo = "HOPSCOTCH_ERR_IO";
inline constexpr const char* kSafetensorsHeader = "HOPSCOTCH_ERR_SAFETENSORS_HEADER";
inline constexpr const char* kSafetensorsLayout = "HOPSCOTCH_ERR_SAFETENSORS_LAYOUT";
inline constexpr const char* kSafetensorsDtype = "HOPSCOTCH_ERR_SAFETENSORS_DTYPE";
inline constexpr const char* kSafetensorsIndex = "HOPSCOTCH_ERR_SAFETENSORS_INDEX";
inline constexpr const char* kGgufHeader = "HOPSCOTCH_ERR_GGUF_HEADER";
inline constexpr const char* kGgufLayout = "HOPSCOTCH_ERR_GGUF_LAYOUT";
inline constexpr const char* kExists = "HOPSCOTCH_ERR_EXISTS";
inline constexpr const char* kConfigInvalid = "HOPSCOTCH_ERR_CONFIG_INVALID";
inline constexpr const char* kConfigUnsupported = "HOPSCOTCH_ERR_CONFIG_UNSUPPORTED";
inline constexpr const char* kMissingTensor = "HOPSCOTCH_ERR_MISSING_TENSOR";
inline constexpr const char* kShape = "HOPSCOTCH_ERR_SHAPE";
inline constexpr const char* kTokenRange = "HOPSCOTCH_ERR_TOKEN_RANGE";
inline constexpr const char* kEmptyBatch = "HOPSCOTCH_ERR_EMPTY_BATCH";
inline constexpr const char* kEmptyResponse = "HOPSCOTCH_ERR_EMPTY_RESPONSE";
inline constexpr const char* kTokenCap = "HOPSCOTCH_ERR_TOKEN_CAP";
inline constexpr const char* kContext = "HOPSCOTCH_ERR_CONTEXT";
inline constexpr const char* kTheta = "HOPSCOTCH_ERR_THETA";
inline constexpr const char* kSkip = "HOPSCOTCH_ERR_SKIP";
inline constexpr const char* kDisposed = "HOPSCOTCH_ERR_DISPOSED";
inline constexpr const char* kCuda = "HOPSCOTCH_ERR_CUDA";
inline constexpr const char* kCudaAbi = "HOPSCOTCH_ERR_CUDA_ABI";
inline constexpr const char* kInternal = "HOPSCOTCH_ERR_INTERNAL";
inline constexpr const char* kArgument = "HOPSCOTCH_ERR_ARGUMENT";
inline constexpr const char* kExport = "HOPSCOTCH_ERR_EXPORT";
inline constexpr const char* kAborted = "HOPSCOTCH_ERR_ABORTED";
}  // namespace code

class Error : public std::runtime_error {
 public:
  Error(const char* code, const std::string& message) : std::runtime_error(message), code_(code) {}
  const char* code() const noexcept { return code_; }

 private:
  const char* code_;
};

[[noreturn]] inline void fail(const char* code, const std::string& message) { throw Error(code, message); }

}  // namespace hs
