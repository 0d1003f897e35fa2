/**
 * A minimal safetensors reader for the tests, independent of the native loader: parses the
 * header and decodes F32, BF16 and F16 tensors to Float64Array. Reads a single
 * `model.safetensors` or the shards listed by `model.safetensors.index.json`.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export interface RefTensor {
  dtype: 'F32' | 'BF16' | 'F16';
  shape: number[];
  data: Float64Array;
}

const BYTES = { F32: 4, BF16: 2, F16: 2 } as const;

/** IEEE half bits -> number. */
export function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** bfloat16 bits -> number (the upper half of a float32). */
export function bf16ToNumber(bits: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, bits << 16, false);
  return view.getFloat32(0, false);
}

/** Parses one safetensors file into decoded tensors. */
export function readSafetensors(file: string): Map<string, RefTensor> {
  const buf = readFileSync(file);
  if (buf.length < 8) throw new Error(`${file}: shorter than the 8-byte header length`);
  const headerLen = Number(buf.readBigUInt64LE(0));
  if (8 + headerLen > buf.length) throw new Error(`${file}: header length ${headerLen} runs past the end of the file`);
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, unknown>;
  const base = 8 + headerLen;
  const out = new Map<string, RefTensor>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets } = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (dtype !== 'F32' && dtype !== 'BF16' && dtype !== 'F16') throw new Error(`${file}: ${name} has unsupported dtype ${dtype}`);
    const count = shape.reduce((a, b) => a * b, 1);
    const [begin, end] = data_offsets;
    if (end - begin !== count * BYTES[dtype]) throw new Error(`${file}: ${name} byte range does not match shape ${JSON.stringify(shape)}`);
    if (base + end > buf.length) throw new Error(`${file}: ${name} data runs past the end of the file`);
    const data = new Float64Array(count);
    const at = base + begin;
    for (let i = 0; i < count; i++) {
      if (dtype === 'F32') data[i] = buf.readFloatLE(at + 4 * i);
      else if (dtype === 'BF16') data[i] = bf16ToNumber(buf.readUInt16LE(at + 2 * i));
      else data[i] = halfToNumber(buf.readUInt16LE(at + 2 * i));
    }
    out.set(name, { dtype, shape: [...shape], data });
  }
  return out;
}

/** All tensors of a model folder: `model.safetensors`, or the shards of its index. */
export function readModelTensors(dir: string): Map<string, RefTensor> {
  const single = path.join(dir, 'model.safetensors');
  if (existsSync(single)) return readSafetensors(single);
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  const index = JSON.parse(readFileSync(indexFile, 'utf8')) as { weight_map: Record<string, string> };
  const out = new Map<string, RefTensor>();
  for (const shard of [...new Set(Object.values(index.weight_map))].sort()) {
    for (const [name, t] of readSafetensors(path.join(dir, shard))) {
      if (index.weight_map[name] !== shard) throw new Error(`${shard}: ${name} is not mapped to this shard in the index`);
      out.set(name, t);
    }
  }
  for (const name of Object.keys(index.weight_map))
    if (!out.has(name)) throw new Error(`${indexFile}: ${name} is missing from ${index.weight_map[name]}`);
  return out;
}
