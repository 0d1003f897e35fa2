/**
 * The options of `selectBlocks`, their defaults and every check that needs no compute,
 * resolved once into {@link SelectSettings} before any engine call. The settings that
 * determine the result form the identity a selection checkpoint must match.
 */
import { makeBatches, mixSeed, shuffledIndices } from './batching.js';
import type { RunIdentity } from './checkpoint.js';
import { datasetDigest } from './dataset.js';
import { ErrorCodes, HopscotchError, check, isPositiveInteger } from './errors.js';
import type { ProgressCallback } from './progress.js';
import { checkSkip } from './layers.js';
import { DEFAULT_HOLDOUT, type RescalePlan, checkRescaleBudget, planRescale } from './rescale.js';
import { checkSamples } from './samples.js';
import { type SelectionStrategy, type StrategyName, STRATEGIES } from './strategies.js';
import type { Dataset, Model, Sample } from './types.js';
import { type Probing, type ProbingOption, resolveProbing } from './probing.js';

/**
 * Optimizer steps of a probe when the data are small. The paper's probe is one epoch
 * of GSM8K's 7,473 training samples at batch 32 (234 steps, appendix A.2/A.4); on a
 * small recovery set one epoch is a handful of steps, which ranks candidates by their
 * untrained (NoScale) loss instead. A probe takes one epoch of the ranking data or this
 * many steps, whichever is more (measured in docs/guide-choose-k.md).
 */
export const DEFAULT_PROBE_STEPS = 64;

export interface SelectOptions {
  /** Number of blocks to skip. */
  count?: number;
  /** Stop when the best score of a step is above this loss (loss-scored strategies only). */
  maxLoss?: number;
  /**
   * What `maxLoss` is compared with: 'score' (the ranking score, default) or
   * 'validation' (the held-out loss of the best candidate's probe).
   */
  maxLossOn?: 'score' | 'validation';
  /** A built-in strategy name or your own strategy. Default 'iterative-greedy'. */
  strategy?: StrategyName | SelectionStrategy;
  /** Layers that are never candidates (e.g. `[0]` for an export format that keeps layer 0's attention). */
  exclude?: readonly number[];
  /** Learning rate of the probes. Default 1e-2 (paper A.2). */
  probeLr?: number;
  /**
   * Optimizer steps of each probe, cycling reshuffled epochs of the ranking data.
   * Default: one epoch of the ranking data or {@link DEFAULT_PROBE_STEPS}, whichever is more.
   */
  probeSteps?: number;
  /**
   * How a probe scores its candidate: 'train', the mean training loss over the probe's
   * steps (the paper, A.4; default), or 'validation', the held-out loss of the probe's
   * final theta (a deviation from the paper, measured in docs/guide-choose-k.md).
   */
  probeScore?: 'train' | 'validation';
  /** Learning rate of the rescales. Default 3e-3 (paper A.2). */
  rescaleLr?: number;
  /** Exact epochs of each rescale; without it each rescale converges on held-out loss. */
  rescaleEpochs?: number;
  /** Most epochs of a converging rescale (default as in `rescale`). */
  rescaleMaxEpochs?: number;
  /** Epochs without a better held-out loss before a converging rescale stops (default as in `rescale`). */
  rescalePatience?: number;
  /**
   * Fraction of the data held out for validation (never trained on, by probes or
   * rescales) when no `validation` set is given. Default as in `rescale` when the
   * rescales converge or probes are scored on validation, else 0.
   */
  holdout?: number;
  /** Held-out samples to validate on, instead of a slice of the data. */
  validation?: Dataset;
  /** Samples per batch. Default 32. */
  batchSize?: number;
  /** Most tokens per batch. */
  tokenCap?: number;
  /** Seed of every shuffle, of the held-out slice (and of the `random` strategy). Default 0. */
  seed?: number;
  /** Divide the loss by response tokens instead of by samples. Default false. */
  tokenMean?: boolean;
  /** Rank on the first n samples of a fixed seeded shuffle of the training data (rescales use all of it). */
  probeSubset?: number;
  /**
   * Before ranking, keep only the n candidates with the smallest first-order estimate
   * of the loss increase from skipping them, -b_att * dL/db_att (one gradient pass).
   */
  shortlist?: number;
  /**
   * How the probes of a step are scheduled: 'exhaustive' (every candidate runs the whole
   * probe budget; the paper) or successive halving, 'halving' or `{ kind: 'halving', eta,
   * minFraction }` (see probing.ts and docs/guide-choose-k.md). Default 'halving' (eta 2,
   * first slice 1/16 of the budget): it picked the same blocks as 'exhaustive' on every
   * model measured, at 1.9-5.3x fewer probe tokens. A survivor's score equals its
   * exhaustive score bit for bit; the candidates dropped early carry `droppedAt`.
   */
  probing?: ProbingOption;
  /**
   * Run the probe jobs of each step in this many worker processes (one GPU each via
   * CUDA_VISIBLE_DEVICES on CUDA; the CPU threads split between them otherwise). Same
   * result as in one process. Default 1.
   */
  workers?: number;
  /** Rescale after skipping (each step, or once for one-shot strategies). Default true. */
  rescaleAfter?: boolean;
  /** JSON file holding the run's state; an existing one is validated and resumed. */
  checkpoint?: string;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

/** {@link SelectOptions} resolved: defaults applied, data split, everything checked. */
export interface SelectSettings {
  strategy: SelectionStrategy;
  count?: number;
  maxLoss?: number;
  maxLossOn: 'score' | 'validation';
  exclude: number[];
  probeLr: number;
  probeSteps: number;
  probeScore: 'train' | 'validation';
  rescaleLr: number;
  rescaleAfter: boolean;
  batchSize: number;
  tokenCap?: number;
  seed: number;
  tokenMean: boolean;
  probeSubset?: number;
  shortlist?: number;
  probing: Probing;
  /** Training data, held-out data and the rescale budget. */
  plan: RescalePlan;
  /** The data probes rank on: the training part, or its `probeSubset`. */
  rankData: Sample[];
  /** Optimizer steps in one epoch of the training part (the rescales' epochs). */
  trainEpochSteps: number;
  /** Layers that can be skipped at all (not excluded, attention present). */
  available: number[];
  identity: RunIdentity;
}

const SUBSET_STREAM = 0x53554253;

function resolveStrategy(s: StrategyName | SelectionStrategy): SelectionStrategy {
  if (typeof s === 'string') {
    const found = (STRATEGIES as Record<string, SelectionStrategy>)[s];
    if (!found)
      throw new HopscotchError(ErrorCodes.ARGUMENT, `unknown strategy "${s}" (known: ${Object.keys(STRATEGIES).join(', ')})`);
    return found;
  }
  check(
    s && typeof s === 'object' && typeof s.name === 'string' && typeof s.rank === 'function',
    'strategy must be a name or an object { name, schedule, scoreIsLoss, rank }',
  );
  check(s.schedule === 'iterative' || s.schedule === 'one-shot', `strategy ${s.name}: schedule must be "iterative" or "one-shot"`);
  return s;
}


/**
 * Every check of `opts` that needs only the model (no data, no compute): the CLI runs it
 * before generating a recovery set. Returns the strategy and the layers that can be skipped.
 */
export function checkSelectOptions(model: Model, opts: SelectOptions): { strategy: SelectionStrategy; available: number[] } {
  const n = model.config.numLayers;
  const strategy = resolveStrategy(opts.strategy ?? 'iterative-greedy');
  const { count, maxLoss, maxLossOn = 'score', probeScore = 'train', seed = 0 } = opts;
  const { probeLr = 1e-2, rescaleLr = 3e-3, probeSubset, shortlist } = opts;
  const exclude = [...(opts.exclude ?? [])];
  checkSkip(exclude, n, 'exclude');
  const absent = new Set(model.config.attentionAbsent);
  const available = Array.from({ length: n }, (_, l) => l).filter((l) => !absent.has(l) && !exclude.includes(l));
  check(
    count === undefined || (Number.isInteger(count) && count >= 1 && count <= available.length),
    `count must be an integer in [1, ${available.length}] (the model has ${n} layers` +
      `${absent.size ? `, ${absent.size} without attention` : ''}${exclude.length ? `, ${exclude.length} excluded` : ''}), got ${count}`,
  );
  check(maxLoss === undefined || Number.isFinite(maxLoss), `maxLoss must be a finite number, got ${maxLoss}`);
  check(count !== undefined || maxLoss !== undefined, 'selectBlocks needs count, maxLoss or both');
  check(maxLoss === undefined || strategy.scoreIsLoss, `maxLoss applies to loss scores; strategy ${strategy.name} scores are not losses (use count)`);
  check(maxLossOn === 'score' || maxLossOn === 'validation', `maxLossOn must be "score" or "validation", got ${maxLossOn}`);
  check(probeScore === 'train' || probeScore === 'validation', `probeScore must be "train" or "validation", got ${probeScore}`);
  check(Number.isFinite(probeLr) && probeLr > 0, `probeLr must be a positive number, got ${probeLr}`);
  check(Number.isFinite(rescaleLr) && rescaleLr > 0, `rescaleLr must be a positive number, got ${rescaleLr}`);
  check(opts.probeSteps === undefined || isPositiveInteger(opts.probeSteps), `probeSteps must be a positive integer, got ${opts.probeSteps}`);
  checkRescaleBudget(
    { epochs: opts.rescaleEpochs, maxEpochs: opts.rescaleMaxEpochs, patience: opts.rescalePatience, holdout: opts.holdout },
    { epochs: 'rescaleEpochs', maxEpochs: 'rescaleMaxEpochs', patience: 'rescalePatience' },
  );
  check(Number.isInteger(seed), `seed must be an integer, got ${seed}`);
  check(probeSubset === undefined || isPositiveInteger(probeSubset), `probeSubset must be a positive integer, got ${probeSubset}`);
  check(shortlist === undefined || isPositiveInteger(shortlist), `shortlist must be a positive integer, got ${shortlist}`);
  check(opts.workers === undefined || isPositiveInteger(opts.workers), `workers must be a positive integer, got ${opts.workers}`);
  resolveProbing(opts.probing);
  return { strategy, available };
}

/** Resolves and checks `opts` for `model` and `data` (no engine call). */
export function resolveSelectOptions(model: Model, data: Dataset, opts: SelectOptions): SelectSettings {
  const { strategy, available } = checkSelectOptions(model, opts);
  const { count, maxLoss, maxLossOn = 'score', probeScore = 'train', seed = 0, tokenMean = false, rescaleAfter = true } = opts;
  const { probeLr = 1e-2, rescaleLr = 3e-3, batchSize = 32, tokenCap, probeSubset, shortlist } = opts;
  const exclude = [...(opts.exclude ?? [])];
  checkSamples(data, model.config.vocabSize, { requireResponse: true, name: 'data', context: model.config.maxPositionEmbeddings });
  if (opts.validation !== undefined) checkSamples(opts.validation, model.config.vocabSize, { requireResponse: true, name: 'validation', context: model.config.maxPositionEmbeddings });

  // Held-out data are needed by converging rescales, validation-scored probes and maxLossOn 'validation'.
  const needsValidation =
    (rescaleAfter && opts.rescaleEpochs === undefined) || probeScore === 'validation' || maxLossOn === 'validation';
  const plan = planRescale(data, {
    epochs: opts.rescaleEpochs,
    maxEpochs: opts.rescaleMaxEpochs,
    patience: opts.rescalePatience,
    holdout: opts.holdout ?? (opts.validation !== undefined ? undefined : needsValidation ? DEFAULT_HOLDOUT : 0),
    validation: opts.validation,
    seed,
  });
  if (needsValidation)
    check(
      plan.validation !== undefined,
      'probeScore or maxLossOn "validation" needs held-out samples: give a validation set or a holdout fraction > 0',
    );
  const batching = { batchSize, tokenCap, seed };
  // batchSize and tokenCap against every sample, held-out ones included, before any work.
  makeBatches(data, { ...batching, epoch: 0 });
  if (opts.validation !== undefined) makeBatches(opts.validation, { ...batching, epoch: 0 });
  const rankData =
    probeSubset === undefined || probeSubset >= plan.train.length
      ? plan.train
      : shuffledIndices(plan.train.length, mixSeed(seed, SUBSET_STREAM))
          .slice(0, probeSubset)
          .map((i) => plan.train[i]);
  const epochSteps = makeBatches(rankData, { ...batching, epoch: 0 }).length;
  const probeSteps = opts.probeSteps ?? Math.max(epochSteps, DEFAULT_PROBE_STEPS);

  const probing = resolveProbing(opts.probing);
  const identity: RunIdentity = {
    fingerprint: model.fingerprint,
    dataDigest: datasetDigest(data),
    options: {
      strategy: strategy.name,
      count: count ?? null,
      maxLoss: maxLoss ?? null,
      maxLossOn,
      exclude,
      probeLr,
      probeSteps,
      probeScore,
      rescaleLr,
      rescaleBudget: plan.budget,
      holdout: plan.holdout,
      validationDigest: opts.validation === undefined ? null : datasetDigest(opts.validation),
      batchSize,
      tokenCap: tokenCap ?? null,
      seed,
      tokenMean,
      probeSubset: probeSubset ?? null,
      shortlist: shortlist ?? null,
      rescaleAfter,
      // null for exhaustive probing: checkpoints written before probing modes existed resume with probing 'exhaustive'.
      probing: probing.kind === 'exhaustive' ? null : probing,
    },
  };
  return {
    strategy,
    count,
    maxLoss,
    maxLossOn,
    exclude,
    probeLr,
    probeSteps,
    probeScore,
    rescaleLr,
    rescaleAfter,
    batchSize,
    tokenCap,
    seed,
    tokenMean,
    probeSubset,
    shortlist,
    probing,
    plan,
    rankData,
    trainEpochSteps: rankData === plan.train ? epochSteps : makeBatches(plan.train, { ...batching, epoch: 0 }).length,
    available,
    identity,
  };
}
