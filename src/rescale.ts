/**
 * `rescale`: learn theta for a fixed skip list (paper section 3.1, "Rescaling the
 * remaining blocks"). The skipped layers' b_att is set to 0 and frozen; every other
 * scalar is trained with Adam on the recovery set, one engine call per batch, so that
 * progress, cancellation and checkpoints happen between batches.
 *
 * Also the training loop shared with the probes of `selectBlocks`, and a batched
 * evaluation of the loss.
 */
import { Adam } from './adam.js';
import { makeBatches } from './batching.js';
import { ErrorCodes, HopscotchError, check } from './errors.js';
import { type ProgressCallback, type ProgressEvent, EtaEstimator, safeCallback, throwIfAborted } from './progress.js';
import { clone, ones, validate } from './theta.js';
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
}

/**
 * Trains `loop.theta` in place for `loop.epochs` epochs (epoch e shuffled from
 * (seed, e)). The abort signal is checked before every batch. Returns the loss of every
 * step and the weighted mean loss of every epoch.
 */
export async function trainEpochs(loop: TrainLoop): Promise<{ losses: number[]; epochLosses: number[] }> {
  const losses: number[] = [];
  const epochLosses: number[] = [];
  for (let e = 0; e < loop.epochs; e++) {
    const batches = makeBatches(loop.data, {
      batchSize: loop.batchSize,
      tokenCap: loop.tokenCap,
      seed: loop.seed,
      epoch: e,
    });
    let sum = 0;
    let weight = 0;
    for (let b = 0; b < batches.length; b++) {
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
      sum += res.loss * w;
      weight += w;
      losses.push(res.loss);
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
    }
    const epochLoss = sum / weight;
    epochLosses.push(epochLoss);
    loop.onEpoch?.(e + 1, epochLoss);
  }
  return { losses, epochLosses };
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

/**
 * Learns theta for the fixed skip list `opts.skip` on `data`. Rejects with
 * `signal.reason` when aborted (checked before every batch).
 */
export async function rescale(model: Model, data: Dataset, opts: RescaleOptions): Promise<Fit> {
  check(opts && typeof opts === 'object', 'rescale options are required (at least { skip })');
  const n = model.config.numLayers;
  validateSkip(opts.skip, n);
  checkData(model, data, 'data');
  const epochs = opts.epochs ?? 1;
  check(Number.isInteger(epochs) && epochs > 0, `epochs must be a positive integer, got ${epochs}`);
  if (opts.validation !== undefined) checkData(model, opts.validation, 'validation');
  const emit = safeCallback(opts.onProgress);
  const skip = [...opts.skip];
  const theta = startTheta(model, skip, opts.theta);
  const adam = new Adam(n, { lr: opts.lr ?? 3e-3, frozen: { bAtt: skip } });
  const batchSize = opts.batchSize ?? 32;
  const perEpoch = makeBatches(data, { batchSize, tokenCap: opts.tokenCap, seed: opts.seed ?? 0, epoch: 0 }).length;

  const eta = new EtaEstimator();
  let batchesDone = 0;
  let lastEta = 0;
  const { losses, epochLosses } = await trainEpochs({
    model,
    data,
    theta,
    skip,
    adam,
    epochs,
    batchSize,
    tokenCap: opts.tokenCap,
    seed: opts.seed ?? 0,
    tokenMean: opts.tokenMean ?? false,
    phase: 'rescale',
    step: 0,
    emit,
    signal: opts.signal,
    onBatch: (ms) => {
      eta.record(1, ms);
      batchesDone += 1;
      const now = performance.now();
      if (now - lastEta >= 1000 || batchesDone === epochs * perEpoch) {
        lastEta = now;
        emit({ type: 'eta', seconds: eta.seconds(epochs * perEpoch - batchesDone) ?? 0 });
      }
    },
    onEpoch: (epoch, loss) => emit({ type: 'rescale-epoch', step: 0, epoch, epochs, loss }),
  });

  const fit: Fit = { skipped: skip, theta, losses, epochLosses, steps: adam.t };
  if (opts.validation !== undefined) {
    fit.validationLoss = await evaluateLoss(model, opts.validation, theta, {
      skip,
      tokenMean: opts.tokenMean,
      batchSize,
      tokenCap: opts.tokenCap,
      signal: opts.signal,
    });
    emit({ type: 'validation', loss: fit.validationLoss });
  }
  return fit;
}
