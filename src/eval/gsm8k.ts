/**
 * GSM8K accuracy, computed the way lm-evaluation-harness's `gsm8k` task (version 3.0)
 * computes it, so that the two sets of numbers line up:
 *
 *  - prompt: n few-shot examples from the train split, each rendered as
 *    "Question: {question}\nAnswer:" + " " + {answer} + "\n\n", then the test question
 *    as "Question: {question}\nAnswer:" (no trailing space). The examples are
 *    `random.Random(1234).sample(train, n)`, drawn again for every test question in
 *    order (the sampler's state carries over), reproduced bit for bit by {@link PyRandom};
 *  - greedy generation until "Question:", "</s>" or "<|im_end|>" (and the tokenizer's
 *    end-of-sequence), at most `maxNewTokens` (lm-eval's max_gen_toks, 256) new tokens;
 *    the context is left-truncated to max_position_embeddings - maxNewTokens tokens;
 *  - two answer filters: strict-match, the first `#### (\-?[0-9\.\,]+)` group;
 *    flexible-extract, the last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)`; "[invalid]"
 *    when nothing matches;
 *  - exact_match after removing ",", "$", everything up to the last "#### " and a
 *    trailing "." from both the filtered answer and the reference, then lower-casing.
 *
 * docs/evaluation.md states the rules and where they come from.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { ErrorCodes, HopscotchError, check } from '../errors.js';
import { safeCallback, throwIfAborted } from '../progress.js';
import type { Model, Theta } from '../types.js';
import { type Completion, generateUntil } from './generate.js';
import { PyRandom } from './pyrandom.js';

/** One GSM8K item: the question and the worked answer ending in "#### n". */
export interface Gsm8kDoc {
  question: string;
  answer: string;
}

/** lm-eval gsm8k `generation_kwargs.until`. */
export const GSM8K_STOP = ['Question:', '</s>', '<|im_end|>'] as const;
/** lm-eval's default few-shot seed (`fewshot_random_seed`). */
export const GSM8K_FEWSHOT_SEED = 1234;
/** Filter output when the regex finds nothing. */
export const INVALID = '[invalid]';

const STRICT = /#### (\-?[0-9\.\,]+)/g;
const FLEXIBLE = /(-?[$0-9.,]{2,})|(-?[0-9]+)/g;

/** lm-eval `regexes_to_ignore`, in order; Python's `\.$` also matches before a final "\n". */
const IGNORE: RegExp[] = [/,/g, /\$/g, /[\s\S]*#### /g, /\.(?=\n?$)/g];

/** The exact_match normalisation: drop the ignored patterns, then lower-case. */
export function normalize(s: string): string {
  let out = s;
  for (const re of IGNORE) out = out.replace(re, '');
  return out.toLowerCase();
}

/** lm-eval's regex filter: the selected match (group_select), first non-empty group, stripped. */
function extract(completion: string, re: RegExp, select: 'first' | 'last'): string {
  const matches = [...completion.matchAll(re)];
  if (matches.length === 0) return INVALID;
  const m = select === 'first' ? matches[0] : matches[matches.length - 1];
  const groups = m.slice(1).filter((g) => g !== undefined && g !== '');
  if (groups.length === 0) return INVALID;
  return groups[0].trim();
}

export interface Gsm8kScore {
  /** exact_match under the strict-match filter. */
  strict: boolean;
  /** exact_match under the flexible-extract filter. */
  flexible: boolean;
  /** The strict filter's output ("[invalid]" when no "#### n"). */
  strictAnswer: string;
  /** The flexible filter's output ("[invalid]" when no number). */
  flexibleAnswer: string;
  /** The normalised reference answer. */
  target: string;
}

/** Scores one completion against the data set's answer text (with its "#### n" line). */
export function score(completion: string, answer: string): Gsm8kScore {
  const strictAnswer = extract(completion, STRICT, 'first');
  const flexibleAnswer = extract(completion, FLEXIBLE, 'last');
  const target = normalize(answer);
  return {
    strict: normalize(strictAnswer) === target,
    flexible: normalize(flexibleAnswer) === target,
    strictAnswer,
    flexibleAnswer,
    target,
  };
}

/** lm-eval gsm8k `doc_to_text`. */
export function docToText(doc: Gsm8kDoc): string {
  return `Question: ${doc.question}\nAnswer:`;
}

/** The plain-text prompt: few-shot turns (target delimiter " ", few-shot delimiter "\n\n"), then the question. */
export function buildPrompt(doc: Gsm8kDoc, fewshot: readonly Gsm8kDoc[]): string {
  return fewshot.map((d) => `${docToText(d)} ${d.answer}\n\n`).join('') + docToText(doc);
}

/** Chat messages for a chat-template prompt: each few-shot example as a user/assistant turn. */
export function buildMessages(doc: Gsm8kDoc, fewshot: readonly Gsm8kDoc[]): { role: string; content: string }[] {
  const out: { role: string; content: string }[] = [];
  for (const d of fewshot) out.push({ role: 'user', content: docToText(d) }, { role: 'assistant', content: d.answer });
  out.push({ role: 'user', content: docToText(doc) });
  return out;
}

/**
 * Few-shot indices into the train split for the first `count` test questions, as lm-eval
 * draws them: one `Random(seed)`, `sample(train, nShot)` per question in test order.
 */
export function fewshotIndices(trainSize: number, count: number, nShot: number, seed = GSM8K_FEWSHOT_SEED): number[][] {
  const rnd = new PyRandom(seed);
  const out: number[][] = [];
  for (let i = 0; i < count; i++) out.push(nShot === 0 ? [] : rnd.sampleIndices(trainSize, nShot));
  return out;
}

/** Reads a GSM8K JSONL file ({"question", "answer"} per line). */
export async function readGsm8k(file: string, limit?: number): Promise<Gsm8kDoc[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new HopscotchError(ErrorCodes.IO, `cannot read GSM8K file ${file}: ${(err as Error).message}`, { cause: err });
  }
  const docs: Gsm8kDoc[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length && (limit === undefined || docs.length < limit); i++) {
    if (lines[i].trim() === '') continue;
    let o: { question?: unknown; answer?: unknown };
    try {
      o = JSON.parse(lines[i]) as typeof o;
    } catch (err) {
      throw new HopscotchError(ErrorCodes.DATASET, `${file} line ${i + 1}: not valid JSON (${(err as Error).message})`);
    }
    if (typeof o?.question !== 'string' || typeof o?.answer !== 'string')
      throw new HopscotchError(ErrorCodes.DATASET, `${file} line ${i + 1}: expected {"question": string, "answer": string}`);
    docs.push({ question: o.question, answer: o.answer });
  }
  return docs;
}

export interface Gsm8kProgressEvent {
  type: 'gsm8k';
  done: number;
  total: number;
  strict: number;
  flexible: number;
}

export interface EvaluateGsm8kOptions {
  /** Test questions, from the start of the test split. Default: all. */
  limit?: number;
  /** Few-shot examples per question. Default 5. */
  nShot?: number;
  /** Render with the model's chat template (few-shot examples as turns). Default false. */
  chatTemplate?: boolean;
  /** lm-eval max_gen_toks. Default 256. */
  maxNewTokens?: number;
  theta?: Theta;
  skip?: readonly number[];
  /** Test and train JSONL files. Default: the bundled data/gsm8k files. */
  testFile?: string;
  trainFile?: string;
  /** Questions per generate call. Default 8. */
  batchSize?: number;
  /** New tokens per engine call between stop-string checks. Default 32. */
  chunkTokens?: number;
  onProgress?: (event: Gsm8kProgressEvent) => void;
  signal?: AbortSignal;
}

export interface Gsm8kItem extends Gsm8kScore {
  index: number;
  question: string;
  answer: string;
  /** Prompt text before tokenization (plain-text mode) or the rendered conversation's user turns joined. */
  prompt: string;
  fewshot: number[];
  promptTokens: number;
  /** Prompt tokens dropped by left truncation. */
  truncatedTokens: number;
  completion: string;
  finish: Completion['finish'];
  stoppedAt: string | null;
  generatedTokens: number;
}

export interface Gsm8kResult {
  /** exact_match, strict-match filter (fraction of questions). */
  strict: number;
  /** exact_match, flexible-extract filter. */
  flexible: number;
  /** Standard errors of the two means (sample std / sqrt(n), as lm-eval reports). */
  strictStderr: number;
  flexibleStderr: number;
  count: number;
  settings: { nShot: number; chatTemplate: boolean; maxNewTokens: number; fewshotSeed: number; stop: string[]; maxContext: number };
  items: Gsm8kItem[];
}

const bundled = (name: string) => fileURLToPath(new URL(`../../data/gsm8k/${name}`, import.meta.url));

/** Sample standard error of a 0/1 mean: sqrt(p(1-p)/(n-1)) (lm-eval's mean_stderr). */
function stderr(hits: number, n: number): number {
  if (n < 2) return 0;
  const p = hits / n;
  return Math.sqrt((p * (1 - p) * n) / (n - 1) / n);
}

/** GSM8K accuracy (strict-match and flexible-extract) of `model` at `theta` / `skip`. */
export async function evaluateGsm8k(model: Model, opts: EvaluateGsm8kOptions = {}): Promise<Gsm8kResult> {
  const { limit, nShot = 5, chatTemplate = false, maxNewTokens = 256, batchSize = 8 } = opts;
  check(limit === undefined || (Number.isInteger(limit) && limit > 0), `limit must be a positive integer, got ${limit}`);
  check(Number.isInteger(nShot) && nShot >= 0, `nShot must be a non-negative integer, got ${nShot}`);
  check(Number.isInteger(maxNewTokens) && maxNewTokens > 0, `maxNewTokens must be a positive integer, got ${maxNewTokens}`);
  check(Number.isInteger(batchSize) && batchSize > 0, `batchSize must be a positive integer, got ${batchSize}`);
  if (chatTemplate && !model.tokenizer.hasChatTemplate)
    throw new HopscotchError(ErrorCodes.ARGUMENT, 'chatTemplate is on but the tokenizer has no chat template');
  const maxContext = model.config.maxPositionEmbeddings - maxNewTokens;
  if (maxContext <= 0)
    throw new HopscotchError(
      ErrorCodes.ARGUMENT,
      `maxNewTokens ${maxNewTokens} leaves no room for a prompt (max_position_embeddings ${model.config.maxPositionEmbeddings})`,
    );
  const emit = safeCallback(opts.onProgress);
  const test = await readGsm8k(opts.testFile ?? bundled('test.jsonl'), limit);
  const train = nShot > 0 ? await readGsm8k(opts.trainFile ?? bundled('train.jsonl')) : [];
  if (nShot > train.length) throw new HopscotchError(ErrorCodes.ARGUMENT, `nShot ${nShot} exceeds the ${train.length} train examples`);
  const shots = fewshotIndices(train.length, test.length, nShot);
  const stop: string[] = [...GSM8K_STOP];
  const tok = model.tokenizer;
  // lm-eval adds the decoded end-of-sequence token to the stop strings.
  for (const id of tok.eosTokenIds) {
    const s = tok.decode([id], { skipSpecialTokens: false });
    if (s.length > 0 && !stop.includes(s)) stop.push(s);
  }

  const items: Gsm8kItem[] = [];
  let strictHits = 0;
  let flexibleHits = 0;
  for (let start = 0; start < test.length; start += batchSize) {
    throwIfAborted(opts.signal);
    const batch = test.slice(start, start + batchSize);
    const prepared = batch.map((doc, b) => {
      const fewshot = shots[start + b].map((i) => train[i]);
      const prompt = buildPrompt(doc, fewshot);
      const ids = chatTemplate
        ? tok.applyChatTemplate(buildMessages(doc, fewshot), { addGenerationPrompt: true })
        : tok.encode(prompt, { addSpecialTokens: true });
      const truncatedTokens = Math.max(0, ids.length - maxContext);
      return { doc, prompt, fewshot: shots[start + b], full: ids.length, ids: ids.slice(truncatedTokens), truncatedTokens };
    });
    const completions = await generateUntil(
      model,
      prepared.map((p) => p.ids),
      { stop, maxNewTokens, theta: opts.theta, skip: opts.skip, chunkTokens: opts.chunkTokens, signal: opts.signal },
    );
    prepared.forEach((p, b) => {
      const c = completions[b];
      const s = score(c.text, p.doc.answer);
      if (s.strict) strictHits++;
      if (s.flexible) flexibleHits++;
      items.push({
        index: start + b,
        question: p.doc.question,
        answer: p.doc.answer,
        prompt: p.prompt,
        fewshot: p.fewshot,
        promptTokens: p.full,
        truncatedTokens: p.truncatedTokens,
        completion: c.text,
        finish: c.finish,
        stoppedAt: c.stoppedAt,
        generatedTokens: c.tokens.length,
        ...s,
      });
    });
    emit({ type: 'gsm8k', done: items.length, total: test.length, strict: strictHits, flexible: flexibleHits });
  }
  const n = items.length;
  return {
    strict: n ? strictHits / n : 0,
    flexible: n ? flexibleHits / n : 0,
    strictStderr: stderr(strictHits, n),
    flexibleStderr: stderr(flexibleHits, n),
    count: n,
    settings: { nShot, chatTemplate, maxNewTokens, fewshotSeed: GSM8K_FEWSHOT_SEED, stop, maxContext },
    items,
  };
}
