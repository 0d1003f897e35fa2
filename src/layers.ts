/**
 * Checks of the per-layer arguments every entry point takes: skip lists, theta and
 * hidden-state layer lists. Each mistake has one error code and one message, in the words
 * of the engine's own checks (native/core/engine_common.cpp), so a mistake reads the
 * same whether TypeScript or the addon catches it.
 */
import { ErrorCodes, HopscotchError, type ErrorCode } from './errors.js';
import { THETA_KEYS } from './theta.js';
import type { Theta } from './types.js';

/**
 * Throws HOPSCOTCH_ERR_SKIP unless `skip` is an array of distinct layer indices in
 * [0, numLayers). `name` names the list in the message (`skip`, `exclude`, a file's
 * `skipped`, ...).
 */
export function checkSkip(skip: unknown, numLayers: number, name = 'skip'): asserts skip is number[] {
  if (!Array.isArray(skip)) throw new HopscotchError(ErrorCodes.SKIP, `${name} must be an array of layer indices`);
  const seen = new Set<number>();
  skip.forEach((l: unknown, i) => {
    if (!Number.isInteger(l) || (l as number) < 0 || (l as number) >= numLayers)
      throw new HopscotchError(ErrorCodes.SKIP, `${name}[${i}] = ${String(l)} is not a layer index in [0, ${numLayers})`);
    if (seen.has(l as number)) throw new HopscotchError(ErrorCodes.SKIP, `${name} lists layer ${l} more than once`);
    seen.add(l as number);
  });
}

/**
 * Throws HOPSCOTCH_ERR_THETA unless `theta` holds four Float32Arrays (bAtt, sAtt, bMlp,
 * sMlp) of `numLayers` entries each, every entry finite. A non-finite entry throws
 * `nonFinite` instead when given (export refuses it as HOPSCOTCH_ERR_EXPORT: a value it
 * cannot write).
 */
export function checkTheta(
  theta: unknown,
  numLayers: number,
  opts: { name?: string; nonFinite?: ErrorCode } = {},
): asserts theta is Theta {
  const name = opts.name ?? 'theta';
  if (!theta || typeof theta !== 'object')
    throw new HopscotchError(ErrorCodes.THETA, `${name} must be an object with bAtt, sAtt, bMlp, sMlp`);
  for (const k of THETA_KEYS) {
    const v = (theta as Record<string, unknown>)[k];
    if (!(v instanceof Float32Array)) throw new HopscotchError(ErrorCodes.THETA, `${name}.${k} must be a Float32Array`);
    if (v.length !== numLayers)
      throw new HopscotchError(ErrorCodes.THETA, `${name}.${k} has length ${v.length}, expected ${numLayers} (one per layer)`);
  }
  for (const k of THETA_KEYS) {
    const v = (theta as Theta)[k];
    for (let i = 0; i < v.length; i++)
      if (!Number.isFinite(v[i]))
        throw new HopscotchError(opts.nonFinite ?? ErrorCodes.THETA, `${name}.${k}[${i}] is not finite (${v[i]})`);
  }
}

/**
 * Throws HOPSCOTCH_ERR_ARGUMENT unless every entry of `layers` is a hidden-state index in
 * [0, numLayers] (numLayers = the final hidden state, before the final norm).
 */
export function checkHiddenLayers(layers: unknown, numLayers: number, name = 'hiddenLayers'): asserts layers is number[] {
  if (!Array.isArray(layers)) throw new HopscotchError(ErrorCodes.ARGUMENT, `${name} must be an array of layer indices`);
  layers.forEach((l: unknown, i) => {
    if (!Number.isInteger(l) || (l as number) < 0 || (l as number) > numLayers)
      throw new HopscotchError(ErrorCodes.ARGUMENT, `${name}[${i}] = ${String(l)} is not a hidden-state index in [0, ${numLayers}]`);
  });
}
