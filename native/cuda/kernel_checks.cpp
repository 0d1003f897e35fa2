// Kernel-level checks of the CUDA kernels against their CPU twins (twins.h).
//
// Attention (both implementations, FMA and tensor-core): head dims 64 and 128, GQA 4:1
// (8 query heads, 2 kv heads), nine packed sequences of odd lengths around 300 tokens
// plus short ones, and a decode-shaped batch (fewer queries than keys). Rule, as in
// flash-attention's tests: error against an fp64 reference <= 2 x the error of the
// same-precision CPU twin (+1e-6), per output (O, lse, dQ, dK, dV); and two runs are
// bit-identical. Elementwise and row kernels (cast, random fill, embedding, RMSNorm,
// SwiGLU, scaled residual, RoPE with bias and qk-norm, cross-entropy and its row
// gather/scatter, argmax, cosine), forward and backward: equal to the twin (exact for
// casts, gathers and argmax; within one bf16 rounding for bf16 outputs; 1e-5 relative
// for fp32 outputs and reductions). Each check is named after its kernel's launcher
// (launch_rmsnorm_fwd -> "rmsnorm_fwd"; attention adds the case), so a failure names one
// kernel.
#include "kernel_checks.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "argmax.cuh"
#include "attention.cuh"
#include "cast.cuh"
#include "cosine.cuh"
#include "cross_entropy.cuh"
#include "embedding.cuh"
#include "residual.cuh"
#include "rmsnorm.cuh"
#include "rope.cuh"
#include "swiglu.cuh"
#include "twins.h"

namespace hs::cuda {

namespace {

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

uint16_t bf16_bits(float x) {
  const float r = twin::bf16_round(x);
  uint32_t u;
  std::memcpy(&u, &r, 4);
  return static_cast<uint16_t>(u >> 16);
}
float bits_f32(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Device copies of host vectors, freed at scope exit.
template <typename T>
struct Dev {
  DeviceBuffer buf;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) { buf.reserve(std::max<size_t>(count, 1) * sizeof(T), "kernel check"); }
  explicit Dev(const std::vector<T>& h) : Dev(h.size()) {
    if (!h.empty()) check(cudaMemcpy(buf.get(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  T* get() const { return buf.as<T>(); }
  std::vector<T> host() const {
    std::vector<T> h(n);
    if (n) check(cudaMemcpy(h.data(), buf.get(), n * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return h;
  }
};

Dev<bf16> to_dev_bf16(const std::vector<float>& x) {
  std::vector<uint16_t> b(x.size());
  for (size_t i = 0; i < x.size(); ++i) b[i] = bf16_bits(x[i]);
  Dev<bf16> d(x.size());
  if (!b.empty()) check(cudaMemcpy(d.get(), b.data(), b.size() * 2, cudaMemcpyHostToDevice), "upload bf16");
  return d;
}
std::vector<float> from_dev_bf16(const Dev<bf16>& d) {
  std::vector<uint16_t> b(d.n);
  if (d.n) check(cudaMemcpy(b.data(), d.get(), d.n * 2, cudaMemcpyDeviceToHost), "download bf16");
  std::vector<float> f(d.n);
  for (size_t i = 0; i < d.n; ++i) f[i] = bits_f32(b[i]);
  return f;
}

double rel_err(const std::vector<float>& a, const std::vector<float>& ref) {
  double dd = 0, rr = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    dd += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
    rr += double(ref[i]) * ref[i];
  }
  return rr > 0 ? std::sqrt(dd / rr) : std::sqrt(dd);
}

std::vector<float> uniform(size_t n, float lo, float hi, uint32_t seed, bool bf16) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = bf16 ? twin::bf16_round(u(g)) : u(g);
  return v;
}

std::vector<int32_t> offsets(const std::vector<int>& lens) {
  std::vector<int32_t> cu = {0};
  for (int l : lens) cu.push_back(cu.back() + l);
  return cu;
}

struct AttnCase {
  std::string name;
  int D;
  std::vector<int> lq, lk;
};

// The fp64 reference of one case, shared by both implementations.
struct AttnRef {
  std::vector<float> q, k, v, dout, o_ref, lse_ref, o_in, dq_ref, dk_ref, dv_ref;
};

AttnRef attention_ref(const AttnCase& c) {
  const int nH = 8, nKV = 2, D = c.D;
  const std::vector<int32_t> cu_q = offsets(c.lq), cu_k = offsets(c.lk);
  const int64_t Tq = cu_q.back(), Tk = cu_k.back();
  const twin::AttnShape shape{nH, nKV, D, float(1.0 / std::sqrt(double(D)))};
  AttnRef r;
  r.q = uniform(size_t(Tq) * nH * D, -2.f, 2.f, 11, true);
  r.k = uniform(size_t(Tk) * nKV * D, -1.f, 1.f, 12, true);
  r.v = uniform(size_t(Tk) * nKV * D, -1.f, 1.f, 13, true);
  r.dout = uniform(size_t(Tq) * nH * D, -1.f, 1.f, 14, true);
  twin::attention_fwd_ref<double>(r.q, r.k, r.v, cu_q, cu_k, shape, {}, false, r.o_ref, r.lse_ref);
  // The backward's inputs for all: O rounded to bf16 (what the kernel reads), exact lse.
  r.o_in = twin::bf16_round(r.o_ref);
  twin::attention_bwd_ref<double>(r.q, r.k, r.v, r.o_in, r.dout, r.lse_ref, cu_q, cu_k, shape, {}, r.dq_ref, r.dk_ref,
                                  r.dv_ref);
  return r;
}

// Check names follow the kernels: attention_fwd / attention_bwd (attention.cu, FMA) and
// attention_mma_fwd / attention_mma_bwd (attention_mma.cu, tensor cores), then the case.
std::string attention_check_name(AttentionImpl impl, const char* dir, const AttnCase& c) {
  return std::string(impl == AttentionImpl::Mma ? "attention_mma_" : "attention_") + dir + "_" + c.name;
}

void attention_case(const AttnCase& c, const AttnRef& ref, AttentionImpl impl, std::vector<KernelCheck>& out) {
  const std::string tag = attention_check_name(impl, "fwd", c), tag_bwd = attention_check_name(impl, "bwd", c);
  if (impl == AttentionImpl::Mma && !attention_mma_supported(c.D)) {
    out.push_back({tag, true, "\"skipped\":\"tensor-core kernels need sm_80+\""});
    out.push_back({tag_bwd, true, "\"skipped\":\"tensor-core kernels need sm_80+\""});
    return;
  }
  const int nH = 8, nKV = 2, D = c.D;
  const std::vector<int32_t> cu_q = offsets(c.lq), cu_k = offsets(c.lk);
  const int64_t Tq = cu_q.back(), Tk = cu_k.back();
  twin::AttnShape shape{nH, nKV, D, float(1.0 / std::sqrt(double(D)))};
  const std::vector<float>&q = ref.q, &k = ref.k, &v = ref.v, &dout = ref.dout;
  const std::vector<float>&o_ref = ref.o_ref, &lse_ref = ref.lse_ref, &o_in = ref.o_in;
  const std::vector<float>&dq_ref = ref.dq_ref, &dk_ref = ref.dk_ref, &dv_ref = ref.dv_ref;
  const bool mma = impl == AttentionImpl::Mma;

  // Forward twin: fp32, the kernel's rounding, bf16 O.
  std::vector<float> o_twin, lse_twin;
  if (mma)
    twin::attention_mma_fwd_ref(q, k, v, cu_q, cu_k, shape, o_twin, lse_twin);
  else
    twin::attention_fwd_ref<float>(q, k, v, cu_q, cu_k, shape, {}, true, o_twin, lse_twin);

  const AttentionTiles tiles = make_attention_tiles(cu_q, cu_k);
  Dev<int32_t> dcu_q(cu_q), dcu_k(cu_k), dqt(tiles.q_tiles), dkt(tiles.k_tiles), dqt64(tiles.q_tiles64),
      dkt64(tiles.k_tiles64);
  Dev<bf16> dq_in = to_dev_bf16(q), dk_in = to_dev_bf16(k), dv_in = to_dev_bf16(v), ddout = to_dev_bf16(dout);
  Dev<bf16> dO(size_t(Tq) * nH * D);
  Dev<float> dlse(size_t(Tq) * nH);
  AttentionFwdParams fp{};
  fp.q = dq_in.get();
  fp.k = dk_in.get();
  fp.v = dv_in.get();
  fp.o = dO.get();
  fp.lse = dlse.get();
  fp.cu_q = dcu_q.get();
  fp.cu_k = dcu_k.get();
  fp.q_tiles = dqt.get();
  fp.num_q_tiles = int(tiles.q_tiles.size() / 2);
  fp.q_tiles64 = dqt64.get();
  fp.num_q_tiles64 = int(tiles.q_tiles64.size() / 2);
  fp.n_heads = nH;
  fp.n_kv_heads = nKV;
  fp.head_dim = D;
  fp.scale = shape.scale;
  fp.impl = impl;
  launch_attention_fwd(fp, nullptr);
  check(cudaDeviceSynchronize(), tag.c_str());
  const std::vector<float> o_gpu = from_dev_bf16(dO), lse_gpu = dlse.host();
  launch_attention_fwd(fp, nullptr);
  check(cudaDeviceSynchronize(), tag.c_str());
  const bool fwd_same = from_dev_bf16(dO) == o_gpu && dlse.host() == lse_gpu;

  // Backward from the same inputs as the reference's.
  std::vector<float> dq_twin, dk_twin, dv_twin;
  if (mma)
    twin::attention_mma_bwd_ref(q, k, v, o_in, dout, lse_ref, cu_q, cu_k, shape, dq_twin, dk_twin, dv_twin);
  else
    twin::attention_bwd_ref<float>(q, k, v, o_in, dout, lse_ref, cu_q, cu_k, shape, {}, dq_twin, dk_twin, dv_twin);
  Dev<bf16> do_in = to_dev_bf16(o_in);
  Dev<float> dlse_in(lse_ref), ddelta(size_t(Tq) * nH), ddq(size_t(Tq) * nH * D), ddk(size_t(Tk) * nKV * D),
      ddv(size_t(Tk) * nKV * D);
  AttentionBwdParams bp{};
  bp.q = dq_in.get();
  bp.k = dk_in.get();
  bp.v = dv_in.get();
  bp.o = do_in.get();
  bp.dout = ddout.get();
  bp.lse = dlse_in.get();
  bp.delta = ddelta.get();
  bp.dq = ddq.get();
  bp.dk = ddk.get();
  bp.dv = ddv.get();
  bp.cu_q = dcu_q.get();
  bp.cu_k = dcu_k.get();
  bp.q_tiles = dqt.get();
  bp.num_q_tiles = fp.num_q_tiles;
  bp.k_tiles = dkt.get();
  bp.num_k_tiles = int(tiles.k_tiles.size() / 2);
  bp.q_tiles64 = dqt64.get();
  bp.num_q_tiles64 = fp.num_q_tiles64;
  bp.k_tiles64 = dkt64.get();
  bp.num_k_tiles64 = int(tiles.k_tiles64.size() / 2);
  bp.Tq = Tq;
  bp.n_heads = nH;
  bp.n_kv_heads = nKV;
  bp.head_dim = D;
  bp.scale = shape.scale;
  bp.impl = impl;
  launch_attention_bwd(bp, nullptr);
  check(cudaDeviceSynchronize(), tag_bwd.c_str());
  const std::vector<float> dq_gpu = ddq.host(), dk_gpu = ddk.host(), dv_gpu = ddv.host();
  launch_attention_bwd(bp, nullptr);
  check(cudaDeviceSynchronize(), tag_bwd.c_str());
  const bool bwd_same = ddq.host() == dq_gpu && ddk.host() == dk_gpu && ddv.host() == dv_gpu;

  struct Part {
    const char* n;
    const std::vector<float>*gpu, *tw, *ref;
  };
  const std::string shape_detail = "\"tokens_q\":" + std::to_string(Tq) + ",\"tokens_k\":" + std::to_string(Tk) +
                                   ",\"head_dim\":" + std::to_string(D) + ",\"heads\":\"8:2\"";
  // One record per kernel: its outputs against the rule, and the repeat.
  auto record = [&](const std::string& name, std::initializer_list<Part> parts, bool same) {
    bool ok = same;
    std::string detail = shape_detail;
    for (const Part& pt : parts) {
      const double eg = rel_err(*pt.gpu, *pt.ref), et = rel_err(*pt.tw, *pt.ref);
      const bool good = eg <= 2 * et + 1e-6;
      ok = ok && good;
      detail += std::string(",\"") + pt.n + "\":{\"err\":" + num(eg) + ",\"twin_err\":" + num(et) +
                ",\"ok\":" + (good ? "true" : "false") + "}";
    }
    detail += std::string(",\"repeat_bit_identical\":") + (same ? "true" : "false");
    out.push_back({name, ok, detail});
  };
  record(tag, {{"o", &o_gpu, &o_twin, &o_ref}, {"lse", &lse_gpu, &lse_twin, &lse_ref}}, fwd_same);
  record(tag_bwd,
         {{"dq", &dq_gpu, &dq_twin, &dq_ref}, {"dk", &dk_gpu, &dk_twin, &dk_ref}, {"dv", &dv_gpu, &dv_twin, &dv_ref}},
         bwd_same);
}

// Elementwise outputs stored as bf16: equal to the twin up to one bf16 rounding step
// (the twin and the kernel may differ in the last fp32 bit before rounding).
bool within_bf16(const std::vector<float>& a, const std::vector<float>& b, double* worst) {
  *worst = 0;
  bool ok = a.size() == b.size();
  for (size_t i = 0; ok && i < a.size(); ++i) {
    const double d = std::fabs(double(a[i]) - b[i]), tol = std::ldexp(std::fabs(double(b[i])), -7) + 1e-30;
    *worst = std::max(*worst, d / tol);
    ok = ok && d <= tol;
  }
  return ok;
}

template <typename F>
void guarded(const std::string& name, std::vector<KernelCheck>& out, F&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    std::string msg = e.what();
    for (char& ch : msg)
      if (ch == '"' || ch == '\\' || static_cast<unsigned char>(ch) < 0x20) ch = ' ';
    out.push_back({name, false, "\"error\":\"" + msg + "\""});
  }
}

}  // namespace

std::vector<KernelCheck> run_kernel_checks() {
  std::vector<KernelCheck> out;
  int devices = 0;
  const cudaError_t st = cudaGetDeviceCount(&devices);
  if (st != cudaSuccess || devices <= 0) {
    (void)cudaGetLastError();
    out.push_back({"device", false, std::string("\"error\":\"no usable CUDA device: ") +
                                        (st != cudaSuccess ? cudaGetErrorName(st) : "0 devices") + "\""});
    return out;
  }
  const std::vector<int> packed = {301, 1, 17, 64, 65, 129, 297, 313, 255};
  const std::vector<AttnCase> cases = {
      {"d64_gqa4_packed", 64, packed, packed},
      {"d128_gqa4_packed", 128, packed, packed},
      {"d64_gqa4_decode", 64, {1, 3, 1}, {300, 77, 64}},
      {"d128_gqa4_decode", 128, {1, 3, 1}, {300, 77, 64}},
  };
  for (const AttnCase& c : cases) {
    const AttnRef ref = attention_ref(c);
    for (AttentionImpl impl : {AttentionImpl::Fma, AttentionImpl::Mma})
      guarded(attention_check_name(impl, "fwd", c), out, [&] { attention_case(c, ref, impl, out); });
  }

  guarded("cast_fwd", out, [&] {
    const std::vector<float> x = uniform(10007, -3.f, 3.f, 21, false);
    std::vector<float> ref;
    twin::cast_fwd_ref(x, ref);
    Dev<float> dx(x);
    Dev<bf16> dy(x.size());
    launch_cast_fwd({dx.get(), dy.get(), int64_t(x.size())}, nullptr);
    check(cudaDeviceSynchronize(), "cast_fwd");
    out.push_back({"cast_fwd", from_dev_bf16(dy) == ref, "\"n\":10007"});
  });
  guarded("fill_random_fwd", out, [&] {
    const int64_t n = 100003;
    std::vector<float> ref;
    twin::fill_random_fwd_ref(n, 7, ref);
    Dev<bf16> dy(n);
    launch_fill_random_fwd({dy.get(), n, 7u}, nullptr);
    check(cudaDeviceSynchronize(), "fill_random_fwd");
    out.push_back({"fill_random_fwd", from_dev_bf16(dy) == ref, "\"n\":100003"});
  });
  guarded("rmsnorm_fwd", out, [&] {
    const int64_t T = 37;
    const int C = 1000;
    const std::vector<float> x = uniform(size_t(T) * C, -2.f, 2.f, 31, false), w = uniform(C, 0.5f, 1.5f, 32, false);
    std::vector<float> y, rstd;
    twin::rmsnorm_fwd_ref(x, w, T, C, 1e-5f, y, rstd);
    Dev<float> dx(x), dw(w), dr(T);
    Dev<bf16> dy(size_t(T) * C);
    launch_rmsnorm_fwd({dx.get(), dw.get(), dy.get(), dr.get(), T, C, 1e-5f}, nullptr);
    check(cudaDeviceSynchronize(), "rmsnorm_fwd");
    double worst = 0;
    const bool ok = within_bf16(from_dev_bf16(dy), y, &worst) && rel_err(dr.host(), rstd) <= 1e-6;
    out.push_back({"rmsnorm_fwd", ok, "\"worst_in_bf16_steps\":" + num(worst)});
  });
  guarded("swiglu_fwd", out, [&] {
    const int64_t T = 13;
    const int I = 1001;
    const std::vector<float> gu = uniform(size_t(T) * 2 * I, -4.f, 4.f, 41, false), b = uniform(2 * I, -1.f, 1.f, 42, false);
    std::vector<float> ref;
    twin::swiglu_fwd_ref(gu, &b, T, I, ref);
    Dev<float> dgu(gu), db(b);
    Dev<bf16> da(size_t(T) * I);
    launch_swiglu_fwd({dgu.get(), db.get(), da.get(), T, I}, nullptr);
    check(cudaDeviceSynchronize(), "swiglu_fwd");
    double worst = 0;
    const bool ok = within_bf16(from_dev_bf16(da), ref, &worst);
    out.push_back({"swiglu_fwd", ok, "\"worst_in_bf16_steps\":" + num(worst)});
  });
  guarded("residual_fwd", out, [&] {
    const int64_t T = 9;
    const int C = 515;
    std::vector<float> a = uniform(size_t(T) * C, -1.f, 1.f, 51, false);
    const std::vector<float> h = uniform(size_t(T) * C, -1.f, 1.f, 52, false), b = uniform(C, -1.f, 1.f, 53, false);
    std::vector<float> ref;
    twin::residual_fwd_ref(a, &b, h, 0.75f, 1.25f, T, C, ref);
    Dev<float> da(a), dh(h), db(b), dout(size_t(T) * C);
    launch_residual_fwd({da.get(), db.get(), dh.get(), dout.get(), 0.75f, 1.25f, T, C}, nullptr);
    check(cudaDeviceSynchronize(), "residual_fwd");
    const double e = rel_err(dout.host(), ref);
    out.push_back({"residual_fwd", e <= 1e-6, "\"rel\":" + num(e)});
  });
  guarded("gather_rows_fwd", out, [&] {
    const int64_t T = 37;
    const int H = 300;
    const std::vector<float> src = uniform(size_t(T) * H, -3.f, 3.f, 56, false);
    const std::vector<int32_t> rows = {36, 0, 5, 6, 7, 20, 35};
    std::vector<float> ref;
    twin::gather_rows_fwd_ref(src, rows, H, ref);
    Dev<float> dsrc(src), ddst(rows.size() * H);
    Dev<int32_t> drows(rows);
    launch_gather_rows_fwd({dsrc.get(), drows.get(), ddst.get(), int64_t(rows.size()), H}, nullptr);
    check(cudaDeviceSynchronize(), "gather_rows_fwd");
    out.push_back({"gather_rows_fwd", ddst.host() == ref, "\"rows\":" + std::to_string(rows.size())});
  });
  guarded("scatter_rows_bwd", out, [&] {
    const int64_t T = 37;
    const int H = 300;
    const std::vector<int32_t> rows = {36, 0, 5, 6, 7, 20, 35};
    const std::vector<float> src = uniform(rows.size() * H, -3.f, 3.f, 57, false);
    std::vector<float> ref = uniform(size_t(T) * H, -1.f, 1.f, 58, false);  // rows not scattered to keep these
    Dev<float> dsrc(src), ddst(ref);
    twin::scatter_rows_bwd_ref(src, rows, H, ref);
    Dev<int32_t> drows(rows);
    launch_scatter_rows_bwd({dsrc.get(), drows.get(), ddst.get(), int64_t(rows.size()), H}, nullptr);
    check(cudaDeviceSynchronize(), "scatter_rows_bwd");
    out.push_back({"scatter_rows_bwd", ddst.host() == ref, "\"rows\":" + std::to_string(rows.size())});
  });
  guarded("embedding_fwd", out, [&] {
    const int V = 50, C = 64;
    const std::vector<float> table = uniform(size_t(V) * C, -1.f, 1.f, 61, true);
    const std::vector<int32_t> toks = {0, 49, 3, 3, 17, 25, 1, 48, 0, 30, 2};
    std::vector<float> ref;
    twin::embedding_fwd_ref(toks, table, C, 1.5f, ref);
    Dev<bf16> dt = to_dev_bf16(table);
    Dev<int32_t> dtok(toks);
    Dev<float> dout(toks.size() * C);
    launch_embedding_fwd({dtok.get(), dt.get(), dout.get(), int64_t(toks.size()), C, V, 1.5f}, nullptr);
    check(cudaDeviceSynchronize(), "embedding_fwd");
    out.push_back({"embedding_fwd", dout.host() == ref, ""});
  });
  guarded("argmax_fwd", out, [&] {
    const int64_t R = 3;
    const int V = 50000;
    std::vector<float> x = uniform(size_t(R) * V, -1.f, 1.f, 71, false);
    x[0 * V + 777] = 5.f;
    x[0 * V + 40000] = 5.f;  // a tie: the smaller index wins
    x[1 * V + V - 1] = 9.f;
    std::vector<int32_t> ref;
    twin::argmax_fwd_ref(x, R, V, ref);
    Dev<float> dx(x);
    Dev<int32_t> dout(R);
    launch_argmax_fwd({dx.get(), dout.get(), R, V}, nullptr);
    check(cudaDeviceSynchronize(), "argmax_fwd");
    out.push_back({"argmax_fwd", dout.host() == ref, ""});
  });
  guarded("cosine_fwd", out, [&] {
    const int64_t T = 5;
    const int C = 777;
    std::vector<float> a = uniform(size_t(T) * C, -1.f, 1.f, 81, false), b = uniform(size_t(T) * C, -1.f, 1.f, 82, false);
    for (int c = 0; c < C; ++c) a[2 * C + c] = 0.f;  // a zero row gives 0
    for (int c = 0; c < C; ++c) b[3 * C + c] = a[3 * C + c] * 2.f;
    std::vector<float> ref;
    twin::cosine_fwd_ref(a, b, T, C, ref);
    Dev<float> da(a), db(b), dout(T);
    launch_cosine_fwd({da.get(), db.get(), dout.get(), T, C}, nullptr);
    check(cudaDeviceSynchronize(), "cosine_fwd");
    const std::vector<float> got = dout.host();
    double worst = 0;
    for (int64_t t = 0; t < T; ++t) worst = std::max(worst, std::fabs(double(got[t]) - ref[t]));
    out.push_back({"cosine_fwd", worst <= 1e-5, "\"max_abs\":" + num(worst)});
  });
  guarded("rmsnorm_bwd", out, [&] {
    const int64_t T = 21;
    const int C = 777;
    const std::vector<float> x = uniform(size_t(T) * C, -2.f, 2.f, 91, false), w = uniform(C, 0.5f, 1.5f, 92, false),
                             dy = uniform(size_t(T) * C, -1.f, 1.f, 93, false),
                             dres = uniform(size_t(T) * C, -1.f, 1.f, 94, false);
    std::vector<float> y, rstd, ref;
    twin::rmsnorm_fwd_ref(x, w, T, C, 1e-5f, y, rstd);
    twin::rmsnorm_bwd_ref(dy, x, w, rstd, &dres, 0.5f, T, C, ref);
    Dev<float> ddy(dy), dx_in(x), dw(w), dr(rstd), ddres(dres), ddx(size_t(T) * C);
    launch_rmsnorm_bwd({ddy.get(), dx_in.get(), dw.get(), dr.get(), ddres.get(), 0.5f, ddx.get(), T, C}, nullptr);
    check(cudaDeviceSynchronize(), "rmsnorm_bwd");
    const double e = rel_err(ddx.host(), ref);
    out.push_back({"rmsnorm_bwd", e <= 1e-5, "\"rel\":" + num(e)});
  });
  guarded("swiglu_bwd", out, [&] {
    const int64_t T = 11;
    const int I = 999;
    const std::vector<float> gu = uniform(size_t(T) * 2 * I, -4.f, 4.f, 101, false),
                             da = uniform(size_t(T) * I, -1.f, 1.f, 102, false), b = uniform(2 * I, -1.f, 1.f, 103, false);
    std::vector<float> ref;
    twin::swiglu_bwd_ref(da, gu, &b, T, I, ref);
    Dev<float> dda(da), dgu(gu), db(b);
    Dev<bf16> dout(size_t(T) * 2 * I);
    launch_swiglu_bwd({dda.get(), dgu.get(), db.get(), dout.get(), T, I}, nullptr);
    check(cudaDeviceSynchronize(), "swiglu_bwd");
    double worst = 0;
    const bool ok = within_bf16(from_dev_bf16(dout), ref, &worst);
    out.push_back({"swiglu_bwd", ok, "\"worst_in_bf16_steps\":" + num(worst)});
  });
  guarded("residual_bwd", out, [&] {
    const int64_t T = 301;
    const int C = 515;
    const std::vector<float> g = uniform(size_t(T) * C, -1.f, 1.f, 111, false),
                             a = uniform(size_t(T) * C, -1.f, 1.f, 112, false),
                             h = uniform(size_t(T) * C, -1.f, 1.f, 113, false);
    std::vector<float> ga, gh;
    double gb = 0, gs = 0;
    twin::residual_bwd_ref(g, a, h, 0.75f, 1.25f, 0.5f, ga, gh, gb, gs);
    Dev<float> dg(g), da(a), dh(h), dgh(size_t(T) * C), dpart(size_t(residual_bwd_partials(T, C))), dgb(1), dgs(1);
    Dev<bf16> dga(size_t(T) * C);
    ResidualBwdParams p{};
    p.g = dg.get();
    p.a = da.get();
    p.h = dh.get();
    p.ga = dga.get();
    p.gh = dgh.get();
    p.partials = dpart.get();
    p.grad_b = dgb.get();
    p.grad_s = dgs.get();
    p.coef_a = 0.75f;
    p.coef_h = 1.25f;
    p.a_scale = 0.5f;
    p.T = T;
    p.C = C;
    launch_residual_bwd(p, nullptr);
    check(cudaDeviceSynchronize(), "residual_bwd");
    const float b_gpu = dgb.host()[0], s_gpu = dgs.host()[0];
    const double eb = std::fabs(b_gpu - gb) / std::max(1e-12, std::fabs(gb)),
                 es = std::fabs(s_gpu - gs) / std::max(1e-12, std::fabs(gs));
    const bool ok = from_dev_bf16(dga) == ga && dgh.host() == gh && eb <= 1e-5 && es <= 1e-5;
    out.push_back({"residual_bwd", ok, "\"grad_b_rel\":" + num(eb) + ",\"grad_s_rel\":" + num(es)});
  });
  for (const bool qk : {false, true}) {
    const std::string variant = qk ? "_qknorm_bias" : "";  // rope_fwd, rope_fwd_qknorm_bias, ...
    guarded("rope_fwd" + variant, out, [&] {
      twin::RopeShape rs{4, 2, 128, 1e-6f};
      const int nT = rs.n_heads + 2 * rs.n_kv_heads, D = rs.head_dim;
      std::vector<int32_t> pos;
      for (int i = 0; i < 37; ++i) pos.push_back(i * 7 % 301);
      const int64_t T = static_cast<int64_t>(pos.size());
      const std::vector<float> qkv = uniform(size_t(T) * nT * D, -2.f, 2.f, 121, false),
                               bias = uniform(size_t(nT) * D, -0.5f, 0.5f, 122, false),
                               qn = uniform(D, 0.5f, 1.5f, 123, false), kn = uniform(D, 0.5f, 1.5f, 124, false);
      std::vector<float> inv(D / 2);
      for (int i = 0; i < D / 2; ++i) inv[i] = float(std::pow(10000.0, -2.0 * i / D));
      const std::vector<float>* b = qk ? &bias : nullptr;
      const std::vector<float>* qnp = qk ? &qn : nullptr;
      const std::vector<float>* knp = qk ? &kn : nullptr;
      std::vector<float> q, k, v;
      twin::rope_fwd_ref(qkv, b, qnp, knp, pos, inv, rs, q, k, v);
      Dev<float> dqkv(qkv), dbias(bias), dqn(qn), dkn(kn), dinv(inv);
      Dev<int32_t> dpos(pos);
      Dev<bf16> dq(q.size()), dk(k.size()), dv(v.size());
      RopeFwdParams fp{};
      fp.qkv = dqkv.get();
      fp.bias = qk ? dbias.get() : nullptr;
      fp.q_norm = qk ? dqn.get() : nullptr;
      fp.k_norm = qk ? dkn.get() : nullptr;
      fp.pos = dpos.get();
      fp.inv_freq = dinv.get();
      fp.q = dq.get();
      fp.k = dk.get();
      fp.v = dv.get();
      fp.T = T;
      fp.n_heads = rs.n_heads;
      fp.n_kv_heads = rs.n_kv_heads;
      fp.head_dim = D;
      fp.eps = rs.eps;
      launch_rope_fwd(fp, nullptr);
      check(cudaDeviceSynchronize(), "rope_fwd");
      double w1 = 0, w2 = 0, w3 = 0;
      const bool fwd_ok = within_bf16(from_dev_bf16(dq), q, &w1) && within_bf16(from_dev_bf16(dk), k, &w2) &&
                          within_bf16(from_dev_bf16(dv), v, &w3);
      out.push_back({"rope_fwd" + variant, fwd_ok, "\"worst_in_bf16_steps\":" + num(std::max({w1, w2, w3}))});

      const std::vector<float> gq = uniform(q.size(), -1.f, 1.f, 125, false), gk = uniform(k.size(), -1.f, 1.f, 126, false),
                               gv = uniform(v.size(), -1.f, 1.f, 127, false);
      std::vector<float> ref;
      twin::rope_bwd_ref(gq, gk, gv, qkv, b, qnp, knp, pos, inv, rs, ref);
      Dev<float> dgq(gq), dgk(gk), dgv(gv);
      Dev<bf16> dout(ref.size());
      RopeBwdParams bp{};
      bp.dq = dgq.get();
      bp.dk = dgk.get();
      bp.dv = dgv.get();
      bp.qkv = dqkv.get();
      bp.bias = fp.bias;
      bp.q_norm = fp.q_norm;
      bp.k_norm = fp.k_norm;
      bp.pos = dpos.get();
      bp.inv_freq = dinv.get();
      bp.dqkv = dout.get();
      bp.T = T;
      bp.n_heads = rs.n_heads;
      bp.n_kv_heads = rs.n_kv_heads;
      bp.head_dim = D;
      bp.eps = rs.eps;
      launch_rope_bwd(bp, nullptr);
      check(cudaDeviceSynchronize(), "rope_bwd");
      double wb = 0;
      const bool bwd_ok = within_bf16(from_dev_bf16(dout), ref, &wb);
      out.push_back({"rope_bwd" + variant, bwd_ok, "\"worst_in_bf16_steps\":" + num(wb)});
    });
  }
  guarded("cross_entropy_fwd", out, [&] {
    const int64_t R = 5;
    const int V = 32003;
    const std::vector<float> z = uniform(size_t(R) * V, -8.f, 8.f, 131, false);
    const std::vector<int32_t> tg = {0, 17, 32002, 5, 12345};
    const std::vector<float> wts = {0.25f, 0.25f, 0.5f, 1.f, 0.125f};
    std::vector<float> nll, dz;
    twin::cross_entropy_fwd_ref(z, tg, wts, R, V, 0.5f, nll, dz);
    Dev<float> dlog(z), dw(wts), dnll(R);
    Dev<int32_t> dt(tg);
    launch_cross_entropy_fwd({dlog.get(), dt.get(), dw.get(), dnll.get(), R, V, 0.5f, true}, nullptr);
    check(cudaDeviceSynchronize(), "cross_entropy_fwd");
    // dlogits: bf16 over the first 2V bytes of each fp32 row (bf16 row stride 2V).
    std::vector<uint16_t> raw(size_t(R) * 2 * V);
    check(cudaMemcpy(raw.data(), dlog.get(), raw.size() * 2, cudaMemcpyDeviceToHost), "download dlogits");
    std::vector<float> got(size_t(R) * V);
    for (int64_t r = 0; r < R; ++r)
      for (int j = 0; j < V; ++j) got[size_t(r) * V + j] = bits_f32(raw[size_t(r) * 2 * V + j]);
    double worst = 0;
    const double en = rel_err(dnll.host(), nll);
    const bool ok = en <= 1e-5 && within_bf16(got, dz, &worst);
    out.push_back({"cross_entropy_fwd", ok, "\"nll_rel\":" + num(en) + ",\"worst_in_bf16_steps\":" + num(worst)});
  });
  return out;
}

}  // namespace hs::cuda
