/**
 * The progress of a long call as an async iterable, for code that prefers `for await`
 * to a callback:
 *
 * ```ts
 * const run = progressStream((onProgress) => selectBlocks(model, data, { count: 4, onProgress }));
 * for await (const event of run) if (event.type === 'step-end') console.log(`skip ${event.skipped}`);
 * const pick = await run.result;
 * ```
 */
import { HopscotchError, ErrorCodes } from './errors.js';
import type { ProgressCallback, ProgressEvent } from './progress.js';

/** A running call: iterate its progress events (once), await its `result`. */
export interface ProgressStream<T> extends AsyncIterable<ProgressEvent> {
  /** The call's own promise: its value, or its error. */
  readonly result: Promise<T>;
}

/**
 * Starts `start` at once with an `onProgress` callback to hand on (to `selectBlocks`,
 * `rescale`, `recoverySet`, ...) and returns its events as an async iterable. The
 * iteration yields every event in order, including those reported before it began, and
 * ends when the call settles; when the call fails, the iteration throws its error after
 * the events reported before the failure. Leaving the loop early stops the buffering,
 * not the call (pass the call a `signal` to cancel it). The stream can be iterated once.
 */
export function progressStream<T>(start: (onProgress: ProgressCallback) => Promise<T>): ProgressStream<T> {
  const queue: ProgressEvent[] = [];
  let listening = true;
  let wake: (() => void) | null = null;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  let settled = false;
  let failure: { error: unknown } | null = null;
  const onProgress: ProgressCallback = (event) => {
    if (!listening) return;
    queue.push(event);
    notify();
  };
  let result: Promise<T>;
  try {
    result = Promise.resolve(start(onProgress));
  } catch (err) {
    result = Promise.reject(err);
  }
  // Handled here, so a failure surfaced through the iteration is not also unhandled.
  result.then(
    () => {
      settled = true;
      notify();
    },
    (error: unknown) => {
      settled = true;
      failure = { error };
      notify();
    },
  );

  let iterated = false;
  async function* events(): AsyncGenerator<ProgressEvent, void, undefined> {
    try {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (settled) break;
        await new Promise<void>((resolve) => (wake = resolve));
      }
      if (failure) throw (failure as { error: unknown }).error;
    } finally {
      listening = false;
      queue.length = 0;
    }
  }

  return {
    result,
    [Symbol.asyncIterator]() {
      if (iterated) throw new HopscotchError(ErrorCodes.ARGUMENT, 'a progress stream can be iterated once');
      iterated = true;
      return events();
    },
  };
}
