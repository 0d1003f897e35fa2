// Answers that end and fit (issue 15, points 5 and 6), on the CPU engine:
// - every engine call refuses a sequence longer than the model's context with
//   HOPSCOTCH_ERR_CONTEXT, in the TypeScript layer and in the engine itself;
// - recoverySet caps answers to the context of a 128-token model;
// - a finished answer ends with its stop token, taken by default from a list of eos ids in
//   generation_config.json, and the engine's loss covers that token.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadPrompts, recoverySet } from '../../src/dataset.js';
import { load } from '../../src/model.js';
import { binding, type NativeModel } from '../../src/native/binding.js';
import type { ProgressEvent } from '../../src/progress.js';
import * as thetaLib from '../../src/theta.js';
import type { Model, Sample } from '../../src/types.js';
import { demoModel, expectCode, fixtureDir, generated, root } from '../helpers.js';

const manifest = JSON.parse(readFileSync(join(generated, 'models', 'fixtures.json'), 'utf8')) as {
  fixtures: { name: string; maxPositionEmbeddings: number; generationEos: number[] }[];
};
const spec = (name: string) => manifest.fixtures.find((f) => f.name === name)!;
const storyPrompts = () => loadPrompts(join(root, 'data', 'prompts', 'story-openings.jsonl'));

/** Error code and message of a rejected promise. */
async function failure(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  const err = await p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e as { code?: string; message: string },
  );
  return { code: err.code, message: err.message };
}

describe('a 128-token model', () => {
  let model: Model;
  let engine: NativeModel;
  const ctx = 128;
  const ids = (n: number, from = 3) => Array.from({ length: n }, (_, i) => from + (i % 300));

  beforeAll(async () => {
    expect(spec('llama-ctx128').maxPositionEmbeddings).toBe(ctx);
    model = await load(fixtureDir('llama-ctx128'), { device: 'cpu', threads: 2 });
    engine = await binding().Model.load(fixtureDir('llama-ctx128'), { device: 'cpu', threads: 2 });
  });
  afterAll(() => {
    model?.dispose();
    engine?.dispose();
  });

  it('has the context of its config', () => {
    expect(model.config.maxPositionEmbeddings).toBe(ctx);
  });

  it('refuses a 300-token logits call, in the library and in the engine', async () => {
    const f = await failure(model.logits(ids(300)));
    expect(f.code).toBe('HOPSCOTCH_ERR_CONTEXT');
    expect(f.message).toContain('300 tokens');
    expect(f.message).toContain('context of 128');
    const ones = thetaLib.ones(model.config.numLayers);
    const e = await failure(engine.logits(ids(300), ones, []));
    expect(e.code).toBe('HOPSCOTCH_ERR_CONTEXT');
    expect(e.message).toContain('300 tokens');
    expect(e.message).toContain('context of 128');
    expect(await engine.logits(ids(ctx), ones, [])).toHaveLength(ctx * model.config.vocabSize);
    expect(await model.logits(ids(ctx))).toHaveLength(ctx * model.config.vocabSize);
  });

  it('refuses generate when prompt + maxNewTokens passes the context', async () => {
    const f = await failure(model.generate([ids(5), ids(10)], { maxNewTokens: 400 }));
    expect(f.code).toBe('HOPSCOTCH_ERR_CONTEXT');
    expect(f.message).toMatch(/prompts\[0\] has 405 tokens \(prompt 5 \+ maxNewTokens 400\)/);
    const ones = thetaLib.ones(model.config.numLayers);
    const e = await failure(engine.generate([ids(5), ids(10)], ones, { maxNewTokens: 119, stop: [] }));
    expect(e.code).toBe('HOPSCOTCH_ERR_CONTEXT');
    expect(e.message).toContain('prompts[1] has 129 tokens (prompt 10 + maxNewTokens 119)');
    const out = await model.generate([ids(10)], { maxNewTokens: ctx - 10, stop: [] });
    expect(out[0]).toHaveLength(ctx - 10);
    // Unset, the default of 128 new tokens is lowered to fit the longest prompt.
    const byDefault = await model.generate([ids(100), ids(20)], { stop: [] });
    expect(byDefault.map((o) => o.length)).toEqual([28, 28]);
    await expectCode(model.generate([ids(ctx)], { stop: [] }), 'HOPSCOTCH_ERR_CONTEXT');
  });

  it('refuses loss, lossAndGrad and layerStats on a sample longer than the context, naming it', async () => {
    const ones = thetaLib.ones(model.config.numLayers);
    const fits: Sample = { prompt: ids(100), response: ids(28, 7) };
    const long: Sample = { prompt: ids(100), response: ids(29, 7) };
    for (const call of [
      () => model.loss([fits, long], ones),
      () => model.lossAndGrad([fits, long], ones),
      () => model.layerStats([fits, long]),
    ]) {
      const f = await failure(call());
      expect(f.code).toBe('HOPSCOTCH_ERR_CONTEXT');
      expect(f.message).toContain('samples[1] has 129 tokens (prompt 100 + response 29)');
      expect(f.message).toContain('context of 128');
    }
    // The engine refuses too when the TypeScript checks are bypassed.
    for (const wantGrad of [false, true]) {
      const e = await failure(engine.loss([fits, long], ones, { skip: [] }, wantGrad));
      expect(e.code).toBe('HOPSCOTCH_ERR_CONTEXT');
      expect(e.message).toContain('samples[1] has 129 tokens (prompt 100 + response 29)');
    }
    const e = await failure(engine.layerStats([long], ones, [], []));
    expect(e.code).toBe('HOPSCOTCH_ERR_CONTEXT');
    expect((await model.loss([fits], ones)).responseTokens).toBe(28);
  });

  it('recoverySet with 256 new tokens keeps every sample within the context', async () => {
    const prompts = await storyPrompts();
    const long = 'Once upon a time '.repeat(40); // about 160 tokens: no room for an answer
    const events: ProgressEvent[] = [];
    const set = await recoverySet(model, [...prompts.slice(0, 24), long], {
      maxNewTokens: 256,
      stop: [],
      batchSize: 8,
      onProgress: (e) => events.push(e),
    });
    expect(set).toHaveLength(24);
    for (const s of set) {
      expect(s.prompt.length + s.response.length).toBe(ctx); // no stop ids: every answer runs to the context
      expect(s.truncated).toBe(true);
    }
    expect(events.find((e) => e.type === 'recovery-set')).toMatchObject({ prompts: 25, samples: 24, skipped: 1, truncated: 24 });
    expect(events.at(-1)).toMatchObject({ type: 'truncated', truncated: 24, samples: 24 });
    await expectCode(recoverySet(model, [long]), 'HOPSCOTCH_ERR_CONTEXT');
  });
});

describe('answers that end', () => {
  let model: Model;
  const eos = spec('llama-eos-list').generationEos;

  beforeAll(async () => {
    model = await load(fixtureDir('llama-eos-list'), { device: 'cpu', threads: 2 });
  });
  afterAll(() => model?.dispose());

  it("stops at every eos id of config.json and generation_config.json's list by default", () => {
    expect(eos.length).toBeGreaterThan(1);
    expect(model.config.eosTokenIds).toEqual([2]);
    expect(model.tokenizer.eosTokenIds).toEqual(eos);
    expect(model.tokenizer.stopTokenIds).toEqual(eos);
  });

  it('keeps the stop token at the end of a finished answer, and the loss covers it', async () => {
    const prompts = (await storyPrompts()).slice(0, 16);
    const set = await recoverySet(model, prompts, { maxNewTokens: 64 });
    const finished = set.filter((s) => !s.truncated);
    expect(finished.length).toBeGreaterThan(set.length / 2);
    for (const s of finished) expect(eos).toContain(s.response.at(-1));
    for (const s of set.filter((x) => x.truncated)) {
      expect(s.response).toHaveLength(64);
      expect(eos).not.toContain(s.response.at(-1));
    }

    // The response tokens the loss counts include the stop token, and its NLL is exactly
    // -log p(stop | prompt, answer) from the logits.
    const ones = thetaLib.ones(model.config.numLayers);
    const s = finished[0];
    const withStop = await model.loss([s], ones);
    const without = await model.loss([{ prompt: s.prompt, response: s.response.slice(0, -1) }], ones);
    expect(withStop.responseTokens).toBe(s.response.length);
    const tokens = [...s.prompt, ...s.response];
    const V = model.config.vocabSize;
    const logits = await model.logits(tokens);
    const row = logits.subarray((tokens.length - 2) * V, (tokens.length - 1) * V);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((a, z) => a + Math.exp(z - max), 0));
    const stopNll = lse - row[s.response.at(-1)!];
    expect(stopNll).toBeGreaterThan(0);
    expect(withStop.sampleNll[0] - without.sampleNll[0]).toBeCloseTo(stopNll, 3);
  });

  it('generate with includeStop appends the stop token and otherwise matches', async () => {
    const prompts = [[1, 403, 407, 261, 378], [1, 300, 301]];
    const plain = await model.generate(prompts, { maxNewTokens: 40 });
    const kept = await model.generate(prompts, { maxNewTokens: 40, includeStop: true });
    prompts.forEach((_, i) => {
      if (kept[i].length > 0 && eos.includes(kept[i].at(-1)!)) expect(kept[i].slice(0, -1)).toEqual(plain[i]);
      else expect(kept[i]).toEqual(plain[i]);
    });
    expect(kept.some((k) => eos.includes(k.at(-1)!))).toBe(true);
  });
});

describe('the bundled model', () => {
  it('ends its stories with BOS: with the default stop ids most answers are cut, and recoverySet says so', async () => {
    const model = await load(demoModel, { device: 'cpu', threads: 2 });
    try {
      const prompts = (await storyPrompts()).slice(0, 16);
      const events: ProgressEvent[] = [];
      const cut = await recoverySet(model, prompts, { maxNewTokens: 256, batchSize: 16, onProgress: (e) => events.push(e) });
      const truncated = cut.filter((s) => s.truncated).length;
      expect(truncated).toBe(cut.length);
      expect(events.at(-1)).toMatchObject({ type: 'truncated', truncated, samples: cut.length, stop: [2] });
      const endedEvents: ProgressEvent[] = [];
      const ended = await recoverySet(model, prompts, { maxNewTokens: 256, batchSize: 16, stop: [1, 2], onProgress: (e) => endedEvents.push(e) });
      expect(ended.filter((s) => s.truncated).length * 2).toBeLessThan(ended.length);
      expect(endedEvents.some((e) => e.type === 'truncated')).toBe(false);
      for (const s of ended.filter((x) => !x.truncated)) expect([1, 2]).toContain(s.response.at(-1));
    } finally {
      model.dispose();
    }
  });
});
