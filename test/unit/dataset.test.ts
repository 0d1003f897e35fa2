import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  datasetDigest,
  loadDataset,
  loadPrompts,
  readDataset,
  recoverySet,
  saveDataset,
  splitDataset,
} from '../../src/dataset.js';
import type { ProgressEvent } from '../../src/progress.js';
import type { GenerateOptions, Model, Sample, Tokenizer } from '../../src/types.js';
import { root } from '../helpers.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hopscotch-dataset-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const samples: Sample[] = [
  { prompt: [1, 2, 3], response: [4, 5] },
  { prompt: [], response: [0] },
  { prompt: [9], response: [10, 11, 12] },
];

describe('dataset files', () => {
  it('round-trips samples and header, written atomically', async () => {
    const file = join(dir, 'set.jsonl');
    await saveDataset(file, samples, { fingerprint: 'fp-1', meta: { source: 'gsm8k', maxNewTokens: 256 } });
    const lines = (await readFile(file, 'utf8')).split('\n');
    expect(lines).toHaveLength(5); // header + 3 samples + trailing newline
    expect(JSON.parse(lines[0])).toEqual({
      format: 'hopscotch-dataset',
      version: 2,
      fingerprint: 'fp-1',
      samples: 3,
      digest: datasetDigest(samples),
      source: 'gsm8k',
      maxNewTokens: 256,
    });
    expect(JSON.parse(lines[1])).toEqual({ prompt: [1, 2, 3], response: [4, 5] });
    const { header, samples: back } = await readDataset(file, { fingerprint: 'fp-1' });
    expect(back).toEqual(samples);
    expect(header.source).toBe('gsm8k');
    expect(await loadDataset(file)).toEqual(samples);
    expect(await readdir(dir)).toEqual(['set.jsonl']); // no temporary file left behind
  });

  it('refuses to overwrite without force', async () => {
    const file = join(dir, 'set.jsonl');
    await saveDataset(file, samples, { fingerprint: 'fp-1' });
    await expect(saveDataset(file, samples.slice(0, 1), { fingerprint: 'fp-1' })).rejects.toMatchObject({
      code: 'HOPSCOTCH_ERR_EXISTS',
    });
    await saveDataset(file, samples.slice(0, 1), { fingerprint: 'fp-1', force: true });
    expect(await loadDataset(file)).toEqual(samples.slice(0, 1));
  });

  it('checks the fingerprint', async () => {
    const file = join(dir, 'set.jsonl');
    await saveDataset(file, samples, { fingerprint: 'fp-1' });
    await expect(loadDataset(file, { fingerprint: 'fp-2' })).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_FINGERPRINT' });
  });

  it('digest depends on ids and on where the prompt ends', () => {
    const a = datasetDigest([{ prompt: [1, 2], response: [3] }]);
    expect(datasetDigest([{ prompt: [1], response: [2, 3] }])).not.toBe(a);
    expect(datasetDigest([{ prompt: [1, 2], response: [4] }])).not.toBe(a);
    expect(datasetDigest([{ prompt: [1, 2], response: [3] }])).toBe(a);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
  });

  const header = (n: number, extra: object = {}) =>
    JSON.stringify({ format: 'hopscotch-dataset', version: 2, fingerprint: 'fp', samples: n, ...extra });

  it.each([
    ['bad JSON', [header(1), '{"prompt":[1],'], /line 2: not valid JSON/],
    ['negative id', [header(2), '{"prompt":[1],"response":[2]}', '{"prompt":[-1],"response":[2]}'], /line 3: "prompt"/],
    ['fractional id', [header(1), '{"prompt":[1],"response":[2.5]}'], /line 2: "response"/],
    ['empty response', [header(1), '{"prompt":[1],"response":[]}'], /line 2: "response" is empty/],
    ['count mismatch', [header(3), '{"prompt":[1],"response":[2]}'], /announces 3 samples but the file has 1/],
    ['not a header', ['{"prompt":[1],"response":[2]}'], /line 1: not a dataset header/],
    ['future version', [JSON.stringify({ format: 'hopscotch-dataset', version: 3, fingerprint: 'fp', samples: 0 })], /version 3/],
    ['altered ids', [header(1, { digest: datasetDigest([{ prompt: [1], response: [2] }]) }), '{"prompt":[1],"response":[3]}'], /digest/],
  ])('rejects %s with HOPSCOTCH_ERR_DATASET and the line', async (_name, lines, message) => {
    const file = join(dir, 'bad.jsonl');
    await writeFile(file, (lines as string[]).join('\n') + '\n');
    await expect(loadDataset(file)).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_DATASET', message: expect.stringMatching(message as RegExp) });
  });

  it('checks ids against vocabSize when given', async () => {
    const file = join(dir, 'set.jsonl');
    await saveDataset(file, samples, { fingerprint: 'fp' });
    await expect(loadDataset(file, { vocabSize: 12 })).rejects.toMatchObject({
      code: 'HOPSCOTCH_ERR_TOKEN_RANGE',
      message: expect.stringMatching(/line 4: token id 12/),
    });
    expect(await loadDataset(file, { vocabSize: 13 })).toEqual(samples);
  });
});

describe('loadPrompts', () => {
  it('reads GSM8K questions and Open Assistant prompts from the shared data', async () => {
    const gsm = await loadPrompts(join(root, 'data/gsm8k/train.jsonl'), { limit: 3 });
    expect(gsm).toHaveLength(3);
    expect(gsm[0]).toMatch(/^Natalia sold clips to 48 of her friends/);
    const all = await loadPrompts(join(root, 'data/gsm8k/train.jsonl'));
    expect(all).toHaveLength(7473);
    const oasst = await loadPrompts(join(root, 'data/instructions/oasst_prompts_en.jsonl'), { limit: 1 });
    expect(oasst).toEqual(['What does my (UK) gas meter actually measure?']);
  });

  it('reads messages, skips blank lines, names bad lines', async () => {
    const file = join(dir, 'p.jsonl');
    await writeFile(
      file,
      [
        '{"prompt":"hi"}',
        '',
        '{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"2+2?"}]}',
        '{"question":"q?","answer":"a"}',
        '{"text":"no prompt"}',
      ].join('\n'),
    );
    expect(await loadPrompts(file, { limit: 3 })).toEqual([
      'hi',
      { messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: '2+2?' }] },
      'q?',
    ]);
    await expect(loadPrompts(file)).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_DATASET', message: expect.stringMatching(/line 5/) });
  });
});

describe('recoverySet', () => {
  function fakeModel(hasChatTemplate: boolean, context = 1000) {
    const calls: { prompts: number[][]; opts: GenerateOptions }[] = [];
    const tokenizer: Tokenizer = {
      encode: (text, opts) => [...(opts?.addSpecialTokens ? [1] : []), ...Array.from(text, (c) => c.charCodeAt(0))],
      decode: () => '',
      applyChatTemplate: (messages, opts) => [
        2,
        ...messages.flatMap((m) => [3, ...Array.from(m.content, (c) => c.charCodeAt(0))]),
        ...(opts?.addGenerationPrompt ? [4] : []),
      ],
      hasChatTemplate,
      eosTokenIds: [0],
      stopTokenIds: [0, 5],
      bosTokenId: 1,
    };
    const model = {
      tokenizer,
      fingerprint: 'fp',
      config: { maxPositionEmbeddings: context },
      // The answer is the prompt's last id repeated (prompt length) % 3 times (sometimes
      // empty), then the stop token 5, unless that is beyond maxNewTokens (cut).
      async generate(prompts: number[][], opts: GenerateOptions = {}) {
        calls.push({ prompts, opts });
        return prompts.map((p) => {
          const words = Array((p.length % 3) as number).fill(p[p.length - 1]);
          const full = opts.includeStop ? [...words, 5] : words;
          return full.slice(0, opts.maxNewTokens);
        });
      },
    } as unknown as Model;
    return { model, calls };
  }

  it('uses the chat template when the tokenizer has one and drops empty answers', async () => {
    const { model, calls } = fakeModel(true);
    const events: ProgressEvent[] = [];
    const prompts = ['a', 'bb', 'ccc', { messages: [{ role: 'user', content: 'dd' }] }, 'e'];
    const set = await recoverySet(model, prompts, { batchSize: 2, maxNewTokens: 16, onProgress: (e) => events.push(e) });
    expect(calls.map((c) => c.prompts.length)).toEqual([2, 2, 1]);
    expect(calls[0].opts).toEqual({ maxNewTokens: 16, stop: [0, 5], includeStop: true });
    expect(calls[0].prompts[0]).toEqual([2, 3, 97, 4]);
    // Template lengths: a->4, bb->5, ccc->6, dd->5, e->4; answers of length len % 3: 1, 2, 0, 2, 1.
    expect(set.map((s) => s.prompt.length)).toEqual([4, 5, 5, 4]);
    // The stop token ends every finished answer; none is marked truncated.
    expect(set[1]).toEqual({ prompt: [2, 3, 98, 98, 4], response: [4, 4, 5] });
    expect(set.every((s) => s.response.at(-1) === 5 && s.truncated === undefined)).toBe(true);
    expect(events.filter((e) => e.type === 'generate').at(-1)).toEqual({
      type: 'generate',
      batch: 3,
      batches: 3,
      samples: 4,
      dropped: 1,
      truncated: 0,
      skipped: 0,
    });
    expect(events.at(-1)).toEqual({
      type: 'recovery-set',
      prompts: 5,
      samples: 4,
      dropped: 1,
      skipped: 0,
      truncated: 0,
      maxNewTokens: 16,
      stop: [0, 5],
    });
  });

  it('encodes plain text with special tokens without a template, and refuses conversations', async () => {
    const { model, calls } = fakeModel(false);
    const set = await recoverySet(model, ['ab', 'abcd']);
    expect(calls[0].prompts).toEqual([
      [1, 97, 98],
      [1, 97, 98, 99, 100],
    ]);
    expect(calls[0].opts.maxNewTokens).toBe(256);
    expect(set).toEqual([{ prompt: [1, 97, 98, 99, 100], response: [100, 100, 5] }]);
    await expect(recoverySet(model, [{ messages: [{ role: 'user', content: 'x' }] }])).rejects.toMatchObject({
      code: 'HOPSCOTCH_ERR_ARGUMENT',
    });
    const { model: m2, calls: c2 } = fakeModel(true);
    await recoverySet(m2, ['ab'], { chatTemplate: false });
    expect(c2[0].prompts).toEqual([[1, 97, 98]]);
  });

  it('stops between batches when aborted', async () => {
    const { model, calls } = fakeModel(true);
    const controller = new AbortController();
    const reason = new Error('cancel');
    const p = recoverySet(model, ['a', 'b', 'c', 'd'], {
      batchSize: 1,
      signal: controller.signal,
      onProgress: (e) => {
        if (e.type === 'generate' && e.batch === 2) controller.abort(reason);
      },
    });
    await expect(p).rejects.toBe(reason);
    expect(calls).toHaveLength(2);
  });
});

describe('splitDataset', () => {
  const data: Sample[] = Array.from({ length: 50 }, (_, i) => ({ prompt: [1, i], response: [i + 2] }));

  it('is disjoint, covers the data, keeps order and is deterministic per seed', () => {
    const a = splitDataset(data, { fraction: 0.2, seed: 7 });
    expect(a.validation).toHaveLength(10);
    expect(a.train).toHaveLength(40);
    const key = (s: Sample) => s.prompt[1];
    const tr = new Set(a.train.map(key));
    expect(a.validation.some((s) => tr.has(key(s)))).toBe(false);
    expect(new Set([...a.train, ...a.validation].map(key)).size).toBe(50);
    expect(a.validationIndices).toEqual(a.validation.map(key));
    expect([...a.validationIndices].sort((x, y) => x - y)).toEqual(a.validationIndices);
    expect(a.train.map(key)).toEqual([...a.train.map(key)].sort((x, y) => x - y));
    expect(splitDataset(data, { fraction: 0.2, seed: 7 })).toEqual(a);
    expect(splitDataset(data, { fraction: 0.2, seed: 8 }).validationIndices).not.toEqual(a.validationIndices);
    // not simply the last or first samples
    expect(a.validationIndices).not.toEqual([40, 41, 42, 43, 44, 45, 46, 47, 48, 49]);
    expect(a.validationIndices).not.toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // the seed defaults to 0
    expect(splitDataset(data, { fraction: 0.2 })).toEqual(splitDataset(data, { fraction: 0.2, seed: 0 }));
  });

  it('keeps at least one sample on each side and refuses what it cannot split', () => {
    expect(splitDataset(data.slice(0, 3), { fraction: 0.01 }).validation).toHaveLength(1);
    expect(splitDataset(data.slice(0, 3), { fraction: 0.99 }).train).toHaveLength(1);
    expect(() => splitDataset(data.slice(0, 1), { fraction: 0.5 })).toThrow(expect.objectContaining({ code: 'HOPSCOTCH_ERR_DATASET' }));
    for (const fraction of [0, 1, -0.1, Number.NaN, 2])
      expect(() => splitDataset(data, { fraction })).toThrow(expect.objectContaining({ code: 'HOPSCOTCH_ERR_ARGUMENT' }));
    expect(() => splitDataset(data, { fraction: 0.2, seed: 1.5 })).toThrow(expect.objectContaining({ code: 'HOPSCOTCH_ERR_ARGUMENT' }));
  });
});

describe('recoverySet: answers that end and fit', () => {
  // A model whose answers are `len` copies of 7, then eos 2, and which records its calls.
  function model(opts: { context: number; answer: (prompt: number[]) => number; stopIds?: number[] }) {
    const calls: { prompts: number[][]; opts: GenerateOptions }[] = [];
    const m = {
      tokenizer: {
        encode: (text: string) => [1, ...Array.from(text, () => 9)],
        hasChatTemplate: false,
        eosTokenIds: [2],
        stopTokenIds: opts.stopIds ?? [2],
        bosTokenId: 1,
      },
      config: { maxPositionEmbeddings: opts.context },
      async generate(prompts: number[][], o: GenerateOptions = {}) {
        calls.push({ prompts, opts: o });
        for (const p of prompts) expect(p.length + (o.maxNewTokens ?? 0)).toBeLessThanOrEqual(opts.context);
        return prompts.map((p) => [...Array(opts.answer(p)).fill(7), 2].slice(0, o.maxNewTokens));
      },
    } as unknown as Model;
    return { m, calls };
  }
  const text = (n: number) => 'x'.repeat(n - 1); // encodes to n tokens

  it('caps each answer to the context, skips prompts that leave no room and counts them', async () => {
    const { m, calls } = model({ context: 32, answer: () => 100 });
    const events: ProgressEvent[] = [];
    const set = await recoverySet(m, [text(4), text(31), text(32), text(40), text(10)], {
      maxNewTokens: 20,
      batchSize: 8,
      onProgress: (e) => events.push(e),
    });
    // 32 and 40 tokens leave no room; 31 gets 1 token, the others the full 20.
    expect(set.map((s) => [s.prompt.length, s.response.length])).toEqual([
      [4, 20],
      [31, 1],
      [10, 20],
    ]);
    expect(set.every((s) => s.prompt.length + s.response.length <= 32)).toBe(true);
    expect(set.every((s) => s.truncated === true)).toBe(true);
    expect(calls.map((c) => c.opts.maxNewTokens).sort((a, b) => a! - b!)).toEqual([1, 20]);
    const summary = events.find((e) => e.type === 'recovery-set');
    expect(summary).toMatchObject({ prompts: 5, samples: 3, skipped: 2, truncated: 3, dropped: 0 });
    expect(events.at(-1)).toEqual({ type: 'truncated', truncated: 3, samples: 3, maxNewTokens: 20, stop: [2] });
  });

  it('refuses with HOPSCOTCH_ERR_CONTEXT when no prompt fits', async () => {
    const { m, calls } = model({ context: 8, answer: () => 1 });
    await expect(recoverySet(m, [text(8), text(9)])).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_CONTEXT' });
    expect(calls).toHaveLength(0);
  });

  it('warns only when more than half the answers are cut', async () => {
    const lengths = [3, 50, 4, 60];
    let k = 0;
    const { m } = model({ context: 1000, answer: () => lengths[k++ % 4] });
    const events: ProgressEvent[] = [];
    const set = await recoverySet(m, ['a', 'b', 'c', 'd'], { maxNewTokens: 10, batchSize: 1, onProgress: (e) => events.push(e) });
    expect(set.map((s) => s.truncated ?? false)).toEqual([false, true, false, true]);
    expect(set[0].response).toEqual([7, 7, 7, 2]);
    expect(events.some((e) => e.type === 'truncated')).toBe(false); // exactly half
    k = 0;
    const { m: m2 } = model({ context: 1000, answer: () => [3, 50, 40, 60][k++ % 4] });
    const events2: ProgressEvent[] = [];
    await recoverySet(m2, ['a', 'b', 'c', 'd'], { maxNewTokens: 10, batchSize: 1, onProgress: (e) => events2.push(e) });
    expect(events2.filter((e) => e.type === 'truncated')).toEqual([{ type: 'truncated', truncated: 3, samples: 4, maxNewTokens: 10, stop: [2] }]);
  });

  it('uses the given stop ids and drops answers that are only a stop token', async () => {
    const { m, calls } = model({ context: 1000, answer: (p) => (p.length === 2 ? 0 : 2) });
    const set = await recoverySet(m, ['a', 'bb'], { stop: [2, 3] });
    expect(calls[0].opts).toEqual({ maxNewTokens: 256, stop: [2, 3], includeStop: true });
    expect(set).toEqual([{ prompt: [1, 9, 9], response: [7, 7, 2] }]);
  });
});

describe('dataset format versions', () => {
  it('keeps truncation marks through save and load', async () => {
    const file = join(dir, 'v2.jsonl');
    const data: Sample[] = [
      { prompt: [1, 2], response: [3, 2] },
      { prompt: [1, 4], response: [5, 6], truncated: true },
    ];
    await saveDataset(file, data, { fingerprint: 'fp' });
    const lines = (await readFile(file, 'utf8')).trim().split('\n');
    expect(JSON.parse(lines[0]).version).toBe(2);
    expect(JSON.parse(lines[2])).toEqual({ prompt: [1, 4], response: [5, 6], truncated: true });
    expect(await loadDataset(file)).toEqual(data);
  });

  it('refuses a version 1 file with the fix, and reads it when told to', async () => {
    const file = join(dir, 'v1.jsonl');
    const old: Sample[] = [{ prompt: [1, 2], response: [3, 4] }];
    const header = { format: 'hopscotch-dataset', version: 1, fingerprint: 'fp', samples: 1, digest: datasetDigest(old) };
    await writeFile(file, `${JSON.stringify(header)}\n${JSON.stringify(old[0])}\n`);
    const err = await loadDataset(file).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'HOPSCOTCH_ERR_DATASET' });
    expect((err as Error).message).toMatch(/version 1.*stop token/);
    expect((err as Error).message).toContain('hopscotch data');
    expect((err as Error).message).toContain('allowVersion1');
    expect(await loadDataset(file, { allowVersion1: true })).toEqual(old);
    const { header: h } = await readDataset(file, { allowVersion1: true });
    expect(h.version).toBe(1);
  });

  it('refuses a sample longer than the context with HOPSCOTCH_ERR_CONTEXT naming the line', async () => {
    const file = join(dir, 'long.jsonl');
    await saveDataset(file, [{ prompt: [1, 2], response: [3] }, { prompt: [1, 2, 3], response: [4, 5] }], { fingerprint: 'fp' });
    const err = await loadDataset(file, { context: 4 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'HOPSCOTCH_ERR_CONTEXT' });
    expect((err as Error).message).toContain('line 3');
    expect((err as Error).message).toContain('5 tokens');
    expect((err as Error).message).toContain('context of 4');
    expect(await loadDataset(file, { context: 5 })).toHaveLength(2);
  });
});
