import { describe, expect, it, vi } from 'vitest';
import { makeBatches } from '../../src/batching.js';
import type { ProgressEvent } from '../../src/progress.js';
import { throwIfAborted } from '../../src/progress.js';
import { evaluateLoss, rescale } from '../../src/rescale.js';
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
    return { loss: this.weight(samples, opts.tokenMean ?? false) * F, responseTokens: 0, sampleNll: new Float64Array(0), peakBytes: 0 };
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
    const fit = await rescale(m, data, { skip: [2], tokenMean: true, batchSize: 32 });
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
    const fit = await rescale(model(), data, { skip: [0], theta: start, batchSize: 32, lr: 0.01 });
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
