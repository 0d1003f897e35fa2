import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ProgressEvent } from '../../src/progress.js';
import { type Selection, type SelectOptions, selectBlocks, selectionFromJSON, selectionToJSON } from '../../src/select.js';
import type { SelectionStrategy } from '../../src/strategies.js';
import { THETA_KEYS } from '../../src/theta.js';
import type { BatchOptions, LayerStats, LossAndGradResult, Model, ModelConfig, Sample, Theta } from '../../src/types.js';

/**
 * A fake engine whose loss is an analytic function of theta and the skip list, with
 * exact gradients. Per sample i (weight c_i from its response), with bEff = 0 on skipped
 * layers:
 *   F = 0.5 + sum_l a_l (bEff_l + 0.3 (sAtt_l - 1) - t_l)^2
 *           + 0.05 sum_l ((bMlp_l - 1.1)^2 + (sMlp_l - 0.95)^2)
 *           + sum_{(l,m) in pairs} P_lm (1 - bEff_l)(1 - bEff_m)
 * a_l is what removing layer l costs; pairs make two removals cost more together.
 */
interface FakeSpec {
  a: number[];
  t?: number[];
  pairs?: [number, number, number][];
  stats?: Partial<LayerStats>;
  fingerprint?: string;
}

class FakeModel {
  readonly config: ModelConfig;
  readonly fingerprint: string;
  readonly dir = '/fake';
  readonly device = 'cpu' as const;
  calls = 0;
  statsCalls = 0;
  onCall?: (calls: number) => void;

  constructor(readonly spec: FakeSpec) {
    this.fingerprint = spec.fingerprint ?? 'fake-model-A';
    this.config = { numLayers: spec.a.length } as ModelConfig;
  }

  private f(theta: Theta, skip: number[]): { F: number; g: Theta } {
    const n = this.spec.a.length;
    const g: Theta = {
      bAtt: new Float32Array(n),
      sAtt: new Float32Array(n),
      bMlp: new Float32Array(n),
      sMlp: new Float32Array(n),
    };
    const skipped = new Set(skip);
    for (const l of skip) if (theta.bAtt[l] !== 0) throw new Error(`fake: skipped layer ${l} has bAtt ${theta.bAtt[l]}`);
    const bEff = Array.from(theta.bAtt, (b, l) => (skipped.has(l) ? 0 : b));
    let F = 0.5;
    const gb = new Float64Array(n);
    for (let l = 0; l < n; l++) {
      const r = bEff[l] + 0.3 * (theta.sAtt[l] - 1) - (this.spec.t?.[l] ?? 1);
      F += this.spec.a[l] * r * r;
      gb[l] += 2 * this.spec.a[l] * r;
      g.sAtt[l] = 0.6 * this.spec.a[l] * r;
      F += 0.05 * ((theta.bMlp[l] - 1.1) ** 2 + (theta.sMlp[l] - 0.95) ** 2);
      g.bMlp[l] = 0.1 * (theta.bMlp[l] - 1.1);
      g.sMlp[l] = 0.1 * (theta.sMlp[l] - 0.95);
    }
    for (const [l, m, p] of this.spec.pairs ?? []) {
      F += p * (1 - bEff[l]) * (1 - bEff[m]);
      gb[l] -= p * (1 - bEff[m]);
      gb[m] -= p * (1 - bEff[l]);
    }
    for (let l = 0; l < n; l++) g.bAtt[l] = skipped.has(l) ? 0 : gb[l];
    return { F, g };
  }

  private weights(samples: Sample[], tokenMean: boolean): { w: number; tokens: number; per: number[] } {
    const per = samples.map((s) => 1 + 0.1 * (s.response.length % 3));
    const tokens = samples.reduce((t, s) => t + s.response.length, 0);
    const w = tokenMean
      ? samples.reduce((t, s, i) => t + per[i] * s.response.length, 0) / tokens
      : per.reduce((t, x) => t + x, 0) / samples.length;
    return { w, tokens, per };
  }

  async lossAndGrad(samples: Sample[], theta: Theta, opts: BatchOptions = {}): Promise<LossAndGradResult> {
    if (samples.length === 0) throw new Error('fake: empty batch');
    this.calls += 1;
    this.onCall?.(this.calls);
    const { F, g } = this.f(theta, opts.skip ?? []);
    const { w, tokens, per } = this.weights(samples, opts.tokenMean ?? false);
    for (const k of THETA_KEYS) for (let l = 0; l < g[k].length; l++) g[k][l] *= w;
    return { loss: w * F, responseTokens: tokens, sampleNll: Float64Array.from(per, (c) => c * F), peakBytes: 0, grad: g };
  }

  /** The loss alone: not counted in `calls` (those count optimizer steps) and never triggers `onCall`. */
  async loss(samples: Sample[], theta: Theta, opts: BatchOptions = {}) {
    if (samples.length === 0) throw new Error('fake: empty batch');
    const { F } = this.f(theta, opts.skip ?? []);
    const { w, tokens, per } = this.weights(samples, opts.tokenMean ?? false);
    return { loss: w * F, responseTokens: tokens, sampleNll: Float64Array.from(per, (c) => c * F), peakBytes: 0 };
  }

  async layerStats(): Promise<LayerStats> {
    this.statsCalls += 1;
    const n = this.spec.a.length;
    const fill = (v: number) => Array(n).fill(v) as number[];
    return {
      cosAttn: fill(0.5),
      cosMlp: fill(0.5),
      cosBlock: fill(0.5),
      blockInfluence: fill(0.5),
      hidden: [],
      ...this.spec.stats,
    };
  }
}

const fake = (spec: FakeSpec) => new FakeModel(spec) as FakeModel & Model;

const data: Sample[] = Array.from({ length: 20 }, (_, i) => ({
  prompt: [1, 2, 3 + (i % 5)],
  response: Array.from({ length: 1 + (i % 6) }, (_, j) => 10 + j),
}));

// Layer 3 is obviously the cheapest to remove, then 1, then 4, ...
const A = [0.9, 0.3, 0.6, 0.05, 0.4, 0.8];

const bits = (t: Theta) => THETA_KEYS.map((k) => Array.from(new Uint32Array(t[k].buffer.slice(0))));
function expectSameSelection(a: Selection, b: Selection) {
  expect(a.skipped).toEqual(b.skipped);
  expect(bits(a.theta)).toEqual(bits(b.theta));
  expect(a.trace).toEqual(b.trace);
  expect(a.losses).toEqual(b.losses);
  expect(a.stoppedBy).toBe(b.stoppedBy);
  expect(a.firstOrder).toEqual(b.firstOrder);
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hopscotch-select-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

// One epoch per probe (20 samples in batches of 8: 3 steps), one epoch per rescale on all
// the data, and exhaustive probing (the paper's): the loop's mechanics with a small,
// exactly countable budget. The defaults (longer probes, converging rescales on a
// held-out slice) are tested further down; halving has its own tests (probing.test.ts,
// native/plan.test.ts).
const base: SelectOptions = { batchSize: 8, seed: 3, probeSteps: 3, rescaleEpochs: 1, probing: 'exhaustive' };

describe('selectBlocks: iterative-greedy', () => {
  it('skips the cheapest layer each step and records candidates x steps probes', async () => {
    const model = fake({ a: A });
    const sel = await selectBlocks(model, data, { ...base, count: 3 });
    expect(sel.strategy).toBe('iterative-greedy');
    expect(sel.skipped).toEqual([3, 1, 4]);
    expect(sel.stoppedBy).toBe('count');
    expect(sel.trace).toHaveLength(6 + 5 + 4);
    for (const step of [1, 2, 3]) {
      const entries = sel.trace.filter((e) => e.step === step);
      expect(entries.map((e) => e.candidate)).toEqual([0, 1, 2, 3, 4, 5].filter((l) => !sel.skipped.slice(0, step - 1).includes(l)));
      const best = [...entries].sort((x, y) => x.score - y.score)[0];
      expect(best.candidate).toBe(sel.skipped[step - 1]);
    }
    // Step 1 probe scores follow the removal costs, and lie between the cost with no
    // compensation (upper bound) and 0.5 (the loss floor) times the sample weight.
    const step1 = sel.trace.filter((e) => e.step === 1);
    const order = [...step1].sort((x, y) => x.score - y.score).map((e) => e.candidate);
    expect(order).toEqual([3, 1, 4, 2, 5, 0]);
    for (const e of step1) expect(e.score).toBeLessThan(1.2 * (0.5 + A[e.candidate] + 0.01));
    for (const e of step1) expect(e.score).toBeGreaterThan(0.5 + 0.5 * A[e.candidate]);
    // Skipped layers: b_att exactly 0; the rest were rescaled (moved from 1).
    for (const l of sel.skipped) expect(sel.theta.bAtt[l]).toBe(0);
    expect(sel.theta.sAtt[3]).toBeGreaterThan(1); // compensates its removed attention
    expect(sel.theta.bMlp[0]).toBeGreaterThan(1);
    expect(sel.losses.map((x) => x.step)).toEqual([1, 2, 3]);
    expect(sel.timings.map((x) => x.step)).toEqual([1, 2, 3]);
    // Calls: probes (6+5+4 candidates x 3 batches of 8) + 3 rescales x 3 batches.
    expect(model.calls).toBe(15 * 3 + 3 * 3);
  });

  it('re-ranks after each removal, unlike full-greedy (paper A.5)', async () => {
    // Removing 3 and 1 together costs 1.0 extra: iterative picks 3, then avoids 1.
    const spec: FakeSpec = { a: A, pairs: [[3, 1, 1.0]] };
    const it3 = await selectBlocks(fake(spec), data, { ...base, count: 2 });
    const full = await selectBlocks(fake(spec), data, { ...base, count: 2, strategy: 'full-greedy' });
    expect(it3.skipped).toEqual([3, 4]);
    expect(full.skipped).toEqual([3, 1]);
    expect(full.trace).toHaveLength(6);
    expect(full.trace.every((e) => e.step === 1)).toBe(true);
    // Full-greedy's step-1 probes equal iterative's step-1 probes (same start, same batches).
    expect(full.trace).toEqual(it3.trace.filter((e) => e.step === 1));
    expect(full.losses).toHaveLength(1);
    expect(it3.losses[1].loss).toBeLessThan(full.losses[0].loss);
  });

  it('probes every candidate of a step on the same batches (symmetric layers score identically)', async () => {
    const sel = await selectBlocks(fake({ a: [0.4, 0.4, 0.4, 0.4] }), data, { ...base, count: 1 });
    const scores = sel.trace.map((e) => e.score);
    expect(new Set(scores).size).toBe(1);
    expect(sel.skipped).toEqual([0]); // ties go to the lowest index
  });

  it('stops when the best probe loss exceeds maxLoss, without skipping that layer', async () => {
    const model = fake({ a: A });
    const first = await selectBlocks(model, data, { ...base, count: 1 });
    const s1 = first.trace.find((e) => e.candidate === 3)!.score;
    // A threshold above the first removal's loss but below any second removal's.
    const sel = await selectBlocks(fake({ a: A }), data, { ...base, maxLoss: s1 + 0.05 });
    expect(sel.stoppedBy).toBe('maxLoss');
    expect(sel.skipped).toEqual([3]);
    const step2 = sel.trace.filter((e) => e.step === 2);
    expect(step2).toHaveLength(5);
    expect(Math.min(...step2.map((e) => e.score))).toBeGreaterThan(s1 + 0.05);
    expect(sel.losses).toHaveLength(1);
    expect(sel.theta.bAtt[1]).not.toBe(0);
  });

  it('is deterministic: the same inputs give bit-identical selections', async () => {
    const a = await selectBlocks(fake({ a: A }), data, { ...base, count: 2 });
    const b = await selectBlocks(fake({ a: A }), data, { ...base, count: 2 });
    expectSameSelection(a, b);
  });

  it('emits a typed, ordered event stream', async () => {
    const events: ProgressEvent[] = [];
    await selectBlocks(fake({ a: A }), data, { ...base, count: 2, onProgress: (e) => events.push(e) });
    const kinds = (t: ProgressEvent['type']) => events.filter((e) => e.type === t);
    expect(kinds('probe-start')).toHaveLength(11);
    expect(kinds('probe-end')).toHaveLength(11);
    expect(kinds('step-end')).toEqual([
      expect.objectContaining({ step: 1, skipped: 3 }),
      expect.objectContaining({ step: 2, skipped: 1 }),
    ]);
    expect(kinds('rescale-epoch')).toHaveLength(2);
    const batches = kinds('batch') as Extract<ProgressEvent, { type: 'batch' }>[];
    expect(batches.filter((b) => b.phase === 'probe')).toHaveLength(33);
    expect(batches.filter((b) => b.phase === 'rescale')).toHaveLength(6);
    expect(batches[0]).toMatchObject({ phase: 'probe', step: 1, candidate: 0, epoch: 1, batch: 1, batches: 3 });
    const etas = kinds('eta') as Extract<ProgressEvent, { type: 'eta' }>[];
    expect(etas.length).toBeGreaterThan(0);
    expect(etas.every((e) => e.seconds >= 0 && Number.isFinite(e.seconds))).toBe(true);
    expect(etas[etas.length - 1].seconds).toBe(0);
  });

  it('survives a throwing progress callback and warns once', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const ref = await selectBlocks(fake({ a: A }), data, { ...base, count: 2 });
      const sel = await selectBlocks(fake({ a: A }), data, {
        ...base,
        count: 2,
        onProgress: () => {
          throw new Error('broken UI');
        },
      });
      expectSameSelection(sel, ref);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0][0])).toMatch(/broken UI/);
    } finally {
      warn.mockRestore();
    }
  });
});

describe('selectBlocks: other strategies', () => {
  it('full-greedy picks the cheapest layers in rank order, then rescales once', async () => {
    const sel = await selectBlocks(fake({ a: A }), data, { ...base, count: 2, strategy: 'full-greedy' });
    expect(sel.skipped).toEqual([3, 1]);
    expect(sel.theta.bAtt[3]).toBe(0);
    expect(sel.theta.bAtt[1]).toBe(0);
    expect(sel.theta.sMlp[0]).not.toBe(1);
  });

  it('similarity variants rank by 1 - cos of their sub-layer; block-influence by BI', async () => {
    const stats = {
      cosAttn: [0.1, 0.2, 0.99, 0.3, 0.95, 0.4],
      cosMlp: [0.97, 0.2, 0.1, 0.3, 0.4, 0.98],
      cosBlock: [0.1, 0.96, 0.2, 0.99, 0.4, 0.5],
      blockInfluence: [0.5, 0.4, 0.3, 0.2, 0.01, 0.02],
    };
    const run = (strategy: SelectOptions['strategy']) =>
      selectBlocks(fake({ a: A, stats }), data, { ...base, count: 2, strategy });
    expect((await run('similarity')).skipped).toEqual([2, 4]);
    expect((await run('similarity-attn')).strategy).toBe('similarity-attn');
    expect((await run('similarity-mlp')).skipped).toEqual([5, 0]);
    expect((await run('similarity-block')).skipped).toEqual([3, 1]);
    const bi = await run('block-influence');
    expect(bi.skipped).toEqual([4, 5]);
    expect(bi.trace.find((e) => e.candidate === 4)!.score).toBeCloseTo(0.01, 12);
    expect(bi.losses).toHaveLength(1); // ends with a rescale like every strategy
  });

  it('random is seeded', async () => {
    const a = await selectBlocks(fake({ a: A }), data, { ...base, count: 3, strategy: 'random', seed: 1 });
    const b = await selectBlocks(fake({ a: A }), data, { ...base, count: 3, strategy: 'random', seed: 1 });
    const c = await selectBlocks(fake({ a: A }), data, { ...base, count: 3, strategy: 'random', seed: 2 });
    expect(a.skipped).toEqual(b.skipped);
    expect(new Set(a.skipped).size).toBe(3);
    expect(a.trace.map((e) => e.score)).not.toEqual(c.trace.map((e) => e.score));
  });

  it('runs a user strategy through the same loop', async () => {
    const seen: number[][] = [];
    const mine: SelectionStrategy = {
      name: 'highest-index',
      schedule: 'iterative',
      scoreIsLoss: false,
      async rank(ctx) {
        seen.push([...ctx.skipped]);
        return ctx.candidates.map((l) => -l);
      },
    };
    const sel = await selectBlocks(fake({ a: A }), data, { ...base, count: 3, strategy: mine });
    expect(sel.skipped).toEqual([5, 4, 3]);
    expect(seen).toEqual([[], [5], [5, 4]]);
    expect(sel.strategy).toBe('highest-index');
  });

  it('refuses maxLoss for non-loss scores, and missing count/maxLoss', async () => {
    await expect(selectBlocks(fake({ a: A }), data, { maxLoss: 1, strategy: 'random' })).rejects.toMatchObject({
      code: 'HOPSCOTCH_ERR_ARGUMENT',
    });
    await expect(selectBlocks(fake({ a: A }), data, {})).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_ARGUMENT' });
    await expect(selectBlocks(fake({ a: A }), data, { count: 7 })).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_ARGUMENT' });
    await expect(selectBlocks(fake({ a: A }), data, { count: 1, strategy: 'nope' as never })).rejects.toThrow(/unknown strategy/);
  });
});

describe('selectBlocks: probe subset and shortlist', () => {
  it('probeSubset probes on n samples and still rescales on all', async () => {
    const model = fake({ a: A });
    const sel = await selectBlocks(model, data, { ...base, count: 1, probeSubset: 8, probeSteps: 1 });
    expect(sel.skipped).toEqual([3]);
    expect(model.calls).toBe(6 * 1 + 3); // 6 probes x 1 batch of 8, rescale 3 batches
  });

  it('shortlist probes only the candidates with the smallest -b_att * dL/db_att', async () => {
    // t_l < 1: lowering b_att lowers the loss at first (negative score); t_l > 1: raises it.
    const t = [1.5, 1, 0.6, 1.2, 0.8, 1];
    const model = fake({ a: [0.5, 0.5, 0.5, 0.5, 0.5, 0.5], t });
    const sel = await selectBlocks(model, data, { ...base, count: 1, shortlist: 2 });
    const fo = sel.firstOrder!.filter((e) => e.step === 1);
    expect(fo).toHaveLength(6);
    // At theta = 1: dL/db_l = w * 2 a (1 - t_l), so the score is -w * (1 - t_l) with w the mean sample weight.
    const w = data.reduce((s, x) => s + 1 + 0.1 * (x.response.length % 3), 0) / data.length;
    for (const e of fo) expect(e.score).toBeCloseTo(-w * (1 - t[e.candidate]), 5);
    expect(sel.trace.map((e) => e.candidate)).toEqual([2, 4]);
    expect(sel.skipped).toEqual([2]);
  });
});

describe('selectBlocks: checkpoints', () => {
  const opts: SelectOptions = { ...base, count: 3 };

  async function abortAfterCalls(n: number, file: string, spec: FakeSpec = { a: A }, extra: SelectOptions = {}) {
    const model = fake(spec);
    const controller = new AbortController();
    const reason = new Error(`stopped after ${n} calls`);
    model.onCall = (calls) => {
      if (calls === n) controller.abort(reason);
    };
    const err = await selectBlocks(model, data, { ...opts, ...extra, checkpoint: file, signal: controller.signal }).then(
      () => null,
      (e: unknown) => e,
    );
    return { err, reason, model };
  }

  it('abort rejects with signal.reason and leaves a valid checkpoint', async () => {
    const file = join(dir, 'ckpt.json');
    const { err, reason } = await abortAfterCalls(8, file);
    expect(err).toBe(reason);
    const ckpt = JSON.parse(await readFile(file, 'utf8'));
    expect(ckpt.format).toBe('hopscotch-selection-checkpoint');
    expect(ckpt.fingerprint).toBe('fake-model-A');
    // 8 calls = probes of layers 0 and 1 (3 batches each) + 2 batches of layer 2's probe:
    // the checkpoint holds the two finished probes of step 1.
    expect(ckpt.state.step).toBe(1);
    // (Outcomes of the step's probing round, moved to `probes` once the ranking is complete.)
    expect(ckpt.state.rounds[0].map((p: { candidate: number }) => p.candidate)).toEqual([0, 1]);
    expect(ckpt.state.stoppedBy).toBeNull();
  });

  it('passes the default AbortError reason through when abort() is called without one', async () => {
    const controller = new AbortController();
    controller.abort(undefined);
    const err = await selectBlocks(fake({ a: A }), data, { ...opts, signal: controller.signal }).catch((e: unknown) => e);
    // Node fills in a DOMException AbortError as the reason; it is passed through.
    expect((err as Error).name).toBe('AbortError');
  });

  it.each([1, 7, 18, 19, 20, 21, 40, 50, 53])(
    'resuming after an abort at engine call %i gives the uninterrupted result',
    async (n) => {
      const ref = await selectBlocks(fake({ a: A }), data, opts);
      const refCalls = 15 * 3 + 3 * 3;
      const file = join(dir, 'ckpt.json');
      const { err, reason } = await abortAfterCalls(n, file);
      expect(err).toBe(reason);
      const model = fake({ a: A });
      const resumed = await selectBlocks(model, data, { ...opts, checkpoint: file });
      expectSameSelection(resumed, ref);
      // Completed probes/rescales are not redone: at most the interrupted one's batches repeat.
      expect(model.calls + n).toBeLessThanOrEqual(refCalls + 3);
      expect(model.calls + n).toBeGreaterThanOrEqual(refCalls);
      // A finished checkpoint returns the result without engine calls.
      const again = fake({ a: A });
      expectSameSelection(await selectBlocks(again, data, { ...opts, checkpoint: file }), ref);
      expect(again.calls).toBe(0);
    },
  );

  it('resumes a shortlisted run bit-identically', async () => {
    const spec: FakeSpec = { a: A, t: [1.5, 1, 0.6, 1.2, 0.8, 1] };
    const extra = { shortlist: 3 };
    const ref = await selectBlocks(fake(spec), data, { ...opts, ...extra });
    const file = join(dir, 'ckpt.json');
    for (const n of [2, 6, 20]) {
      await rm(file, { force: true });
      const { err, reason } = await abortAfterCalls(n, file, spec, extra);
      expect(err).toBe(reason);
      expectSameSelection(await selectBlocks(fake(spec), data, { ...opts, ...extra, checkpoint: file }), ref);
    }
  });

  it('resumes twice in a row (abort, resume, abort again, resume)', async () => {
    const ref = await selectBlocks(fake({ a: A }), data, opts);
    const file = join(dir, 'ckpt.json');
    await abortAfterCalls(10, file);
    await abortAfterCalls(25, file);
    expectSameSelection(await selectBlocks(fake({ a: A }), data, { ...opts, checkpoint: file }), ref);
  });

  it('refuses a checkpoint of another model, other data or other options', async () => {
    const file = join(dir, 'ckpt.json');
    await abortAfterCalls(5, file);
    await expect(
      selectBlocks(fake({ a: A, fingerprint: 'fake-model-B' }), data, { ...opts, checkpoint: file }),
    ).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_CHECKPOINT', message: expect.stringMatching(/fingerprint/) });
    await expect(selectBlocks(fake({ a: A }), data.slice(1), { ...opts, checkpoint: file })).rejects.toMatchObject({
      code: 'HOPSCOTCH_ERR_CHECKPOINT',
      message: expect.stringMatching(/data digest/),
    });
    await expect(selectBlocks(fake({ a: A }), data, { ...opts, probeLr: 0.02, checkpoint: file })).rejects.toMatchObject({
      code: 'HOPSCOTCH_ERR_CHECKPOINT',
      message: expect.stringMatching(/option probeLr/),
    });
    await writeFile(file, '{"format":"hopscotch-selection-checkpoint",');
    await expect(selectBlocks(fake({ a: A }), data, { ...opts, checkpoint: file })).rejects.toMatchObject({
      code: 'HOPSCOTCH_ERR_CHECKPOINT',
    });
  });

  it('selectionToJSON round-trips', async () => {
    const sel = await selectBlocks(fake({ a: A }), data, { ...base, count: 2 });
    const back = selectionFromJSON(JSON.parse(JSON.stringify(selectionToJSON(sel))));
    expectSameSelection(back, sel);
  });
});

describe('selectBlocks: the method\'s defaults', () => {
  /** Records which samples each engine call saw: training (lossAndGrad) and held-out (loss). */
  function recorded(spec: FakeSpec) {
    const model = fake(spec);
    const trained = new Set<Sample>();
    const validated = new Set<Sample>();
    const lossAndGrad = model.lossAndGrad.bind(model);
    const loss = model.loss.bind(model);
    model.lossAndGrad = async (samples, theta, opts) => {
      samples.forEach((x) => trained.add(x));
      return lossAndGrad(samples, theta, opts);
    };
    model.loss = async (samples, theta, opts) => {
      samples.forEach((x) => validated.add(x));
      return loss(samples, theta, opts);
    };
    return { model, trained, validated };
  }

  it('probes train for DEFAULT_PROBE_STEPS steps on small data, cycling reshuffled epochs', async () => {
    const events: ProgressEvent[] = [];
    const sel = await selectBlocks(fake({ a: A }), data, { batchSize: 8, count: 1, rescaleEpochs: 1, probing: 'exhaustive', onProgress: (e) => events.push(e) });
    const probe0 = events.filter((e) => e.type === 'batch' && e.phase === 'probe' && e.candidate === 0) as Extract<ProgressEvent, { type: 'batch' }>[];
    expect(sel.probeSteps).toBe(64);
    expect(probe0).toHaveLength(64);
    // 3 batches an epoch: epochs 1..22, each a fresh shuffle.
    expect(probe0.at(-1)!.epoch).toBe(22);
    expect(sel.probeOptimizerSteps).toBe(6 * 64);
    const tokens = data.reduce((t, x) => t + x.prompt.length + x.response.length, 0);
    expect(sel.probeTokens).toBeGreaterThan(6 * 21 * tokens);
    // A longer probe ranks closer to min over theta: the scores fall with the budget.
    const short = await selectBlocks(fake({ a: A }), data, { batchSize: 8, count: 1, rescaleEpochs: 1, probeSteps: 3, probing: 'exhaustive' });
    for (const e of sel.trace) expect(e.score).toBeLessThan(short.trace.find((x) => x.candidate === e.candidate)!.score);
  });

  it('holds out a fixed validation slice that no probe or rescale ever trains on', async () => {
    const { model, trained, validated } = recorded({ a: A });
    const sel = await selectBlocks(model, data, { batchSize: 8, count: 2, probeSteps: 5, probing: 'exhaustive' });
    expect(sel.validationSamples).toBe(4); // round(0.2 * 20)
    expect(sel.trainSamples).toBe(16);
    expect(validated.size).toBe(4);
    expect(trained.size).toBe(16);
    for (const x of validated) expect(trained.has(x)).toBe(false);
    // Each probe records its held-out loss; each rescale its curve, epochs and stop reason.
    expect(sel.trace.every((e) => typeof e.validation === 'number' && e.train === e.score)).toBe(true);
    for (const l of sel.losses) {
      expect(l.validationCurve!.length).toBe(l.epochs! + 1);
      expect(['patience', 'maxEpochs']).toContain(l.stoppedBy);
      expect(l.validationLoss).toBe(Math.min(...l.validationCurve!));
    }
  });

  it('a converging rescale stops after `patience` epochs without improvement and keeps the best theta', async () => {
    const sel = await selectBlocks(fake({ a: A }), data, { batchSize: 8, count: 1, probeSteps: 3, rescaleLr: 0.2, rescalePatience: 2, rescaleMaxEpochs: 40 });
    const r = sel.losses[0];
    const curve = r.validationCurve!;
    const best = curve.indexOf(Math.min(...curve));
    if (r.stoppedBy === 'patience') expect(curve.length - 1 - best).toBe(2);
    else expect(r.epochs).toBe(40);
    expect(r.validationLoss).toBe(curve[best]);
    const fixed = await selectBlocks(fake({ a: A }), data, { batchSize: 8, count: 1, probeSteps: 3, rescaleLr: 0.2, rescaleEpochs: 7 });
    expect(fixed.losses[0].epochs).toBe(7);
    expect(fixed.losses[0].stoppedBy).toBe('epochs');
    expect(fixed.validationSamples).toBe(0); // a fixed epoch count needs no held-out slice
  });

  it('probeScore "validation" ranks by the held-out loss of each probe, maxLossOn "validation" stops on it', async () => {
    const sel = await selectBlocks(fake({ a: A }), data, { batchSize: 8, count: 1, probeSteps: 4, probeScore: 'validation' });
    for (const e of sel.trace) expect(e.score).toBe(e.validation);
    expect(sel.skipped).toEqual([3]);
    const first = sel.trace.find((e) => e.candidate === 3)!;
    const stopped = await selectBlocks(fake({ a: A }), data, { batchSize: 8, maxLoss: first.validation! - 1e-3, maxLossOn: 'validation', probeSteps: 4 });
    expect(stopped.stoppedBy).toBe('maxLoss');
    expect(stopped.skipped).toEqual([]);
  });

  it('exclude keeps layers out of the candidates; counts beyond what is left fail before any engine call', async () => {
    const model = fake({ a: A });
    const sel = await selectBlocks(model, data, { ...base, count: 2, exclude: [3] });
    expect(sel.skipped).not.toContain(3);
    expect(sel.trace.some((e) => e.candidate === 3)).toBe(false);
    const idle = fake({ a: A });
    await expect(selectBlocks(idle, data, { ...base, count: 5, exclude: [0, 1] })).rejects.toMatchObject({
      code: 'HOPSCOTCH_ERR_ARGUMENT',
      message: expect.stringMatching(/count must be an integer in \[1, 4\]/),
    });
    await expect(selectBlocks(idle, data, { ...base, count: 1, exclude: [6] })).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_SKIP' });
    expect(idle.calls).toBe(0);
  });

  it('a kill during the rescale step resumes at batch granularity, bit-identical to an uninterrupted run', async () => {
    const opts: SelectOptions = { batchSize: 4, count: 2, probeSteps: 3, rescaleMaxEpochs: 6, rescalePatience: 3, seed: 5, probing: 'exhaustive' };
    const ref = await selectBlocks(fake({ a: A }), data, opts);
    const file = join(dir, 'ckpt.json');
    // Step 1: 6 probes x 3 steps = 18 calls; its rescale follows (16 training samples: 4 batches an epoch).
    for (const n of [20, 23, 26]) {
      await rm(file, { force: true });
      const model = fake({ a: A });
      const controller = new AbortController();
      model.onCall = (c) => c === n && controller.abort(new Error('killed'));
      await expect(selectBlocks(model, data, { ...opts, checkpoint: file, signal: controller.signal })).rejects.toThrow('killed');
      const ckpt = JSON.parse(await readFile(file, 'utf8'));
      expect(ckpt.state.rescale).toMatchObject({ step: 1 });
      expect(ckpt.state.rescale.state.losses).toHaveLength(n - 18);
      const resumed = fake({ a: A });
      expectSameSelection(await selectBlocks(resumed, data, { ...opts, checkpoint: file }), ref);
      // No optimizer step is taken twice.
      const refCalls = fake({ a: A });
      await selectBlocks(refCalls, data, opts);
      expect(resumed.calls + n).toBe(refCalls.calls);
    }
  });
});
