/** Checks on samples shared by the engine wrapper and the training loops. */
import { ErrorCodes, HopscotchError } from './errors.js';
import type { Sample } from './types.js';

/** Throws HOPSCOTCH_ERR_TOKEN_RANGE unless `ids` is an array of integers in [0, vocabSize). */
export function checkTokenIds(ids: unknown, what: string, vocabSize: number): asserts ids is number[] {
  if (!Array.isArray(ids)) throw new HopscotchError(ErrorCodes.ARGUMENT, `${what} must be an array of token ids`);
  for (let i = 0; i < ids.length; i++) {
    const t = ids[i];
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize)
      throw new HopscotchError(ErrorCodes.TOKEN_RANGE, `${what}[${i}] = ${t} is not a token id in [0, ${vocabSize})`);
  }
}

/**
 * Checks every sample before any work starts: a non-empty array of
 * `{ prompt, response }` with token ids in range, a non-empty prompt, and (when
 * `requireResponse`) a non-empty response.
 */
export function checkSamples(
  samples: readonly Sample[],
  vocabSize: number,
  opts: { requireResponse: boolean; name?: string; context?: number },
): void {
  const name = opts.name ?? 'samples';
  if (!Array.isArray(samples)) throw new HopscotchError(ErrorCodes.ARGUMENT, `${name} must be an array of samples`);
  if (samples.length === 0) throw new HopscotchError(ErrorCodes.EMPTY_BATCH, `${name} has no samples`);
  samples.forEach((s, i) => {
    if (!s || typeof s !== 'object') throw new HopscotchError(ErrorCodes.ARGUMENT, `${name}[${i}] must be { prompt, response }`);
    checkTokenIds(s.prompt, `${name}[${i}].prompt`, vocabSize);
    checkTokenIds(s.response, `${name}[${i}].response`, vocabSize);
    if (s.prompt.length === 0)
      throw new HopscotchError(ErrorCodes.ARGUMENT, `${name}[${i}] has an empty prompt: its first response token has nothing to be predicted from`);
    if (opts.requireResponse && s.response.length === 0)
      throw new HopscotchError(ErrorCodes.EMPTY_RESPONSE, `${name}[${i}] has an empty response: it carries no loss`);
    if (opts.context !== undefined)
      checkContext(s.prompt.length + s.response.length, opts.context, `${name}[${i}]`, `prompt ${s.prompt.length} + response ${s.response.length}`);
  });
}

/**
 * Throws HOPSCOTCH_ERR_CONTEXT when a sequence of `length` tokens does not fit the model's
 * context (`maxPositionEmbeddings`); the message names the sequence and both lengths.
 */
export function checkContext(length: number, context: number, what: string, detail?: string): void {
  if (length > context)
    throw new HopscotchError(
      ErrorCodes.CONTEXT,
      `${what} has ${length} tokens${detail ? ` (${detail})` : ''}, more than the model's context of ${context} tokens (max_position_embeddings)`,
    );
}
