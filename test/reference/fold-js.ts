/**
 * The `hf` / `decilm` export's tensor fold as it was written in JavaScript before it moved
 * into the addon (native/core/safetensors_export.h), kept as the reference the native
 * output must equal byte for byte: each element widened to fp32, multiplied by the factor
 * in float64, stored as fp32 (one rounding), and encoded round-to-nearest-even.
 */

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** fp32 -> bfloat16 bits, round to nearest even (NaN stays NaN). */
export function bf16FromF32(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0]!;
  if ((x & 0x7f800000) === 0x7f800000) return (x >>> 16) | ((x & 0xffff) !== 0 ? 0x40 : 0);
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** fp32 -> IEEE half bits, round to nearest even, subnormals included. */
export function f16FromF32(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (h & 1) === 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++;
  return sign | h;
}

/**
 * fp32 `values` (the widened source tensor) times `factor`, encoded as `dtype` bytes;
 * null when a BF16/F16 value overflows (the export refuses it). A factor of 0 gives zeros.
 */
export function foldJs(values: Float32Array, factor: number, dtype: 'F32' | 'BF16' | 'F16'): Uint8Array | null {
  const v = Float32Array.from(values);
  if (factor === 0) v.fill(0);
  else for (let i = 0; i < v.length; i++) v[i] = v[i]! * factor;
  if (dtype === 'F32') return new Uint8Array(v.buffer);
  const out = new Uint16Array(v.length);
  const conv = dtype === 'BF16' ? bf16FromF32 : f16FromF32;
  for (let i = 0; i < v.length; i++) {
    const bits = conv(v[i]!);
    if ((bits & 0x7fff) >= (dtype === 'BF16' ? 0x7f80 : 0x7c00)) return null;
    out[i] = bits;
  }
  return new Uint8Array(out.buffer);
}
