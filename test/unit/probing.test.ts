// Successive-halving schedule: rounds, cuts, ties, resumption (pure functions of probing.ts).
import { describe, expect, it } from 'vitest';

import { type ProbeOutcome, finalOutcomes, nextRound, resolveProbing, roundTargets } from '../../src/probing.js';
import type { TrainState } from '../../src/train.js';
import { expectCode } from '../helpers.js';

const halving = resolveProbing('halving');

/** Plays the rounds with `score(candidate, steps)` as every job's outcome. */
function play(candidates: number[], keep: number, targets: number[], score: (c: number, steps: number) => number) {
  const rounds: ProbeOutcome[][] = [];
  const log: { round: number; jobs: [number, number, number][] }[] = [];
  for (;;) {
    const next = nextRound(candidates, keep, targets, 2, rounds);
    if (next === null) break;
    log.push({ round: next.round, jobs: next.jobs.map((j) => [j.candidate, j.resume?.losses.length ?? 0, j.steps]) });
    rounds[next.round] = next.jobs.map((j) => ({
      candidate: j.candidate,
      steps: j.steps,
      tokens: 10 * j.steps,
      train: score(j.candidate, j.steps),
      score: score(j.candidate, j.steps),
      state: { losses: new Array(j.steps).fill(0) } as unknown as TrainState,
    }));
  }
  return { log, finals: finalOutcomes(candidates, targets, rounds) };
}

describe('probing options', () => {
  it('defaults and checks', async () => {
    expect(resolveProbing(undefined)).toEqual({ kind: 'halving', eta: 2, minFraction: 1 / 16 });
    expect(resolveProbing('exhaustive')).toEqual({ kind: 'exhaustive' });
    expect(halving).toEqual({ kind: 'halving', eta: 2, minFraction: 1 / 16 });
    expect(resolveProbing({ kind: 'halving', eta: 3 })).toEqual({ kind: 'halving', eta: 3, minFraction: 1 / 16 });
    await expectCode(() => resolveProbing({ kind: 'halving', eta: 1 }), 'HOPSCOTCH_ERR_ARGUMENT');
    await expectCode(() => resolveProbing({ kind: 'halving', minFraction: 0 }), 'HOPSCOTCH_ERR_ARGUMENT');
    await expectCode(() => resolveProbing('fast' as never), 'HOPSCOTCH_ERR_ARGUMENT');
  });
});

describe('roundTargets', () => {
  it('exhaustive: one round of the whole budget', () => {
    expect(roundTargets({ kind: 'exhaustive' }, 64, 32, 1)).toEqual([64]);
  });
  it('halving: the budget divided by eta per earlier round, as many cuts as needed, limited by minFraction', () => {
    expect(roundTargets(halving, 64, 32, 1)).toEqual([4, 8, 16, 32, 64]); // 32 -> 16 -> 8 -> 4 -> 2 survive, at most 1/16
    expect(roundTargets(halving, 64, 4, 1)).toEqual([16, 32, 64]); // 4 -> 2 -> 1
    expect(roundTargets(halving, 64, 5, 2)).toEqual([16, 32, 64]); // 5 -> 3 -> 2
    expect(roundTargets(halving, 64, 2, 2)).toEqual([64]); // nothing to cut
    expect(roundTargets(halving, 3, 32, 1)).toEqual([1, 2, 3]); // at least one step, strictly increasing
  });
});

describe('nextRound', () => {
  it('cuts to the better half by score over the same slice; survivors resume their own state; the last run the whole budget', () => {
    const targets = roundTargets(halving, 16, 8, 1);
    expect(targets).toEqual([2, 4, 8, 16]);
    // Lower layer = lower score, except layer 5 which is best.
    const { log, finals } = play([0, 1, 2, 3, 4, 5, 6, 7], 1, targets, (c, s) => (c === 5 ? 0 : c + 1) + 1 / s);
    expect(log).toEqual([
      { round: 0, jobs: [0, 1, 2, 3, 4, 5, 6, 7].map((c) => [c, 0, 2]) },
      { round: 1, jobs: [[0, 2, 4], [1, 2, 4], [2, 2, 4], [5, 2, 4]] },
      { round: 2, jobs: [[0, 4, 8], [5, 4, 8]] },
      { round: 3, jobs: [[5, 8, 16]] },
    ]);
    expect(finals.find((f) => f.candidate === 5)).toMatchObject({ steps: 16, tokens: 160 });
    expect(finals.find((f) => f.candidate === 5)!.droppedAt).toBeUndefined();
    expect(finals.find((f) => f.candidate === 7)).toMatchObject({ droppedAt: 2 });
    expect(finals.find((f) => f.candidate === 0)).toMatchObject({ droppedAt: 8 });
  });

  it('breaks ties by the lower layer, and keeps at least `keep`', () => {
    const targets = roundTargets(halving, 8, 6, 3);
    const { log } = play([0, 1, 2, 3, 4, 5], 3, targets, () => 1);
    expect(log[1].jobs.map((j) => j[0])).toEqual([0, 1, 2]);
  });

  it('resumes: only the jobs without an outcome are due', () => {
    const targets = [2, 4];
    const o = (candidate: number, steps: number, score: number): ProbeOutcome => ({ candidate, steps, tokens: steps, train: score, score, state: null });
    expect(nextRound([0, 1, 2], 1, targets, 2, [[o(2, 2, 1)]])).toEqual({
      round: 0,
      jobs: [
        { candidate: 0, steps: 2, resume: null },
        { candidate: 1, steps: 2, resume: null },
      ],
    });
    expect(nextRound([0, 1, 2], 1, targets, 2, [[o(2, 2, 1), o(0, 2, 3), o(1, 2, 0.5)], [o(1, 4, 0.4), o(2, 4, 0.9)]])).toBeNull();
  });
});

describe('removalCurve with halving', () => {
  it('takes each step from the candidates that ran the whole budget', async () => {
    const { removalCurve } = await import('../../src/plot/figures.js');
    const trace = [
      { step: 1, candidate: 0, score: 1, droppedAt: 2 }, // lower, but over 2 steps only
      { step: 1, candidate: 1, score: 3 },
      { step: 1, candidate: 2, score: 4, droppedAt: 4 },
    ];
    expect(removalCurve(trace)).toEqual([{ k: 1, layer: 1, loss: 3 }]);
  });
});
