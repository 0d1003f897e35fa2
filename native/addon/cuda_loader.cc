// Loads the CUDA backend (libhopscotch_cuda.so) at run time, so the addon itself
// never links against CUDA and loads on machines without a driver. The library is
// looked up in HOPSCOTCH_CUDA_LIBRARY, then next to this .node file; the first one
// that loads is used. Before anything else its ABI is checked (hopscotch_cuda.h): a
// library built for another addon is refused with HOPSCOTCH_ERR_CUDA_ABI, never skipped
// for the next candidate.
#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <set>

#include "common.h"
#include "../cuda/hopscotch_cuda.h"

namespace hsnapi {
namespace {

using AbiFn = hopscotch_cuda_abi_fn;
using VersionFn = hopscotch_cuda_version_fn;
using ProbeFn = hopscotch_cuda_probe_fn;
using CreateFn = hopscotch_cuda_create_fn;

struct CudaBackend {
  void* handle = nullptr;
  VersionFn version = nullptr;
  ProbeFn probe = nullptr;
  CreateFn create = nullptr;
  std::string library;
  std::string error;
  const char* code = hs::code::kCuda;  // of `error`
  std::vector<std::string> tried;
};

std::string self_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&self_dir), &info) && info.dli_fname) {
    std::string p = info.dli_fname;
    auto slash = p.rfind('/');
    return slash == std::string::npos ? "." : p.substr(0, slash);
  }
  return ".";
}

// Empty when the library at `path` speaks this addon's ABI; otherwise why it is refused,
// naming both ABI numbers and the library's version string. Only C types cross here.
std::string abi_mismatch(void* h, const std::string& path) {
  auto abi = reinterpret_cast<AbiFn>(dlsym(h, "hopscotch_cuda_abi"));
  auto version = reinterpret_cast<VersionFn>(dlsym(h, "hopscotch_cuda_version"));
  if (!abi && !version) return "";  // not a hopscotch backend: the entry-point check says so
  const char* v = version ? version() : nullptr;
  const std::string lib_version = v ? std::string(" (version \"") + v + "\")" : "";
  const std::string ours = "this addon needs ABI " + std::to_string(HOPSCOTCH_CUDA_ABI);
  if (!abi) return path + " predates the ABI handshake" + lib_version + "; " + ours + ". Rebuild the backend with the addon";
  const uint32_t theirs = abi();
  if (theirs == HOPSCOTCH_CUDA_ABI) return "";
  return path + " has ABI " + std::to_string(theirs) + lib_version + ", " + ours + ". Rebuild the backend with the addon";
}

CudaBackend& backend() {
  static CudaBackend b;
  static std::once_flag once;
  std::call_once(once, [] {
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("HOPSCOTCH_CUDA_LIBRARY")) candidates.push_back(env);
    candidates.push_back(self_dir() + "/libhopscotch_cuda.so");
    for (const auto& path : candidates) {
      b.tried.push_back(path);
      void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        const char* e = dlerror();
        b.error += path + ": " + (e ? e : "not loadable") + "; ";
        continue;
      }
      if (std::string refused = abi_mismatch(h, path); !refused.empty()) {
        dlclose(h);
        b.error = refused;
        b.code = hs::code::kCudaAbi;
        return;
      }
      b.version = reinterpret_cast<VersionFn>(dlsym(h, "hopscotch_cuda_version"));
      b.probe = reinterpret_cast<ProbeFn>(dlsym(h, "hopscotch_cuda_probe"));
      b.create = reinterpret_cast<CreateFn>(dlsym(h, "hopscotch_cuda_create"));
      if (!b.version || !b.probe || !b.create) {
        b.error += path + ": missing hopscotch_cuda_* entry points; ";
        dlclose(h);
        continue;
      }
      b.handle = h;
      b.library = path;
      b.error.clear();
      return;
    }
    if (b.error.empty()) b.error = "the CUDA backend was not built";
  });
  return b;
}

// cudaProbe() -> { available, message, code (when refused or not loadable), library, version, tried }
Napi::Value CudaProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& b = backend();
  auto o = Napi::Object::New(env);
  auto tried = Napi::Array::New(env, b.tried.size());
  for (size_t i = 0; i < b.tried.size(); ++i) tried.Set(i, b.tried[i]);
  o.Set("tried", tried);
  o.Set("library", b.library);
  if (!b.handle) {
    o.Set("available", false);
    o.Set("code", b.code);
    o.Set("message", (b.code == hs::code::kCudaAbi ? "CUDA backend library refused: " : "CUDA backend library not loadable: ") +
                         b.error);
    return o;
  }
  o.Set("version", b.version());
  char msg[1024] = {0};
  int devices = b.probe(msg, sizeof(msg));
  o.Set("available", devices > 0);
  o.Set("devices", devices);
  o.Set("message", std::string(msg));
  return o;
}

}  // namespace

std::unique_ptr<hs::Engine> create_cuda_engine(const hs::LoadedModel& model) {
  auto& b = backend();
  if (!b.handle)
    hs::fail(b.code, (b.code == hs::code::kCudaAbi ? "CUDA backend library refused: " : "CUDA backend library not loadable: ") +
                         b.error);
  char err[2048] = {0};
  hs::Engine* e = b.create(&model, err, sizeof(err));
  if (!e) {
    // The backend writes "<CODE>: <message>"; keep its code when it is one of ours.
    std::string text = err;
    auto sep = text.find(": ");
    if (sep != std::string::npos && text.compare(0, 14, "HOPSCOTCH_ERR_") == 0) {
      static std::set<std::string> codes;  // node-based: the code strings never move
      static std::mutex mu;
      std::lock_guard<std::mutex> lock(mu);
      const std::string& code = *codes.insert(text.substr(0, sep)).first;
      throw hs::Error(code.c_str(), text.substr(sep + 2));
    }
    hs::fail(hs::code::kCuda, "CUDA engine could not start: " + text);
  }
  return std::unique_ptr<hs::Engine>(e);
}

void init_cuda(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaProbe", Napi::Function::New(env, CudaProbe, "cudaProbe"));
}

}  // namespace hsnapi
