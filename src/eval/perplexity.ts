/**
 * Held-out loss and perplexity.
 *
 * Recovery-set split: the Hopscotch loss of the samples (response tokens only), both as
 * the training objective reports it (sum of response NLL per sample, averaged over
 * samples) and per token; perplexity = exp(token-mean NLL).
 *
 * Plain text: the text is tokenized once (with the tokenizer's BOS), cut into
 * consecutive non-overlapping windows of `windowLength` tokens (a shorter tail is
 * dropped), and every token of a window after its first is predicted from the tokens
 * before it in the same window; perplexity = exp(mean NLL over all predicted tokens).
 * This is the usual fixed-window WikiText-2 protocol (GPTQ, ShortGPT, LLM-Drop).
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { makeBatches } from '../batching.js';
import { ErrorCodes, HopscotchError, check } from '../errors.js';
import { throwIfAborted } from '../progress.js';
import type { Model, Sample, Theta } from '../types.js';

export interface LossOptions {
  theta?: Theta;
  skip?: readonly number[];
  /** Samples per engine call. Default 16. */
  batchSize?: number;
  signal?: AbortSignal;
}

export interface HeldOutLoss {
  /** Mean over samples of the summed response NLL (the training objective). */
  loss: number;
  /** Mean NLL per response token. */
  tokenNll: number;
  /** exp(tokenNll). */
  perplexity: number;
  samples: number;
  tokens: number;
}

/** Accumulates per-sample NLL sums over ordered batches. */
async function sumNll(model: Model, data: readonly Sample[], opts: LossOptions): Promise<{ nll: number; tokens: number; samples: number }> {
  const theta = opts.theta;
  const batchSize = opts.batchSize ?? 16;
  check(Number.isInteger(batchSize) && batchSize > 0, `batchSize must be a positive integer, got ${batchSize}`);
  let nll = 0;
  let tokens = 0;
  for (const batch of makeBatches(data, { batchSize, seed: 0, epoch: 0, ordered: true })) {
    throwIfAborted(opts.signal);
    const r = await model.loss(batch, theta ?? onesFor(model), { skip: [...(opts.skip ?? [])] });
    for (const v of r.sampleNll) nll += v;
    tokens += r.responseTokens;
  }
  if (!Number.isFinite(nll)) throw new HopscotchError(ErrorCodes.NON_FINITE, `held-out loss is not finite (${nll})`);
  return { nll, tokens, samples: data.length };
}

function onesFor(model: Model): Theta {
  const n = model.config.numLayers;
  const one = () => new Float32Array(n).fill(1);
  return { bAtt: one(), sAtt: one(), bMlp: one(), sMlp: one() };
}

/** Loss and perplexity of held-out samples (response tokens only). */
export async function heldOutLoss(model: Model, data: readonly Sample[], opts: LossOptions = {}): Promise<HeldOutLoss> {
  check(Array.isArray(data) && data.length > 0, 'held-out data must be a non-empty array of samples');
  const { nll, tokens, samples } = await sumNll(model, data, opts);
  const tokenNll = nll / tokens;
  return { loss: nll / samples, tokenNll, perplexity: Math.exp(tokenNll), samples, tokens };
}

/** The bundled WikiText-2 (raw, v1) test split, as one string. */
export const WIKITEXT_TEST = fileURLToPath(new URL('../../data/text/wikitext-2-raw-v1.test.txt', import.meta.url));

export interface TextPerplexityOptions extends LossOptions {
  /** Tokens per window. Default min(1024, max_position_embeddings). */
  windowLength?: number;
  /** Evaluate only the first n windows. Default: all. */
  maxWindows?: number;
}

export interface TextPerplexity {
  perplexity: number;
  /** Mean NLL per predicted token. */
  tokenNll: number;
  windows: number;
  windowLength: number;
  /** Predicted tokens: windows x (windowLength - 1). */
  tokens: number;
  /** Tokens of the whole text. */
  textTokens: number;
}

/** Cuts token ids into consecutive windows of `length`, each a sample {prompt: [first], response: rest}. */
export function textWindows(ids: readonly number[], length: number, maxWindows?: number): Sample[] {
  check(Number.isInteger(length) && length >= 2, `windowLength must be an integer >= 2, got ${length}`);
  const count = Math.min(Math.floor(ids.length / length), maxWindows ?? Infinity);
  const out: Sample[] = [];
  for (let w = 0; w < count; w++) {
    const win = ids.slice(w * length, (w + 1) * length);
    out.push({ prompt: win.slice(0, 1), response: win.slice(1) });
  }
  return out;
}

/**
 * Perplexity of plain text in fixed windows (see the file comment). `text` is a string,
 * or its token ids (from `model.tokenizer.encode(text)`) to tokenize a long text once for
 * several variants.
 */
export async function textPerplexity(
  model: Model,
  text: string | readonly number[],
  opts: TextPerplexityOptions = {},
): Promise<TextPerplexity> {
  const windowLength = opts.windowLength ?? Math.min(1024, model.config.maxPositionEmbeddings);
  check(
    windowLength <= model.config.maxPositionEmbeddings,
    `windowLength ${windowLength} exceeds max_position_embeddings ${model.config.maxPositionEmbeddings}`,
  );
  check(opts.maxWindows === undefined || (Number.isInteger(opts.maxWindows) && opts.maxWindows > 0), `maxWindows must be a positive integer, got ${opts.maxWindows}`);
  const ids = typeof text === 'string' ? model.tokenizer.encode(text, { addSpecialTokens: true }) : text;
  const windows = textWindows(ids, windowLength, opts.maxWindows);
  if (windows.length === 0)
    throw new HopscotchError(ErrorCodes.ARGUMENT, `the text has ${ids.length} tokens, fewer than one window of ${windowLength}`);
  const { nll, tokens } = await sumNll(model, windows, { ...opts, batchSize: opts.batchSize ?? 4 });
  const tokenNll = nll / tokens;
  return { perplexity: Math.exp(tokenNll), tokenNll, windows: windows.length, windowLength, tokens, textTokens: ids.length };
}

/** Reads a text file (default: the bundled WikiText-2 test split). */
export async function readText(file: string = WIKITEXT_TEST): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new HopscotchError(ErrorCodes.IO, `cannot read text ${file}: ${(err as Error).message}`, { cause: err });
  }
}
