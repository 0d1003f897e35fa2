// libFuzzer target for the safetensors reader (SafetensorsFile::from_memory).
//
// Any input either fails with one of the reader's documented codes, or opens to a
// set of tensors that tile the data buffer exactly: every view lies inside the
// input, byte sizes match shape x dtype, names resolve through find(), and small
// F32/F16/BF16 tensors convert to f32 exactly as an independent reference says.
// Other dtypes must be refused by convert_to_f32 with HOPSCOTCH_ERR_SAFETENSORS_DTYPE.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_common.h"
#include "safetensors.h"

namespace {

constexpr int64_t kMaxConvertElements = 1 << 16;

// IEEE binary16 -> float, written from the definition (not from the reader's code).
float half_reference(uint16_t h) {
  const int sign = (h >> 15) & 1;
  const int exp = (h >> 10) & 0x1F;
  const int mant = h & 0x3FF;
  float magnitude;
  if (exp == 0x1F) {
    magnitude = mant == 0 ? INFINITY : NAN;
  } else if (exp == 0) {
    magnitude = std::ldexp(static_cast<float>(mant), -24);
  } else {
    magnitude = std::ldexp(static_cast<float>(mant + 1024), exp - 25);
  }
  return sign ? -magnitude : magnitude;
}

bool same_float(float got, float want) {
  if (std::isnan(want)) return std::isnan(got) && std::signbit(got) == std::signbit(want);
  uint32_t a, b;
  std::memcpy(&a, &got, 4);
  std::memcpy(&b, &want, 4);
  return a == b;
}

void check_conversion(const hs::TensorView& t, int64_t numel) {
  const bool convertible = t.dtype == hs::DType::F32 || t.dtype == hs::DType::F16 || t.dtype == hs::DType::BF16;
  std::vector<float> out(static_cast<size_t>(numel) + 1);
  if (!convertible) {
    try {
      hs::convert_to_f32(t, out.data());
    } catch (const hs::Error& e) {
      hs::fuzz::expect_code(e, {hs::code::kSafetensorsDtype});
      return;
    }
    FUZZ_CHECK(!"convert_to_f32 accepted a dtype it cannot convert");
  }
  const float sentinel = 12345.0f;
  out[static_cast<size_t>(numel)] = sentinel;
  hs::convert_to_f32(t, out.data());
  FUZZ_CHECK(out[static_cast<size_t>(numel)] == sentinel);  // wrote exactly numel floats
  for (int64_t i = 0; i < numel; ++i) {
    float want;
    if (t.dtype == hs::DType::F32) {
      std::memcpy(&want, t.data + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, t.data + 2 * i, 2);
      if (t.dtype == hs::DType::F16) {
        want = half_reference(h);
      } else {
        const uint32_t bits = static_cast<uint32_t>(h) << 16;
        std::memcpy(&want, &bits, 4);
      }
    }
    FUZZ_CHECK(same_float(out[static_cast<size_t>(i)], want));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<hs::SafetensorsFile> file;
  try {
    file = hs::SafetensorsFile::from_memory(data, size, "fuzz.safetensors");
  } catch (const hs::Error& e) {
    hs::fuzz::expect_code(e, {hs::code::kSafetensorsHeader, hs::code::kSafetensorsLayout,
                              hs::code::kSafetensorsDtype});
    return 0;
  }

  FUZZ_CHECK(file->bytes() == data && file->size() == size);
  FUZZ_CHECK(file->header_size() <= size - 8);
  const uint8_t* buffer_begin = data + 8 + file->header_size();
  const uint8_t* buffer_end = data + size;

  size_t covered = 0;
  for (const hs::TensorView& t : file->tensors()) {
    FUZZ_CHECK(t.data >= buffer_begin && t.data <= buffer_end);
    FUZZ_CHECK(t.nbytes <= static_cast<size_t>(buffer_end - t.data));
    FUZZ_CHECK(file->find(t.name) == &t);
    for (int64_t d : t.shape) FUZZ_CHECK(d >= 0);
    const int64_t numel = t.numel();
    FUZZ_CHECK(numel >= 0);
    FUZZ_CHECK(static_cast<uint64_t>(numel) * hs::dtype_size(t.dtype) == t.nbytes);
    covered += t.nbytes;
    if (numel <= kMaxConvertElements) check_conversion(t, numel);
  }
  FUZZ_CHECK(covered == static_cast<size_t>(buffer_end - buffer_begin));
  FUZZ_CHECK(file->find("__metadata__") == nullptr);
  return 0;
}
