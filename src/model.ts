/**
 * `load()`: opens a checkpoint folder and returns a {@link Model} backed by the CPU or
 * CUDA engine. Arguments are checked here first so that mistakes fail fast with a
 * typed error; the engine repeats the checks that guard memory safety.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';

import { ErrorCodes, HopscotchError, fromNative } from './errors.js';
import { binding, type NativeModel, type NativeTheta } from './native/binding.js';
import { checkHiddenLayers, checkSkip, checkTheta } from './layers.js';
import * as thetaLib from './theta.js';
import { checkContext, checkSamples, checkTokenIds as checkIds } from './samples.js';
import { loadTokenizer } from './tokenizer.js';
import type {
  BatchOptions,
  Device,
  GenerateOptions,
  LayerStats,
  LossAndGradResult,
  LossResult,
  Model,
  ModelConfig,
  Precision,
  Sample,
  Theta,
  Tokenizer,
} from './types.js';

export interface LoadOptions {
  /** 'auto' (default) picks CUDA when a GPU and cuBLAS are usable, else the CPU (and says why). */
  device?: Device | 'auto';
  /** CPU threads; default: all cores. */
  threads?: number;
  /**
   * CPU engine arithmetic. 'f32' (default): fp32 GEMMs; bf16/f16 weights stay in their own
   * dtype and are widened exactly, so results equal those of an fp32 copy. 'bf16': the
   * weight GEMMs multiply bf16 weights (F32/F16 checkpoints are rounded to bf16 copies at
   * load) by activations rounded to bf16, summing in fp32; attention, norms, the loss and the
   * theta reductions stay fp32. Deterministic like 'f32', but not equal to it. Ignored by
   * the CUDA engine, which computes in bf16.
   */
  precision?: Precision;
  /** Receives one line saying which device was chosen and why. */
  log?: (message: string) => void;
}

/**
 * One line from the CUDA probe's message: the backend reports a JSON object (device
 * count, error, every cuBLASLt path tried); the error alone says why there is no GPU.
 */
function probeSummary(message: string): string {
  try {
    const j = JSON.parse(message) as { error?: unknown; devices?: unknown };
    if (typeof j.error === 'string' && j.error) return j.error;
    if (j.devices === 0) return 'no CUDA device found';
  } catch {
    // not JSON: the loader's own message (e.g. the backend library was not built)
  }
  return message;
}

/** Which device `device: 'auto'` would pick, and why. */
export function resolveDevice(requested: Device | 'auto' = 'auto'): { device: Device; reason: string } {
  if (requested === 'cpu') return { device: 'cpu', reason: 'requested' };
  const probe = binding().cudaProbe();
  if (requested === 'cuda') {
    if (!probe.available) {
      const code = probe.code === ErrorCodes.CUDA_ABI ? ErrorCodes.CUDA_ABI : ErrorCodes.CUDA;
      throw new HopscotchError(code, `device 'cuda' is not usable: ${probe.message}`);
    }
    return { device: 'cuda', reason: probe.message };
  }
  return probe.available
    ? { device: 'cuda', reason: probe.message }
    : { device: 'cpu', reason: `no usable CUDA device (${probeSummary(probe.message)})` };
}

class LoadedModel implements Model {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly device: Device;
  readonly precision: Precision;
  readonly fingerprint: string;
  readonly tokenizer: Tokenizer;
  #native: NativeModel | null;

  constructor(native: NativeModel, tokenizer: Tokenizer) {
    const info = native.info();
    this.#native = native;
    this.dir = info.dir;
    this.config = Object.freeze(info.config);
    this.device = info.device;
    this.precision = info.device === 'cuda' ? 'bf16' : info.precision;
    this.fingerprint = info.fingerprint;
    this.tokenizer = tokenizer;
  }

  get #engine(): NativeModel {
    if (!this.#native) throw new HopscotchError(ErrorCodes.DISPOSED, 'the model was disposed');
    return this.#native;
  }

  #checkSamples(samples: Sample[], requireResponse: boolean): void {
    checkSamples(samples, this.config.vocabSize, { requireResponse, context: this.config.maxPositionEmbeddings });
  }

  #maxMemory(opts: BatchOptions): void {
    const m = opts.maxMemory;
    if (m !== undefined && (typeof m !== 'number' || !Number.isSafeInteger(m) || m < 0))
      throw new HopscotchError(ErrorCodes.ARGUMENT, `maxMemory must be a non-negative whole number of bytes, got ${m}`);
  }

  /**
   * The skip list the engine runs: the caller's, plus every layer whose attention weights
   * the checkpoint does not have (a DeciLM export's no_op layers can only run skipped).
   */
  #skip(skip: number[] | undefined): number[] {
    const s = skip ?? [];
    checkSkip(s, this.config.numLayers);
    const absent = this.config.attentionAbsent;
    return absent.length ? [...s, ...absent.filter((l) => !s.includes(l))] : s;
  }

  #theta(theta: Theta | undefined): NativeTheta {
    const t = theta ?? thetaLib.ones(this.config.numLayers);
    checkTheta(t, this.config.numLayers);
    return t;
  }

  async #call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw fromNative(err);
    }
  }

  /** One engine loss call, every argument checked first. */
  async #loss(samples: Sample[], theta: Theta, opts: BatchOptions, wantGrad: boolean) {
    this.#checkSamples(samples, true);
    const t = this.#theta(theta);
    const skip = this.#skip(opts.skip);
    const engine = this.#engine;
    this.#maxMemory(opts);
    return this.#call(() => engine.loss(samples, t, { ...opts, skip }, wantGrad));
  }

  async loss(samples: Sample[], theta: Theta, opts: BatchOptions = {}): Promise<LossResult> {
    const r = await this.#loss(samples, theta, opts, false);
    return { loss: r.loss, responseTokens: r.responseTokens, sampleNll: r.sampleNll, peakBytes: r.peakBytes };
  }

  async lossAndGrad(samples: Sample[], theta: Theta, opts: BatchOptions = {}): Promise<LossAndGradResult> {
    const r = await this.#loss(samples, theta, opts, true);
    return { loss: r.loss, responseTokens: r.responseTokens, sampleNll: r.sampleNll, peakBytes: r.peakBytes, grad: r.grad! };
  }

  async logits(tokens: number[], opts: { theta?: Theta; skip?: number[] } = {}): Promise<Float32Array> {
    checkIds(tokens, 'tokens', this.config.vocabSize);
    if (tokens.length === 0) throw new HopscotchError(ErrorCodes.EMPTY_BATCH, 'tokens must not be empty');
    checkContext(tokens.length, this.config.maxPositionEmbeddings, 'logits: tokens');
    const t = this.#theta(opts.theta);
    const skip = this.#skip(opts.skip);
    const engine = this.#engine;
    return this.#call(() => engine.logits(tokens, t, skip));
  }

  async generate(prompts: number[][], opts: GenerateOptions = {}): Promise<number[][]> {
    if (!Array.isArray(prompts) || prompts.length === 0)
      throw new HopscotchError(ErrorCodes.EMPTY_BATCH, 'prompts must be a non-empty array of token id arrays');
    prompts.forEach((p, i) => {
      checkIds(p, `prompts[${i}]`, this.config.vocabSize);
      if (p.length === 0) throw new HopscotchError(ErrorCodes.EMPTY_BATCH, `prompts[${i}] is empty`);
    });
    // Unset, the default of 128 is lowered so that the longest prompt still fits the context.
    const longest = Math.max(...prompts.map((p) => p.length));
    const maxNewTokens = opts.maxNewTokens ?? Math.max(1, Math.min(128, this.config.maxPositionEmbeddings - longest));
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0)
      throw new HopscotchError(ErrorCodes.ARGUMENT, `maxNewTokens must be a non-negative integer, got ${maxNewTokens}`);
    prompts.forEach((p, i) =>
      checkContext(p.length + maxNewTokens, this.config.maxPositionEmbeddings, `generate: prompts[${i}]`, `prompt ${p.length} + maxNewTokens ${maxNewTokens}`),
    );
    const stop = opts.stop ?? this.tokenizer.stopTokenIds;
    checkIds(stop, 'stop', this.config.vocabSize);
    const includeStop = opts.includeStop ?? false;
    if (typeof includeStop !== 'boolean') throw new HopscotchError(ErrorCodes.ARGUMENT, `includeStop must be a boolean, got ${includeStop}`);
    const t = this.#theta(opts.theta);
    const skip = this.#skip(opts.skip);
    const engine = this.#engine;
    return this.#call(() => engine.generate(prompts, t, { maxNewTokens, skip, stop, includeStop }));
  }

  async layerStats(
    samples: Sample[],
    opts: { theta?: Theta; skip?: number[]; hiddenLayers?: number[] } = {},
  ): Promise<LayerStats> {
    this.#checkSamples(samples, false);
    const t = this.#theta(opts.theta);
    const skip = this.#skip(opts.skip);
    const hidden = opts.hiddenLayers ?? [];
    checkHiddenLayers(hidden, this.config.numLayers);
    const engine = this.#engine;
    return this.#call(() => engine.layerStats(samples, t, skip, hidden));
  }

  dispose(): void {
    this.#native?.dispose();
    this.#native = null;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}

/** Loads a checkpoint folder (config.json, safetensors, tokenizer files). */
export async function load(dir: string, opts: LoadOptions = {}): Promise<Model> {
  if (typeof dir !== 'string' || dir.length === 0) throw new HopscotchError(ErrorCodes.ARGUMENT, 'dir must be a path');
  const abs = resolve(dir);
  if (!existsSync(abs) || !statSync(abs).isDirectory())
    throw new HopscotchError(ErrorCodes.IO, `model folder not found: ${abs}`);
  if (opts.threads !== undefined && (!Number.isInteger(opts.threads) || opts.threads < 0))
    throw new HopscotchError(ErrorCodes.ARGUMENT, `threads must be a non-negative integer, got ${opts.threads}`);
  if (opts.precision !== undefined && opts.precision !== 'f32' && opts.precision !== 'bf16')
    throw new HopscotchError(ErrorCodes.ARGUMENT, `precision must be 'f32' or 'bf16', got ${String(opts.precision)}`);
  const { device, reason } = resolveDevice(opts.device ?? 'auto');
  if ((opts.device ?? 'auto') === 'auto') opts.log?.(`hopscotch: using ${device} (${reason})`);
  let native: NativeModel;
  try {
    native = await binding().Model.load(abs, { device, threads: opts.threads, precision: opts.precision ?? 'f32' });
  } catch (err) {
    throw fromNative(err);
  }
  try {
    const info = native.info();
    const tokenizer = await loadTokenizer(abs, {
      bosTokenIds: info.config.bosTokenIds,
      eosTokenIds: info.config.eosTokenIds,
      vocabSize: info.config.vocabSize,
    });
    return new LoadedModel(native, tokenizer);
  } catch (err) {
    native.dispose();
    throw err;
  }
}

/** Model summary from config and safetensors headers only (no weights loaded). */
export function inspect(dir: string): { config: ModelConfig; tensors: number; files: number; fingerprint: string } {
  try {
    return binding().inspectModel(resolve(dir));
  } catch (err) {
    throw fromNative(err);
  }
}
