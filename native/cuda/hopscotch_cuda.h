// The C entry points of libhopscotch_cuda.so, the only symbols it exports. The Node
// addon (and hopscotch_cuda_selftest) dlopen the library and look these up by name.
//
// Handshake: the entry points pass C++ objects (hs::Engine and its virtual methods,
// hs::LoadedModel, hs::ModelConfig), so the addon and the library must agree on their
// layout. The loader calls hopscotch_cuda_abi() before anything else and refuses a
// library whose value differs from its own HOPSCOTCH_CUDA_ABI (HOPSCOTCH_ERR_CUDA_ABI,
// naming both ABI numbers and the library's version string).
//
// Errors: hopscotch_cuda_create returns null and writes "<CODE>: <message>" into `err`,
// where CODE is one of the HOPSCOTCH_ERR_* strings of native/core/errors.h.
#pragma once
#include <cstddef>

#include <cstdint>

namespace hs {
class Engine;
struct LoadedModel;
struct ModelConfig;
}  // namespace hs

// Bump with every change to engine.h, weights.h or config.h that changes a layout or a
// virtual method of the types above, and with every change to these signatures.
#define HOPSCOTCH_CUDA_ABI 2

extern "C" {

// The HOPSCOTCH_CUDA_ABI the library was built with. Never changes its signature.
uint32_t hopscotch_cuda_abi();
typedef uint32_t (*hopscotch_cuda_abi_fn)();

// Library version string, e.g. "0.1.0 (cuda 13.0)".
const char* hopscotch_cuda_version();
typedef const char* (*hopscotch_cuda_version_fn)();

// Writes a one-line JSON description into msg: device count, name and compute
// capability of device 0, and where cuBLASLt was found (or every path tried).
// Returns the number of usable devices (0 when none), or -1 when the CUDA runtime
// cannot be initialised (driver missing or too old).
int hopscotch_cuda_probe(char* msg, size_t n);
typedef int (*hopscotch_cuda_probe_fn)(char*, size_t);

// Builds a CUDA engine over an already loaded model (fp32 host weights, converted to
// bf16 on the device). The caller owns the result (delete through hs::Engine's virtual
// destructor); `model` must outlive nothing: the engine keeps no pointer into it.
hs::Engine* hopscotch_cuda_create(const hs::LoadedModel* model, char* err, size_t n);
typedef hs::Engine* (*hopscotch_cuda_create_fn)(const hs::LoadedModel*, char*, size_t);

// Builds the synthetic benchmark model of `cfg` (no weights files): every bf16 matrix
// points into one random device buffer, norms are 1, biases 0 (random_weights.h says
// how PyTorch rebuilds the same model). Errors as hopscotch_cuda_create.
hs::Engine* hopscotch_cuda_create_random(const hs::ModelConfig* cfg, uint32_t seed, char* err, size_t n);
typedef hs::Engine* (*hopscotch_cuda_create_random_fn)(const hs::ModelConfig*, uint32_t, char*, size_t);

}  // extern "C"
