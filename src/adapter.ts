/**
 * The `scales` adapter: a small safetensors file holding theta (four F32 vectors of
 * length numLayers: b_att, s_att, b_mlp, s_mlp) and the skip list (I32 `skip`), with
 * the base model's fingerprint, the tool version, the layer count and the selection /
 * rescale settings in its metadata. `loadAdapter` reads it back and refuses a file made
 * for another base model (HOPSCOTCH_ERR_FINGERPRINT).
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { ErrorCodes, HopscotchError, fromNative } from './errors.js';
import { binding, packageRoot, type SafetensorsTensorInfo, type WriteTensor } from './native/binding.js';
import type { Model, Theta } from './types.js';

/** File name of the adapter inside an export folder. */
export const ADAPTER_FILE = 'adapter.safetensors';

/** Value of the `format` metadata key that marks a hopscotch adapter. */
export const ADAPTER_FORMAT = 'hopscotch-scales';

/** Tensor names of the theta vectors, in the order of {@link Theta}'s keys. */
const THETA_TENSORS = [
  ['bAtt', 'b_att'],
  ['sAtt', 's_att'],
  ['bMlp', 'b_mlp'],
  ['sMlp', 's_mlp'],
] as const;

export interface AdapterMetadata {
  /** Fingerprint of the base model the adapter was fitted on. */
  fingerprint: string;
  /** Architecture of the base model, e.g. "LlamaForCausalLM". */
  arch: string;
  numLayers: number;
  /** hopscotch-native version that wrote the file. */
  toolVersion: string;
  /** Selection / rescale settings recorded at export time. */
  settings: Record<string, unknown>;
}

export interface Adapter {
  theta: Theta;
  skipped: number[];
  metadata: AdapterMetadata;
}

/** The package version (package.json), recorded in every export. */
export function toolVersion(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version?: string };
  return pkg.version ?? '0.0.0';
}

/** Reads the raw bytes of one (small) tensor of the adapter file (`offset` is from the file start). */
function readTensorBytes(path: string, info: SafetensorsTensorInfo): Buffer {
  const buf = Buffer.alloc(info.bytes);
  const fd = openSync(path, 'r');
  try {
    let done = 0;
    while (done < info.bytes) {
      const n = readSync(fd, buf, done, info.bytes - done, info.offset + done);
      if (n === 0) throw new HopscotchError(ErrorCodes.IO, `${path}: unexpected end of file reading tensor '${info.name}'`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return buf;
}

/** Writes the adapter file at `path` (the caller owns atomicity of the folder). Returns bytes written. */
export async function writeAdapterFile(
  path: string,
  model: Model,
  fit: { skipped: number[]; theta: Theta },
  settings: Record<string, unknown>,
): Promise<number> {
  const tensors: WriteTensor[] = THETA_TENSORS.map(([key, name]) => ({
    name,
    dtype: 'F32' as const,
    shape: [model.config.numLayers],
    data: Float32Array.from(fit.theta[key]),
  }));
  const skipped = [...fit.skipped].sort((a, b) => a - b);
  tensors.push({ name: 'skip', dtype: 'I32', shape: [skipped.length], data: Int32Array.from(skipped) });
  const metadata: Record<string, string> = {
    format: ADAPTER_FORMAT,
    fingerprint: model.fingerprint,
    arch: model.config.arch,
    num_layers: String(model.config.numLayers),
    tool: 'hopscotch-native',
    tool_version: toolVersion(),
    settings: JSON.stringify(settings),
  };
  try {
    return await binding().writeSafetensors(path, tensors, metadata, false);
  } catch (err) {
    throw fromNative(err);
  }
}

function bad(path: string, what: string): HopscotchError {
  return new HopscotchError(ErrorCodes.CHECKPOINT, `${path}: not a hopscotch adapter: ${what}`);
}

/** Reads an adapter file without checking it against a model. */
export function readAdapter(pathOrDir: string): Adapter {
  if (typeof pathOrDir !== 'string' || pathOrDir.length === 0)
    throw new HopscotchError(ErrorCodes.ARGUMENT, 'adapter path must be a non-empty string');
  const path = existsSync(pathOrDir) && statSync(pathOrDir).isDirectory() ? join(pathOrDir, ADAPTER_FILE) : pathOrDir;
  if (!existsSync(path)) throw new HopscotchError(ErrorCodes.IO, `adapter file not found: ${path}`);
  let header: ReturnType<ReturnType<typeof binding>['inspectSafetensors']>;
  try {
    header = binding().inspectSafetensors(path);
  } catch (err) {
    throw fromNative(err);
  }
  const meta = header.metadata;
  if (meta.format !== ADAPTER_FORMAT) throw bad(path, `metadata format is '${meta.format ?? ''}', expected '${ADAPTER_FORMAT}'`);
  const numLayers = Number(meta.num_layers);
  if (!Number.isInteger(numLayers) || numLayers <= 0) throw bad(path, `num_layers '${meta.num_layers}' is not a positive integer`);
  let settings: Record<string, unknown> = {};
  try {
    settings = meta.settings ? (JSON.parse(meta.settings) as Record<string, unknown>) : {};
  } catch {
    throw bad(path, 'settings metadata is not JSON');
  }
  const byName = new Map(header.tensors.map((t) => [t.name, t]));
  const theta = {} as Theta;
  for (const [key, name] of THETA_TENSORS) {
    const info = byName.get(name);
    if (!info) throw bad(path, `tensor '${name}' is missing`);
    if (info.dtype !== 'F32' || info.shape.length !== 1 || info.shape[0] !== numLayers)
      throw bad(path, `tensor '${name}' must be F32 of shape [${numLayers}], got ${info.dtype} [${info.shape.join(', ')}]`);
    const bytes = readTensorBytes(path, info);
    theta[key] = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  }
  const skipInfo = byName.get('skip');
  if (!skipInfo) throw bad(path, "tensor 'skip' is missing");
  if (skipInfo.dtype !== 'I32' || skipInfo.shape.length !== 1)
    throw bad(path, `tensor 'skip' must be a 1-d I32 tensor, got ${skipInfo.dtype} [${skipInfo.shape.join(', ')}]`);
  const skipBytes = readTensorBytes(path, skipInfo);
  const skipped = Array.from(new Int32Array(skipBytes.buffer.slice(skipBytes.byteOffset, skipBytes.byteOffset + skipBytes.byteLength)));
  for (const l of skipped)
    if (l < 0 || l >= numLayers) throw bad(path, `skip entry ${l} is outside [0, ${numLayers})`);
  return {
    theta,
    skipped,
    metadata: {
      fingerprint: meta.fingerprint ?? '',
      arch: meta.arch ?? '',
      numLayers,
      toolVersion: meta.tool_version ?? '',
      settings,
    },
  };
}

/**
 * Reads an adapter (a file, or an export folder holding `adapter.safetensors`) for `model`:
 * returns the theta and skip list to pass to `model.logits`, `loss`, `generate`. Throws
 * HOPSCOTCH_ERR_FINGERPRINT when the adapter was fitted on another base model.
 */
export function loadAdapter(model: Model, pathOrDir: string): Adapter {
  const adapter = readAdapter(pathOrDir);
  const m = adapter.metadata;
  if (m.fingerprint !== model.fingerprint)
    throw new HopscotchError(
      ErrorCodes.FINGERPRINT,
      `adapter ${pathOrDir} was fitted on another base model (fingerprint ${m.fingerprint}, ${m.arch}, ${m.numLayers} layers); ` +
        `this model is ${model.fingerprint} (${model.config.arch}, ${model.config.numLayers} layers)`,
    );
  if (m.numLayers !== model.config.numLayers)
    throw new HopscotchError(
      ErrorCodes.FINGERPRINT,
      `adapter ${pathOrDir} has ${m.numLayers} layers but the model has ${model.config.numLayers}`,
    );
  return adapter;
}
