import { describe, expect, it } from 'vitest';
import { Adam } from '../../src/adam.js';
import { HopscotchError } from '../../src/errors.js';
import { THETA_KEYS, ones } from '../../src/theta.js';
import type { Theta } from '../../src/types.js';

function thetaOf(rows: Record<string, number[]>): Theta {
  return {
    bAtt: Float32Array.from(rows.bAtt),
    sAtt: Float32Array.from(rows.sAtt),
    bMlp: Float32Array.from(rows.bMlp),
    sMlp: Float32Array.from(rows.sMlp),
  };
}

/** Textbook Adam (Kingma & Ba, Algorithm 1) in float64; the parameter is stored as float32 after each step. */
function referenceAdam(p0: number, grads: number[], lr: number): number[] {
  const b1 = 0.9;
  const b2 = 0.999;
  const eps = 1e-8;
  let p = Math.fround(p0);
  let m = 0;
  let v = 0;
  const out: number[] = [];
  grads.forEach((g, i) => {
    const t = i + 1;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const mHat = m / (1 - Math.pow(b1, t));
    const vHat = v / (1 - Math.pow(b2, t));
    p = Math.fround(p - (lr * mHat) / (Math.sqrt(vHat) + eps));
    out.push(p);
  });
  return out;
}

describe('Adam', () => {
  const start = { bAtt: [1, 0.5, -2], sAtt: [1, 1, 1], bMlp: [0.25, 3, 1], sMlp: [1, 2, 0.75] };
  const grads = [
    { bAtt: [0.5, -1.25, 3], sAtt: [0.001, 0, -7], bMlp: [2, 2, 2], sMlp: [-0.3, 0.6, 1e-4] },
    { bAtt: [-0.25, 0.75, 3], sAtt: [0.002, 1, 7], bMlp: [-2, 1, 0.5], sMlp: [0.3, 0.6, -1e-4] },
    { bAtt: [0.125, 0.5, -1], sAtt: [-0.004, -1, 0], bMlp: [1, -4, 0.25], sMlp: [0.1, -0.6, 2e-4] },
  ];

  it('matches a float64 reference for 3 steps', () => {
    const lr = 0.01;
    const theta = thetaOf(start);
    const adam = new Adam(3, { lr });
    for (const g of grads) adam.step(theta, thetaOf(g));
    expect(adam.t).toBe(3);
    for (const k of THETA_KEYS) {
      for (let l = 0; l < 3; l++) {
        const expected = referenceAdam(
          start[k][l],
          grads.map((g) => g[k][l]),
          lr,
        );
        expect(theta[k][l], `${k}[${l}]`).toBeCloseTo(expected[2], 6);
      }
    }
  });

  it('moves by lr per step under a constant gradient (bias correction makes m/sqrt(v) exact)', () => {
    const theta = ones(2);
    const adam = new Adam(2, { lr: 0.01 });
    const g = thetaOf({ bAtt: [4, -0.5], sAtt: [1, 1], bMlp: [-1, 1], sMlp: [100, -100] });
    for (let i = 0; i < 3; i++) adam.step(theta, g);
    expect(theta.bAtt[0]).toBeCloseTo(0.97, 6);
    expect(theta.bAtt[1]).toBeCloseTo(1.03, 6);
    expect(theta.sMlp[0]).toBeCloseTo(0.97, 6);
    expect(theta.sMlp[1]).toBeCloseTo(1.03, 6);
  });

  it('step 1 by hand: p - lr * g / (|g| + eps)', () => {
    const theta = thetaOf(start);
    const adam = new Adam(3, { lr: 0.5 });
    adam.step(theta, thetaOf(grads[0]));
    // sAtt[1] has g = 0: m = v = 0, no move.
    expect(theta.sAtt[1]).toBe(1);
    // sAtt[0]: g = 0.001, update = 0.5 * 0.001 / (0.001 + 1e-8).
    expect(theta.sAtt[0]).toBe(Math.fround(1 - (0.5 * 0.001) / (0.001 + 1e-8)));
    expect(theta.bAtt[2]).toBe(Math.fround(-2 - (0.5 * 3) / (3 + 1e-8)));
  });

  it('never changes frozen entries, nor their moments', () => {
    const theta = thetaOf(start);
    const before = thetaOf(start);
    const adam = new Adam(3, { lr: 0.1, frozen: { bAtt: [0, 2], sMlp: [1] } });
    for (const g of grads) {
      const gg = thetaOf(g);
      gg.bAtt[0] = Number.NaN; // a frozen entry's gradient is never read
      adam.step(theta, gg);
    }
    expect(theta.bAtt[0]).toBe(before.bAtt[0]);
    expect(theta.bAtt[2]).toBe(before.bAtt[2]);
    expect(theta.sMlp[1]).toBe(before.sMlp[1]);
    expect(theta.bAtt[1]).not.toBe(before.bAtt[1]);
    const s = adam.toJSON();
    expect(s.frozen.bAtt).toEqual([0, 2]);
    expect([s.m.bAtt[0], s.v.bAtt[0], s.m.bAtt[2], s.v.bAtt[2], s.m.sMlp[1], s.v.sMlp[1]]).toEqual([0, 0, 0, 0, 0, 0]);
    expect(s.m.bAtt[1]).not.toBe(0);
  });

  it('rejects a non-finite gradient of a trainable entry without changing anything', () => {
    const theta = thetaOf(start);
    const adam = new Adam(3, { lr: 0.1 });
    const g = thetaOf(grads[0]);
    g.sAtt[2] = Number.POSITIVE_INFINITY;
    expect(() => adam.step(theta, g)).toThrowError(expect.objectContaining({ code: 'HOPSCOTCH_ERR_NON_FINITE' }));
    expect(adam.t).toBe(0);
    expect(Array.from(theta.bAtt)).toEqual(start.bAtt);
  });

  it('round-trips through JSON bit for bit', () => {
    const a = new Adam(3, { lr: 0.02, frozen: { sAtt: [1] } });
    const ta = thetaOf(start);
    a.step(ta, thetaOf(grads[0]));
    a.step(ta, thetaOf(grads[1]));
    const b = Adam.fromJSON(JSON.parse(JSON.stringify(a)));
    const tb = { bAtt: ta.bAtt.slice(), sAtt: ta.sAtt.slice(), bMlp: ta.bMlp.slice(), sMlp: ta.sMlp.slice() };
    a.step(ta, thetaOf(grads[2]));
    b.step(tb, thetaOf(grads[2]));
    expect(b.t).toBe(3);
    for (const k of THETA_KEYS) expect(Array.from(tb[k])).toEqual(Array.from(ta[k]));
  });

  it('validates its arguments', () => {
    expect(() => new Adam(3, { lr: 0 })).toThrow(HopscotchError);
    expect(() => new Adam(3, { lr: 0.1, frozen: { bAtt: [3] } })).toThrow(/outside/);
    expect(() => new Adam(3, { lr: 0.1 }).step(ones(2), ones(2))).toThrowError(
      expect.objectContaining({ code: 'HOPSCOTCH_ERR_THETA' }),
    );
    expect(() => Adam.fromJSON({ ...new Adam(2, { lr: 1 }).toJSON(), m: undefined } as never)).toThrowError(
      expect.objectContaining({ code: 'HOPSCOTCH_ERR_CHECKPOINT' }),
    );
  });
});
