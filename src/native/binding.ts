/**
 * The addon, typed once. Everything else in the library goes through these types.
 * Loaded with node-gyp-build: build/Release first, then prebuilds/<platform>-<arch>.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { fromNative } from '../errors.js';
import type { LayerStats, ModelConfig } from '../types.js';

export interface NativeTheta {
  bAtt: Float32Array;
  sAtt: Float32Array;
  bMlp: Float32Array;
  sMlp: Float32Array;
}

export interface NativeSample {
  prompt: number[];
  response: number[];
}

export interface NativeBatchOptions {
  skip?: number[];
  tokenMean?: boolean;
  recompute?: boolean;
  tokenCap?: number;
  maxMemory?: number;
}

export interface NativeLossResult {
  loss: number;
  responseTokens: number;
  sampleNll: Float64Array;
  peakBytes: number;
  grad?: NativeTheta;
}

export interface NativeModelInfo {
  config: ModelConfig;
  device: 'cpu' | 'cuda';
  fingerprint: string;
  dir: string;
  /** Bytes of the weights as held: mapped from the checkpoint, or copied. */
  weightBytes: number;
  /** Dtype the weight matrices are held in ('F32', 'BF16', 'F16' or 'mixed'). */
  weightDtype: string;
  precision: 'f32' | 'bf16';
}

export interface NativeModel {
  info(): NativeModelInfo;
  loss(samples: NativeSample[], theta: NativeTheta, opts: NativeBatchOptions, wantGrad: boolean): Promise<NativeLossResult>;
  logits(tokens: number[], theta: NativeTheta, skip: number[]): Promise<Float32Array>;
  generate(
    prompts: number[][],
    theta: NativeTheta,
    opts: { maxNewTokens?: number; skip?: number[]; stop?: number[]; includeStop?: boolean },
  ): Promise<number[][]>;
  layerStats(samples: NativeSample[], theta: NativeTheta, skip: number[], hiddenLayers: number[]): Promise<LayerStats>;
  dispose(): void;
}

export interface SafetensorsTensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  offset: number;
  bytes: number;
}

export interface WriteTensor {
  name: string;
  dtype: 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'U8';
  shape: number[];
  data: ArrayBufferView;
}

/** A tensor of a model folder: its header entry and the safetensors file that holds it. */
export interface CheckpointTensorInfo extends SafetensorsTensorInfo {
  file: string;
}

/**
 * One tensor of an `exportSafetensors` file: the checkpoint tensor `source` copied byte for
 * byte, or multiplied by `scale` (widened to fp32, multiplied in float64, rounded to fp32,
 * encoded in `dtype` round-to-nearest-even); zeros without a source.
 */
export interface FoldedTensor {
  name: string;
  /** The source's dtype. */
  dtype: WriteTensor['dtype'];
  shape: number[];
  source?: string;
  scale?: number;
}

/** Options of a power iteration: the start vector (normalized by the addon) and the stopping rule. */
export interface NativePowerIteration {
  start: Float64Array;
  tolerance: number;
  maxIterations: number;
}

/** One GGUF key/value as the addon reads and writes it. */
export interface GgufKeyValue {
  key: string;
  type: GgufValueType;
  /** Element type of an `array`. */
  elemType?: Exclude<GgufValueType, 'array'>;
  value: number | boolean | string | Array<number | boolean | string>;
}

/** GGUF value types, as `gguf.py` names them (u8 ... f64; `array` holds `elemType` elements). */
export type GgufValueType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'bool' | 'string' | 'array' | 'u64' | 'i64' | 'f64';

export type GgufTensorType = 'F32' | 'F16' | 'BF16' | 'Q8_0';

/** One output tensor of a GGUF export: read from `source` (or `values`), scaled, optionally row-permuted, encoded. */
export interface GgufExportTensor {
  name: string;
  /** Checkpoint tensor name; absent when `values` holds the data. */
  source?: string;
  values?: Float32Array;
  /** torch order (written reversed as GGUF ne). */
  shape: number[];
  scale?: number;
  /** Reorder rows into llama.cpp's interleaved RoPE order for this many heads. */
  permuteHeads?: number;
  type: GgufTensorType;
}

/** One entry of a GGUF tensor table. */
export interface GgufTensorInfo {
  name: string;
  /** ggml type name (F32, F16, Q8_0, BF16, Q4_K, ...). */
  type: string;
  /** Dimensions, ne[0] (contiguous) first. */
  ne: number[];
  offset: number;
  bytes: number;
}

/** A GGUF file's header, key/values (in file order) and tensor table, as `inspectGguf` returns them. */
export interface GgufInfo {
  version: number;
  alignment: number;
  dataOffset: number;
  fileSize: number;
  metadata: GgufKeyValue[];
  tensors: GgufTensorInfo[];
}

export interface CudaProbe {
  available: boolean;
  message: string;
  /** Why the backend library is unusable: HOPSCOTCH_ERR_CUDA_ABI when it was refused at the handshake. */
  code?: string;
  library: string;
  version?: string;
  tried: string[];
}

export interface Binding {
  Model: {
    load(
      dir: string,
      opts: { device: 'cpu' | 'cuda'; threads?: number; precision?: 'f32' | 'bf16' },
    ): Promise<NativeModel>;
  };
  inspectSafetensors(path: string): {
    tensors: SafetensorsTensorInfo[];
    metadata: Record<string, string>;
    headerSize: number;
    fileSize: number;
  };
  inspectModel(dir: string): { config: ModelConfig; tensors: number; files: number; fingerprint: string };
  /** Every tensor of a model folder: model.safetensors, or the shards of its (validated) index. */
  inspectCheckpoint(dir: string): CheckpointTensorInfo[];
  readTensor(path: string, name: string): Promise<Float32Array>;
  writeSafetensors(path: string, tensors: WriteTensor[], metadata: Record<string, string>, overwrite: boolean): Promise<number>;
  /** Writes `path` (which must not exist) from the checkpoint in `modelDir`, one tensor at a time; resolves to the bytes written. */
  exportSafetensors(
    modelDir: string,
    path: string,
    tensors: FoldedTensor[],
    metadata: Record<string, string>,
    abort?: Int32Array,
  ): Promise<number>;
  topSingularValue(
    values: Float32Array | Float64Array,
    rows: number,
    cols: number,
    opts: NativePowerIteration,
    abort?: Int32Array,
  ): Promise<{ sigma: number; iterations: number; converged: boolean }>;
  /** Power iteration on a 2-D F32/F16/BF16 tensor of a safetensors file. */
  tensorTopSingularValue(
    path: string,
    name: string,
    opts: NativePowerIteration,
    abort?: Int32Array,
  ): Promise<{ sigma: number; iterations: number; converged: boolean }>;
  mmd2(
    x: Float32Array | Float64Array,
    y: Float32Array | Float64Array,
    dim: number,
    bandwidth: number | undefined,
    abort?: Int32Array,
  ): Promise<{ mmd2: number; bandwidth: number }>;
  exportGguf(
    modelDir: string,
    out: string,
    metadata: GgufKeyValue[],
    tensors: GgufExportTensor[],
    overwrite: boolean,
  ): Promise<{ bytes: number; tensorBytes: number; parameters: number }>;
  inspectGguf(path: string): GgufInfo;
  readGgufTensor(path: string, name: string): Float32Array;
  cudaProbe(): CudaProbe;
  gemmKernel: string;
  napiVersion: number;
}

let cached: Binding | undefined;

/** The package root (where build/ and prebuilds/ live). */
export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Loads the addon once. */
export function binding(): Binding {
  if (!cached) {
    const require = createRequire(import.meta.url);
    const load = require('node-gyp-build') as (dir: string) => Binding;
    cached = load(packageRoot);
  }
  return cached;
}

/**
 * Runs a native call that polls an abort flag between units of work: the flag (an
 * Int32Array over a SharedArrayBuffer) is set when `signal` aborts, a call stopped that way
 * rejects with `signal.reason`, and other errors are re-typed as HopscotchError.
 */
export async function withAbortFlag<T>(signal: AbortSignal | undefined, call: (abort: Int32Array | undefined) => Promise<T>): Promise<T> {
  const flag = signal ? new Int32Array(new SharedArrayBuffer(4)) : undefined;
  const onAbort = () => Atomics.store(flag!, 0, 1);
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await call(flag);
  } catch (err) {
    if (signal?.aborted) throw signal.reason ?? fromNative(err);
    throw fromNative(err);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
