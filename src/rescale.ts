/**
 * `rescale`: learn theta for a fixed skip list (paper section 3.1, "Rescaling the
 * remaining blocks"). The skipped layers' b_att is set to 0 and frozen; every other
 * scalar is trained with Adam on the recovery set, one engine call per batch, so that
 * progress, cancellation and checkpoints happen between batches. With a checkpoint
 * file, the position, theta, the Adam state and the losses are written atomically
 * after optimizer steps, and a killed run resumes to the uninterrupted result bit for
 * bit.
 *
 * Also the training loop shared with the probes of `selectBlocks`, and a batched
 * evaluation of the loss.
 */
import { createHash } from 'node:crypto';
import { Adam } from './adam.js';
import { makeBatches } from './batching.js';
import {
  type RescaleCheckpoint,
  type RescaleState,
  type RunIdentity,
  RESCALE_CHECKPOINT_FORMAT,
  RESCALE_CHECKPOINT_VERSION,
  checkCheckpointMatches,
  readRescaleCheckpoint,
  removeStaleTemporaries,
  writeCheckpoint,
} from './checkpoint.js';
import { datasetDigest } from './dataset.js';
import { ErrorCodes, HopscotchError, check } from './errors.js';
import { type ProgressCallback, type ProgressEvent, EtaEstimator, safeCallback, throwIfAborted } from './progress.js';
import { THETA_KEYS, clone, fromJSON, ones, toJSON, validate } from './theta.js';
import { checkSamples } from './samples.js';
import type { Dataset, Model, Sample, Theta } from './types.js';

export interface RescaleOptions {
  /** Layers whose attention is skipped (b_att = 0, frozen). */
  skip: readonly number[];
  /** Starting theta (copied; default all ones). */
  theta?: Theta;
  /** Passes over `data`. Default 1. */
  epochs?: number;
  /** Adam learning rate. Default 3e-3 (paper A.2). */
  lr?: number;
  /** Samples per batch. Default 32 (paper A.2). */
  batchSize?: number;
  /** Most tokens per batch (prompt + response); a longer sample is an error. */
  tokenCap?: number;
  /** Seed of the per-epoch shuffle. Default 0. */
  seed?: number;
  /** Divide the loss by response tokens instead of by samples. Default false. */
  tokenMean?: boolean;
  /** Held-out samples: their loss at the final theta is reported as `validationLoss`. */
  validation?: Dataset;
  /**
   * JSON file holding the run's state, rewritten atomically between optimizer steps. An
   * existing file is validated against this model, data and options and the run goes
   * on from its next batch, ending with exactly the result of an uninterrupted run; a
   * finished one returns the fit without engine calls.
   */
  checkpoint?: string;
  /** Write the checkpoint after every n optimizer steps (and at the end, and when stopped). Default 1. */
  checkpointEvery?: number;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

/** The result of {@link rescale}. */
export interface Fit {
  skipped: number[];
  theta: Theta;
  /** Training loss of every optimizer step, in order. */
  losses: number[];
  /** Mean training loss of each epoch (weighted by samples, or by response tokens with `tokenMean`). */
  epochLosses: number[];
  validationLoss?: number;
  /** Optimizer steps taken. */
  steps: number;
}

/** Throws HOPSCOTCH_ERR_SKIP unless `skip` lists distinct layer indices in [0, numLayers). */
export function validateSkip(skip: readonly number[], numLayers: number): void {
  if (!Array.isArray(skip)) throw new HopscotchError(ErrorCodes.SKIP, 'skip must be an array of layer indices');
  const seen = new Set<number>();
  for (const l of skip) {
    if (!Number.isInteger(l) || l < 0 || l >= numLayers)
      throw new HopscotchError(ErrorCodes.SKIP, `skip has layer ${l}, outside [0, ${numLayers})`);
    if (seen.has(l)) throw new HopscotchError(ErrorCodes.SKIP, `skip lists layer ${l} twice`);
    seen.add(l);
  }
}

function checkData(model: Model, data: readonly Sample[], name: string): void {
  checkSamples(data, model.config.vocabSize, { requireResponse: true, name });
}

/** Settings of {@link trainEpochs}. */
export interface TrainLoop {
  model: Model;
  data: readonly Sample[];
  /** Trained in place. */
  theta: Theta;
  skip: readonly number[];
  adam: Adam;
  epochs: number;
  batchSize: number;
  tokenCap?: number;
  seed: number;
  tokenMean: boolean;
  phase: 'probe' | 'rescale';
  /** Selection step reported in events (0 outside `selectBlocks`). */
  step: number;
  candidate?: number;
  emit: (event: ProgressEvent) => void;
  signal?: AbortSignal;
  /** Called after every batch with its duration. */
  onBatch?: (ms: number) => void;
  /** Called after every epoch with its mean loss. */
  onEpoch?: (epoch: number, loss: number) => void;
  /** Go on from this position (its arrays are extended in place) instead of from the start. */
  resume?: TrainPosition;
  /** Awaited after every optimizer step with the position reached (checkpoints). */
  afterStep?: (pos: TrainPosition) => Promise<void>;
}

/** Where a training loop stands between two optimizer steps. */
export interface TrainPosition {
  /** Epoch in progress (0-based); equals the number of epochs once training is over. */
  epoch: number;
  /** Batches of that epoch already taken. */
  batch: number;
  /** Running sum of weighted batch losses of that epoch, and of their weights. */
  epochSum: number;
  epochWeight: number;
  /** Loss of every step so far. */
  losses: number[];
  /** Mean loss of every completed epoch. */
  epochLosses: number[];
}

/**
 * Trains `loop.theta` in place for `loop.epochs` epochs (epoch e shuffled from
 * (seed, e)), from the start or from `loop.resume`. The abort signal is checked before
 * every batch; whatever is thrown, theta, the optimizer and the position stay those of
 * the last completed step. Returns the loss of every step and the weighted mean loss of
 * every epoch.
 */
export async function trainEpochs(loop: TrainLoop): Promise<{ losses: number[]; epochLosses: number[] }> {
  const pos: TrainPosition = loop.resume ?? { epoch: 0, batch: 0, epochSum: 0, epochWeight: 0, losses: [], epochLosses: [] };
  while (pos.epoch < loop.epochs) {
    const e = pos.epoch;
    const batches = makeBatches(loop.data, {
      batchSize: loop.batchSize,
      tokenCap: loop.tokenCap,
      seed: loop.seed,
      epoch: e,
    });
    check(pos.batch < batches.length, `cannot resume at batch ${pos.batch + 1} of epoch ${e + 1}: it has ${batches.length} batches`);
    for (let b = pos.batch; b < batches.length; b++) {
      throwIfAborted(loop.signal);
      const started = performance.now();
      const batch = batches[b];
      const res = await loop.model.lossAndGrad(batch, loop.theta, { skip: [...loop.skip], tokenMean: loop.tokenMean });
      if (!Number.isFinite(res.loss))
        throw new HopscotchError(
          ErrorCodes.NON_FINITE,
          `loss is not finite (${res.loss}) at ${loop.phase} epoch ${e + 1} batch ${b + 1}` +
            (loop.candidate === undefined ? '' : ` (candidate layer ${loop.candidate})`),
        );
      loop.adam.step(loop.theta, res.grad);
      const w = loop.tokenMean ? res.responseTokens : batch.length;
      pos.epochSum += res.loss * w;
      pos.epochWeight += w;
      pos.losses.push(res.loss);
      pos.batch = b + 1;
      loop.onBatch?.(performance.now() - started);
      loop.emit({
        type: 'batch',
        phase: loop.phase,
        step: loop.step,
        ...(loop.candidate === undefined ? {} : { candidate: loop.candidate }),
        epoch: e + 1,
        batch: b + 1,
        batches: batches.length,
        loss: res.loss,
      });
      if (pos.batch === batches.length) {
        const epochLoss = pos.epochSum / pos.epochWeight;
        pos.epochLosses.push(epochLoss);
        pos.epoch = e + 1;
        pos.batch = 0;
        pos.epochSum = 0;
        pos.epochWeight = 0;
        loop.onEpoch?.(e + 1, epochLoss);
      }
      if (loop.afterStep) await loop.afterStep(pos);
    }
  }
  return { losses: pos.losses, epochLosses: pos.epochLosses };
}

/**
 * Mean loss of `data` at `theta` (weighted by samples, or by response tokens with
 * `tokenMean`), evaluated in unshuffled batches.
 */
export async function evaluateLoss(
  model: Model,
  data: readonly Sample[],
  theta: Theta,
  opts: { skip?: readonly number[]; tokenMean?: boolean; batchSize?: number; tokenCap?: number; signal?: AbortSignal } = {},
): Promise<number> {
  checkData(model, data, 'evaluation data');
  const tokenMean = opts.tokenMean ?? false;
  const batches = makeBatches(data, {
    batchSize: opts.batchSize ?? 32,
    tokenCap: opts.tokenCap,
    seed: 0,
    epoch: 0,
    ordered: true,
  });
  let sum = 0;
  let weight = 0;
  for (const batch of batches) {
    throwIfAborted(opts.signal);
    const res = await model.loss(batch, theta, { skip: [...(opts.skip ?? [])], tokenMean });
    const w = tokenMean ? res.responseTokens : batch.length;
    sum += res.loss * w;
    weight += w;
  }
  return sum / weight;
}

/** Starting theta of a rescale: a copy of `theta` (or ones) with b_att = 0 on `skip`. */
export function startTheta(model: Model, skip: readonly number[], theta?: Theta): Theta {
  const n = model.config.numLayers;
  if (theta !== undefined) validate(theta, n);
  const t = theta ? clone(theta) : ones(n);
  for (const l of skip) t.bAtt[l] = 0;
  return t;
}

/** JSON has no -0: a stored value comes back as +0, so results record +0 throughout. */
const noNegativeZero = (x: number) => (x === 0 ? 0 : x);

/** SHA-256 of theta's float32 bits (little-endian, bAtt, sAtt, bMlp, sMlp). */
function thetaDigest(theta: Theta): string {
  const hash = createHash('sha256');
  for (const k of THETA_KEYS) {
    const v = theta[k];
    const view = new DataView(new ArrayBuffer(4 * v.length));
    v.forEach((x, i) => view.setFloat32(4 * i, x, true));
    hash.update(new Uint8Array(view.buffer));
  }
  return hash.digest('hex');
}

/** The run a rescale checkpoint must belong to. */
function rescaleIdentity(
  model: Model,
  data: readonly Sample[],
  start: Theta,
  o: { skip: number[]; epochs: number; lr: number; batchSize: number; tokenCap?: number; seed: number; tokenMean: boolean },
): RunIdentity {
  return {
    fingerprint: model.fingerprint,
    dataDigest: datasetDigest(data),
    options: {
      skip: o.skip,
      epochs: o.epochs,
      lr: o.lr,
      batchSize: o.batchSize,
      tokenCap: o.tokenCap ?? null,
      seed: o.seed,
      tokenMean: o.tokenMean,
      thetaDigest: thetaDigest(start),
    },
  };
}

/**
 * Theta, optimizer and position from a checkpoint's state, checked against this run:
 * HOPSCOTCH_ERR_CHECKPOINT naming what does not fit.
 */
function restoreRescale(
  file: string,
  state: RescaleState,
  run: { numLayers: number; skip: number[]; lr: number; epochs: number; batchCounts: (epoch: number) => number },
): { theta: Theta; adam: Adam; pos: TrainPosition } {
  const bad = (what: string, cause?: unknown) =>
    new HopscotchError(ErrorCodes.CHECKPOINT, `checkpoint ${file}: ${what}`, cause === undefined ? undefined : { cause });
  let theta: Theta;
  let adam: Adam;
  try {
    theta = fromJSON(state.theta);
    validate(theta, run.numLayers);
  } catch (err) {
    throw bad((err as Error).message, err);
  }
  for (const l of run.skip) if (theta.bAtt[l] !== 0) throw bad(`theta.bAtt[${l}] is ${theta.bAtt[l]}, but layer ${l} is skipped`);
  try {
    adam = Adam.fromJSON(state.adam);
  } catch (err) {
    throw bad((err as Error).message, err);
  }
  const expected = new Adam(run.numLayers, { lr: run.lr, frozen: { bAtt: run.skip } }).toJSON();
  for (const k of ['numLayers', 'lr', 'beta1', 'beta2', 'eps', 'frozen'] as const) {
    const a = JSON.stringify(state.adam[k]);
    const b = JSON.stringify(expected[k]);
    if (a !== b) throw bad(`Adam ${k} is ${a}, this run has ${b}`);
  }
  const { epoch, batch, losses, epochLosses } = state;
  if (epoch > run.epochs) throw bad(`epoch ${epoch} is past the ${run.epochs} epochs of this run`);
  if (epochLosses.length !== epoch) throw bad(`${epochLosses.length} epoch losses for ${epoch} completed epochs`);
  const inEpoch = epoch < run.epochs ? run.batchCounts(epoch) : 0;
  if (batch >= Math.max(inEpoch, 1)) throw bad(`batch ${batch} is past the ${inEpoch} batches of epoch ${epoch + 1}`);
  if (batch === 0 && (state.epochSum !== 0 || state.epochWeight !== 0)) throw bad('epoch sums are set before any batch of the epoch');
  let steps = batch;
  for (let e = 0; e < epoch; e++) steps += run.batchCounts(e);
  if (losses.length !== steps) throw bad(`${losses.length} step losses, the position (epoch ${epoch + 1}, batch ${batch}) means ${steps}`);
  if (adam.t !== steps) throw bad(`Adam has taken ${adam.t} steps, the position means ${steps}`);
  if (state.done !== (epoch === run.epochs)) throw bad(`done is ${state.done} at epoch ${epoch} of ${run.epochs}`);
  return {
    theta,
    adam,
    pos: { epoch, batch, epochSum: state.epochSum, epochWeight: state.epochWeight, losses: [...losses], epochLosses: [...epochLosses] },
  };
}

/**
 * Learns theta for the fixed skip list `opts.skip` on `data`. Rejects with
 * `signal.reason` when aborted (checked before every batch). With `opts.checkpoint`,
 * the file then holds the last completed step, and running again with the same model,
 * data and options resumes and returns exactly what an uninterrupted run returns.
 */
export async function rescale(model: Model, data: Dataset, opts: RescaleOptions): Promise<Fit> {
  check(opts && typeof opts === 'object', 'rescale options are required (at least { skip })');
  const n = model.config.numLayers;
  validateSkip(opts.skip, n);
  checkData(model, data, 'data');
  const epochs = opts.epochs ?? 1;
  check(Number.isInteger(epochs) && epochs > 0, `epochs must be a positive integer, got ${epochs}`);
  const checkpointEvery = opts.checkpointEvery ?? 1;
  check(Number.isInteger(checkpointEvery) && checkpointEvery > 0, `checkpointEvery must be a positive integer, got ${checkpointEvery}`);
  if (opts.validation !== undefined) checkData(model, opts.validation, 'validation');
  const emit = safeCallback(opts.onProgress);
  const skip = [...opts.skip];
  const lr = opts.lr ?? 3e-3;
  const batchSize = opts.batchSize ?? 32;
  const seed = opts.seed ?? 0;
  const tokenMean = opts.tokenMean ?? false;
  const batchCounts = (epoch: number) => makeBatches(data, { batchSize, tokenCap: opts.tokenCap, seed, epoch }).length;
  const perEpoch = batchCounts(0); // also checks batchSize and tokenCap

  let theta = startTheta(model, skip, opts.theta);
  for (const k of THETA_KEYS) theta[k].forEach((x, l) => (theta[k][l] = noNegativeZero(x)));
  let adam = new Adam(n, { lr, frozen: { bAtt: skip } });
  let pos: TrainPosition = { epoch: 0, batch: 0, epochSum: 0, epochWeight: 0, losses: [], epochLosses: [] };
  let validation: RescaleState['validation'] = null;

  const file = opts.checkpoint;
  let identity: RunIdentity | undefined;
  let resumed = false;
  if (file !== undefined) {
    identity = rescaleIdentity(model, data, theta, { skip, epochs, lr, batchSize, tokenCap: opts.tokenCap, seed, tokenMean });
    await removeStaleTemporaries(file);
    const ckpt = await readRescaleCheckpoint(file);
    if (ckpt) {
      checkCheckpointMatches(file, ckpt, identity);
      ({ theta, adam, pos } = restoreRescale(file, ckpt.state, { numLayers: n, skip, lr, epochs, batchCounts }));
      validation = ckpt.state.validation;
      resumed = true;
    }
  }
  const save = async () => {
    if (file === undefined || identity === undefined) return;
    const state: RescaleState = {
      epoch: pos.epoch,
      batch: pos.batch,
      epochSum: pos.epochSum,
      epochWeight: pos.epochWeight,
      theta: toJSON(theta),
      adam: adam.toJSON(),
      losses: pos.losses,
      epochLosses: pos.epochLosses,
      done: pos.epoch === epochs,
      validation,
    };
    const ckpt: RescaleCheckpoint = { format: RESCALE_CHECKPOINT_FORMAT, version: RESCALE_CHECKPOINT_VERSION, ...identity, state };
    await writeCheckpoint(file, ckpt);
  };

  if (pos.epoch < epochs) {
    if (file !== undefined && !resumed) await save();
    const totalBatches = epochs * perEpoch;
    const eta = new EtaEstimator();
    let batchesDone = pos.losses.length;
    let lastEta = 0;
    let unsaved = 0;
    try {
      await trainEpochs({
        model,
        data,
        theta,
        skip,
        adam,
        epochs,
        batchSize,
        tokenCap: opts.tokenCap,
        seed,
        tokenMean,
        phase: 'rescale',
        step: 0,
        emit,
        signal: opts.signal,
        resume: pos,
        onBatch: (ms) => {
          eta.record(1, ms);
          batchesDone += 1;
          const now = performance.now();
          if (now - lastEta >= 1000 || batchesDone >= totalBatches) {
            lastEta = now;
            emit({ type: 'eta', seconds: eta.seconds(Math.max(0, totalBatches - batchesDone)) ?? 0 });
          }
        },
        onEpoch: (epoch, loss) => emit({ type: 'rescale-epoch', step: 0, epoch, epochs, loss }),
        afterStep: async (p) => {
          unsaved += 1;
          if (file !== undefined && (unsaved >= checkpointEvery || p.epoch === epochs)) {
            await save();
            unsaved = 0;
          }
        },
      });
    } catch (err) {
      // Theta, Adam and the position are those of the last completed step: keep them.
      if (file !== undefined && unsaved > 0) await save().catch(() => {});
      throw err;
    }
  }

  const fit: Fit = {
    skipped: skip,
    theta,
    losses: pos.losses.map(noNegativeZero),
    epochLosses: pos.epochLosses.map(noNegativeZero),
    steps: adam.t,
  };
  if (opts.validation !== undefined) {
    const digest = file === undefined ? undefined : datasetDigest(opts.validation);
    if (validation !== null && validation.dataDigest === digest) fit.validationLoss = validation.loss;
    else {
      fit.validationLoss = noNegativeZero(
        await evaluateLoss(model, opts.validation, theta, {
          skip,
          tokenMean,
          batchSize,
          tokenCap: opts.tokenCap,
          signal: opts.signal,
        }),
      );
      if (digest !== undefined) {
        validation = { dataDigest: digest, loss: fit.validationLoss };
        await save();
      }
    }
    emit({ type: 'validation', loss: fit.validationLoss });
  }
  return fit;
}
