import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { makeBatches } from '../../src/batching.js';
import type { ProgressEvent } from '../../src/progress.js';
import { throwIfAborted } from '../../src/progress.js';
import { type Fit, type RescaleOptions, evaluateLoss, rescale } from '../../src/rescale.js';
import { THETA_KEYS, type ThetaKey, ones } from '../../src/theta.js';
import type { BatchOptions, LossAndGradResult, Model, ModelConfig, Sample, Theta } from '../../src/types.js';

/**
 * Fake engine: F(theta) = sum_k sum_l (theta_k[l] - T_k[l])^2 with b_att = 0 on skipped
 * layers, times a per-sample weight c_i (1 when `uniform`), with exact gradients
 * (returned as float32, like the engine).
 */
const N = 4;
const T: Record<ThetaKey, number[]> = {
  bAtt: [1.2, 0.7, 1, 0.9],
  sAtt: [1.1, 1.3, 0.8, 1],
  bMlp: [0.95, 1.05, 1, 1.4],
  sMlp: [1, 0.9, 1.1, 0.85],
};

function analytic(theta: Theta, skip: readonly number[]): { F: number; g: Record<ThetaKey, number[]> } {
  let F = 0;
  const g = {} as Record<ThetaKey, number[]>;
  for (const k of THETA_KEYS) {
    g[k] = [];
    for (let l = 0; l < N; l++) {
      const skipped = k === 'bAtt' && skip.includes(l);
      const x = skipped ? 0 : theta[k][l];
      F += (x - T[k][l]) ** 2;
      g[k].push(skipped ? 0 : 2 * (x - T[k][l]));
    }
  }
  return { F, g };
}

class QuadraticModel {
  readonly config = { numLayers: N } as ModelConfig;
  readonly fingerprint = 'quadratic';
  seen: BatchOptions[] = [];
  constructor(
    private readonly uniform: boolean,
    private readonly nanAtCall = -1,
  ) {}
  weight(samples: Sample[], tokenMean: boolean): number {
    const c = samples.map((s) => (this.uniform ? 1 : 1 + 0.25 * (s.response.length % 4)));
    if (!tokenMean) return c.reduce((a, b) => a + b, 0) / samples.length;
    const tok = samples.reduce((a, s) => a + s.response.length, 0);
    return samples.reduce((a, s, i) => a + c[i] * s.response.length, 0) / tok;
  }
  async lossAndGrad(samples: Sample[], theta: Theta, opts: BatchOptions = {}): Promise<LossAndGradResult> {
    this.seen.push(opts);
    for (const l of opts.skip ?? []) if (theta.bAtt[l] !== 0) throw new Error('skipped layer with b_att != 0');
    const { F, g } = analytic(theta, opts.skip ?? []);
    const w = this.weight(samples, opts.tokenMean ?? false);
    const grad = Object.fromEntries(THETA_KEYS.map((k) => [k, Float32Array.from(g[k], (x) => w * x)])) as unknown as Theta;
    const loss = this.seen.length === this.nanAtCall ? Number.NaN : w * F;
    return { loss, responseTokens: samples.reduce((a, s) => a + s.response.length, 0), sampleNll: new Float64Array(0), peakBytes: 0, grad };
  }
  async loss(samples: Sample[], theta: Theta, opts: BatchOptions = {}) {
    const { F } = analytic(theta, opts.skip ?? []);
    const responseTokens = samples.reduce((a, s) => a + s.response.length, 0);
    return { loss: this.weight(samples, opts.tokenMean ?? false) * F, responseTokens, sampleNll: new Float64Array(0), peakBytes: 0 };
  }
}
const model = (uniform = true, nanAtCall = -1) => new QuadraticModel(uniform, nanAtCall) as QuadraticModel & Model;

const data: Sample[] = Array.from({ length: 20 }, (_, i) => ({ prompt: [1, 2], response: Array(1 + (i % 5)).fill(7) }));

/** Textbook Adam over the analytic gradient, float64 state, float32 parameters and gradients. */
function reference(steps: number, lr: number, skip: number[]): Record<ThetaKey, number[]> {
  const theta = ones(N);
  for (const l of skip) theta.bAtt[l] = 0;
  const m = Object.fromEntries(THETA_KEYS.map((k) => [k, Array(N).fill(0)])) as Record<ThetaKey, number[]>;
  const v = Object.fromEntries(THETA_KEYS.map((k) => [k, Array(N).fill(0)])) as Record<ThetaKey, number[]>;
  for (let t = 1; t <= steps; t++) {
    const { g } = analytic(theta, skip);
    for (const k of THETA_KEYS)
      for (let l = 0; l < N; l++) {
        if (k === 'bAtt' && skip.includes(l)) continue;
        const gl = Math.fround(g[k][l]);
        m[k][l] = 0.9 * m[k][l] + 0.1 * gl;
        v[k][l] = 0.999 * v[k][l] + 0.001 * gl * gl;
        const mh = m[k][l] / (1 - 0.9 ** t);
        const vh = v[k][l] / (1 - 0.999 ** t);
        theta[k][l] = Math.fround(theta[k][l] - (lr * mh) / (Math.sqrt(vh) + 1e-8));
      }
  }
  return Object.fromEntries(THETA_KEYS.map((k) => [k, Array.from(theta[k])])) as Record<ThetaKey, number[]>;
}

describe('rescale', () => {
  it('follows a hand-written Adam on an analytic loss, b_att of skipped layers frozen at 0', async () => {
    const fit = await rescale(model(), data, { skip: [1, 3], epochs: 2, lr: 0.05, batchSize: 8, seed: 4 });
    expect(fit.steps).toBe(6); // 2 epochs x ceil(20 / 8)
    expect(fit.losses).toHaveLength(6);
    expect(fit.skipped).toEqual([1, 3]);
    const ref = reference(6, 0.05, [1, 3]);
    for (const k of THETA_KEYS) for (let l = 0; l < N; l++) expect(fit.theta[k][l], `${k}[${l}]`).toBeCloseTo(ref[k][l], 6);
    expect(fit.theta.bAtt[1]).toBe(0);
    expect(fit.theta.bAtt[3]).toBe(0);
    // First loss is F at the start theta; the loss goes down.
    const start = ones(N);
    start.bAtt[1] = 0;
    start.bAtt[3] = 0;
    expect(fit.losses[0]).toBeCloseTo(analytic(start, [1, 3]).F, 12);
    expect(fit.losses[5]).toBeLessThan(fit.losses[0]);
  });

  it('reports epoch losses as sample-weighted means of the batch losses', async () => {
    const events: ProgressEvent[] = [];
    const fit = await rescale(model(false), data, {
      skip: [0],
      epochs: 2,
      batchSize: 6,
      onProgress: (e) => events.push(e),
    });
    const batchEvents = events.filter((e) => e.type === 'batch') as Extract<ProgressEvent, { type: 'batch' }>[];
    expect(batchEvents.map((e) => e.loss)).toEqual(fit.losses);
    for (const epoch of [1, 2]) {
      const sizes = makeBatches(data, { batchSize: 6, seed: 0, epoch: epoch - 1 }).map((b) => b.length);
      const losses = batchEvents.filter((e) => e.epoch === epoch).map((e) => e.loss);
      const mean = losses.reduce((a, x, i) => a + x * sizes[i], 0) / 20;
      expect(fit.epochLosses[epoch - 1]).toBeCloseTo(mean, 12);
    }
    const epochs = events.filter((e) => e.type === 'rescale-epoch');
    expect(epochs).toEqual([
      { type: 'rescale-epoch', step: 0, epoch: 1, epochs: 2, loss: fit.epochLosses[0] },
      { type: 'rescale-epoch', step: 0, epoch: 2, epochs: 2, loss: fit.epochLosses[1] },
    ]);
    expect(events.some((e) => e.type === 'eta')).toBe(true);
  });

  it('passes skip and tokenMean to the engine and weights epoch losses by response tokens', async () => {
    const m = model(false);
    const fit = await rescale(m, data, { skip: [2], tokenMean: true, batchSize: 32, epochs: 1 });
    expect(m.seen).toEqual([{ skip: [2], tokenMean: true }]);
    expect(fit.epochLosses[0]).toBe(fit.losses[0]);
  });

  it('reports the validation loss at the final theta', async () => {
    const val = data.slice(0, 7);
    const m = model(false);
    const fit = await rescale(m, data, { skip: [1], validation: val, batchSize: 4 });
    const expected = await m.loss(val, fit.theta, { skip: [1] });
    expect(fit.validationLoss).toBeCloseTo(expected.loss, 10);
    expect(await evaluateLoss(m, val, fit.theta, { skip: [1], batchSize: 3 })).toBeCloseTo(expected.loss, 10);
  });

  it('starts from a copy of the given theta', async () => {
    const start = ones(N);
    start.sMlp[2] = 1.5;
    const fit = await rescale(model(), data, { skip: [0], theta: start, batchSize: 32, lr: 0.01, epochs: 1 });
    expect(start.bAtt[0]).toBe(1);
    expect(start.sMlp[2]).toBe(1.5);
    expect(fit.theta.sMlp[2]).toBeCloseTo(1.5 - 0.01, 6); // one Adam step of size lr, gradient positive
    expect(fit.theta.bAtt[0]).toBe(0);
  });

  it('rejects with signal.reason between batches', async () => {
    const controller = new AbortController();
    const reason = new Error('enough');
    const m = model();
    let batches = 0;
    const p = rescale(m, data, {
      skip: [],
      epochs: 3,
      batchSize: 4,
      signal: controller.signal,
      onProgress: (e) => {
        if (e.type === 'batch' && ++batches === 2) controller.abort(reason);
      },
    });
    await expect(p).rejects.toBe(reason);
    expect(m.seen).toHaveLength(2);
    expect(() => throwIfAborted({ aborted: true, reason: undefined } as AbortSignal)).toThrowError(
      expect.objectContaining({ code: 'HOPSCOTCH_ERR_ABORTED' }),
    );
  });

  it('keeps going when the progress callback throws, and warns once', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const ref = await rescale(model(), data, { skip: [1], batchSize: 4 });
      const fit = await rescale(model(), data, {
        skip: [1],
        batchSize: 4,
        onProgress: () => {
          throw new Error('bad callback');
        },
      });
      expect(Array.from(fit.theta.sAtt)).toEqual(Array.from(ref.theta.sAtt));
      expect(warn).toHaveBeenCalledTimes(1);
    } finally {
      warn.mockRestore();
    }
  });

  it('validates its inputs', async () => {
    await expect(rescale(model(), data, { skip: [4] })).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_SKIP' });
    await expect(rescale(model(), data, { skip: [1, 1] })).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_SKIP' });
    await expect(rescale(model(), [], { skip: [] })).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_EMPTY_BATCH' });
    await expect(rescale(model(), data, { skip: [], tokenCap: 4 })).rejects.toMatchObject({
      code: 'HOPSCOTCH_ERR_TOKEN_CAP',
    });
    await expect(rescale(model(true, 2), data, { skip: [], batchSize: 4 })).rejects.toMatchObject({
      code: 'HOPSCOTCH_ERR_NON_FINITE',
      message: expect.stringMatching(/epoch 1 batch 2/),
    });
  });
});

describe('rescale: checkpoints', () => {
  let dir: string;
  let file: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hs-rescale-ckpt-'));
    file = join(dir, 'rescale.json');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // 20 samples in batches of 6: 4 steps per epoch, 12 in all. Unequal sample weights make
  // every batch loss depend on the shuffle, so a step taken out of order would show.
  const val = data.slice(3, 11);
  const opts: RescaleOptions = { skip: [1, 3], epochs: 3, lr: 0.05, batchSize: 6, seed: 9, validation: val };
  const STEPS = 12;

  /** A fake model that counts engine calls and runs `onCall` inside the n-th lossAndGrad. */
  function counted(fingerprint?: string) {
    const m = model(false);
    if (fingerprint) Object.defineProperty(m, 'fingerprint', { value: fingerprint });
    const counts = { grad: 0, loss: 0 };
    let onCall: ((n: number) => void) | undefined;
    const lossAndGrad = m.lossAndGrad.bind(m);
    const loss = m.loss.bind(m);
    m.lossAndGrad = async (...args) => {
      counts.grad += 1;
      onCall?.(counts.grad);
      return lossAndGrad(...args);
    };
    m.loss = async (...args) => {
      counts.loss += 1;
      return loss(...args);
    };
    return { m, counts, setOnCall: (f: (n: number) => void) => (onCall = f) };
  }

  /** Runs with the checkpoint and aborts during engine call n; returns what it rejected with. */
  async function abortAt(n: number, extra: Partial<RescaleOptions> = {}) {
    const { m, setOnCall } = counted();
    const controller = new AbortController();
    const reason = new Error(`stopped at call ${n}`);
    setOnCall((calls) => {
      if (calls === n) controller.abort(reason);
    });
    const err = await rescale(m, data, { ...opts, ...extra, checkpoint: file, signal: controller.signal }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBe(reason);
  }

  const bits = (t: Theta) => Object.fromEntries(THETA_KEYS.map((k) => [k, Array.from(new Uint32Array(t[k].buffer, t[k].byteOffset, t[k].length))]));

  function expectSameFit(a: Fit, b: Fit): void {
    expect(bits(a.theta)).toEqual(bits(b.theta));
    expect(a.losses).toEqual(b.losses);
    expect(a.epochLosses).toEqual(b.epochLosses);
    expect(a.validationLoss).toBe(b.validationLoss);
    expect(a.steps).toBe(b.steps);
    expect(a.skipped).toEqual(b.skipped);
  }

  const stored = async () => JSON.parse(await readFile(file, 'utf8'));

  it('writing a checkpoint does not change the result', async () => {
    const ref = await rescale(model(false), data, opts);
    expect(ref.steps).toBe(STEPS);
    expectSameFit(await rescale(model(false), data, { ...opts, checkpoint: file }), ref);
    const c = await stored();
    expect(c.format).toBe('hopscotch-rescale-checkpoint');
    expect(c.version).toBe(2);
    expect(c.fingerprint).toBe('quadratic');
    expect(c.options).toMatchObject({ skip: [1, 3], budget: { kind: 'epochs', epochs: 3 }, lr: 0.05, batchSize: 6, seed: 9, tokenMean: false, tokenCap: null });
    expect(c.options.thetaDigest).toMatch(/^[0-9a-f]{64}$/);
    expect(c.options.validationDigest).toMatch(/^[0-9a-f]{64}$/);
    expect(c.state).toMatchObject({ epoch: 3, batch: 0, stoppedBy: 'epochs' });
    expect(c.state.losses).toHaveLength(STEPS);
    expect(c.state.adam.t).toBe(STEPS);
    // Held-out loss at the start and after each of the 3 epochs; the fit reports the last.
    expect(c.state.validation).toHaveLength(4);
    expect(c.state.validation[3]).toBe(ref.validationLoss);
    expect(ref.validationCurve).toEqual(c.state.validation);
  });

  it.each([1, 2, 4, 5, 7, 8, 11, 12])('resuming after an abort at engine call %i gives the uninterrupted fit', async (n) => {
    const ref = await rescale(model(false), data, opts);
    await abortAt(n);
    const c = await stored();
    // The abort is seen before the next batch: the file holds exactly the n steps taken.
    expect(c.state.losses).toHaveLength(n);
    expect(c.state.losses).toEqual(ref.losses.slice(0, n));
    expect(c.state.epoch * 4 + c.state.batch).toBe(n);
    const resumed = counted();
    expectSameFit(await rescale(resumed.m, data, { ...opts, checkpoint: file }), ref);
    expect(resumed.counts.grad).toBe(STEPS - n); // no step is taken twice
    // A finished checkpoint returns the fit without engine calls.
    const again = counted();
    expectSameFit(await rescale(again.m, data, { ...opts, checkpoint: file }), ref);
    expect(again.counts).toEqual({ grad: 0, loss: 0 });
  });

  it('resumes twice in a row, with tokenMean and a token cap', async () => {
    const extra: Partial<RescaleOptions> = { tokenMean: true, tokenCap: 30, epochs: 2 };
    const ref = await rescale(model(false), data, { ...opts, ...extra });
    await abortAt(3, extra);
    const { m, setOnCall } = counted();
    const controller = new AbortController();
    setOnCall((calls) => calls === 4 && controller.abort(new Error('again')));
    await expect(rescale(m, data, { ...opts, ...extra, checkpoint: file, signal: controller.signal })).rejects.toThrow('again');
    expect((await stored()).state.losses).toHaveLength(7);
    expectSameFit(await rescale(model(false), data, { ...opts, ...extra, checkpoint: file }), ref);
  });

  it('with checkpointEvery, writes every n steps, at the end, and when stopped', async () => {
    const ref = await rescale(model(false), data, opts);
    const seen: number[] = [];
    await rescale(model(false), data, {
      ...opts,
      checkpoint: file,
      checkpointEvery: 5,
      onProgress: (e) => {
        if (e.type !== 'batch') return;
        // Read synchronously: the state written before this step's save.
        seen.push(JSON.parse(readFileSync(file, 'utf8')).state.losses.length);
      },
    });
    // Every 5 steps and at every epoch end (4 steps an epoch): after steps 4, 8 and 12.
    expect(seen).toEqual([0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8]);
    expect((await stored()).state.losses).toHaveLength(STEPS);
    await rm(file);
    await abortAt(7, { checkpointEvery: 5 });
    expect((await stored()).state.losses).toHaveLength(7);
    expectSameFit(await rescale(model(false), data, { ...opts, checkpointEvery: 5, checkpoint: file }), ref);
    await rm(file);
    const seen3: number[] = [];
    await rescale(model(false), data, {
      ...opts,
      checkpoint: file,
      checkpointEvery: 3,
      onProgress: (e) => {
        if (e.type === 'batch') seen3.push(JSON.parse(readFileSync(file, 'utf8')).state.losses.length);
      },
    });
    expect(seen3).toEqual([0, 0, 0, 3, 4, 4, 4, 7, 8, 8, 8, 11]);
    await expect(rescale(model(false), data, { ...opts, checkpointEvery: 0 })).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_ARGUMENT' });
  });

  it('keeps the file whole: every read during a run parses, and no temporary file is left', async () => {
    let reads = 0;
    await rescale(model(false), data, {
      ...opts,
      checkpoint: file,
      onProgress: () => {
        JSON.parse(readFileSync(file, 'utf8'));
        reads += 1;
      },
    });
    expect(reads).toBeGreaterThan(STEPS);
    expect(await readdir(dir)).toEqual(['rescale.json']);
  });

  it('removes temporary files left by a killed writer, and only those', async () => {
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    const names = [
      `.rescale.json.${dead}.0123456789ab.tmp`, // a dead writer's: removed
      `.rescale.json.${process.pid}.0123456789ab.tmp`, // this process's: kept
      `.other.json.${dead}.0123456789ab.tmp`, // another file's: kept
      `.rescale.json.${dead}.notes.tmp`, // not a name writeFileAtomic makes: kept
    ];
    for (const name of names) await writeFile(join(dir, name), 'partial');
    const ref = await rescale(model(false), data, opts);
    expectSameFit(await rescale(model(false), data, { ...opts, checkpoint: file }), ref);
    expect((await readdir(dir)).sort()).toEqual([...names.slice(1), 'rescale.json'].sort());
  });

  it('refuses a checkpoint made with other held-out samples (they decide when a run stops)', async () => {
    await rescale(model(false), data, { ...opts, checkpoint: file });
    const other = data.slice(0, 5);
    const { m, counts } = counted();
    await expect(rescale(m, data, { ...opts, validation: other, checkpoint: file })).rejects.toMatchObject({
      code: 'HOPSCOTCH_ERR_CHECKPOINT',
      message: expect.stringMatching(/option validationDigest/),
    });
    expect(counts).toEqual({ grad: 0, loss: 0 });
  });

  it('refuses a checkpoint of another model, other data or other options, naming the difference', async () => {
    await abortAt(5);
    const refused = (p: Promise<unknown>, what: RegExp) =>
      expect(p).rejects.toMatchObject({ code: 'HOPSCOTCH_ERR_CHECKPOINT', message: expect.stringMatching(what) });
    await refused(rescale(counted('other-model').m, data, { ...opts, checkpoint: file }), /model fingerprint/);
    await refused(rescale(model(false), data.slice(1), { ...opts, checkpoint: file }), /data digest/);
    await refused(rescale(model(false), data, { ...opts, lr: 0.01, checkpoint: file }), /option lr was 0.05, now 0.01/);
    await refused(rescale(model(false), data, { ...opts, seed: 1, checkpoint: file }), /option seed/);
    await refused(rescale(model(false), data, { ...opts, epochs: 4, checkpoint: file }), /option budget/);
    await refused(rescale(model(false), data, { ...opts, skip: [1], checkpoint: file }), /option skip/);
    await refused(rescale(model(false), data, { ...opts, tokenMean: true, checkpoint: file }), /option tokenMean/);
    const start = ones(N);
    start.sMlp[0] = 1.25;
    await refused(rescale(model(false), data, { ...opts, theta: start, checkpoint: file }), /option thetaDigest/);
    // The refused runs left the file as it was; it still resumes.
    expectSameFit(await rescale(model(false), data, { ...opts, checkpoint: file }), await rescale(model(false), data, opts));
  });

  it('refuses a corrupt or inconsistent checkpoint', async () => {
    await abortAt(6);
    const good = await readFile(file, 'utf8');
    const refused = async (text: string, what: RegExp) => {
      await writeFile(file, text);
      await expect(rescale(model(false), data, { ...opts, checkpoint: file })).rejects.toMatchObject({
        code: 'HOPSCOTCH_ERR_CHECKPOINT',
        message: expect.stringMatching(what),
      });
    };
    const edit = (f: (c: { format: string; state: Record<string, any> }) => void) => {
      const c = JSON.parse(good);
      f(c);
      return JSON.stringify(c);
    };
    await refused(good.slice(0, good.length / 2), /not valid JSON/);
    await refused('', /not valid JSON/);
    await refused(edit((c) => (c.format = 'hopscotch-selection-checkpoint')), /not a rescale checkpoint/);
    await refused(edit((c) => delete c.state.adam), /Adam state/);
    await refused(edit((c) => (c.state.losses = 'many')), /losses are malformed/);
    await refused(edit((c) => (c.state.theta.sAtt = [1, 1])), /theta.sAtt has length 2/);
    await refused(edit((c) => (c.state.theta.bMlp[2] = 1e39)), /theta.bMlp\[2\] is not finite/);
    await refused(edit((c) => (c.state.theta.bAtt[1] = 0.5)), /theta.bAtt\[1\] is 0.5, but layer 1 is skipped/);
    await refused(edit((c) => (c.state.adam.t = 3)), /Adam has taken 3 steps/);
    await refused(edit((c) => (c.state.adam.m.sAtt = [0])), /Adam state: m.sAtt/);
    await refused(edit((c) => (c.state.adam.frozen.bAtt = [1])), /Adam frozen/);
    await refused(edit((c) => (c.state.adam.lr = 0.1)), /Adam lr/);
    await refused(edit((c) => (c.state.batch = 4)), /batch 5 of epoch 2 does not exist/);
    await refused(edit((c) => c.state.losses.pop()), /Adam has taken 6 steps, the state records 5/);
    await refused(edit((c) => (c.state.epochLosses = [])), /0 epoch losses for 1 completed epochs/);
    await refused(edit((c) => (c.state.stoppedBy = 'finished')), /stoppedBy is finished/);
    await refused(edit((c) => (c.state.epoch = -1)), /epoch must be a non-negative integer/);
  });

  it('abort leaves a valid checkpoint even before the first step', async () => {
    const controller = new AbortController();
    controller.abort(new Error('at once'));
    const { m, counts } = counted();
    await expect(rescale(m, data, { ...opts, checkpoint: file, signal: controller.signal })).rejects.toThrow('at once');
    expect(counts.grad).toBe(0);
    const c = await stored();
    expect(c.state).toMatchObject({ epoch: 0, batch: 0, stoppedBy: null, losses: [], epochLosses: [], validation: [] });
    expectSameFit(await rescale(model(false), data, { ...opts, checkpoint: file }), await rescale(model(false), data, opts));
  });
});
