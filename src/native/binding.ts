/**
 * The addon, typed once. Everything else in the library goes through these types.
 * Loaded with node-gyp-build: build/Release first, then prebuilds/<platform>-<arch>.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
  readTensor(path: string, name: string): Float32Array;
  writeSafetensors(path: string, tensors: WriteTensor[], metadata: Record<string, string>, overwrite: boolean): Promise<number>;
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
