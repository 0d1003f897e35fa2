/**
 * Adam (Kingma & Ba) over the four theta vectors, with bias correction and a frozen
 * mask. Frozen entries are never read or written: their value and both moments stay
 * exactly as they are. Moments are kept in float64; theta itself stays float32.
 * The whole optimizer state round-trips through JSON bit for bit (checkpoints).
 */
import { ErrorCodes, HopscotchError, check } from './errors.js';
import { THETA_KEYS, type ThetaKey } from './theta.js';
import type { Theta } from './types.js';

/** Layer indices to hold fixed, per theta vector (e.g. `{ bAtt: skipped }`). */
export type FrozenMask = Partial<Record<ThetaKey, readonly number[]>>;

export interface AdamOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  frozen?: FrozenMask;
}

/** JSON form of an {@link Adam} optimizer, from {@link Adam.toJSON}. */
export interface AdamState {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  numLayers: number;
  /** Steps taken so far (the `t` of the bias correction). */
  t: number;
  frozen: Record<ThetaKey, number[]>;
  m: Record<ThetaKey, number[]>;
  v: Record<ThetaKey, number[]>;
}

type Moments = Record<ThetaKey, Float64Array>;

function zeros(numLayers: number): Moments {
  return {
    bAtt: new Float64Array(numLayers),
    sAtt: new Float64Array(numLayers),
    bMlp: new Float64Array(numLayers),
    sMlp: new Float64Array(numLayers),
  };
}

function checkHyper(lr: number, beta1: number, beta2: number, eps: number): void {
  check(Number.isFinite(lr) && lr > 0, `Adam lr must be a positive number, got ${lr}`);
  check(Number.isFinite(beta1) && beta1 >= 0 && beta1 < 1, `Adam beta1 must be in [0, 1), got ${beta1}`);
  check(Number.isFinite(beta2) && beta2 >= 0 && beta2 < 1, `Adam beta2 must be in [0, 1), got ${beta2}`);
  check(Number.isFinite(eps) && eps > 0, `Adam eps must be a positive number, got ${eps}`);
}

export class Adam {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly numLayers: number;
  private steps = 0;
  private readonly frozen: Record<ThetaKey, Uint8Array>;
  private readonly m: Moments;
  private readonly v: Moments;

  constructor(numLayers: number, opts: AdamOptions) {
    check(Number.isInteger(numLayers) && numLayers > 0, `numLayers must be a positive integer, got ${numLayers}`);
    const { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8 } = opts;
    checkHyper(lr, beta1, beta2, eps);
    this.lr = lr;
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.eps = eps;
    this.numLayers = numLayers;
    this.m = zeros(numLayers);
    this.v = zeros(numLayers);
    this.frozen = {
      bAtt: new Uint8Array(numLayers),
      sAtt: new Uint8Array(numLayers),
      bMlp: new Uint8Array(numLayers),
      sMlp: new Uint8Array(numLayers),
    };
    for (const k of THETA_KEYS) {
      for (const l of opts.frozen?.[k] ?? []) {
        check(Number.isInteger(l) && l >= 0 && l < numLayers, `frozen.${k} has layer ${l}, outside [0, ${numLayers})`);
        this.frozen[k][l] = 1;
      }
    }
  }

  /** Number of steps taken. */
  get t(): number {
    return this.steps;
  }

  isFrozen(key: ThetaKey, layer: number): boolean {
    return this.frozen[key][layer] === 1;
  }

  /**
   * One Adam step, updating `theta` in place from `grad`. Throws HOPSCOTCH_ERR_NON_FINITE
   * (leaving theta and the state untouched) if a gradient entry of a trainable scalar is
   * not finite.
   */
  step(theta: Theta, grad: Theta): void {
    for (const k of THETA_KEYS) {
      check(theta[k]?.length === this.numLayers, `theta.${k} must have ${this.numLayers} entries`, ErrorCodes.THETA);
      check(grad[k]?.length === this.numLayers, `grad.${k} must have ${this.numLayers} entries`, ErrorCodes.THETA);
      for (let l = 0; l < this.numLayers; l++) {
        if (!this.frozen[k][l] && !Number.isFinite(grad[k][l]))
          throw new HopscotchError(ErrorCodes.NON_FINITE, `gradient of theta.${k}[${l}] is not finite (${grad[k][l]})`);
      }
    }
    this.steps += 1;
    const bc1 = 1 - this.beta1 ** this.steps;
    const bc2 = 1 - this.beta2 ** this.steps;
    for (const k of THETA_KEYS) {
      const p = theta[k];
      const g = grad[k];
      const m = this.m[k];
      const v = this.v[k];
      const frozen = this.frozen[k];
      for (let l = 0; l < this.numLayers; l++) {
        if (frozen[l]) continue;
        const gl = g[l];
        m[l] = this.beta1 * m[l] + (1 - this.beta1) * gl;
        v[l] = this.beta2 * v[l] + (1 - this.beta2) * gl * gl;
        const mHat = m[l] / bc1;
        const vHat = v[l] / bc2;
        p[l] = p[l] - (this.lr * mHat) / (Math.sqrt(vHat) + this.eps);
      }
    }
  }

  toJSON(): AdamState {
    const arrays = (src: Moments) =>
      Object.fromEntries(THETA_KEYS.map((k) => [k, Array.from(src[k])])) as Record<ThetaKey, number[]>;
    const frozen = Object.fromEntries(
      THETA_KEYS.map((k) => [k, Array.from(this.frozen[k].keys()).filter((l) => this.frozen[k][l] === 1)]),
    ) as Record<ThetaKey, number[]>;
    return {
      lr: this.lr,
      beta1: this.beta1,
      beta2: this.beta2,
      eps: this.eps,
      numLayers: this.numLayers,
      t: this.steps,
      frozen,
      m: arrays(this.m),
      v: arrays(this.v),
    };
  }

  /** Rebuilds an optimizer from {@link Adam.toJSON} output; throws HOPSCOTCH_ERR_CHECKPOINT if malformed. */
  static fromJSON(state: AdamState): Adam {
    const bad = (what: string) => new HopscotchError(ErrorCodes.CHECKPOINT, `Adam state: ${what}`);
    if (!state || typeof state !== 'object') throw bad('not an object');
    if (!Number.isInteger(state.t) || state.t < 0) throw bad(`t must be a non-negative integer, got ${state.t}`);
    let adam: Adam;
    try {
      adam = new Adam(state.numLayers, {
        lr: state.lr,
        beta1: state.beta1,
        beta2: state.beta2,
        eps: state.eps,
        frozen: state.frozen,
      });
    } catch (err) {
      throw bad((err as Error).message);
    }
    for (const k of THETA_KEYS) {
      for (const [name, src, dst] of [
        ['m', state.m?.[k], adam.m[k]],
        ['v', state.v?.[k], adam.v[k]],
      ] as const) {
        if (!Array.isArray(src) || src.length !== state.numLayers || src.some((x) => !Number.isFinite(x)))
          throw bad(`${name}.${k} must be ${state.numLayers} finite numbers`);
        dst.set(src);
      }
    }
    adam.steps = state.t;
    return adam;
  }
}
