// cuBLASLt loader and the bf16 GEMM wrapper (see cublaslt.h).
#include "cublaslt.h"

#include <dlfcn.h>
#include <glob.h>
#include <library_types.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>

namespace hs::cuda {

// ---- the part of cublasLt.h we use (values as in cuBLAS 12 and 13) ----
namespace lt {
using Status = int;  // cublasStatus_t
constexpr Status kSuccess = 0;
struct Context;
using Handle = Context*;                   // cublasLtHandle_t
struct MatmulDescOpaque;
using MatmulDesc = MatmulDescOpaque*;      // cublasLtMatmulDesc_t
struct MatrixLayoutOpaque;
using MatrixLayout = MatrixLayoutOpaque*;  // cublasLtMatrixLayout_t
struct PreferenceOpaque;
using Preference = PreferenceOpaque*;      // cublasLtMatmulPreference_t
struct MatmulAlgo {                        // cublasLtMatmulAlgo_t
  uint64_t data[8];
};
struct HeuristicResult {  // cublasLtMatmulHeuristicResult_t
  MatmulAlgo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};
static_assert(sizeof(MatmulAlgo) == 64, "cublasLtMatmulAlgo_t is 64 bytes");
static_assert(sizeof(HeuristicResult) == 96, "cublasLtMatmulHeuristicResult_t is 96 bytes");
static_assert(sizeof(cudaDataType_t) == 4, "cudaDataType_t is a 32-bit enum");

constexpr int kComputeType32F = 68;  // CUBLAS_COMPUTE_32F
constexpr int kOpN = 0;              // CUBLAS_OP_N
constexpr int kOpT = 1;              // CUBLAS_OP_T
constexpr int kDescTransA = 3;       // CUBLASLT_MATMUL_DESC_TRANSA
constexpr int kDescTransB = 4;       // CUBLASLT_MATMUL_DESC_TRANSB
constexpr int kPrefMaxWorkspaceBytes = 1;  // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES
constexpr int kPrefMinAlignA = 5;          // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES
constexpr int kPrefMinAlignB = 6;
constexpr int kPrefMinAlignC = 7;
constexpr int kPrefMinAlignD = 8;
}  // namespace lt

struct CublasLtApi {
  void* lib = nullptr;
  size_t (*GetVersion)() = nullptr;
  lt::Status (*Create)(lt::Handle*) = nullptr;
  lt::Status (*Destroy)(lt::Handle) = nullptr;
  lt::Status (*MatmulDescCreate)(lt::MatmulDesc*, int compute, cudaDataType_t scale) = nullptr;
  lt::Status (*MatmulDescDestroy)(lt::MatmulDesc) = nullptr;
  lt::Status (*MatmulDescSetAttribute)(lt::MatmulDesc, int attr, const void* buf, size_t size) = nullptr;
  lt::Status (*MatrixLayoutCreate)(lt::MatrixLayout*, cudaDataType_t, uint64_t rows, uint64_t cols,
                                   int64_t ld) = nullptr;
  lt::Status (*MatrixLayoutDestroy)(lt::MatrixLayout) = nullptr;
  lt::Status (*MatmulPreferenceCreate)(lt::Preference*) = nullptr;
  lt::Status (*MatmulPreferenceDestroy)(lt::Preference) = nullptr;
  lt::Status (*MatmulPreferenceSetAttribute)(lt::Preference, int attr, const void* buf, size_t size) = nullptr;
  lt::Status (*MatmulAlgoGetHeuristic)(lt::Handle, lt::MatmulDesc, lt::MatrixLayout, lt::MatrixLayout,
                                       lt::MatrixLayout, lt::MatrixLayout, lt::Preference, int requested,
                                       lt::HeuristicResult* results, int* returned) = nullptr;
  lt::Status (*Matmul)(lt::Handle, lt::MatmulDesc, const void* alpha, const void* A, lt::MatrixLayout,
                       const void* B, lt::MatrixLayout, const void* beta, const void* C, lt::MatrixLayout,
                       void* D, lt::MatrixLayout, const lt::MatmulAlgo* algo, void* workspace,
                       size_t workspace_bytes, cudaStream_t stream) = nullptr;
  std::string path;
};

namespace {

const char* const kSonames[] = {"libcublasLt.so.13", "libcublasLt.so.12"};

bool is_stub(const std::string& path) { return path.find("/stubs/") != std::string::npos; }

// Binds every symbol; false (with the missing name in `why`) when one is absent.
bool bind(CublasLtApi& api, std::string* why) {
  struct Entry {
    const char* name;
    void** slot;
  } entries[] = {
      {"cublasLtGetVersion", reinterpret_cast<void**>(&api.GetVersion)},
      {"cublasLtCreate", reinterpret_cast<void**>(&api.Create)},
      {"cublasLtDestroy", reinterpret_cast<void**>(&api.Destroy)},
      {"cublasLtMatmulDescCreate", reinterpret_cast<void**>(&api.MatmulDescCreate)},
      {"cublasLtMatmulDescDestroy", reinterpret_cast<void**>(&api.MatmulDescDestroy)},
      {"cublasLtMatmulDescSetAttribute", reinterpret_cast<void**>(&api.MatmulDescSetAttribute)},
      {"cublasLtMatrixLayoutCreate", reinterpret_cast<void**>(&api.MatrixLayoutCreate)},
      {"cublasLtMatrixLayoutDestroy", reinterpret_cast<void**>(&api.MatrixLayoutDestroy)},
      {"cublasLtMatmulPreferenceCreate", reinterpret_cast<void**>(&api.MatmulPreferenceCreate)},
      {"cublasLtMatmulPreferenceDestroy", reinterpret_cast<void**>(&api.MatmulPreferenceDestroy)},
      {"cublasLtMatmulPreferenceSetAttribute", reinterpret_cast<void**>(&api.MatmulPreferenceSetAttribute)},
      {"cublasLtMatmulAlgoGetHeuristic", reinterpret_cast<void**>(&api.MatmulAlgoGetHeuristic)},
      {"cublasLtMatmul", reinterpret_cast<void**>(&api.Matmul)},
  };
  for (auto& e : entries) {
    *e.slot = dlsym(api.lib, e.name);
    if (*e.slot == nullptr) {
      *why = std::string("symbol ") + e.name + " missing";
      return false;
    }
  }
  return true;
}

// The file a handle was loaded from (empty when unknown).
std::string loaded_path(void* lib) {
  void* sym = dlsym(lib, "cublasLtCreate");
  Dl_info info{};
  if (sym != nullptr && dladdr(sym, &info) != 0 && info.dli_fname != nullptr) return info.dli_fname;
  return "";
}

class Loader {
 public:
  bool try_open(const std::string& candidate, int flags, const char* how) {
    if (is_stub(candidate)) {
      log_ << "  " << candidate << ": skipped (a /stubs/ library only links, it cannot run)\n";
      return false;
    }
    dlerror();
    void* lib = dlopen(candidate.c_str(), flags);
    if (lib == nullptr) {
      const char* e = dlerror();
      log_ << "  " << candidate << " (" << how << "): " << (e ? e : "not found") << "\n";
      return false;
    }
    const std::string real = loaded_path(lib);
    if (is_stub(real)) {
      log_ << "  " << candidate << " (" << how << "): resolved to stub " << real << ", skipped\n";
      dlclose(lib);
      return false;
    }
    api_.lib = lib;
    std::string why;
    if (!bind(api_, &why)) {
      log_ << "  " << candidate << " (" << how << "): " << why << "\n";
      dlclose(lib);
      api_ = CublasLtApi{};
      return false;
    }
    api_.path = real.empty() ? candidate : real;
    return true;
  }

  bool try_dir(const std::string& dir, const char* how) {
    if (dir.empty()) return false;
    for (const char* so : kSonames)
      if (try_open(dir + "/" + so, RTLD_NOW | RTLD_LOCAL, how)) return true;
    return false;
  }

  bool search() {
    for (const char* so : kSonames)
      if (try_open(so, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD, "already loaded")) return true;
    if (const char* env = std::getenv("HOPSCOTCH_CUBLASLT"); env != nullptr && *env != '\0') {
      const std::string v = env;
      const bool is_file = v.find(".so") != std::string::npos;
      if (is_file ? try_open(v, RTLD_NOW | RTLD_LOCAL, "HOPSCOTCH_CUBLASLT") : try_dir(v, "HOPSCOTCH_CUBLASLT"))
        return true;
    }
    if (const char* ld = std::getenv("LD_LIBRARY_PATH"); ld != nullptr) {
      std::stringstream ss(ld);
      std::string dir;
      while (std::getline(ss, dir, ':'))
        if (try_dir(dir, "LD_LIBRARY_PATH")) return true;
    }
    for (const char* so : kSonames)
      if (try_open(so, RTLD_NOW | RTLD_LOCAL, "loader search")) return true;
    if (try_dir("/usr/local/cuda/lib64", "CUDA toolkit")) return true;
    for (const std::string& dir : python_dirs())
      if (try_dir(dir, "Python site-packages")) return true;
    return false;
  }

  std::vector<std::string> python_dirs() {
    std::vector<std::string> roots;
    for (const char* var : {"VIRTUAL_ENV", "CONDA_PREFIX"})
      if (const char* v = std::getenv(var); v != nullptr && *v != '\0') {
        roots.push_back(std::string(v) + "/lib/python3*/site-packages");
      }
    if (const char* pp = std::getenv("PYTHONPATH"); pp != nullptr) {
      std::stringstream ss(pp);
      std::string dir;
      while (std::getline(ss, dir, ':'))
        if (!dir.empty()) roots.push_back(dir);
    }
    if (const char* home = std::getenv("HOME"); home != nullptr)
      roots.push_back(std::string(home) + "/.local/lib/python3*/site-packages");
    for (const char* r : {"/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages",
                          "/usr/lib/python3*/dist-packages", "/usr/lib/python3*/site-packages",
                          "/opt/*/lib/python3*/site-packages", "/opt/*/.venv/lib/python3*/site-packages",
                          "/opt/conda/lib/python3*/site-packages"})
      roots.push_back(r);
    std::vector<std::string> dirs;
    for (const std::string& root : roots)
      for (const char* sub : {"/nvidia/cu13/lib", "/nvidia/cublas/lib"}) {
        glob_t g{};
        if (glob((root + sub).c_str(), 0, nullptr, &g) == 0)
          for (size_t i = 0; i < g.gl_pathc; ++i) dirs.emplace_back(g.gl_pathv[i]);
        globfree(&g);
      }
    if (dirs.empty()) log_ << "  Python site-packages: no nvidia/cu13/lib or nvidia/cublas/lib directory found\n";
    return dirs;
  }

  CublasLtApi api_;
  std::ostringstream log_;
};

struct LoadState {
  std::once_flag once;
  CublasLtApi api;
  bool ok = false;
  std::string tried;
};

LoadState& load_state() {
  static LoadState state;
  std::call_once(state.once, [] {
    Loader loader;
    state.ok = loader.search();
    state.api = loader.api_;
    state.tried = loader.log_.str();
  });
  return state;
}

void check_lt(lt::Status s, const char* what) {
  if (s != lt::kSuccess) fail(code::kCuda, std::string(what) + " failed with cublasStatus " + std::to_string(s));
}

int alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  int align = 256;
  while (align > 1 && (a % align) != 0) align >>= 1;
  return align;
}

}  // namespace

const CublasLtApi* cublaslt_api(std::string* where, std::string* tried) {
  LoadState& s = load_state();
  if (where) *where = s.ok ? s.api.path : "";
  if (tried) *tried = s.tried;
  return s.ok ? &s.api : nullptr;
}

const CublasLtApi& cublaslt_require() {
  std::string tried;
  const CublasLtApi* api = cublaslt_api(nullptr, &tried);
  if (api == nullptr)
    fail(code::kCuda,
         "cuBLASLt (libcublasLt.so.13 or .12) was not found; set HOPSCOTCH_CUBLASLT to the library file or its "
         "directory, or install the nvidia-cublas Python package. Tried:\n" +
             tried);
  return *api;
}

size_t cublaslt_version() {
  const CublasLtApi* api = cublaslt_api(nullptr, nullptr);
  return api ? api->GetVersion() : 0;
}

// ---- GEMM ----

struct Gemm::Plan {
  const CublasLtApi* api = nullptr;
  lt::MatmulDesc desc = nullptr;
  lt::MatrixLayout a = nullptr, b = nullptr, c = nullptr;
  lt::MatmulAlgo algo{};
  size_t workspace = 0;
  ~Plan() {
    if (api == nullptr) return;
    if (a) api->MatrixLayoutDestroy(a);
    if (b) api->MatrixLayoutDestroy(b);
    if (c) api->MatrixLayoutDestroy(c);
    if (desc) api->MatmulDescDestroy(desc);
  }
};

namespace {
constexpr size_t kWorkspaceBytes = size_t(32) << 20;
}

Gemm::Gemm() : api_(cublaslt_require()) {
  lt::Handle h = nullptr;
  check_lt(api_.Create(&h), "cublasLtCreate");
  handle_ = h;
  workspace_.reserve(kWorkspaceBytes, "cuBLASLt workspace");
}

Gemm::~Gemm() {
  plans_.clear();
  if (handle_ != nullptr) api_.Destroy(static_cast<lt::Handle>(handle_));
}

void Gemm::nt(cudaStream_t stream, int64_t M, int64_t N, int64_t K, const __nv_bfloat16* A, int64_t lda,
              const __nv_bfloat16* B, int64_t ldb, void* C, GemmOut c_type, int64_t ldc, float alpha,
              float beta) {
  run(stream, true, M, N, K, A, lda, B, ldb, C, c_type, ldc, alpha, beta);
}

void Gemm::nn(cudaStream_t stream, int64_t M, int64_t N, int64_t K, const __nv_bfloat16* A, int64_t lda,
              const __nv_bfloat16* B, int64_t ldb, void* C, GemmOut c_type, int64_t ldc, float alpha,
              float beta) {
  run(stream, false, M, N, K, A, lda, B, ldb, C, c_type, ldc, alpha, beta);
}

// Row-major C[M,N] is column-major C^T (N x M, ld = ldc), so we compute
//   C^T = op(B) * A^T  with  m = N, n = M, k = K:
//   nt: B is row-major [N,K] = column-major K x N (ld = ldb), op = T;
//   nn: B is row-major [K,N] = column-major N x K (ld = ldb), op = N;
//   A  is row-major [M,K] = column-major K x M (ld = lda), op = N.
void Gemm::run(cudaStream_t stream, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
               const void* B, int64_t ldb, void* C, GemmOut c_type, int64_t ldc, float alpha, float beta) {
  if (M <= 0 || N <= 0 || K <= 0)
    fail(code::kInternal, "GEMM with an empty dimension (M=" + std::to_string(M) + ", N=" + std::to_string(N) +
                              ", K=" + std::to_string(K) + ")");
  if (lda < K || (trans_b ? ldb < K : ldb < N) || ldc < N)
    fail(code::kInternal, "GEMM leading dimension too small (lda=" + std::to_string(lda) +
                              ", ldb=" + std::to_string(ldb) + ", ldc=" + std::to_string(ldc) + ")");
  const int al_a = alignment_of(A), al_b = alignment_of(B), al_c = alignment_of(C);
  std::vector<int64_t> key = {trans_b ? 1 : 0, M, N, K, lda, ldb, ldc, static_cast<int64_t>(c_type),
                              beta != 0.f ? 1 : 0, al_a, al_b, al_c};
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    auto plan = std::make_unique<Plan>();
    plan->api = &api_;
    const cudaDataType_t ct = c_type == GemmOut::F32 ? CUDA_R_32F : CUDA_R_16BF;
    check_lt(api_.MatmulDescCreate(&plan->desc, lt::kComputeType32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    const int32_t op_a = trans_b ? lt::kOpT : lt::kOpN, op_b = lt::kOpN;
    check_lt(api_.MatmulDescSetAttribute(plan->desc, lt::kDescTransA, &op_a, sizeof(op_a)), "set TRANSA");
    check_lt(api_.MatmulDescSetAttribute(plan->desc, lt::kDescTransB, &op_b, sizeof(op_b)), "set TRANSB");
    // cuBLASLt "A" is our B (the weight), cuBLASLt "B" is our A (the activations).
    if (trans_b)
      check_lt(api_.MatrixLayoutCreate(&plan->a, CUDA_R_16BF, K, N, ldb), "layout A");
    else
      check_lt(api_.MatrixLayoutCreate(&plan->a, CUDA_R_16BF, N, K, ldb), "layout A");
    check_lt(api_.MatrixLayoutCreate(&plan->b, CUDA_R_16BF, K, M, lda), "layout B");
    check_lt(api_.MatrixLayoutCreate(&plan->c, ct, N, M, ldc), "layout C");
    lt::Preference pref = nullptr;
    check_lt(api_.MatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    const uint64_t ws = kWorkspaceBytes;
    const uint32_t align_lt_a = al_b, align_lt_b = al_a, align_c = al_c;
    lt::Status st = api_.MatmulPreferenceSetAttribute(pref, lt::kPrefMaxWorkspaceBytes, &ws, sizeof(ws));
    if (st == lt::kSuccess)
      st = api_.MatmulPreferenceSetAttribute(pref, lt::kPrefMinAlignA, &align_lt_a, sizeof(align_lt_a));
    if (st == lt::kSuccess)
      st = api_.MatmulPreferenceSetAttribute(pref, lt::kPrefMinAlignB, &align_lt_b, sizeof(align_lt_b));
    if (st == lt::kSuccess) st = api_.MatmulPreferenceSetAttribute(pref, lt::kPrefMinAlignC, &align_c, sizeof(align_c));
    if (st == lt::kSuccess) st = api_.MatmulPreferenceSetAttribute(pref, lt::kPrefMinAlignD, &align_c, sizeof(align_c));
    lt::HeuristicResult result{};
    int returned = 0;
    if (st == lt::kSuccess)
      st = api_.MatmulAlgoGetHeuristic(static_cast<lt::Handle>(handle_), plan->desc, plan->a, plan->b, plan->c,
                                       plan->c, pref, 1, &result, &returned);
    api_.MatmulPreferenceDestroy(pref);
    check_lt(st, "cublasLtMatmulAlgoGetHeuristic");
    if (returned < 1)
      fail(code::kCuda, "cuBLASLt found no algorithm for a bf16 GEMM M=" + std::to_string(M) +
                            " N=" + std::to_string(N) + " K=" + std::to_string(K));
    plan->algo = result.algo;
    plan->workspace = result.workspaceSize;
    it = plans_.emplace(std::move(key), std::move(plan)).first;
  }
  const Plan& p = *it->second;
  check_lt(api_.Matmul(static_cast<lt::Handle>(handle_), p.desc, &alpha, B, p.a, A, p.b, &beta, C, p.c, C, p.c,
                       &p.algo, workspace_.get(), kWorkspaceBytes, stream),
           "cublasLtMatmul");
}

}  // namespace hs::cuda
