// The exported C entry points of libhopscotch_cuda.so (see hopscotch_cuda.h). Nothing
// else leaves the library (exports.map); no exception crosses this boundary.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "cublaslt.h"
#include "cuda_engine.h"
#include "hopscotch_cuda.h"

namespace {

#define HS_STR2(x) #x
#define HS_STR(x) HS_STR2(x)

void write_out(char* dst, size_t n, const std::string& s) {
  if (dst == nullptr || n == 0) return;
  const size_t m = std::min(n - 1, s.size());
  std::memcpy(dst, s.data(), m);
  dst[m] = '\0';
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\t': o += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          o += buf;
        } else {
          o += c;
        }
    }
  }
  return o;
}

// The engine `make` returns, released to the caller; nullptr with "CODE: message" in `err`
// when it throws (no exception crosses the library boundary).
template <class Make>
hs::Engine* create_engine(char* err, size_t n, Make make) {
  try {
    return make().release();
  } catch (const hs::Error& e) {
    write_out(err, n, std::string(e.code()) + ": " + e.what());
  } catch (const std::exception& e) {
    write_out(err, n, std::string(hs::code::kInternal) + ": " + e.what());
  } catch (...) {
    write_out(err, n, std::string(hs::code::kInternal) + ": unknown error while creating the CUDA engine");
  }
  return nullptr;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) uint32_t hopscotch_cuda_abi() { return HOPSCOTCH_CUDA_ABI; }

__attribute__((visibility("default"))) const char* hopscotch_cuda_version() {
  return "0.1.0 (cuda " HS_STR(CUDART_VERSION) ")";
}

__attribute__((visibility("default"))) int hopscotch_cuda_probe(char* msg, size_t n) {
  int count = 0;
  const cudaError_t st = cudaGetDeviceCount(&count);
  std::string where, tried;
  const bool lt_ok = hs::cuda::cublaslt_api(&where, &tried) != nullptr;
  std::string lt = lt_ok ? "\"cublaslt\":\"" + json_escape(where) + "\",\"cublaslt_version\":" +
                               std::to_string(hs::cuda::cublaslt_version())
                         : "\"cublaslt\":null,\"cublaslt_tried\":\"" + json_escape(tried) + "\"";
  if (st != cudaSuccess) {
    (void)cudaGetLastError();
    write_out(msg, n, std::string("{\"devices\":0,\"error\":\"") + json_escape(cudaGetErrorString(st)) + "\"," + lt +
                          "}");
    return -1;
  }
  std::string s = "{\"devices\":" + std::to_string(count);
  if (count > 0) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
      s += ",\"name\":\"" + json_escape(prop.name) + "\",\"compute_capability\":\"" + std::to_string(prop.major) +
           "." + std::to_string(prop.minor) + "\",\"memory_bytes\":" + std::to_string(prop.totalGlobalMem);
    }
  }
  int driver = 0;
  (void)cudaDriverGetVersion(&driver);
  s += ",\"driver_version\":" + std::to_string(driver) + ",\"runtime_version\":" + std::to_string(CUDART_VERSION) +
       "," + lt + "}";
  write_out(msg, n, s);
  return count;
}

__attribute__((visibility("default"))) hs::Engine* hopscotch_cuda_create(const hs::LoadedModel* model, char* err,
                                                                         size_t n) {
  return create_engine(err, n, [&] {
    if (model == nullptr) hs::fail(hs::code::kArgument, "hopscotch_cuda_create: model is null");
    return hs::cuda::make_cuda_engine(*model);
  });
}

__attribute__((visibility("default"))) hs::Engine* hopscotch_cuda_create_random(const hs::ModelConfig* cfg,
                                                                                uint32_t seed, char* err, size_t n) {
  return create_engine(err, n, [&] {
    if (cfg == nullptr) hs::fail(hs::code::kArgument, "hopscotch_cuda_create_random: cfg is null");
    return hs::cuda::make_cuda_engine_random(*cfg, seed);
  });
}

}  // extern "C"
