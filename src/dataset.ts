/**
 * Recovery sets: building them from prompts with the model's own greedy answers
 * (paper A.1), saving and loading them as JSONL, reading prompt files, and a digest
 * of their token ids.
 *
 * File format (UTF-8 JSONL): the first line is a header
 *   {"format":"hopscotch-dataset","version":2,"fingerprint":"<model>","samples":N,"digest":"<sha256>", ...meta}
 * then one {"prompt":[ids],"response":[ids]} per sample, with "truncated":true on an
 * answer cut by the token limit or the context. `fingerprint` is the model that
 * generated the responses; `digest` is {@link datasetDigest} of the samples' token ids.
 * Version 2 (this library): a finished answer ends with its stop token. Version 1 files
 * (answers without their stop token, no truncation marks) are refused unless
 * `allowVersion1` is set.
 */
import { createHash } from 'node:crypto';
import { access, readFile } from 'node:fs/promises';
import { mixSeed, shuffledIndices } from './batching.js';
import { writeFileAtomic } from './checkpoint.js';
import { ErrorCodes, HopscotchError, check } from './errors.js';
import { checkContext } from './samples.js';
import { type ProgressCallback, safeCallback, throwIfAborted } from './progress.js';
import type { Dataset, Model, Sample } from './types.js';

export const DATASET_FORMAT = 'hopscotch-dataset';
export const DATASET_VERSION = 2;

export interface DatasetHeader {
  format: typeof DATASET_FORMAT;
  version: number;
  fingerprint: string;
  samples: number;
  digest?: string;
  [meta: string]: unknown;
}

/**
 * SHA-256 (hex) of the token ids of `data`: per sample, the prompt length, the prompt
 * ids, the response length and the response ids, each as a little-endian uint32.
 */
export function datasetDigest(data: readonly Sample[]): string {
  const hash = createHash('sha256');
  for (const s of data) {
    const view = new DataView(new ArrayBuffer(4 * (2 + s.prompt.length + s.response.length)));
    let at = 0;
    const put = (x: number) => {
      view.setUint32(at, x, true);
      at += 4;
    };
    put(s.prompt.length);
    s.prompt.forEach(put);
    put(s.response.length);
    s.response.forEach(put);
    hash.update(new Uint8Array(view.buffer));
  }
  return hash.digest('hex');
}

function isIdArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => Number.isInteger(x) && x >= 0 && x <= 0xffffffff);
}

/** Throws HOPSCOTCH_ERR_DATASET unless `s` is a sample with integer ids >= 0 and a non-empty response. */
function checkSample(s: unknown, where: string): asserts s is Sample {
  const bad = (what: string) => new HopscotchError(ErrorCodes.DATASET, `${where}: ${what}`);
  if (!s || typeof s !== 'object' || Array.isArray(s)) throw bad('expected an object {"prompt":[ids],"response":[ids]}');
  const { prompt, response, truncated } = s as Record<string, unknown>;
  if (truncated !== undefined && typeof truncated !== 'boolean') throw bad('"truncated" must be a boolean');
  if (!isIdArray(prompt)) throw bad('"prompt" must be an array of integer token ids >= 0');
  if (!isIdArray(response)) throw bad('"response" must be an array of integer token ids >= 0');
  if (response.length === 0) throw bad('"response" is empty (a sample needs at least one response token)');
}

export interface SaveDatasetOptions {
  /** Fingerprint of the model that generated the responses. */
  fingerprint: string;
  /** Extra header fields (e.g. source file, generation settings). */
  meta?: Record<string, unknown>;
  /** Replace an existing file. Default false: an existing file is HOPSCOTCH_ERR_EXISTS. */
  force?: boolean;
}

/** Writes `data` atomically as a dataset JSONL file. */
export async function saveDataset(file: string, data: readonly Sample[], opts: SaveDatasetOptions): Promise<void> {
  check(typeof opts?.fingerprint === 'string' && opts.fingerprint.length > 0, 'saveDataset needs a fingerprint');
  data.forEach((s, i) => checkSample(s, `sample ${i}`));
  if (!opts.force) {
    const exists = await access(file).then(
      () => true,
      () => false,
    );
    if (exists) throw new HopscotchError(ErrorCodes.EXISTS, `${file} exists (pass force: true to replace it)`);
  }
  const reserved = new Set(['format', 'version', 'fingerprint', 'samples', 'digest']);
  for (const k of Object.keys(opts.meta ?? {}))
    check(!reserved.has(k), `dataset meta may not set the reserved header field "${k}"`);
  const header: DatasetHeader = {
    format: DATASET_FORMAT,
    version: DATASET_VERSION,
    fingerprint: opts.fingerprint,
    samples: data.length,
    digest: datasetDigest(data),
    ...opts.meta,
  };
  const lines = [JSON.stringify(header)];
  for (const s of data)
    lines.push(JSON.stringify(s.truncated ? { prompt: s.prompt, response: s.response, truncated: true } : { prompt: s.prompt, response: s.response }));
  await writeFileAtomic(file, lines.join('\n') + '\n');
}

export interface LoadDatasetOptions {
  /** Expected model fingerprint; a different one is HOPSCOTCH_ERR_FINGERPRINT. */
  fingerprint?: string;
  /** When given, every id must be below it (HOPSCOTCH_ERR_TOKEN_RANGE). */
  vocabSize?: number;
  /** When given (the model's `maxPositionEmbeddings`), every prompt + response must fit it (HOPSCOTCH_ERR_CONTEXT). */
  context?: number;
  /**
   * Read a version 1 file (written before answers kept their stop token) as it is: its
   * answers carry no stop token and no truncation marks. Default false: such a file is
   * HOPSCOTCH_ERR_DATASET, with the command that regenerates it.
   */
  allowVersion1?: boolean;
}

/** Reads a dataset file: its header and samples, validated. */
export async function readDataset(
  file: string,
  opts: LoadDatasetOptions = {},
): Promise<{ header: DatasetHeader; samples: Dataset }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new HopscotchError(ErrorCodes.IO, `cannot read dataset ${file}: ${(err as Error).message}`, { cause: err });
  }
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const at = (line: number) => `${file} line ${line}`;
  const parse = (line: number): unknown => {
    try {
      return JSON.parse(lines[line - 1]);
    } catch (err) {
      throw new HopscotchError(ErrorCodes.DATASET, `${at(line)}: not valid JSON (${(err as Error).message})`);
    }
  };
  if (lines.length === 0) throw new HopscotchError(ErrorCodes.DATASET, `${file} is empty (expected a header line)`);
  const header = parse(1) as DatasetHeader;
  if (!header || typeof header !== 'object' || header.format !== DATASET_FORMAT)
    throw new HopscotchError(ErrorCodes.DATASET, `${at(1)}: not a dataset header (format must be "${DATASET_FORMAT}")`);
  if (header.version === 1 && !opts.allowVersion1)
    throw new HopscotchError(
      ErrorCodes.DATASET,
      `${file} is a version 1 dataset, written before answers kept their stop token: training on it never learns to end an answer, ` +
        `and answers cut by the token limit are not marked. Regenerate it (hopscotch data --model <dir> --prompts <file> --out ${file} --force, ` +
        `or recoverySet + saveDataset), or read it as it is with loadDataset(file, { allowVersion1: true })`,
    );
  if (header.version !== DATASET_VERSION && !(header.version === 1 && opts.allowVersion1))
    throw new HopscotchError(
      ErrorCodes.DATASET,
      `${at(1)}: dataset version ${header.version} is not supported (this library reads version ${DATASET_VERSION})`,
    );
  if (typeof header.fingerprint !== 'string' || !Number.isInteger(header.samples) || header.samples < 0)
    throw new HopscotchError(ErrorCodes.DATASET, `${at(1)}: header needs a string "fingerprint" and an integer "samples"`);
  if (opts.fingerprint !== undefined && header.fingerprint !== opts.fingerprint)
    throw new HopscotchError(
      ErrorCodes.FINGERPRINT,
      `${file} was generated by model ${header.fingerprint}, not by this model (${opts.fingerprint})`,
    );
  if (lines.length - 1 !== header.samples)
    throw new HopscotchError(
      ErrorCodes.DATASET,
      `${file}: header announces ${header.samples} samples but the file has ${lines.length - 1} sample lines`,
    );
  const samples: Sample[] = [];
  for (let line = 2; line <= lines.length; line++) {
    const s = parse(line);
    checkSample(s, at(line));
    if (opts.vocabSize !== undefined) {
      for (const id of [...s.prompt, ...s.response])
        if (id >= opts.vocabSize)
          throw new HopscotchError(ErrorCodes.TOKEN_RANGE, `${at(line)}: token id ${id} is not below vocabSize ${opts.vocabSize}`);
    }
    if (opts.context !== undefined)
      checkContext(s.prompt.length + s.response.length, opts.context, `${at(line)} (sample ${line - 2})`, `prompt ${s.prompt.length} + response ${s.response.length}`);
    samples.push(s.truncated ? { prompt: s.prompt, response: s.response, truncated: true } : { prompt: s.prompt, response: s.response });
  }
  if (typeof header.digest === 'string' && header.digest !== datasetDigest(samples))
    throw new HopscotchError(ErrorCodes.DATASET, `${file}: token ids do not match the header digest (file altered or corrupt)`);
  return { header, samples };
}

/** Reads a dataset file's samples (see {@link readDataset}). */
export async function loadDataset(file: string, opts: LoadDatasetOptions = {}): Promise<Dataset> {
  return (await readDataset(file, opts)).samples;
}

export interface SplitOptions {
  /** Share of the samples that go to validation, in (0, 1). The count is rounded, and kept in [1, n - 1]. */
  fraction: number;
  /** Seed of the split. Default 0. */
  seed?: number;
}

export interface DatasetSplit<S extends Sample = Sample> {
  /** The samples not in validation, in their original order. */
  train: S[];
  /** The held-out samples, in their original order. */
  validation: S[];
  /** Indices into the input of the validation samples, ascending. */
  validationIndices: number[];
}

/**
 * Splits `data` into disjoint training and validation sets, deterministically: the same
 * data length, fraction and seed always hold out the same indices, on every platform.
 * Each sample goes to exactly one side; both keep the input order. Needs at least 2
 * samples (HOPSCOTCH_ERR_DATASET otherwise); a bad fraction or seed is HOPSCOTCH_ERR_ARGUMENT.
 */
export function splitDataset<S extends Sample>(data: readonly S[], opts: SplitOptions): DatasetSplit<S> {
  check(Array.isArray(data), 'splitDataset: data must be an array of samples');
  const fraction = opts?.fraction;
  const seed = opts?.seed ?? 0;
  check(
    typeof fraction === 'number' && Number.isFinite(fraction) && fraction > 0 && fraction < 1,
    `splitDataset: fraction must be a number in (0, 1), got ${fraction}`,
  );
  check(Number.isSafeInteger(seed), `splitDataset: seed must be an integer, got ${seed}`);
  const n = data.length;
  if (n < 2)
    throw new HopscotchError(ErrorCodes.DATASET, `cannot hold out a validation set from ${n} sample${n === 1 ? '' : 's'} (need at least 2)`);
  const count = Math.min(n - 1, Math.max(1, Math.round(n * fraction)));
  // Its own stream (not the batching shuffle of the same seed).
  const held = new Set(shuffledIndices(n, mixSeed(0x5b11d, seed)).slice(0, count));
  const split: DatasetSplit<S> = { train: [], validation: [], validationIndices: [] };
  for (let i = 0; i < n; i++) {
    if (held.has(i)) {
      split.validation.push(data[i]);
      split.validationIndices.push(i);
    } else split.train.push(data[i]);
  }
  return split;
}

export interface ChatMessage {
  role: string;
  content: string;
}

/** A prompt: plain text (one user turn) or a whole conversation. */
export type PromptInput = string | { messages: ChatMessage[] };

/**
 * Reads prompts from a JSONL file. Each line is an object with `prompt` (string),
 * `messages` ([{role, content}]) or `question` (GSM8K) ; blank lines are ignored.
 */
export async function loadPrompts(file: string, opts: { limit?: number } = {}): Promise<PromptInput[]> {
  const { limit } = opts;
  check(limit === undefined || (Number.isInteger(limit) && limit >= 0), `limit must be a non-negative integer, got ${limit}`);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new HopscotchError(ErrorCodes.IO, `cannot read prompts ${file}: ${(err as Error).message}`, { cause: err });
  }
  const out: PromptInput[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length && (limit === undefined || out.length < limit); i++) {
    const raw = lines[i].trim();
    if (raw === '') continue;
    const where = `${file} line ${i + 1}`;
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(raw) as Record<string, unknown>;
    } catch (err) {
      throw new HopscotchError(ErrorCodes.DATASET, `${where}: not valid JSON (${(err as Error).message})`);
    }
    if (!obj || typeof obj !== 'object' || Array.isArray(obj))
      throw new HopscotchError(ErrorCodes.DATASET, `${where}: expected a JSON object`);
    if (typeof obj.prompt === 'string') out.push(obj.prompt);
    else if (Array.isArray(obj.messages)) {
      const messages = obj.messages as unknown[];
      if (
        messages.length === 0 ||
        !messages.every(
          (m) =>
            !!m &&
            typeof m === 'object' &&
            typeof (m as ChatMessage).role === 'string' &&
            typeof (m as ChatMessage).content === 'string',
        )
      )
        throw new HopscotchError(ErrorCodes.DATASET, `${where}: "messages" must be a non-empty array of {role, content} strings`);
      out.push({ messages: (messages as ChatMessage[]).map((m) => ({ role: m.role, content: m.content })) });
    } else if (typeof obj.question === 'string') out.push(obj.question);
    else
      throw new HopscotchError(
        ErrorCodes.DATASET,
        `${where}: expected a "prompt" string, a "messages" array or a "question" string`,
      );
  }
  return out;
}

export interface RecoverySetOptions {
  /**
   * Most generated tokens per answer, the stop token included. Default 256. Each answer is
   * also capped so that prompt + answer fits the model's context (`maxPositionEmbeddings`).
   */
  maxNewTokens?: number;
  /** Prompts per `generate` call. Default 8. */
  batchSize?: number;
  /** Wrap prompts with the model's chat template. Default: whether the tokenizer has one. */
  chatTemplate?: boolean;
  /**
   * Token ids that end an answer. Default: the tokenizer's `stopTokenIds` (every
   * `eos_token_id` of config.json and generation_config.json, and the chat template's
   * end-of-turn token).
   */
  stop?: number[];
  /**
   * `generate` events after each batch, one `recovery-set` summary at the end, and a
   * `truncated` warning when more than half the answers were cut by the token limit.
   */
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

/** Prompt token ids, the way `recoverySet` builds them. */
export function promptIds(model: Model, prompt: PromptInput, chatTemplate: boolean, index = 0): number[] {
  const tok = model.tokenizer;
  let ids: number[];
  if (typeof prompt === 'string') {
    ids = chatTemplate
      ? tok.applyChatTemplate([{ role: 'user', content: prompt }], { addGenerationPrompt: true })
      : tok.encode(prompt, { addSpecialTokens: true });
  } else if (prompt && Array.isArray(prompt.messages)) {
    if (!chatTemplate)
      throw new HopscotchError(
        ErrorCodes.ARGUMENT,
        `prompt ${index} is a conversation, which needs a chat template (chatTemplate is off or the tokenizer has none)`,
      );
    ids = tok.applyChatTemplate(prompt.messages, { addGenerationPrompt: true });
  } else {
    throw new HopscotchError(ErrorCodes.ARGUMENT, `prompt ${index} must be a string or { messages }`);
  }
  if (ids.length === 0) throw new HopscotchError(ErrorCodes.ARGUMENT, `prompt ${index} encodes to no tokens`);
  return ids;
}

/**
 * Builds a recovery set: each prompt with the model's own greedy answer (paper A.1).
 *
 * A finished answer ends with the stop token that ended it, so the loss covers ending
 * the answer. An answer cut by `maxNewTokens` or by the model's context is kept with
 * `truncated: true`. Each answer is capped so that prompt + answer fits the context;
 * prompts that leave no room for an answer are skipped (HOPSCOTCH_ERR_CONTEXT when all
 * are). Answers with no token before the stop token are dropped. The `generate` events
 * and the final `recovery-set` event count skipped, dropped and truncated prompts; a
 * `truncated` event warns when more than half the answers were cut (the stop ids are
 * probably not the ones the model ends its answers with, or `maxNewTokens` is too low).
 * Rejects with `signal.reason` when aborted (checked before every generation batch).
 */
export async function recoverySet(
  model: Model,
  prompts: readonly PromptInput[],
  opts: RecoverySetOptions = {},
): Promise<Dataset> {
  check(Array.isArray(prompts), 'prompts must be an array of strings or { messages }');
  const { maxNewTokens = 256, batchSize = 8 } = opts;
  check(Number.isInteger(maxNewTokens) && maxNewTokens > 0, `maxNewTokens must be a positive integer, got ${maxNewTokens}`);
  check(Number.isInteger(batchSize) && batchSize > 0, `batchSize must be a positive integer, got ${batchSize}`);
  const stop = [...(opts.stop ?? model.tokenizer.stopTokenIds)];
  check(
    stop.every((id) => Number.isInteger(id) && id >= 0),
    `stop must be an array of token ids, got ${JSON.stringify(opts.stop)}`,
  );
  const chatTemplate = opts.chatTemplate ?? model.tokenizer.hasChatTemplate;
  if (chatTemplate && !model.tokenizer.hasChatTemplate)
    throw new HopscotchError(ErrorCodes.ARGUMENT, 'chatTemplate is on but the tokenizer has no chat template');
  const context = model.config.maxPositionEmbeddings;
  const emit = safeCallback(opts.onProgress);
  const encoded = prompts.map((p, i) => promptIds(model, p, chatTemplate, i));
  // A prompt needs room for at least one answer token.
  const kept = encoded.filter((p) => p.length < context);
  const skipped = encoded.length - kept.length;
  if (encoded.length > 0 && kept.length === 0)
    throw new HopscotchError(
      ErrorCodes.CONTEXT,
      `none of the ${encoded.length} prompts leaves room for an answer in the model's context of ${context} tokens ` +
        `(max_position_embeddings): the shortest has ${Math.min(...encoded.map((p) => p.length))} tokens`,
    );
  const isStop = new Set(stop);
  const batches = Math.ceil(kept.length / batchSize);
  const out: Sample[] = [];
  let dropped = 0;
  let truncated = 0;
  for (let b = 0; b < batches; b++) {
    throwIfAborted(opts.signal);
    const batch = kept.slice(b * batchSize, (b + 1) * batchSize);
    // One generate call per answer cap (one call unless some prompt is near the context).
    const cap = batch.map((p) => Math.min(maxNewTokens, context - p.length));
    const responses: number[][] = new Array(batch.length);
    for (const limit of [...new Set(cap)]) {
      const idx = batch.map((_, i) => i).filter((i) => cap[i] === limit);
      const got = await model.generate(
        idx.map((i) => batch[i]),
        { maxNewTokens: limit, stop, includeStop: true },
      );
      if (!Array.isArray(got) || got.length !== idx.length)
        throw new HopscotchError(ErrorCodes.INTERNAL, `generate returned ${got?.length} responses for ${idx.length} prompts`);
      idx.forEach((i, k) => (responses[i] = got[k]));
    }
    for (let i = 0; i < batch.length; i++) {
      const response = [...responses[i]];
      const finished = response.length > 0 && isStop.has(response[response.length - 1]);
      if (response.length === 0 || (finished && response.length === 1)) {
        dropped += 1;
        continue;
      }
      if (finished) out.push({ prompt: batch[i], response });
      else {
        truncated += 1;
        out.push({ prompt: batch[i], response, truncated: true });
      }
    }
    emit({ type: 'generate', batch: b + 1, batches, samples: out.length, dropped, truncated, skipped });
  }
  emit({ type: 'recovery-set', prompts: encoded.length, samples: out.length, dropped, skipped, truncated, maxNewTokens, stop });
  if (truncated * 2 > out.length)
    emit({ type: 'truncated', truncated, samples: out.length, maxNewTokens, stop });
  return out;
}

