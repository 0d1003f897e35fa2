// progressStream: a call's onProgress events as an async iterable, and its result; on
// stand-in calls, and on a real one (recoverySet on the bundled model) against the same
// call with a plain callback.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { HopscotchError } from '../../src/errors.js';
import { hopscotch, load, loadPrompts, progressStream, recoverySet, type ProgressEvent } from '../../src/index.js';
import type { ProgressCallback } from '../../src/progress.js';
import { demoModel, root } from '../helpers.js';

const eta = (seconds: number): ProgressEvent => ({ type: 'eta', seconds });
const tick = () => new Promise<void>((r) => setTimeout(r, 1));

/** A stand-in for a long call: reports `n` events, some synchronously, some after a wait. */
async function work(onProgress: ProgressCallback, n: number, fail?: Error): Promise<string> {
  onProgress(eta(0)); // before the caller starts iterating
  for (let i = 1; i < n; i++) {
    await tick();
    onProgress(eta(i));
    if (i % 3 === 0) onProgress(eta(i + 0.5)); // two events between two waits
  }
  if (fail) throw fail;
  return `done after ${n}`;
}

const expected = (n: number) => {
  const out = [0];
  for (let i = 1; i < n; i++) out.push(...(i % 3 === 0 ? [i, i + 0.5] : [i]));
  return out;
};

describe('progressStream', () => {
  it('yields every event in order, then ends; result is the call value', async () => {
    const run = progressStream((onProgress) => work(onProgress, 10));
    const seen: number[] = [];
    for await (const e of run) if (e.type === 'eta') seen.push(e.seconds);
    expect(seen).toEqual(expected(10));
    expect(await run.result).toBe('done after 10');
  });

  it('keeps the events reported before iteration starts, even after the call settled', async () => {
    const run = progressStream((onProgress) => work(onProgress, 5));
    await run.result;
    const seen: number[] = [];
    for await (const e of run) if (e.type === 'eta') seen.push(e.seconds);
    expect(seen).toEqual(expected(5));
  });

  it('throws the call error after the events reported before it, and result rejects with it', async () => {
    const boom = new HopscotchError('HOPSCOTCH_ERR_ABORTED', 'stopped');
    const run = progressStream((onProgress) => work(onProgress, 4, boom));
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const e of run) if (e.type === 'eta') seen.push(e.seconds);
      })(),
    ).rejects.toBe(boom);
    expect(seen).toEqual(expected(4));
    await expect(run.result).rejects.toBe(boom);
  });

  it('turns a synchronous throw of start into a rejected result', async () => {
    const run = progressStream<number>(() => {
      throw new Error('sync');
    });
    await expect(run.result).rejects.toThrow('sync');
    await expect((async () => { for await (const _ of run) void _; })()).rejects.toThrow('sync');
  });

  it('leaving the loop early stops buffering but not the call', async () => {
    let reported = 0;
    const run = progressStream((onProgress) =>
      work((e) => {
        reported++;
        onProgress(e);
      }, 8),
    );
    for await (const e of run) if (e.type === 'eta' && e.seconds >= 2) break;
    expect(await run.result).toBe('done after 8');
    expect(reported).toBe(expected(8).length);
  });

  it('can be iterated once', async () => {
    const run = progressStream((onProgress) => work(onProgress, 2));
    for await (const _ of run) void _;
    expect(() => run[Symbol.asyncIterator]()).toThrow(/iterated once/);
  });

  it('streams the events of a real call, the same as its callback receives, and its result', async () => {
    await using model = await load(demoModel, { device: 'cpu', threads: 1 });
    const prompts = await loadPrompts(join(root, 'data', 'prompts', 'story-openings.jsonl'), { limit: 6 });
    const opts = { maxNewTokens: 8, batchSize: 2 };
    const viaCallback: ProgressEvent[] = [];
    const expected = await recoverySet(model, prompts, { ...opts, onProgress: (e) => viaCallback.push(e) });
    const run = progressStream((onProgress) => recoverySet(model, prompts, { ...opts, onProgress }));
    const streamed: ProgressEvent[] = [];
    for await (const e of run) streamed.push(e);
    // Three batches, the summary, and the warning that 8 new tokens cut most answers.
    expect(streamed.map((e) => e.type)).toEqual(['generate', 'generate', 'generate', 'recovery-set', 'truncated']);
    expect(streamed).toEqual(viaCallback);
    expect(await run.result).toEqual(expected);
  });

  it('is on the hopscotch namespace', () => {
    expect(hopscotch.progressStream).toBe(progressStream);
  });
});
