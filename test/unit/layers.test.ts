// The per-layer argument checks (src/layers.ts) and the fit file (src/fit-file.ts): one
// error code per mistake, the messages the engine uses, and one fit-file shape written
// that every accepted shape reads back from.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { bestOfEachStep, byScore, type TraceEntry } from '../../src/checkpoint.js';
import { fitOfSelection, fitToJson, readFitFile, writeFitFile } from '../../src/fit-file.js';
import { checkHiddenLayers, checkSkip, checkTheta } from '../../src/layers.js';
import type { Fit } from '../../src/rescale.js';
import { ones, toJSON, validate } from '../../src/theta.js';
import type { Theta } from '../../src/types.js';
import { expectCode } from '../helpers.js';

const L = 4;
const work = mkdtempSync(join(tmpdir(), 'hs-layers-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function thetaOf(seed: number): Theta {
  const f = (k: number) => Float32Array.from({ length: L }, (_, l) => 0.5 + ((seed * 31 + k * 7 + l * 13) % 17) / 16);
  return { bAtt: f(0), sAtt: f(1), bMlp: f(2), sMlp: f(3) };
}

describe('checkSkip', () => {
  it.each([
    ['not an array', 2, 'skip must be an array of layer indices'],
    ['= numLayers', [1, L], `skip[1] = ${L} is not a layer index in [0, ${L})`],
    ['negative', [-1], `skip[0] = -1 is not a layer index in [0, ${L})`],
    ['fractional', [0.5], `skip[0] = 0.5 is not a layer index in [0, ${L})`],
    ['a string entry', ['1'], `skip[0] = 1 is not a layer index in [0, ${L})`],
    ['NaN', [Number.NaN], `skip[0] = NaN is not a layer index in [0, ${L})`],
    ['repeated', [2, 0, 2], 'skip lists layer 2 more than once'],
  ])('refuses a skip list %s with HOPSCOTCH_ERR_SKIP', async (_what, skip, message) => {
    await expectCode(() => checkSkip(skip, L), 'HOPSCOTCH_ERR_SKIP');
    expect(() => checkSkip(skip, L)).toThrow(message);
  });

  it('accepts distinct indices in range, in any order, and names the list', async () => {
    expect(() => checkSkip([3, 0, 1], L)).not.toThrow();
    expect(() => checkSkip([], L)).not.toThrow();
    expect(() => checkSkip([L], L, 'exclude')).toThrow(`exclude[0] = ${L} is not a layer index`);
  });
});

describe('checkTheta', () => {
  it.each([
    ['not an object', 'ones', 'HOPSCOTCH_ERR_THETA'],
    ['a missing vector', { bAtt: ones(L).bAtt, sAtt: ones(L).sAtt, bMlp: ones(L).bMlp }, 'HOPSCOTCH_ERR_THETA'],
    ['plain arrays', { bAtt: [1, 1, 1, 1], sAtt: [1, 1, 1, 1], bMlp: [1, 1, 1, 1], sMlp: [1, 1, 1, 1] }, 'HOPSCOTCH_ERR_THETA'],
    ['too short', ones(L - 1), 'HOPSCOTCH_ERR_THETA'],
    ['NaN', { ...ones(L), sMlp: Float32Array.from([1, Number.NaN, 1, 1]) }, 'HOPSCOTCH_ERR_THETA'],
  ])('refuses theta %s', async (_what, theta, code) => {
    await expectCode(() => checkTheta(theta, L), code);
    await expectCode(() => validate(theta as Theta, L), code);
  });

  it('export refuses a non-finite value with its own code, a wrong shape still as theta', async () => {
    const inf = { ...ones(L), bAtt: Float32Array.from([1, 1, Number.POSITIVE_INFINITY, 1]) };
    await expectCode(() => checkTheta(inf, L, { nonFinite: 'HOPSCOTCH_ERR_EXPORT' }), 'HOPSCOTCH_ERR_EXPORT');
    await expectCode(() => checkTheta(ones(L + 1), L, { nonFinite: 'HOPSCOTCH_ERR_EXPORT' }), 'HOPSCOTCH_ERR_THETA');
    expect(() => checkTheta(inf, L, { name: 'fit.theta' })).toThrow('fit.theta.bAtt[2] is not finite (Infinity)');
    expect(() => checkTheta(thetaOf(1), L)).not.toThrow();
  });
});

describe('checkHiddenLayers', () => {
  it('accepts 0..numLayers and refuses anything else with HOPSCOTCH_ERR_ARGUMENT', async () => {
    expect(() => checkHiddenLayers([0, L, 2], L)).not.toThrow();
    for (const bad of [[L + 1], [-1], [1.5], 'all'])
      await expectCode(() => checkHiddenLayers(bad, L), 'HOPSCOTCH_ERR_ARGUMENT');
    expect(() => checkHiddenLayers([0, L + 1], L)).toThrow(`hiddenLayers[1] = ${L + 1} is not a hidden-state index in [0, ${L}]`);
  });
});

describe('best score of a step', () => {
  const trace: TraceEntry[] = [
    { step: 2, candidate: 3, score: 1.5 },
    { step: 1, candidate: 2, score: 2.0 },
    { step: 1, candidate: 0, score: 2.0 },
    { step: 1, candidate: 1, score: 0.5, droppedAt: 4 }, // halving dropped it: scored over fewer steps
    { step: 1, candidate: 3, score: 2.5 },
    { step: 2, candidate: 0, score: 1.25 },
  ];

  it('is the lowest full-budget score, ties to the lower layer, in step order', () => {
    expect(bestOfEachStep(trace).map((e) => [e.step, e.candidate])).toEqual([
      [1, 0],
      [2, 0],
    ]);
  });

  it('ranks dropped candidates after every full-budget one', () => {
    expect([...trace.filter((e) => e.step === 1)].sort(byScore).map((e) => e.candidate)).toEqual([0, 2, 3, 1]);
  });
});

describe('fit file', () => {
  const model = { fingerprint: 'abc', dir: '/models/m', config: { numLayers: L } };
  const fit: Fit = {
    fingerprint: 'abc',
    skipped: [2, 1],
    theta: thetaOf(3),
    losses: [2, 1.5],
    epochLosses: [1.75],
    steps: 2,
    stoppedBy: 'epochs',
  };
  const file = (name: string, value: unknown) => {
    const f = join(work, name);
    writeFileSync(f, typeof value === 'string' ? value : JSON.stringify(value));
    return f;
  };

  it('writes one shape and reads it back exactly', async () => {
    const f = join(work, 'fit.json');
    await writeFitFile(f, fit, { lr: 0.003 });
    const written = JSON.parse(readFileSync(f, 'utf8'));
    expect(written).toEqual(JSON.parse(JSON.stringify(fitToJson(fit, { lr: 0.003 }))));
    const back = readFitFile(f, { model });
    expect(back.skipped).toEqual([2, 1]);
    expect(back.fingerprint).toBe('abc');
    expect(back.settings).toEqual({ lr: 0.003 });
    for (const k of ['bAtt', 'sAtt', 'bMlp', 'sMlp'] as const) expect(back.theta[k]).toEqual(fit.theta[k]);
  });

  it('writes a selection that was not rescaled as a fit of zero steps', () => {
    const json = fitToJson(fitOfSelection({ fingerprint: 'abc', skipped: [1], theta: thetaOf(4) }));
    expect(json).toMatchObject({ fingerprint: 'abc', skipped: [1], losses: [], epochLosses: [], steps: 0, settings: {} });
  });

  it('reads a selection, an older fit and a bare theta', () => {
    const theta = toJSON(thetaOf(5));
    const trace = [{ step: 1, candidate: 3, score: 1.5 }];
    const sel = readFitFile(file('sel.json', { strategy: 'iterative-greedy', skipped: [3], theta, trace }), { model });
    expect(sel.skipped).toEqual([3]);
    expect(sel.trace).toEqual(trace);
    const older = readFitFile(file('older.json', { fingerprint: 'abc', skipped: [0], theta, epochLosses: [], settings: { k: 1 } }));
    expect(older).toMatchObject({ skipped: [0], fingerprint: 'abc', settings: { k: 1 } });
    const bare = readFitFile(file('bare.json', theta), { model });
    expect(bare.skipped).toBeUndefined();
    expect(Array.from(bare.theta.sAtt)).toEqual(theta.sAtt);
  });

  it('refuses each mistake with its code', async () => {
    const theta = toJSON(thetaOf(6));
    await expectCode(() => readFitFile(join(work, 'missing.json')), 'HOPSCOTCH_ERR_ARGUMENT');
    await expectCode(() => readFitFile(file('text.json', 'not json')), 'HOPSCOTCH_ERR_ARGUMENT');
    await expectCode(() => readFitFile(file('array.json', [1, 2])), 'HOPSCOTCH_ERR_ARGUMENT');
    await expectCode(() => readFitFile(file('short.json', { skipped: [], theta: toJSON(ones(L - 1)) }), { model }), 'HOPSCOTCH_ERR_THETA');
    await expectCode(() => readFitFile(file('strings.json', { skipped: [], theta: { ...theta, bMlp: ['1'] } })), 'HOPSCOTCH_ERR_THETA');
    await expectCode(() => readFitFile(file('range.json', { skipped: [L], theta }), { model }), 'HOPSCOTCH_ERR_SKIP');
    await expectCode(() => readFitFile(file('twice.json', { skipped: [1, 1], theta })), 'HOPSCOTCH_ERR_SKIP');
    await expectCode(() => readFitFile(file('noskip.json', theta), { model, requireSkip: true }), 'HOPSCOTCH_ERR_ARGUMENT');
    await expectCode(() => readFitFile(file('noskip2.json', { theta }), { requireSkip: true }), 'HOPSCOTCH_ERR_ARGUMENT');
    await expectCode(() => readFitFile(file('fp.json', { skipped: [], theta, fingerprint: 7 })), 'HOPSCOTCH_ERR_ARGUMENT');
    await expectCode(() => readFitFile(file('other.json', { skipped: [], theta, fingerprint: 'xyz' }), { model }), 'HOPSCOTCH_ERR_FINGERPRINT');
  });
});
