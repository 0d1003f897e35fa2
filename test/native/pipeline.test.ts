// The pipeline through the public API on the real CPU engine: strategies find the inert
// attention layer of llama-inert, recovery sets are the model's own greedy answers, and
// rescaling lowers the loss of a model with a skipped block.
import { beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';

import { loadPrompts, promptIds, recoverySet } from '../../src/dataset.js';
import { load } from '../../src/model.js';
import { evaluateLoss, rescale } from '../../src/rescale.js';
import { selectBlocks } from '../../src/select.js';
import type { StrategyName } from '../../src/strategies.js';
import { ones } from '../../src/theta.js';
import type { Dataset, Model } from '../../src/types.js';
import { demoModel, fixtureDir, root } from '../helpers.js';

const openings = join(root, 'data', 'prompts', 'story-openings.jsonl');

describe('llama-inert (layer 2 attention has o_proj = 0)', () => {
  let model: Model;
  let data: Dataset;

  beforeAll(async () => {
    model = await load(fixtureDir('llama-inert'), { device: 'cpu' });
    const prompts = (await loadPrompts(openings)).slice(0, 32);
    data = await recoverySet(model, prompts, { maxNewTokens: 24, stop: [], batchSize: 16 });
    return () => model.dispose();
  });

  it.each(['iterative-greedy', 'full-greedy', 'similarity-attn'] as StrategyName[])('%s skips layer 2 first', async (strategy) => {
    const sel = await selectBlocks(model, data, { strategy, count: 1, batchSize: 8 });
    expect(sel.skipped).toEqual([2]);
    const step1 = sel.trace.filter((e) => e.step === 1);
    expect(step1).toHaveLength(4);
    const byScore = [...step1].sort((a, b) => a.score - b.score);
    expect(byScore[0].candidate).toBe(2);
    expect(byScore[1].score).toBeGreaterThan(byScore[0].score);
  });

  it('the inert layer has cos(h, x1) = 1 exactly, and skipping it leaves the loss unchanged', async () => {
    const stats = await model.layerStats(data.slice(0, 8));
    expect(stats.cosAttn[2]).toBe(1);
    for (const l of [0, 1, 3]) expect(stats.cosAttn[l]).toBeLessThan(1);
    const t = ones(4);
    const full = await model.loss(data.slice(0, 8), t);
    t.bAtt[2] = 0;
    const skipped = await model.loss(data.slice(0, 8), t, { skip: [2] });
    expect(skipped.loss).toBe(full.loss);
  });
});

describe('stories260k (the bundled model)', () => {
  let model: Model;
  beforeAll(async () => {
    model = await load(demoModel, { device: 'cpu' });
    return () => model.dispose();
  });

  it('recoverySet answers the story openings exactly as model.generate does, one prompt at a time', async () => {
    const prompts = await loadPrompts(openings);
    expect(prompts).toHaveLength(64);
    const data = await recoverySet(model, prompts, { maxNewTokens: 96, stop: [1, 2], batchSize: 16 });
    expect(data).toHaveLength(64);
    for (let i = 0; i < prompts.length; i++) {
      const ids = model.tokenizer.encode(prompts[i] as string, { addSpecialTokens: true });
      expect(promptIds(model, prompts[i], false, i)).toEqual(ids);
      const [expected] = await model.generate([ids], { maxNewTokens: 96, stop: [1, 2] });
      expect(data[i].prompt).toEqual(ids);
      expect(data[i].response).toEqual(expected);
      expect(data[i].response.some((t) => t === 1 || t === 2)).toBe(false);
    }
  });

  it('rescale lowers the training loss of a model with a skipped block', async () => {
    const prompts = (await loadPrompts(openings)).slice(0, 16);
    const data = await recoverySet(model, prompts, { maxNewTokens: 48, stop: [1, 2], batchSize: 16 });
    const noScale = ones(5);
    noScale.bAtt[2] = 0;
    const before = await evaluateLoss(model, data, noScale, { skip: [2] });
    const fit = await rescale(model, data, { skip: [2], epochs: 4, lr: 1e-2, batchSize: 8 });
    const after = await evaluateLoss(model, data, fit.theta, { skip: [2] });
    expect(fit.steps).toBe(8);
    expect(fit.theta.bAtt[2]).toBe(0);
    expect(after).toBeLessThan(before - 1);
    const base = await evaluateLoss(model, data, ones(5));
    expect(base).toBeLessThan(after);
  });
});
