// Streaming GGUF export with a read-back check (see gguf_export.h).
#include "gguf_export.h"

#include <cmath>
#include <cstring>
#include <memory>

#include "errors.h"
#include "safetensors.h"

namespace hs {

namespace {

bool same_value(const gguf::Value& a, const gguf::Value& b, gguf::ValueType t) {
  using VT = gguf::ValueType;
  switch (t) {
    case VT::U8: case VT::U16: case VT::U32: case VT::U64: case VT::BOOL: return a.u == b.u;
    case VT::I8: case VT::I16: case VT::I32: case VT::I64: return a.i == b.i;
    case VT::F32: return static_cast<float>(a.f) == static_cast<float>(b.f) || (std::isnan(a.f) && std::isnan(b.f));
    case VT::F64: return a.f == b.f || (std::isnan(a.f) && std::isnan(b.f));
    case VT::STRING: return a.s == b.s;
    case VT::ARRAY:
      if (a.elem != b.elem || a.items.size() != b.items.size()) return false;
      for (size_t i = 0; i < a.items.size(); ++i)
        if (!same_value(a.items[i], b.items[i], a.elem)) return false;
      return true;
  }
  return false;
}

// The read-back: the written file parses, and holds exactly the declared key/values,
// tensor table and tensor bytes.
void check_written(const std::string& path, const std::vector<gguf::KeyValue>& kvs,
                   const std::vector<gguf::Writer::Tensor>& table, const std::vector<uint64_t>& sums, uint64_t size) {
  auto f = gguf::File::open(path);
  auto bad = [&](const std::string& what) { fail(code::kInternal, path + ": read-back check failed: " + what); };
  if (f->size() != size) bad("file is " + std::to_string(f->size()) + " bytes, wrote " + std::to_string(size));
  if (f->metadata().size() != kvs.size()) bad("key/value count differs");
  for (size_t i = 0; i < kvs.size(); ++i) {
    const auto& got = f->metadata()[i];
    if (got.key != kvs[i].key || got.value.type != kvs[i].value.type || !same_value(got.value, kvs[i].value, got.value.type))
      bad("key '" + kvs[i].key + "' differs");
  }
  if (f->tensors().size() != table.size()) bad("tensor count differs");
  for (size_t i = 0; i < table.size(); ++i) {
    const auto& t = f->tensors()[i];
    if (t.name != table[i].name || t.ne != table[i].ne || t.type != static_cast<uint32_t>(table[i].type))
      bad("tensor '" + table[i].name + "' entry differs");
    if (gguf::fnv1a64(f->tensor_data(t), static_cast<size_t>(t.nbytes)) != sums[i]) bad("tensor '" + t.name + "' bytes differ");
  }
}

void check_encodable(const std::vector<float>& v, gguf::TensorType type, const std::string& name) {
  const float limit = type == gguf::TensorType::F16 ? 65504.0f : type == gguf::TensorType::Q8_0 ? 65504.0f * 127.0f : 3.0e38f;
  for (size_t i = 0; i < v.size(); ++i)
    if (!(std::fabs(v[i]) <= limit))
      fail(code::kExport, "tensor '" + name + "': value " + std::to_string(v[i]) + " at element " + std::to_string(i) +
                              (std::isfinite(v[i]) ? " overflows the output type" : " is not finite") +
                              " after folding theta; theta is too extreme for this tensor type");
}

}  // namespace

void permute_rope_rows(const float* in, float* out, int64_t rows, int64_t cols, int heads) {
  const int64_t hd = rows / heads;
  const int64_t half = hd / 2;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j)
        std::memcpy(out + (h * hd + 2 * i + j) * cols, in + (h * hd + j * half + i) * cols, static_cast<size_t>(cols) * 4);
}

GgufExportResult export_gguf(const std::string& model_dir, const std::vector<gguf::KeyValue>& kvs,
                             const std::vector<GgufExportTensor>& tensors, const std::string& out, bool overwrite) {
  std::unique_ptr<Checkpoint> ckpt = Checkpoint::open_dir(model_dir);
  // Check the whole plan before creating the file.
  std::vector<gguf::Writer::Tensor> table;
  std::string missing;
  for (const auto& t : tensors) {
    int64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d <= 0) fail(code::kArgument, "gguf tensor '" + t.name + "': shape " + shape_text(t.shape) + " is invalid");
      numel *= d;
    }
    if (t.source.empty()) {
      if (static_cast<int64_t>(t.values.size()) != numel)
        fail(code::kArgument, "gguf tensor '" + t.name + "': " + std::to_string(t.values.size()) + " values for shape " + shape_text(t.shape));
    } else {
      const TensorView* v = ckpt->find(t.source);
      if (!v) {
        missing += (missing.empty() ? "" : ", ") + t.source;
        continue;
      }
      if (v->shape != t.shape)
        fail(code::kShape, model_dir + ": tensor '" + t.source + "' has shape " + shape_text(v->shape) + ", the export expects " + shape_text(t.shape));
      if (v->dtype != DType::F32 && v->dtype != DType::F16 && v->dtype != DType::BF16)
        fail(code::kSafetensorsDtype, model_dir + ": tensor '" + t.source + "' has dtype " + dtype_name(v->dtype) + "; only F32, F16 and BF16 are exported");
    }
    if (t.permute_heads > 0) {
      const int64_t rows = t.shape[0];
      if (rows % t.permute_heads != 0 || (rows / t.permute_heads) % 2 != 0)
        fail(code::kArgument, "gguf tensor '" + t.name + "': " + std::to_string(rows) + " rows do not split into " +
                                  std::to_string(t.permute_heads) + " heads of even size");
    }
    gguf::Writer::Tensor w;
    w.name = t.name;
    w.ne.assign(t.shape.rbegin(), t.shape.rend());
    w.type = t.type;
    table.push_back(std::move(w));
  }
  if (!missing.empty()) fail(code::kMissingTensor, model_dir + ": missing tensors: " + missing);

  gguf::Writer writer(out, kvs, table, overwrite);
  GgufExportResult r;
  std::vector<float> values, permuted;
  std::vector<uint8_t> bytes;
  for (const auto& t : tensors) {
    if (t.source.empty()) {
      values = t.values;
    } else {
      const TensorView* v = ckpt->find(t.source);
      values.resize(static_cast<size_t>(v->numel()));
      convert_to_f32(*v, values.data());
    }
    if (t.scale != 1.0) {
      const float s = static_cast<float>(t.scale);
      for (float& x : values) x *= s;
    }
    if (t.permute_heads > 0) {
      const int64_t rows = t.shape[0];
      const int64_t cols = static_cast<int64_t>(values.size()) / rows;
      permuted.resize(values.size());
      permute_rope_rows(values.data(), permuted.data(), rows, cols, t.permute_heads);
      values.swap(permuted);
    }
    check_encodable(values, t.type, t.name);
    gguf::encode(values.data(), values.size(), t.type, &bytes);
    writer.write_tensor(bytes.data(), bytes.size());
    r.tensor_bytes += bytes.size();
    r.parameters += values.size();
  }
  r.bytes = writer.finish();
  check_written(writer.temp_path(), kvs, table, writer.checksums(), r.bytes);
  writer.publish();
  return r;
}

}  // namespace hs
