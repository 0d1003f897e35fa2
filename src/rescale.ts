/**
 * `rescale`: learn theta for a fixed skip list (paper section 3.1, "Rescaling the
 * remaining blocks": "minimizing the loss over multiple epochs using a small learning
 * rate"). The skipped layers' b_att is set to 0 and frozen; every other scalar is
 * trained with Adam through the training unit ({@link trainTheta}).
 *
 * By default the run converges instead of stopping after a fixed count: a fixed,
 * seeded fraction of the samples (`holdout`, default {@link DEFAULT_HOLDOUT}) is held
 * out and never trained on, its loss is measured at the start and after every epoch,
 * the theta with the lowest held-out loss is kept, and training stops after `patience`
 * epochs without improvement or at `maxEpochs`. `epochs: N` trains exactly N epochs on
 * all the data (held-out loss is still reported when `validation` is given).
 *
 * With a checkpoint file, the training state is written atomically between optimizer
 * steps, and a killed run resumes to the uninterrupted result bit for bit.
 */
import { createHash } from 'node:crypto';
import { makeBatches } from './batching.js';
import {
  type RescaleCheckpoint,
  type RunIdentity,
  RESCALE_CHECKPOINT_FORMAT,
  RESCALE_CHECKPOINT_VERSION,
  checkCheckpointMatches,
  readRescaleCheckpoint,
  removeStaleTemporaries,
  writeCheckpoint,
} from './checkpoint.js';
import { datasetDigest, splitDataset } from './dataset.js';
import { check, isPositiveInteger } from './errors.js';
import { EtaEstimator, safeCallback } from './progress.js';
import { checkSkip, checkTheta } from './layers.js';
import { THETA_KEYS, clone, ones } from './theta.js';
import { checkSamples } from './samples.js';
import { type TrainBudget, type TrainState, type TrainStop, meanLoss, noNegativeZero, trainTheta } from './train.js';
import type { Dataset, Model, Sample, Theta } from './types.js';
import type { ProgressCallback } from './progress.js';

/** Fraction of the samples held out for validation by default. */
export const DEFAULT_HOLDOUT = 0.2;
/** Most epochs of a converging rescale by default. */
export const DEFAULT_MAX_EPOCHS = 50;
/** Epochs without a better held-out loss before a converging rescale stops, by default. */
export const DEFAULT_PATIENCE = 5;

export interface RescaleOptions {
  /** Layers whose attention is skipped (b_att = 0, frozen). */
  skip: readonly number[];
  /** Starting theta (copied; default all ones). */
  theta?: Theta;
  /**
   * Train exactly this many passes over the data (no held-out slice is taken unless
   * `holdout` is set). Without it the run converges on held-out loss (see `maxEpochs`).
   */
  epochs?: number;
  /** Most epochs of a converging run. Default {@link DEFAULT_MAX_EPOCHS}. */
  maxEpochs?: number;
  /** Epochs without a better held-out loss before a converging run stops. Default {@link DEFAULT_PATIENCE}. */
  patience?: number;
  /**
   * Fraction of `data` held out (fixed, seeded by `seed`) for validation when no
   * `validation` set is given. Default {@link DEFAULT_HOLDOUT} for a converging run;
   * 0 = hold nothing out.
   */
  holdout?: number;
  /** Held-out samples (instead of a slice of `data`): their loss is tracked every epoch. */
  validation?: Dataset;
  /** Adam learning rate. Default 3e-3 (paper A.2). */
  lr?: number;
  /** Samples per batch. Default 32 (paper A.2). */
  batchSize?: number;
  /** Most tokens per batch (prompt + response); a longer sample is an error. */
  tokenCap?: number;
  /** Seed of the per-epoch shuffle and of the held-out slice. Default 0. */
  seed?: number;
  /** Divide the loss by response tokens instead of by samples. Default false. */
  tokenMean?: boolean;
  /**
   * JSON file holding the run's state, rewritten atomically between optimizer steps. An
   * existing file is validated against this model, data and options and the run goes
   * on from its next batch, ending with exactly the result of an uninterrupted run; a
   * finished one returns the fit without training.
   */
  checkpoint?: string;
  /** Write the checkpoint after every n optimizer steps (and at every epoch end, and when stopped). Default 1. */
  checkpointEvery?: number;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

/** The result of {@link rescale}. */
export interface Fit {
  /** Fingerprint of the model the fit belongs to (export refuses another model). */
  fingerprint?: string;
  skipped: number[];
  theta: Theta;
  /** Training loss of every optimizer step, in order. */
  losses: number[];
  /** Mean training loss of each epoch (weighted by samples, or by response tokens with `tokenMean`). */
  epochLosses: number[];
  /** Held-out loss of the returned theta, when there were held-out samples. */
  validationLoss?: number;
  /** Held-out loss at the start (index 0) and after every epoch; empty without held-out samples. */
  validationCurve?: number[];
  /** Epoch whose theta was kept (0 = the starting theta), for a converging run. */
  bestEpoch?: number;
  /** Why training ended: 'epochs' (fixed count), 'patience' or 'maxEpochs' (converging). */
  stoppedBy?: TrainStop;
  /** Samples trained on and held out. */
  trainSamples?: number;
  validationSamples?: number;
  /** Optimizer steps taken. */
  steps: number;
}

/**
 * Throws HOPSCOTCH_ERR_SKIP unless `skip` lists distinct layer indices in [0, numLayers):
 * {@link checkSkip}, under the name the command line imports it by.
 */
export const validateSkip: (skip: readonly number[], numLayers: number) => void = checkSkip;

function checkData(model: Model, data: readonly Sample[], name: string): void {
  checkSamples(data, model.config.vocabSize, { requireResponse: true, name, context: model.config.maxPositionEmbeddings });
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
  return meanLoss(model, data, theta, {
    skip: opts.skip ?? [],
    tokenMean: opts.tokenMean ?? false,
    batchSize: opts.batchSize ?? 32,
    tokenCap: opts.tokenCap,
    signal: opts.signal,
  });
}

/** Starting theta of a rescale: a copy of `theta` (or ones) with b_att = 0 on `skip`. */
export function startTheta(model: Model, skip: readonly number[], theta?: Theta): Theta {
  const n = model.config.numLayers;
  if (theta !== undefined) checkTheta(theta, n);
  const t = theta ? clone(theta) : ones(n);
  for (const l of skip) t.bAtt[l] = 0;
  for (const k of THETA_KEYS) t[k].forEach((x, l) => (t[k][l] = noNegativeZero(x)));
  return t;
}

/** SHA-256 of theta's float32 bits (little-endian, bAtt, sAtt, bMlp, sMlp). */
export function thetaDigest(theta: Theta): string {
  const hash = createHash('sha256');
  for (const k of THETA_KEYS) {
    const v = theta[k];
    const view = new DataView(new ArrayBuffer(4 * v.length));
    v.forEach((x, i) => view.setFloat32(4 * i, x, true));
    hash.update(new Uint8Array(view.buffer));
  }
  return hash.digest('hex');
}

/** The resolved settings of one rescale: budget, data split, optimizer. */
export interface RescalePlan {
  budget: TrainBudget;
  train: Dataset;
  validation?: Dataset;
  /** Fraction held out of the data, or null when a validation set was given or nothing is held out. */
  holdout: number | null;
}

/**
 * The checks of a rescale's budget and hold-out options, which need no data. `names` are
 * the options' names where the caller calls them otherwise (`selectBlocks`' rescaleEpochs,
 * rescaleMaxEpochs, rescalePatience).
 */
export function checkRescaleBudget(
  o: { epochs?: number; maxEpochs?: number; patience?: number; holdout?: number },
  names: { epochs: string; maxEpochs: string; patience: string } = { epochs: 'epochs', maxEpochs: 'maxEpochs', patience: 'patience' },
): void {
  for (const k of ['epochs', 'maxEpochs', 'patience'] as const)
    check(o[k] === undefined || isPositiveInteger(o[k]), `${names[k]} must be a positive integer, got ${o[k]}`);
  check(
    o.holdout === undefined || (Number.isFinite(o.holdout) && o.holdout >= 0 && o.holdout < 1),
    `holdout must be a fraction in [0, 1), got ${o.holdout}`,
  );
  check(
    o.epochs === undefined || (o.maxEpochs === undefined && o.patience === undefined),
    `${names.epochs} trains a fixed number of epochs; ${names.maxEpochs} and ${names.patience} apply only without it`,
  );
}

/**
 * Resolves the budget and the train/validation split of a rescale from its options,
 * with every check that needs no compute. Shared by {@link rescale} and the rescale
 * step of `selectBlocks`.
 */
export function planRescale(
  data: Dataset,
  o: { epochs?: number; maxEpochs?: number; patience?: number; holdout?: number; validation?: Dataset; seed: number },
): RescalePlan {
  checkRescaleBudget(o);
  check(o.validation === undefined || !o.holdout, 'give either a validation set or a holdout fraction, not both');
  let train = data;
  let validation = o.validation;
  let holdout: number | null = null;
  const fraction = o.holdout ?? (o.epochs === undefined && o.validation === undefined ? DEFAULT_HOLDOUT : 0);
  if (validation === undefined && fraction > 0) {
    ({ train, validation } = splitDataset(data, { fraction, seed: o.seed }));
    holdout = fraction;
  }
  if (o.epochs !== undefined) return { budget: { kind: 'epochs', epochs: o.epochs }, train, validation, holdout };
  check(
    validation !== undefined && validation.length > 0,
    'a converging rescale needs held-out samples: give a validation set, a holdout fraction > 0, or a fixed number of epochs',
  );
  return {
    budget: { kind: 'converge', maxEpochs: o.maxEpochs ?? DEFAULT_MAX_EPOCHS, patience: o.patience ?? DEFAULT_PATIENCE },
    train,
    validation,
    holdout,
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
  checkSkip(opts.skip, n);
  checkData(model, data, 'data');
  const checkpointEvery = opts.checkpointEvery ?? 1;
  check(Number.isInteger(checkpointEvery) && checkpointEvery > 0, `checkpointEvery must be a positive integer, got ${checkpointEvery}`);
  if (opts.validation !== undefined) checkData(model, opts.validation, 'validation');
  const skip = [...opts.skip];
  const lr = opts.lr ?? 3e-3;
  check(Number.isFinite(lr) && lr > 0, `lr must be a positive number, got ${lr}`);
  const batchSize = opts.batchSize ?? 32;
  const seed = opts.seed ?? 0;
  check(Number.isInteger(seed), `seed must be an integer, got ${seed}`);
  const tokenMean = opts.tokenMean ?? false;
  const plan = planRescale(data, { ...opts, seed });
  // batchSize and tokenCap against every sample, held-out ones included, before any work.
  makeBatches(data, { batchSize, tokenCap: opts.tokenCap, seed, epoch: 0 });
  if (opts.validation !== undefined) makeBatches(opts.validation, { batchSize, tokenCap: opts.tokenCap, seed, epoch: 0 });
  const start = startTheta(model, skip, opts.theta);
  const emit = safeCallback(opts.onProgress);

  const file = opts.checkpoint;
  const identity: RunIdentity = {
    fingerprint: model.fingerprint,
    dataDigest: datasetDigest(data),
    options: {
      skip,
      budget: plan.budget,
      holdout: plan.holdout,
      validationDigest: opts.validation === undefined ? null : datasetDigest(opts.validation),
      lr,
      batchSize,
      tokenCap: opts.tokenCap ?? null,
      seed,
      tokenMean,
      thetaDigest: thetaDigest(start),
    },
  };
  let resume: TrainState | undefined;
  if (file !== undefined) {
    await removeStaleTemporaries(file);
    const ckpt = await readRescaleCheckpoint(file);
    if (ckpt) {
      checkCheckpointMatches(file, ckpt, identity);
      resume = ckpt.state;
    }
  }
  const save = async (state: TrainState) => {
    if (file === undefined) return;
    const ckpt: RescaleCheckpoint = { format: RESCALE_CHECKPOINT_FORMAT, version: RESCALE_CHECKPOINT_VERSION, ...identity, state };
    await writeCheckpoint(file, ckpt);
  };

  const perEpoch = makeBatches(plan.train, { batchSize, tokenCap: opts.tokenCap, seed, epoch: 0 }).length;
  const maxEpochs = plan.budget.kind === 'epochs' ? plan.budget.epochs : plan.budget.kind === 'converge' ? plan.budget.maxEpochs : 1;
  const eta = new EtaEstimator();
  let lastEta = 0;
  let latest: TrainState | undefined;
  let saved: { steps: number; epoch: number } | undefined;
  try {
    const res = await trainTheta({
      model,
      data: plan.train,
      validation: plan.validation,
      skip,
      theta: start,
      lr,
      budget: plan.budget,
      batchSize,
      tokenCap: opts.tokenCap,
      seed,
      tokenMean,
      phase: 'rescale',
      step: 0,
      emit,
      signal: opts.signal,
      resume,
      onBatch: (ms) => {
        eta.record(1, ms);
        const now = performance.now();
        const done = latest ? latest.losses.length : 0;
        if (lastEta === 0 || now - lastEta >= 1000 || done + 1 >= maxEpochs * perEpoch) {
          lastEta = now;
          emit({ type: 'eta', seconds: eta.seconds(Math.max(0, maxEpochs * perEpoch - done)) ?? 0 });
        }
      },
      // Saved at the start, every `checkpointEvery` steps, at every epoch end (after its
      // validation) and at the end.
      onState: async (state) => {
        latest = state;
        if (file === undefined) return;
        const steps = state.losses.length;
        const due =
          saved === undefined ||
          steps - saved.steps >= checkpointEvery ||
          state.epoch !== saved.epoch ||
          state.stoppedBy !== null ||
          (steps === saved.steps && state.batch === 0); // a validation after the epoch's save
        if (due) {
          await save(state);
          saved = { steps, epoch: state.epoch };
        }
      },
    });
    const fit: Fit = {
      fingerprint: model.fingerprint,
      skipped: skip,
      theta: res.theta,
      losses: res.losses,
      epochLosses: res.epochLosses,
      validationCurve: res.validationCurve,
      stoppedBy: res.stoppedBy,
      trainSamples: plan.train.length,
      validationSamples: plan.validation?.length ?? 0,
      steps: res.steps,
    };
    if (res.validationLoss !== undefined) fit.validationLoss = res.validationLoss;
    if (res.bestEpoch !== undefined) fit.bestEpoch = res.bestEpoch;
    return fit;
  } catch (err) {
    // The state handed over last is that of the last completed step: keep it.
    if (file !== undefined && latest !== undefined && (saved === undefined || latest.losses.length !== saved.steps)) await save(latest).catch(() => {});
    throw err;
  }
}
