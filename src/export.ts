/**
 * `exportModel()`: writes a fitted model (skip list + theta) in one of three formats.
 *
 * - `scales`: the adapter (see adapter.ts), theta and skip list for this base model.
 * - `hf`: a standard checkpoint of the same architecture with theta folded into the
 *   weights. RMSNorm is scale invariant, so the residual stream of the folded model is
 *   z = h / c with a running factor c (the product of the residual scales so far):
 *     o_proj[l]    *= b_att[l] / (s_att[l] * c);  c *= s_att[l]   (skipped: o_proj[l] = 0)
 *     down_proj[l] *= b_mlp[l] / (s_mlp[l] * c);  c *= s_mlp[l]
 *   Biases of o_proj / down_proj scale with their weights. Granite's residual_multiplier
 *   multiplies these outputs and so commutes with the fold. The only inexact part is the
 *   norm eps, which a folded model sees at c^2 times its value relative to the original
 *   stream; the export measures that residual error.
 * - `decilm`: the same fold written as a DeciLMForCausalLM (nemotron-nas) checkpoint whose
 *   skipped layers have no attention weights at all (`no_op` attention in block_configs),
 *   the heterogeneous-layer format vLLM and llama.cpp load.
 * - `gguf`: the same fold as one GGUF file for llama.cpp / node-llama-cpp (gguf.ts): `llama`
 *   (or `qwen2` / `qwen3`) when nothing is skipped, `deci` with attention-free layers when
 *   something is. Written natively, one tensor at a time, and read back before the rename.
 *
 * The `hf` and `decilm` shards are written by the addon straight from the checkpoint's
 * files, one tensor at a time (native/core/safetensors_export.h): unchanged tensors are
 * copied byte for byte, o_proj / down_proj are multiplied by their factor and re-encoded in
 * their dtype; no tensor passes through JavaScript.
 *
 * Every write is atomic: files go into a temporary folder next to `out`, the folded
 * checkpoint is loaded back and its logits compared with the scaled original, and only
 * then is the folder renamed to `out`. On any error the temporary folder is removed.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

import { writeAdapterFile, ADAPTER_FILE } from './adapter.js';
import { throwIfAborted } from './progress.js';
import { ErrorCodes, HopscotchError, fromNative } from './errors.js';
import { GGUF_TENSOR_TYPES, ggufArchitecture, planGguf, type GgufArchitecture, type GgufTensorTypeName, type GgufTokenizerInfo } from './gguf.js';
import { checkSkip, checkTheta } from './layers.js';
import { load } from './model.js';
import { binding, withAbortFlag, type CheckpointTensorInfo, type FoldedTensor } from './native/binding.js';
import type { Model, Theta } from './types.js';

export type ExportFormat = 'scales' | 'hf' | 'decilm' | 'gguf';

export const EXPORT_FORMATS: readonly ExportFormat[] = ['scales', 'hf', 'decilm', 'gguf'];

export interface ExportFit {
  skipped: number[];
  theta: Theta;
  /** Fingerprint of the model the fit was made for; a different model is refused (HOPSCOTCH_ERR_FINGERPRINT). */
  fingerprint?: string;
}

/**
 * Checks an output folder before any work: HOPSCOTCH_ERR_EXISTS when `out` exists and
 * `force` is not set, or when it exists and is not a folder (`force` replaces folders
 * only; it never deletes a file).
 */
export function checkOutputFolder(out: string, force: boolean): void {
  const abs = resolve(out);
  let st: ReturnType<typeof statSync> | undefined;
  try {
    st = statSync(abs);
  } catch {
    return;
  }
  if (!st.isDirectory())
    throw new HopscotchError(ErrorCodes.EXISTS, `${abs} exists and is not a folder (force replaces an output folder, never a file)`);
  if (!force) throw new HopscotchError(ErrorCodes.EXISTS, `${abs} already exists (pass force to replace it)`);
}

/**
 * Checks the output path of an export in `format` before any work: a folder for
 * `scales`, `hf` and `decilm` ({@link checkOutputFolder}), one file for `gguf` (force
 * replaces a file, never a folder).
 */
export function checkOutput(out: string, force: boolean, format: ExportFormat): void {
  if (format !== 'gguf') return checkOutputFolder(out, force);
  const abs = resolve(out);
  if (existsSync(abs) && statSync(abs).isDirectory())
    throw new HopscotchError(ErrorCodes.EXISTS, `${abs} is a folder; a gguf export writes one file (force never replaces a folder with it)`);
  if (existsSync(abs) && !force) throw new HopscotchError(ErrorCodes.EXISTS, `${abs} already exists (pass force to replace it)`);
}

/**
 * What a format can express for this model once attention blocks are skipped, checked
 * without any compute (before a selection): throws HOPSCOTCH_ERR_EXPORT when a skipped
 * model cannot be written in `format` at all, and returns the layers whose attention the
 * format cannot skip (to exclude them from selection).
 */
export function exportConstraints(model: Model, format: ExportFormat): { exclude: number[] } {
  if (!EXPORT_FORMATS.includes(format))
    throw new HopscotchError(ErrorCodes.ARGUMENT, `format must be one of ${EXPORT_FORMATS.join(', ')}, got '${format}'`);
  if (format === 'gguf') {
    // The skipped model is written as llama.cpp's `deci` architecture.
    const probe = Array.from({ length: model.config.numLayers }, (_, l) => l).filter((l) => l !== 0 && !model.config.attentionAbsent.includes(l));
    if (probe.length > 0) ggufArchitecture(model, [probe[0]]);
    return { exclude: [0] };
  }
  if (format !== 'decilm') return { exclude: [] };
  const c = model.config;
  const where = `cannot export ${c.arch} at ${model.dir} as decilm`;
  if (c.arch === 'GraniteForCausalLM')
    throw exportError(`${where}: DeciLM has no embedding/residual/attention multipliers or logits scaling (Granite); use format hf`);
  if (c.qkNorm) throw exportError(`${where}: DeciLM attention has no q/k RMSNorm (Qwen3); use format hf`);
  if (c.headDim * c.numHeads !== c.hiddenSize)
    throw exportError(
      `${where}: head_dim ${c.headDim} x ${c.numHeads} heads != hidden_size ${c.hiddenSize}; llama.cpp's DECI reader derives the head size from hidden_size / heads`,
    );
  if (intermediateSizeToFfnMult(c.intermediateSize, c.hiddenSize) === null)
    throw exportError(
      `${where}: intermediate_size ${c.intermediateSize} cannot be expressed as a DeciLM ffn_mult ` +
        `(readers compute int(2 * ffn_mult * ${c.hiddenSize} / 3) rounded up to a multiple of 256, so only multiples of 256 are reachable)`,
    );
  // vLLM's nemotron_nas reader needs a residual from layer 0's attention.
  return { exclude: [0] };
}

export interface ExportOptions {
  /** Output folder (a `.gguf` file for format `gguf`); it must not exist unless `force`. */
  out: string;
  format: ExportFormat;
  /** Replace an existing `out` (atomically: the old folder stays until the new one is complete). */
  force?: boolean;
  /** Largest safetensors shard of `hf` / `decilm` output in bytes (default 5 GB). */
  maxShardBytes?: number;
  /**
   * Token sequences on which the written checkpoint is checked against the scaled model
   * (`hf`, `decilm`). Default: a fixed English text and a seeded random sequence.
   * An empty array skips the check.
   */
  checkTokens?: number[][];
  /** Type of the 2-D weights of a `gguf` export (1-D tensors are F32). Default: the checkpoint's dtype. */
  ggufType?: GgufTensorTypeName;
  /** `tokenizer.ggml.pre` for a byte-level BPE tokenizer whose pre-tokenizer regex the `gguf` export does not recognise. */
  tokenizerPre?: string;
  /** Selection / rescale settings recorded in the adapter metadata (`scales`). */
  settings?: Record<string, unknown>;
  /** Receives progress lines. */
  log?: (message: string) => void;
  /**
   * Cancels the export between tensors while they are written and between the later stages
   * (the load-back check, the final rename); the export rejects with `signal.reason`, the
   * temporary folder is removed and nothing appears at `out`.
   */
  signal?: AbortSignal;
}

export interface ExportResult {
  out: string;
  format: ExportFormat;
  /** Bytes of every file written. */
  bytes: number;
  /** File names written into `out`. */
  files: string[];
  /** Bytes of tensor data written (`hf`, `decilm`), and of the base model's tensors. */
  tensorBytes?: number;
  baseTensorBytes?: number;
  /** Max |logit(exported) - logit(scaled original)| over the check tokens. */
  maxAbsLogitDiff?: number;
  /** Max |logit| of the scaled original over the check tokens (the scale of the tolerance). */
  logitScale?: number;
  /** The allowed maxAbsLogitDiff: relative tolerance of the output dtype times logitScale. */
  tolerance?: number;
  /** Parameter count of the written checkpoint and of the base model (`hf`, `decilm`). */
  parameters?: number;
  baseParameters?: number;
  /** Range of the running residual factor c over the layers (the norm eps is seen at c^2 times its value). */
  residualFactor?: { min: number; max: number };
  /** What a `gguf` export wrote. */
  gguf?: {
    architecture: GgufArchitecture;
    tensorType: GgufTensorTypeName;
    /** 2-D weights written as F16 instead of Q8_0 (rows not a multiple of 32). */
    f16Fallback: string[];
    tokenizer: GgufTokenizerInfo;
    /** Layers written without attention (deci head_count 0). */
    attentionFree: number[];
  };
}

/** Default shard limit, as transformers' save_pretrained. */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

/**
 * Allowed max |logit difference| relative to the logit scale, per dtype of the written
 * weights (the reasoning is in docs/export.md).
 */
export const LOGIT_TOLERANCE: Readonly<Record<string, number>> = { F32: 1e-3, F16: 1e-2, BF16: 4e-2 };

/** Text encoded for the default held-out check. */
const CHECK_TEXT =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. ' +
  'One day, she saw a big red ball in the park and ran to get it.';

/** Tokenizer and generation files copied unchanged into `hf` and `decilm` exports. */
const COPIED_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'tokenizer.model',
  'chat_template.jinja',
  'generation_config.json',
];

/** Remote code that defines DeciLMConfig / DeciLMForCausalLM on the transformers side. */
const DECILM_AUTO_MAP = {
  AutoConfig: 'configuration_decilm.DeciLMConfig',
  AutoModelForCausalLM: 'modeling_decilm.DeciLMForCausalLM',
};

function exportError(message: string): HopscotchError {
  return new HopscotchError(ErrorCodes.EXPORT, message);
}

// ---------------------------------------------------------------------------------------
// Arguments

function checkFit(model: Model, fit: ExportFit, format: ExportFormat): number[] {
  const L = model.config.numLayers;
  if (!fit || typeof fit !== 'object') throw new HopscotchError(ErrorCodes.ARGUMENT, 'fit must be { skipped, theta }');
  if (fit.fingerprint !== undefined && fit.fingerprint !== model.fingerprint)
    throw new HopscotchError(
      ErrorCodes.FINGERPRINT,
      `the fit belongs to the model with fingerprint ${fit.fingerprint}, not to ${model.dir} (${model.fingerprint})`,
    );
  checkSkip(fit.skipped, L, 'fit.skipped');
  // A non-finite scale is a value no format can write: an export refusal.
  checkTheta(fit.theta, L, { name: 'fit.theta', nonFinite: ErrorCodes.EXPORT });
  const t = fit.theta;
  if (format !== 'scales') {
    for (const k of ['sAtt', 'sMlp'] as const)
      for (let i = 0; i < L; i++)
        if (!(t[k][i]! > 0))
          throw exportError(
            `cannot fold theta into the weights: theta.${k}[${i}] = ${t[k][i]} must be > 0 ` +
              '(RMSNorm scale invariance needs positive residual scales); export the adapter (format scales) instead',
          );
  }
  return [...fit.skipped].sort((a, b) => a - b);
}

// ---------------------------------------------------------------------------------------
// Source checkpoint

/** Every tensor of the model folder, from model.safetensors or the shards of its index (validated natively). */
function sourceTensors(dir: string): Map<string, CheckpointTensorInfo> {
  try {
    return new Map(binding().inspectCheckpoint(dir).map((t) => [t.name, t]));
  } catch (err) {
    throw fromNative(err);
  }
}

// ---------------------------------------------------------------------------------------
// Folding plan

interface PlannedTensor {
  name: string;
  dtype: string;
  shape: number[];
  bytes: number;
  /** Where the data comes from: raw copy, scaled copy, or zeros. */
  source: { kind: 'copy'; from: CheckpointTensorInfo } | { kind: 'scale'; from: CheckpointTensorInfo; factor: number } | { kind: 'zeros' };
}

interface FoldPlan {
  tensors: PlannedTensor[];
  removedParameters: number;
  removedBytes: number;
  addedParameters: number;
  addedBytes: number;
  residualFactor: { min: number; max: number };
}

/** Running residual factor and the per-layer output scales of the fold (docs/concepts.md, "Folding θ into the weights"). */
export function foldFactors(theta: Theta, skipped: number[]): { att: number[]; mlp: number[]; c: number[] } {
  const L = theta.bAtt.length;
  const skip = new Set(skipped);
  const att: number[] = [];
  const mlp: number[] = [];
  const cs: number[] = [];
  let c = 1;
  for (let l = 0; l < L; l++) {
    att.push(skip.has(l) ? 0 : theta.bAtt[l]! / (theta.sAtt[l]! * c));
    c *= theta.sAtt[l]!;
    mlp.push(theta.bMlp[l]! / (theta.sMlp[l]! * c));
    c *= theta.sMlp[l]!;
    cs.push(c);
  }
  return { att, mlp, c: cs };
}

function layerOf(name: string): number | null {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : null;
}

/** Sort key: embeddings, then layers in order, then the final norm and the head. */
function orderKey(name: string): [number, string] {
  const l = layerOf(name);
  if (l !== null) return [l + 1, name];
  if (name.startsWith('model.embed_tokens')) return [0, name];
  return [Number.MAX_SAFE_INTEGER, name];
}

function planFold(model: Model, src: Map<string, CheckpointTensorInfo>, fit: ExportFit, skipped: number[], dropSkippedAttention: boolean, addZeroOBias: boolean): FoldPlan {
  const L = model.config.numLayers;
  const f = foldFactors(fit.theta, skipped);
  const skip = new Set(skipped);
  const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);
  for (let l = 0; l < L; l++)
    for (const n of [`model.layers.${l}.self_attn.o_proj.weight`, `model.layers.${l}.mlp.down_proj.weight`])
      if (!src.has(n)) throw exportError(`cannot fold theta: tensor '${n}' is not in ${model.dir}`);
  for (let l = 0; l < L; l++)
    if (!Number.isFinite(f.att[l]!) || !Number.isFinite(f.mlp[l]!))
      throw exportError(`cannot fold theta: the output scale of layer ${l} is not finite (the residual factor under- or overflows)`);
  const plan: FoldPlan = {
    tensors: [],
    removedParameters: 0,
    removedBytes: 0,
    addedParameters: 0,
    addedBytes: 0,
    residualFactor: { min: Math.min(1, ...f.c), max: Math.max(1, ...f.c) },
  };
  for (const t of src.values()) {
    const l = layerOf(t.name);
    const base = { name: t.name, dtype: t.dtype, shape: t.shape, bytes: t.bytes };
    if (l !== null && skip.has(l) && dropSkippedAttention &&
        (t.name.startsWith(`model.layers.${l}.self_attn.`) || t.name === `model.layers.${l}.input_layernorm.weight`)) {
      plan.removedParameters += numel(t.shape);
      plan.removedBytes += t.bytes;
      continue;
    }
    if (l !== null && /\.self_attn\.o_proj\.(weight|bias)$/.test(t.name)) {
      plan.tensors.push({ ...base, source: { kind: 'scale', from: t, factor: f.att[l]! } });
    } else if (l !== null && /\.mlp\.down_proj\.(weight|bias)$/.test(t.name)) {
      plan.tensors.push({ ...base, source: { kind: 'scale', from: t, factor: f.mlp[l]! } });
    } else {
      plan.tensors.push({ ...base, source: { kind: 'copy', from: t } });
    }
  }
  if (addZeroOBias) {
    for (let l = 0; l < L; l++) {
      if (skip.has(l)) continue;
      const name = `model.layers.${l}.self_attn.o_proj.bias`;
      if (src.has(name)) continue;
      const w = src.get(`model.layers.${l}.self_attn.o_proj.weight`)!;
      const rows = w.shape[0]!;
      const bytes = (rows * w.bytes) / numel(w.shape);
      plan.tensors.push({ name, dtype: w.dtype, shape: [rows], bytes, source: { kind: 'zeros' } });
      plan.addedParameters += rows;
      plan.addedBytes += bytes;
    }
  }
  plan.tensors.sort((a, b) => {
    const [ka, na] = orderKey(a.name);
    const [kb, nb] = orderKey(b.name);
    return ka - kb || (na < nb ? -1 : na > nb ? 1 : 0);
  });
  return plan;
}

/** What the addon writes for a planned tensor: its source copied or scaled, or zeros. */
function foldedTensor(t: PlannedTensor): FoldedTensor {
  const base = { name: t.name, dtype: t.dtype as FoldedTensor['dtype'], shape: t.shape };
  const s = t.source;
  if (s.kind === 'zeros') return base;
  if (s.kind === 'copy') return { ...base, source: s.from.name };
  return { ...base, source: s.from.name, scale: s.factor };
}

/**
 * Writes the planned tensors as model.safetensors, or as shards plus an index when larger
 * than `maxShardBytes`. Each shard is written by the addon straight from the checkpoint,
 * one tensor at a time; `signal` is checked between tensors.
 */
async function writeShards(
  modelDir: string,
  dir: string,
  plan: PlannedTensor[],
  maxShardBytes: number,
  log?: (m: string) => void,
  signal?: AbortSignal,
): Promise<string[]> {
  const groups: PlannedTensor[][] = [];
  let current: PlannedTensor[] = [];
  let size = 0;
  for (const t of plan) {
    if (current.length > 0 && size + t.bytes > maxShardBytes) {
      groups.push(current);
      current = [];
      size = 0;
    }
    current.push(t);
    size += t.bytes;
  }
  if (current.length > 0) groups.push(current);
  const n = groups.length;
  const name = (i: number) =>
    n === 1 ? 'model.safetensors' : `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
  const files: string[] = [];
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let i = 0; i < n; i++) {
    const file = name(i);
    const tensors = groups[i]!.map(foldedTensor);
    await withAbortFlag(signal, (abort) => binding().exportSafetensors(modelDir, join(dir, file), tensors, { format: 'pt' }, abort));
    for (const t of groups[i]!) {
      weightMap[t.name] = file;
      total += t.bytes;
    }
    files.push(file);
    log?.(`export: wrote ${file} (${groups[i]!.length} tensors)`);
  }
  if (n > 1) {
    const sorted = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]));
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: sorted }, null, 2) + '\n');
    files.push('model.safetensors.index.json');
  }
  return files;
}

function copyTokenizerFiles(from: string, to: string): string[] {
  const copied: string[] = [];
  for (const f of COPIED_FILES) {
    if (existsSync(join(from, f))) {
      copyFileSync(join(from, f), join(to, f));
      copied.push(f);
    }
  }
  return copied;
}

// ---------------------------------------------------------------------------------------
// DeciLM (nemotron-nas) config

/** DeciLM's FFN size rule as vLLM and llama.cpp compute it: int(2 * ffn_mult * hidden / 3), rounded up to 256. */
export function ffnMultToIntermediateSize(ffnMult: number, hidden: number): number {
  const size = Math.trunc((2 * ffnMult * hidden) / 3);
  return size % 256 === 0 ? size : size + 256 - (size % 256);
}

/** An ffn_mult that the readers map back to `intermediate` exactly, or null if none exists. */
export function intermediateSizeToFfnMult(intermediate: number, hidden: number): number | null {
  if (intermediate <= 0 || intermediate % 256 !== 0) return null;
  const exact = (3 * intermediate) / (2 * hidden);
  // Prefer a short decimal that still lands exactly; fall back to the exact quotient.
  for (const digits of [0, 1, 2, 3, 4, 5, 6, 8, 10, 12]) {
    const m = Number(exact.toFixed(digits));
    if (m > 0 && ffnMultToIntermediateSize(m, hidden) === intermediate) return m;
  }
  return ffnMultToIntermediateSize(exact, hidden) === intermediate ? exact : null;
}

function decilmConfig(model: Model, skipped: number[], attentionBias: boolean, mlpBias: boolean): string {
  const c = model.config;
  const raw = JSON.parse(readFileSync(join(model.dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const where = `cannot export ${c.arch} at ${model.dir} as decilm`;
  exportConstraints(model, 'decilm');
  if (skipped.includes(0))
    throw exportError(
      `${where}: layer 0 is skipped; vLLM's nemotron_nas reader needs a residual from layer 0's attention ` +
        '(its first post_attention_layernorm call has no residual and fails), so a no_op attention in layer 0 cannot be served ' +
        '(select with exclude: [0] / --exclude 0)',
    );
  const ffnMult = intermediateSizeToFfnMult(c.intermediateSize, c.hiddenSize)!;
  const skip = new Set(skipped);
  const group = c.numHeads / c.numKvHeads;
  const out: Record<string, unknown> = { ...raw };
  out.architectures = ['DeciLMForCausalLM'];
  out.model_type = 'nemotron-nas';
  out.auto_map = DECILM_AUTO_MAP;
  out.hidden_size = c.hiddenSize;
  out.intermediate_size = c.intermediateSize;
  out.num_attention_heads = c.numHeads;
  out.num_key_value_heads = c.numKvHeads;
  out.head_dim = c.headDim;
  out.attention_bias = attentionBias;
  out.mlp_bias = mlpBias;
  delete out.qkv_bias;
  delete out.use_sliding_window;
  delete out.max_window_layers;
  delete out.sliding_window;
  out.block_configs = Array.from({ length: c.numLayers }, (_, l) => ({
    attention: skip.has(l)
      ? { no_op: true, n_heads_in_group: null, replace_with_linear: false }
      : { no_op: false, n_heads_in_group: group, replace_with_linear: false },
    ffn: { no_op: false, replace_with_linear: false, ffn_mult: ffnMult },
  }));
  // llama.cpp asserts ffn_mult is a Python float: keep a decimal point on whole numbers.
  return JSON.stringify(out, null, 2).replace(/("ffn_mult": )(-?\d+)(?=[,\n}])/g, '$1$2.0') + '\n';
}

// ---------------------------------------------------------------------------------------
// Check

/** mulberry32 over a fixed seed: the random part of the default check tokens. */
function seededIds(n: number, vocab: number, seed: number): number[] {
  let a = seed >>> 0;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out.push(Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * vocab));
  }
  return out;
}

export function defaultCheckTokens(model: Model): number[][] {
  const maxLen = Math.min(64, model.config.maxPositionEmbeddings);
  const seqs: number[][] = [];
  try {
    const text = model.tokenizer.encode(CHECK_TEXT).slice(0, maxLen);
    if (text.length > 0) seqs.push(text);
  } catch {
    // A tokenizer that cannot encode the text still leaves the random sequence.
  }
  seqs.push(seededIds(Math.min(32, maxLen), model.config.vocabSize, 0x5eed));
  return seqs;
}

async function checkLogits(
  model: Model,
  dir: string,
  fit: ExportFit,
  skipped: number[],
  tokens: number[][],
  dtype: string,
): Promise<{ maxAbsLogitDiff: number; logitScale: number; tolerance: number; parameters: number }> {
  const exported = await load(dir, { device: model.device });
  try {
    let maxDiff = 0;
    let scale = 0;
    for (const seq of tokens) {
      const ref = await model.logits(seq, { theta: fit.theta, skip: skipped });
      const got = await exported.logits(seq, { skip: skipped });
      if (ref.length !== got.length) throw exportError(`check: logits of ${dir} have ${got.length} entries, expected ${ref.length}`);
      for (let i = 0; i < ref.length; i++) {
        const d = Math.abs(ref[i]! - got[i]!);
        if (!(d <= maxDiff)) maxDiff = Number.isNaN(d) ? Infinity : d;
        scale = Math.max(scale, Math.abs(ref[i]!));
      }
    }
    const rel = LOGIT_TOLERANCE[model.device === 'cuda' ? 'BF16' : dtype] ?? LOGIT_TOLERANCE.BF16!;
    const tolerance = rel * Math.max(scale, 1);
    if (!(maxDiff <= tolerance))
      throw exportError(
        `check failed: the written checkpoint's logits differ from the scaled model by up to ${maxDiff} ` +
          `(allowed ${tolerance} = ${rel} x logit scale ${scale})`,
      );
    return { maxAbsLogitDiff: maxDiff, logitScale: scale, tolerance, parameters: exported.config.parameters };
  } finally {
    exported.dispose();
  }
}

// ---------------------------------------------------------------------------------------
// Atomic output folder

function folderBytes(dir: string, files: string[]): number {
  return files.reduce((a, f) => a + statSync(join(dir, f)).size, 0);
}

function ioError(message: string, err: unknown): HopscotchError {
  const e = err as NodeJS.ErrnoException;
  return new HopscotchError(ErrorCodes.IO, `${message}: ${e?.code ?? ''} ${e?.message ?? String(err)}`.trim(), { cause: err });
}

/** Makes a fresh temporary folder next to `out`; returns it and the first parent folder it had to create. */
function makeTemp(out: string): { tmp: string; createdParent: string | undefined } {
  let createdParent: string | undefined;
  try {
    createdParent = mkdirSync(dirname(out), { recursive: true });
  } catch (err) {
    throw ioError(`cannot create the parent folder of ${out}`, err);
  }
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`);
  try {
    mkdirSync(tmp);
  } catch (err) {
    if (createdParent) rmSync(createdParent, { recursive: true, force: true });
    throw ioError(`cannot write into ${dirname(out)}`, err);
  }
  return { tmp, createdParent };
}

/** Moves the finished temporary folder to `out`, replacing an existing one only when `force`. */
function commit(tmp: string, out: string, force: boolean): void {
  if (!existsSync(out)) {
    renameSync(tmp, out);
    return;
  }
  checkOutputFolder(out, force);
  const old = `${tmp}.old`;
  renameSync(out, old);
  try {
    renameSync(tmp, out);
  } catch (err) {
    renameSync(old, out);
    throw err;
  }
  rmSync(old, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------

/**
 * Writes `fit` (skip list + theta) for `model` to `opts.out` in `opts.format`.
 * `hf` and `decilm` outputs are checked by loading them back and comparing logits with
 * the scaled model before the folder appears at `out`.
 */
export async function exportModel(model: Model, fit: ExportFit, opts: ExportOptions): Promise<ExportResult> {
  if (!opts || typeof opts.out !== 'string' || opts.out.length === 0)
    throw new HopscotchError(ErrorCodes.ARGUMENT, 'opts.out must be a folder path');
  if (!EXPORT_FORMATS.includes(opts.format))
    throw new HopscotchError(ErrorCodes.ARGUMENT, `format must be one of ${EXPORT_FORMATS.join(', ')}, got '${opts.format}'`);
  const maxShardBytes = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!(Number.isFinite(maxShardBytes) && maxShardBytes > 0))
    throw new HopscotchError(ErrorCodes.ARGUMENT, `maxShardBytes must be a positive number, got ${opts.maxShardBytes}`);
  if (opts.checkTokens !== undefined && !Array.isArray(opts.checkTokens))
    throw new HopscotchError(ErrorCodes.ARGUMENT, 'checkTokens must be an array of token id arrays');
  const skipped = checkFit(model, fit, opts.format);
  const out = resolve(opts.out);
  const force = opts.force ?? false;
  if (opts.format === 'gguf') {
    if (opts.ggufType !== undefined && !GGUF_TENSOR_TYPES.includes(opts.ggufType))
      throw new HopscotchError(ErrorCodes.ARGUMENT, `ggufType must be one of ${GGUF_TENSOR_TYPES.join(', ')}, got '${opts.ggufType}'`);
    if (opts.tokenizerPre !== undefined && (typeof opts.tokenizerPre !== 'string' || opts.tokenizerPre.length === 0))
      throw new HopscotchError(ErrorCodes.ARGUMENT, 'tokenizerPre must be a non-empty string');
    ggufArchitecture(model, skipped);
    checkOutput(out, force, 'gguf');
    return exportGguf(model, fit, skipped, out, force, opts);
  }
  checkOutputFolder(out, force);

  const src = opts.format === 'scales' ? null : sourceTensors(model.dir);
  let plan: FoldPlan | null = null;
  let configText: string | null = null;
  if (src) {
    const hasO = (n: string) => [...src.keys()].some((k) => k.endsWith(n));
    const qkvBias = hasO('.self_attn.q_proj.bias');
    const oBias = hasO('.self_attn.o_proj.bias');
    const mlpBias = hasO('.mlp.down_proj.bias');
    if (opts.format === 'decilm') {
      // DeciLM readers use one attention_bias flag for q/k/v/o; a q/k/v-only bias (Qwen2)
      // is written with a zero o_proj bias, which is exact.
      configText = decilmConfig(model, skipped, qkvBias || oBias, mlpBias);
      plan = planFold(model, src, fit, skipped, true, qkvBias && !oBias);
    } else {
      configText = readFileSync(join(model.dir, 'config.json'), 'utf8');
      plan = planFold(model, src, fit, skipped, false, false);
    }
  }

  throwIfAborted(opts.signal);
  const { tmp, createdParent } = makeTemp(out);
  try {
    const files: string[] = [];
    const result: ExportResult = { out, format: opts.format, bytes: 0, files };
    if (opts.format === 'scales') {
      await writeAdapterFile(join(tmp, ADAPTER_FILE), model, { skipped, theta: fit.theta }, opts.settings ?? {});
      files.push(ADAPTER_FILE);
    } else {
      const p = plan!;
      files.push(...(await writeShards(model.dir, tmp, p.tensors, maxShardBytes, opts.log, opts.signal)));
      writeFileSync(join(tmp, 'config.json'), configText!);
      files.push('config.json', ...copyTokenizerFiles(model.dir, tmp));
      result.tensorBytes = p.tensors.reduce((a, t) => a + t.bytes, 0);
      result.baseTensorBytes = [...src!.values()].reduce((a, t) => a + t.bytes, 0);
      result.baseParameters = model.config.parameters;
      result.parameters = model.config.parameters - p.removedParameters + p.addedParameters;
      result.residualFactor = p.residualFactor;
      const tokens = opts.checkTokens ?? defaultCheckTokens(model);
      throwIfAborted(opts.signal);
      if (tokens.length > 0) {
        opts.log?.(`export: checking ${tmp} against the scaled model on ${tokens.length} sequences`);
        const dtype = [...src!.values()].find((t) => t.name.endsWith('.mlp.down_proj.weight'))?.dtype ?? 'F32';
        const check = await checkLogits(model, tmp, fit, skipped, tokens, dtype);
        if (check.parameters !== result.parameters)
          throw exportError(`check failed: ${tmp} loads with ${check.parameters} parameters, expected ${result.parameters}`);
        result.maxAbsLogitDiff = check.maxAbsLogitDiff;
        result.logitScale = check.logitScale;
        result.tolerance = check.tolerance;
      }
    }
    result.bytes = folderBytes(tmp, files);
    throwIfAborted(opts.signal);
    try {
      commit(tmp, out, force);
    } catch (err) {
      if (err instanceof HopscotchError) throw err;
      throw ioError(`cannot move the export into ${out}`, err);
    }
    opts.log?.(`export: wrote ${out} (${opts.format}, ${result.bytes} bytes)`);
    return result;
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    if (createdParent) rmSync(createdParent, { recursive: true, force: true });
    if (err instanceof HopscotchError || opts.signal?.aborted) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e && typeof e.code === 'string' && e.code.startsWith('E')) throw ioError(`export to ${out} failed`, err);
    throw fromNative(err);
  }
}

// ---------------------------------------------------------------------------------------
// GGUF

async function exportGguf(model: Model, fit: ExportFit, skipped: number[], out: string, force: boolean, opts: ExportOptions): Promise<ExportResult> {
  const src = sourceTensors(model.dir);
  const f = foldFactors(fit.theta, skipped);
  for (let l = 0; l < model.config.numLayers; l++)
    if (!Number.isFinite(f.att[l]!) || !Number.isFinite(f.mlp[l]!))
      throw exportError(`cannot fold theta: the output scale of layer ${l} is not finite (the residual factor under- or overflows)`);
  const plan = planGguf(model, skipped, f, src, { tensorType: opts.ggufType, tokenizerPre: opts.tokenizerPre });
  throwIfAborted(opts.signal);
  let createdParent: string | undefined;
  try {
    createdParent = mkdirSync(dirname(out), { recursive: true });
  } catch (err) {
    throw ioError(`cannot create the parent folder of ${out}`, err);
  }
  opts.log?.(`export: writing ${out} (gguf ${plan.architecture}, ${plan.tensors.length} tensors, ${plan.tensorType})`);
  let written: { bytes: number; tensorBytes: number; parameters: number };
  try {
    written = await binding().exportGguf(model.dir, out, plan.metadata, plan.tensors, force);
  } catch (err) {
    if (createdParent) rmSync(createdParent, { recursive: true, force: true });
    throw fromNative(err);
  }
  opts.log?.(`export: wrote ${out} (gguf, ${written.bytes} bytes)`);
  return {
    out,
    format: 'gguf',
    bytes: written.bytes,
    files: [basename(out)],
    tensorBytes: written.tensorBytes,
    baseTensorBytes: [...src.values()].reduce((a, t) => a + t.bytes, 0),
    parameters: written.parameters - plan.tensors.filter((t) => t.source === undefined).reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0),
    baseParameters: model.config.parameters,
    residualFactor: { min: Math.min(1, ...f.c), max: Math.max(1, ...f.c) },
    gguf: {
      architecture: plan.architecture,
      tensorType: plan.tensorType,
      f16Fallback: plan.f16Fallback,
      tokenizer: plan.tokenizer,
      attentionFree: plan.architecture === 'deci' ? skipped : [],
    },
  };
}
