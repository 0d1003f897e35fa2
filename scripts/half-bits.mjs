/**
 * fp32 -> bfloat16 and IEEE half bits, round to nearest even (NaN kept quiet, subnormals
 * included), for the scripts and benchmarks that write checkpoints: the fixtures
 * (make-fixtures.mjs) and the benchmarks' random models (bench/random-llama.mjs). The
 * library's own conversion is native (native/core/half.h); test/reference/fold-js.ts keeps
 * an independent copy as the reference it is checked against.
 */
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float -> bfloat16 bits, round to nearest even. */
export function bf16Bits(v) {
  f32[0] = v;
  const x = u32[0];
  if ((x & 0x7f800000) === 0x7f800000) return (x >>> 16) | ((x & 0xffff) !== 0 ? 0x40 : 0);
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float -> IEEE half bits, round to nearest even (subnormals included). */
export function f16Bits(v) {
  f32[0] = v;
  const x = u32[0];
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
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++; // a carry rounds into the exponent
  return sign | h;
}
