/**
 * The one training unit of the method: "train theta". Probes, the rescale inside
 * `selectBlocks`, the standalone `rescale` (and probe jobs) all run through
 * {@link trainTheta}. It trains theta with Adam on batches of a data set, with the
 * skipped layers' b_att held at 0, under one of three budgets:
 *
 * - `{ kind: 'steps', steps }`: exactly `steps` optimizer steps, cycling through
 *   reshuffled epochs when the data are small (a probe: paper section 3.1, "a single
 *   optimization epoch with a large learning rate", given a number of steps so that it
 *   means the same thing on a small recovery set as on GSM8K's 7,473 samples);
 * - `{ kind: 'epochs', epochs }`: exactly `epochs` passes over the data;
 * - `{ kind: 'converge', maxEpochs, patience }`: passes over the data until the loss on
 *   the validation samples has not improved for `patience` epochs, or `maxEpochs`; the
 *   theta with the lowest validation loss (the starting one included) is kept.
 *
 * The unit's whole position (theta, Adam, batch position, losses, validation curve,
 * best theta) is a plain JSON value, {@link TrainState}, handed to `onState` after
 * every optimizer step: a caller that stores it can resume the run from it, and the
 * resumed run takes exactly the steps of an uninterrupted one (batch orders are a pure
 * function of the seed and the epoch), so its result is the same bit for bit.
 */
import { Adam, type AdamState } from './adam.js';
import { makeBatches } from './batching.js';
import { ErrorCodes, HopscotchError, check, isPositiveInteger } from './errors.js';
import { type ProgressEvent, throwIfAborted } from './progress.js';
import { type ThetaJson, clone, fromJSON, toJSON, validate } from './theta.js';
import type { Model, Sample, Theta } from './types.js';

/** How long a training run lasts. */
export type TrainBudget =
  | { kind: 'steps'; steps: number }
  | { kind: 'epochs'; epochs: number }
  | { kind: 'converge'; maxEpochs: number; patience: number };

/** Why a training run ended. */
export type TrainStop = 'steps' | 'epochs' | 'patience' | 'maxEpochs';

/** What one training run does. */
export interface TrainSpec {
  model: Model;
  /** Training samples. */
  data: readonly Sample[];
  /** Held-out samples, evaluated at the start and after every epoch (required by 'converge'). */
  validation?: readonly Sample[];
  /** Skipped layers: their b_att is 0 and frozen. */
  skip: readonly number[];
  /** Starting theta (copied; b_att of skipped layers must be 0). */
  theta: Theta;
  lr: number;
  budget: TrainBudget;
  batchSize: number;
  tokenCap?: number;
  /** Seed of the batch orders: epoch e is shuffled from (seed, e). */
  seed: number;
  tokenMean: boolean;
  /** How events name this run. */
  phase: 'probe' | 'rescale';
  step: number;
  candidate?: number;
  emit?: (event: ProgressEvent) => void;
  signal?: AbortSignal;
  /** Resume from this state (from an earlier `onState`) instead of starting afresh. */
  resume?: TrainState;
  /** Awaited after every optimizer step and every validation, with the whole position. */
  onState?: (state: TrainState) => Promise<void> | void;
  /** Called after every optimizer step with its duration. */
  onBatch?: (ms: number) => void;
}

/** The whole position of a training run, as JSON. */
export interface TrainState {
  theta: ThetaJson;
  adam: AdamState;
  /** Epoch in progress (0-based). */
  epoch: number;
  /** Batches of that epoch already taken. */
  batch: number;
  /** Weighted sums of the batch losses of the epoch in progress. */
  epochSum: number;
  epochWeight: number;
  /** Weighted sums of all batch losses of the run. */
  totalSum: number;
  totalWeight: number;
  /** Training tokens (prompt + response) processed. */
  tokens: number;
  /** Loss of every optimizer step. */
  losses: number[];
  /** Mean training loss of every completed epoch. */
  epochLosses: number[];
  /** Validation loss at the start (index 0) and after every completed epoch. */
  validation: number[];
  /** Lowest validation loss so far, the epoch it was reached (0 = the start) and its theta. */
  best: { epoch: number; loss: number; theta: ThetaJson } | null;
  /** Set once the run has ended. */
  stoppedBy: TrainStop | null;
}

/** The result of {@link trainTheta}. */
export interface TrainResult {
  /** The final theta: the best by validation loss under 'converge', else the last. */
  theta: Theta;
  /** Loss of every optimizer step. */
  losses: number[];
  /** Mean training loss of every completed epoch. */
  epochLosses: number[];
  /** Weighted mean training loss over every step of the run (the probe score of the paper). */
  meanLoss: number;
  /** Validation loss at the start and after every epoch (empty without validation). */
  validationCurve: number[];
  /** Validation loss of the returned theta, when there are validation samples. */
  validationLoss?: number;
  /** Epoch whose theta was returned (0 = the starting theta), under 'converge'. */
  bestEpoch?: number;
  /** Optimizer steps taken. */
  steps: number;
  /** Completed epochs (a 'steps' budget may end inside an epoch). */
  epochs: number;
  /** Training tokens processed (prompt + response, every step). */
  tokens: number;
  stoppedBy: TrainStop;
}

/** JSON has no -0: results record +0 so that resumed runs compare equal. */
export const noNegativeZero = (x: number) => (x === 0 ? 0 : x);

/** Checks a budget; HOPSCOTCH_ERR_ARGUMENT naming the bad field. */
export function checkBudget(b: TrainBudget): void {
  check(b && typeof b === 'object', 'budget must be { kind: "steps" | "epochs" | "converge", ... }');
  if (b.kind === 'steps') check(isPositiveInteger(b.steps), `budget steps must be a positive integer, got ${b.steps}`);
  else if (b.kind === 'epochs') check(isPositiveInteger(b.epochs), `budget epochs must be a positive integer, got ${b.epochs}`);
  else if (b.kind === 'converge') {
    check(isPositiveInteger(b.maxEpochs), `maxEpochs must be a positive integer, got ${b.maxEpochs}`);
    check(isPositiveInteger(b.patience), `patience must be a positive integer, got ${b.patience}`);
  } else check(false, `budget kind must be "steps", "epochs" or "converge", got ${(b as { kind: unknown }).kind}`);
}

/**
 * Mean loss of `data` at `theta` (weighted by samples, or by response tokens with
 * `tokenMean`), evaluated in unshuffled batches.
 */
export async function meanLoss(
  model: Model,
  data: readonly Sample[],
  theta: Theta,
  opts: { skip: readonly number[]; tokenMean: boolean; batchSize: number; tokenCap?: number; signal?: AbortSignal },
): Promise<number> {
  let sum = 0;
  let weight = 0;
  for (const batch of makeBatches(data, { batchSize: opts.batchSize, tokenCap: opts.tokenCap, seed: 0, epoch: 0, ordered: true })) {
    throwIfAborted(opts.signal);
    const res = await model.loss(batch, theta, { skip: [...opts.skip], tokenMean: opts.tokenMean });
    const w = opts.tokenMean ? res.responseTokens : batch.length;
    sum += res.loss * w;
    weight += w;
  }
  const loss = sum / weight;
  if (!Number.isFinite(loss)) throw new HopscotchError(ErrorCodes.NON_FINITE, `validation loss is not finite (${loss})`);
  return noNegativeZero(loss);
}

function freshState(spec: TrainSpec, n: number): TrainState {
  const theta = clone(spec.theta);
  for (const l of spec.skip) theta.bAtt[l] = 0;
  return {
    theta: toJSON(theta),
    adam: new Adam(n, { lr: spec.lr, frozen: { bAtt: spec.skip } }).toJSON(),
    epoch: 0,
    batch: 0,
    epochSum: 0,
    epochWeight: 0,
    totalSum: 0,
    totalWeight: 0,
    tokens: 0,
    losses: [],
    epochLosses: [],
    validation: [],
    best: null,
    stoppedBy: null,
  };
}

/**
 * Checks that a stored state can continue this run: theta and Adam fit the model,
 * skipped layers are zero and frozen, the counters agree with each other. Throws
 * HOPSCOTCH_ERR_CHECKPOINT naming the first thing that does not fit.
 */
export function checkTrainState(s: TrainState, spec: Pick<TrainSpec, 'skip' | 'lr' | 'budget'>, numLayers: number, where: string): void {
  const bad = (what: string) => new HopscotchError(ErrorCodes.CHECKPOINT, `${where}: ${what}`);
  const isNums = (x: unknown) => Array.isArray(x) && x.every((v) => typeof v === 'number' && Number.isFinite(v));
  if (!s || typeof s !== 'object') throw bad('training state is missing');
  for (const k of ['epoch', 'batch', 'tokens'] as const)
    if (!Number.isInteger(s[k]) || s[k] < 0) throw bad(`${k} must be a non-negative integer, got ${s[k]}`);
  for (const k of ['epochSum', 'epochWeight', 'totalSum', 'totalWeight'] as const)
    if (typeof s[k] !== 'number' || !Number.isFinite(s[k])) throw bad(`${k} must be a finite number`);
  if (!isNums(s.losses) || !isNums(s.epochLosses) || !isNums(s.validation)) throw bad('losses are malformed');
  if (!(s.stoppedBy === null || ['steps', 'epochs', 'patience', 'maxEpochs'].includes(s.stoppedBy))) throw bad(`stoppedBy is ${s.stoppedBy}`);
  let theta: Theta;
  let adam: Adam;
  try {
    theta = fromJSON(s.theta);
    validate(theta, numLayers);
    adam = Adam.fromJSON(s.adam);
  } catch (err) {
    throw bad((err as Error).message);
  }
  for (const l of spec.skip) if (theta.bAtt[l] !== 0) throw bad(`theta.bAtt[${l}] is ${theta.bAtt[l]}, but layer ${l} is skipped`);
  const expected = new Adam(numLayers, { lr: spec.lr, frozen: { bAtt: spec.skip } }).toJSON();
  for (const k of ['numLayers', 'lr', 'beta1', 'beta2', 'eps', 'frozen'] as const)
    if (JSON.stringify(s.adam[k]) !== JSON.stringify(expected[k]))
      throw bad(`Adam ${k} is ${JSON.stringify(s.adam[k])}, this run has ${JSON.stringify(expected[k])}`);
  if (adam.t !== s.losses.length) throw bad(`Adam has taken ${adam.t} steps, the state records ${s.losses.length}`);
  if (s.epochLosses.length !== s.epoch) throw bad(`${s.epochLosses.length} epoch losses for ${s.epoch} completed epochs`);
  if (s.best !== null) {
    try {
      validate(fromJSON(s.best.theta), numLayers);
    } catch (err) {
      throw bad(`best theta: ${(err as Error).message}`);
    }
  }
}

/**
 * Trains theta under `spec.budget` (see the file comment). The abort signal is checked
 * before every batch; whatever is thrown, the last state handed to `onState` is that of
 * the last completed step, so a run resumed from it loses nothing.
 */
export async function trainTheta(spec: TrainSpec): Promise<TrainResult> {
  const n = spec.model.config.numLayers;
  const budget = spec.budget;
  checkBudget(budget);
  check(spec.data.length > 0, 'training data are empty');
  const validation = spec.validation !== undefined && spec.validation.length > 0 ? spec.validation : undefined;
  check(budget.kind !== 'converge' || validation !== undefined, 'a convergence budget needs validation samples');
  const emit = spec.emit ?? (() => {});
  const where = `${spec.phase}${spec.candidate === undefined ? '' : ` of layer ${spec.candidate}`}${spec.step ? ` (step ${spec.step})` : ''}`;

  const s: TrainState = spec.resume ? structuredClone(spec.resume) : freshState(spec, n);
  if (spec.resume) checkTrainState(s, spec, n, `cannot resume the ${where}`);
  const theta = fromJSON(s.theta);
  const adam = Adam.fromJSON(s.adam);
  const batchOpts = { batchSize: spec.batchSize, tokenCap: spec.tokenCap, seed: spec.seed };
  const evalOpts = { skip: spec.skip, tokenMean: spec.tokenMean, batchSize: spec.batchSize, tokenCap: spec.tokenCap, signal: spec.signal };
  const publish = async () => {
    s.theta = toJSON(theta);
    s.adam = adam.toJSON();
    if (spec.onState) await spec.onState(s);
  };

  /** Records a validation point; returns true when the run should stop for patience. */
  const validate = async (): Promise<boolean> => {
    if (validation === undefined) return false;
    const loss = await meanLoss(spec.model, validation, theta, evalOpts);
    s.validation.push(loss);
    const epoch = s.validation.length - 1;
    if (s.best === null || loss < s.best.loss) s.best = { epoch, loss, theta: toJSON(theta) };
    emit({ type: 'validation', loss, epoch, ...(spec.step ? { step: spec.step } : {}), phase: spec.phase });
    return budget.kind === 'converge' && epoch - s.best.epoch >= budget.patience;
  };

  if (!spec.resume) await publish(); // the starting position, before any work
  const validates = validation !== undefined && budget.kind !== 'steps';
  const epochLimit = budget.kind === 'epochs' ? budget.epochs : budget.kind === 'converge' ? budget.maxEpochs : Infinity;
  while (s.stoppedBy === null) {
    // The held-out loss at the start and after each epoch (also one a resumed run still owes).
    if (validates && s.validation.length < s.epoch + 1) {
      const patienceOut = await validate();
      if (patienceOut) s.stoppedBy = 'patience';
      await publish();
      continue;
    }
    if (budget.kind === 'steps' && s.losses.length >= budget.steps) {
      s.stoppedBy = 'steps';
      break;
    }
    if (s.epoch >= epochLimit) {
      s.stoppedBy = budget.kind === 'epochs' ? 'epochs' : 'maxEpochs';
      break;
    }
    const e = s.epoch;
    const batches = makeBatches(spec.data, { ...batchOpts, epoch: e });
    if (s.batch >= batches.length) throw new HopscotchError(ErrorCodes.CHECKPOINT, `cannot resume the ${where}: batch ${s.batch + 1} of epoch ${e + 1} does not exist`);
    throwIfAborted(spec.signal);
    const started = performance.now();
    const batch = batches[s.batch];
    const res = await spec.model.lossAndGrad(batch, theta, { skip: [...spec.skip], tokenMean: spec.tokenMean });
    if (!Number.isFinite(res.loss))
      throw new HopscotchError(ErrorCodes.NON_FINITE, `loss is not finite (${res.loss}) at ${where}, epoch ${e + 1} batch ${s.batch + 1}`);
    adam.step(theta, res.grad);
    const w = spec.tokenMean ? res.responseTokens : batch.length;
    const loss = noNegativeZero(res.loss);
    s.epochSum += loss * w;
    s.epochWeight += w;
    s.totalSum += loss * w;
    s.totalWeight += w;
    s.tokens += batch.reduce((t, x) => t + x.prompt.length + x.response.length, 0);
    s.losses.push(loss);
    s.batch += 1;
    spec.onBatch?.(performance.now() - started);
    emit({
      type: 'batch',
      phase: spec.phase,
      step: spec.step,
      ...(spec.candidate === undefined ? {} : { candidate: spec.candidate }),
      epoch: e + 1,
      batch: s.batch,
      batches: batches.length,
      loss,
    });
    if (s.batch === batches.length) {
      const epochLoss = noNegativeZero(s.epochSum / s.epochWeight);
      s.epochLosses.push(epochLoss);
      s.epoch = e + 1;
      s.batch = 0;
      s.epochSum = 0;
      s.epochWeight = 0;
      if (spec.phase === 'rescale') emit({ type: 'rescale-epoch', step: spec.step, epoch: e + 1, epochs: epochLimit, loss: epochLoss });
    }
    await publish();
  }
  // Keep the best theta under a convergence budget.
  const final = budget.kind === 'converge' && s.best !== null ? fromJSON(s.best.theta) : theta;
  const result: TrainResult = {
    theta: final,
    losses: [...s.losses],
    epochLosses: [...s.epochLosses],
    meanLoss: noNegativeZero(s.totalSum / s.totalWeight),
    validationCurve: [...s.validation],
    steps: s.losses.length,
    epochs: s.epochLosses.length,
    tokens: s.tokens,
    stoppedBy: s.stoppedBy,
  };
  if (budget.kind === 'converge' && s.best !== null) {
    result.validationLoss = s.best.loss;
    result.bestEpoch = s.best.epoch;
  } else if (s.validation.length > 0 && budget.kind === 'epochs') {
    result.validationLoss = s.validation[s.validation.length - 1];
  }
  await publish();
  return result;
}
