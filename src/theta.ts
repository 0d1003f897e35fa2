/** Helpers for {@link Theta}: construction, copying, validation, JSON. */
import { ErrorCodes, HopscotchError } from './errors.js';
import { checkTheta } from './layers.js';
import type { Theta } from './types.js';

export const THETA_KEYS = ['bAtt', 'sAtt', 'bMlp', 'sMlp'] as const;
export type ThetaKey = (typeof THETA_KEYS)[number];

/** All ones: the original model. */
export function ones(numLayers: number): Theta {
  return {
    bAtt: new Float32Array(numLayers).fill(1),
    sAtt: new Float32Array(numLayers).fill(1),
    bMlp: new Float32Array(numLayers).fill(1),
    sMlp: new Float32Array(numLayers).fill(1),
  };
}

export function clone(t: Theta): Theta {
  return { bAtt: t.bAtt.slice(), sAtt: t.sAtt.slice(), bMlp: t.bMlp.slice(), sMlp: t.sMlp.slice() };
}

/** Throws HOPSCOTCH_ERR_THETA unless every vector has `numLayers` finite entries. */
export function validate(t: Theta, numLayers: number): void {
  checkTheta(t, numLayers);
}

export interface ThetaJson {
  bAtt: number[];
  sAtt: number[];
  bMlp: number[];
  sMlp: number[];
}

export function toJSON(t: Theta): ThetaJson {
  return { bAtt: Array.from(t.bAtt), sAtt: Array.from(t.sAtt), bMlp: Array.from(t.bMlp), sMlp: Array.from(t.sMlp) };
}

export function fromJSON(j: ThetaJson): Theta {
  if (!j || typeof j !== 'object') throw new HopscotchError(ErrorCodes.THETA, 'theta JSON must be an object');
  const out = {} as Theta;
  for (const k of THETA_KEYS) {
    const v = (j as unknown as Record<string, unknown>)[k];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'number'))
      throw new HopscotchError(ErrorCodes.THETA, `theta JSON field ${k} must be an array of numbers`);
    out[k] = Float32Array.from(v as number[]);
  }
  return out;
}
