/**
 * Greedy generation that stops at text stop sequences.
 *
 * The engine's `generate` stops at token ids only. Here a batch is generated in chunks
 * of `chunkTokens` new tokens: after each chunk the new tokens of every sequence are
 * decoded and searched for the stop strings; a sequence that contains one, reached an
 * end-of-sequence id or used up `maxNewTokens` is finished, the others are continued
 * (their prompt is the original prompt plus everything generated so far). The text is
 * finally cut at the earliest occurrence of any stop string, which is what
 * lm-evaluation-harness does with its `until` list. Greedy decoding makes the chunked
 * result the same token sequence as one long generation.
 */
import { check } from '../errors.js';
import { throwIfAborted } from '../progress.js';
import type { Model, Theta } from '../types.js';

export interface GenerateUntilOptions {
  /** Text stop sequences; the completion is cut before the first one found. */
  stop: readonly string[];
  maxNewTokens: number;
  /** Token ids that end a sequence. Default: the tokenizer's `stopTokenIds` (eos ids and the chat template's end of turn). */
  stopIds?: readonly number[];
  /** New tokens per engine call between stop-string checks. Default 32. */
  chunkTokens?: number;
  theta?: Theta;
  skip?: readonly number[];
  signal?: AbortSignal;
}

export interface Completion {
  /** Decoded completion (special tokens skipped), cut before the first stop string. */
  text: string;
  /** Every generated token id, including any generated past a stop string within a chunk. */
  tokens: number[];
  /** The stop string the text was cut at, or null. */
  stoppedAt: string | null;
  /** Why generation ended: a stop string, an end-of-sequence id, or the token limit. */
  finish: 'stop' | 'eos' | 'length';
}

/** Index and text of the earliest stop string in `text`, or null. */
export function firstStop(text: string, stop: readonly string[]): { index: number; stop: string } | null {
  let best: { index: number; stop: string } | null = null;
  for (const s of stop) {
    if (s.length === 0) continue;
    const i = text.indexOf(s);
    if (i >= 0 && (best === null || i < best.index)) best = { index: i, stop: s };
  }
  return best;
}

/** Greedy completions of `prompts` (token ids), cut at text stop sequences. */
export async function generateUntil(model: Model, prompts: readonly number[][], opts: GenerateUntilOptions): Promise<Completion[]> {
  const chunk = opts.chunkTokens ?? 32;
  check(Number.isInteger(chunk) && chunk > 0, `chunkTokens must be a positive integer, got ${chunk}`);
  check(Number.isInteger(opts.maxNewTokens) && opts.maxNewTokens > 0, `maxNewTokens must be a positive integer, got ${opts.maxNewTokens}`);
  const stopIds = [...(opts.stopIds ?? model.tokenizer.stopTokenIds)];
  const decode = (ids: number[]) => model.tokenizer.decode(ids, { skipSpecialTokens: true });
  const state = prompts.map(() => ({ tokens: [] as number[], done: false, finish: 'length' as Completion['finish'] }));
  while (state.some((s) => !s.done)) {
    throwIfAborted(opts.signal);
    const active = state.map((s, i) => i).filter((i) => !state[i].done);
    const want = active.map((i) => Math.min(chunk, opts.maxNewTokens - state[i].tokens.length));
    const n = Math.max(...want);
    const out = await model.generate(
      active.map((i) => [...prompts[i], ...state[i].tokens]),
      { maxNewTokens: n, stop: stopIds, theta: opts.theta, skip: opts.skip ? [...opts.skip] : undefined },
    );
    active.forEach((i, a) => {
      const s = state[i];
      const got = out[a].slice(0, want[a]);
      s.tokens.push(...got);
      if (out[a].length < want[a]) {
        s.done = true;
        s.finish = 'eos';
      } else if (firstStop(decode(s.tokens), opts.stop)) {
        s.done = true;
        s.finish = 'stop';
      } else if (s.tokens.length >= opts.maxNewTokens) {
        s.done = true;
        s.finish = 'length';
      }
    });
  }
  return state.map((s) => {
    const full = decode(s.tokens);
    const cut = firstStop(full, opts.stop);
    return {
      text: cut ? full.slice(0, cut.index) : full,
      tokens: s.tokens,
      stoppedAt: cut?.stop ?? null,
      finish: cut ? 'stop' : s.finish,
    };
  });
}
