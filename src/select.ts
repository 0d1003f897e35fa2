/**
 * `selectBlocks`: choose attention blocks to skip (paper section 3.1, appendices A.4
 * and A.5) with a pluggable {@link SelectionStrategy}. This file runs the loop: the
 * candidate list, optional gradient shortlisting, skipping, rescaling, stopping rules,
 * checkpoints after every probe and every rescale, progress events and cancellation.
 *
 * Iterative schedule (the default `iterative-greedy`), per step k = 1, 2, ...:
 *   rank the layers not yet skipped; the lowest score s* at layer l*:
 *   if s* > maxLoss stop (l* is not skipped); else skip l*, rescale theta
 *   (fresh Adam, rescaleLr, rescaleEpochs), and stop once `count` layers are skipped.
 * One-shot schedule: rank once, skip the `count` lowest (in rank order, stopping early
 * at a score above maxLoss), rescale once. Ties go to the lower layer index.
 */
import { Adam } from './adam.js';
import { makeBatches, mixSeed, sampleTokens, shuffledIndices } from './batching.js';
import {
  type SelectionCheckpoint,
  type SelectionState,
  type StepLoss,
  type StepTiming,
  type TraceEntry,
  CHECKPOINT_FORMAT,
  CHECKPOINT_VERSION,
  checkCheckpointMatches,
  readCheckpoint,
  writeCheckpoint,
} from './checkpoint.js';
import { datasetDigest } from './dataset.js';
import { ErrorCodes, HopscotchError, check } from './errors.js';
import { type ProgressCallback, EtaEstimator, safeCallback, throwIfAborted } from './progress.js';
import { trainEpochs, validateSkip } from './rescale.js';
import { checkSamples } from './samples.js';
import { type SelectionStrategy, type StrategyContext, type StrategyName, STRATEGIES } from './strategies.js';
import { type ThetaJson, clone, fromJSON, ones, toJSON, validate as validateTheta } from './theta.js';
import type { Dataset, LayerStats, Model, Sample, Theta } from './types.js';

export interface SelectOptions {
  /** Number of blocks to skip. */
  count?: number;
  /** Stop when the best score of a step is above this loss (loss-scored strategies only). */
  maxLoss?: number;
  /** A built-in strategy name or your own strategy. Default 'iterative-greedy'. */
  strategy?: StrategyName | SelectionStrategy;
  /** Learning rate of the probes. Default 1e-2 (paper A.2). */
  probeLr?: number;
  /** Learning rate of the rescales. Default 3e-3 (paper A.2). */
  rescaleLr?: number;
  /** Epochs of each rescale. Default 1. */
  rescaleEpochs?: number;
  /** Samples per batch. Default 32. */
  batchSize?: number;
  /** Most tokens per batch. */
  tokenCap?: number;
  /** Seed of every shuffle (and of the `random` strategy). Default 0. */
  seed?: number;
  /** Divide the loss by response tokens instead of by samples. Default false. */
  tokenMean?: boolean;
  /** Rank on the first n samples of a fixed seeded shuffle of the data (rescales use all of it). */
  probeSubset?: number;
  /**
   * Before ranking, keep only the n candidates with the smallest first-order estimate
   * of the loss increase from skipping them, -b_att * dL/db_att (one gradient pass).
   */
  shortlist?: number;
  /** Rescale after skipping (each step, or once for one-shot strategies). Default true. */
  rescaleAfter?: boolean;
  /** JSON file holding the run's state; an existing one is validated and resumed. */
  checkpoint?: string;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

/** The result of {@link selectBlocks}. Steps are numbered from 1. */
export interface Selection {
  strategy: string;
  /** Skipped layers, in the order chosen. */
  skipped: number[];
  theta: Theta;
  /** Every score of every ranking (one-shot strategies: all at step 1). */
  trace: TraceEntry[];
  /** Mean training loss of the last epoch of each rescale. */
  losses: StepLoss[];
  timings: StepTiming[];
  stoppedBy: 'count' | 'maxLoss' | 'exhausted';
  /** First-order scores used for shortlisting, when `shortlist` was set. */
  firstOrder?: TraceEntry[];
}

export interface SelectionJson extends Omit<Selection, 'theta'> {
  theta: ThetaJson;
}

export function selectionToJSON(sel: Selection): SelectionJson {
  return { ...sel, theta: toJSON(sel.theta) };
}

export function selectionFromJSON(json: SelectionJson): Selection {
  return { ...json, theta: fromJSON(json.theta) };
}

const PROBE_STREAM = 0x50524f42;
const RESCALE_STREAM = 0x52455343;
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

/** Scores are stored as JSON, which has no -0: record +0 so resumed runs compare equal. */
const noNegativeZero = (x: number) => (x === 0 ? 0 : x);

const byScore = (a: { candidate: number; score: number }, b: { candidate: number; score: number }) =>
  a.score - b.score || a.candidate - b.candidate;

/** Mean of per-batch layer statistics over `data`, weighted by tokens. */
async function averagedLayerStats(
  model: Model,
  data: readonly Sample[],
  theta: Theta,
  skip: readonly number[],
  batching: { batchSize: number; tokenCap?: number },
  signal?: AbortSignal,
): Promise<LayerStats> {
  const n = model.config.numLayers;
  const acc = { cosAttn: new Float64Array(n), cosMlp: new Float64Array(n), cosBlock: new Float64Array(n), blockInfluence: new Float64Array(n) };
  let total = 0;
  for (const batch of makeBatches(data, { ...batching, seed: 0, epoch: 0, ordered: true })) {
    throwIfAborted(signal);
    const stats = await model.layerStats(batch, { theta, skip: [...skip] });
    const w = batch.reduce((t, s) => t + sampleTokens(s), 0);
    for (const k of ['cosAttn', 'cosMlp', 'cosBlock', 'blockInfluence'] as const)
      for (let l = 0; l < n; l++) acc[k][l] += w * stats[k][l];
    total += w;
  }
  const mean = (a: Float64Array) => Array.from(a, (x) => x / total);
  return {
    cosAttn: mean(acc.cosAttn),
    cosMlp: mean(acc.cosMlp),
    cosBlock: mean(acc.cosBlock),
    blockInfluence: mean(acc.blockInfluence),
    hidden: [],
  };
}

/**
 * Chooses attention blocks to skip and learns theta for them. See the file comment for
 * the loop; {@link SelectOptions} for the knobs. Rejects with `signal.reason` when
 * aborted (checked before every engine call); with `checkpoint`, the file then holds
 * the last completed probe or rescale, and running again with the same model, data and
 * options resumes and returns exactly what an uninterrupted run returns.
 */
export async function selectBlocks(model: Model, data: Dataset, opts: SelectOptions = {}): Promise<Selection> {
  const n = model.config.numLayers;
  const strategy = resolveStrategy(opts.strategy ?? 'iterative-greedy');
  const {
    count,
    maxLoss,
    probeLr = 1e-2,
    rescaleLr = 3e-3,
    rescaleEpochs = 1,
    batchSize = 32,
    tokenCap,
    seed = 0,
    tokenMean = false,
    probeSubset,
    shortlist,
    rescaleAfter = true,
  } = opts;
  check(count === undefined || (Number.isInteger(count) && count >= 1 && count <= n), `count must be an integer in [1, ${n}], got ${count}`);
  check(maxLoss === undefined || Number.isFinite(maxLoss), `maxLoss must be a finite number, got ${maxLoss}`);
  check(count !== undefined || maxLoss !== undefined, 'selectBlocks needs count, maxLoss or both');
  check(
    maxLoss === undefined || strategy.scoreIsLoss,
    `maxLoss applies to loss scores; strategy ${strategy.name} scores are not losses (use count)`,
  );
  check(Number.isFinite(probeLr) && probeLr > 0, `probeLr must be a positive number, got ${probeLr}`);
  check(Number.isFinite(rescaleLr) && rescaleLr > 0, `rescaleLr must be a positive number, got ${rescaleLr}`);
  check(Number.isInteger(rescaleEpochs) && rescaleEpochs > 0, `rescaleEpochs must be a positive integer, got ${rescaleEpochs}`);
  check(Number.isInteger(seed), `seed must be an integer, got ${seed}`);
  check(probeSubset === undefined || (Number.isInteger(probeSubset) && probeSubset > 0), `probeSubset must be a positive integer, got ${probeSubset}`);
  check(shortlist === undefined || (Number.isInteger(shortlist) && shortlist > 0), `shortlist must be a positive integer, got ${shortlist}`);
  checkSamples(data, model.config.vocabSize, { requireResponse: true, name: 'data' });
  const batching = { batchSize, tokenCap };
  const fullBatches = makeBatches(data, { ...batching, seed, epoch: 0 }).length; // also checks batchSize/tokenCap

  const rankData =
    probeSubset === undefined || probeSubset >= data.length
      ? data
      : shuffledIndices(data.length, mixSeed(seed, SUBSET_STREAM))
          .slice(0, probeSubset)
          .map((i) => data[i]);
  const rankBatches = makeBatches(rankData, { ...batching, seed, epoch: 0 }).length;

  const emit = safeCallback(opts.onProgress);
  const signal = opts.signal;
  const file = opts.checkpoint;
  const identity = {
    fingerprint: model.fingerprint,
    dataDigest: datasetDigest(data),
    options: {
      strategy: strategy.name,
      count: count ?? null,
      maxLoss: maxLoss ?? null,
      probeLr,
      rescaleLr,
      rescaleEpochs,
      batchSize,
      tokenCap: tokenCap ?? null,
      seed,
      tokenMean,
      probeSubset: probeSubset ?? null,
      shortlist: shortlist ?? null,
      rescaleAfter,
    } as Record<string, unknown>,
  };

  let state: SelectionState | undefined;
  if (file !== undefined) {
    const ckpt = await readCheckpoint(file);
    if (ckpt) {
      checkCheckpointMatches(file, ckpt, identity);
      state = ckpt.state;
    }
  }
  let theta: Theta;
  if (state) {
    try {
      theta = fromJSON(state.theta);
    } catch (err) {
      throw new HopscotchError(ErrorCodes.CHECKPOINT, `checkpoint ${file}: ${(err as Error).message}`, { cause: err });
    }
    try {
      validateTheta(theta, n);
      validateSkip(state.skipped, n);
    } catch (err) {
      throw new HopscotchError(ErrorCodes.CHECKPOINT, `checkpoint ${file}: ${(err as Error).message}`, { cause: err });
    }
  } else {
    theta = ones(n);
    state = {
      step: 1,
      skipped: [],
      theta: toJSON(theta),
      trace: [],
      probes: [],
      firstOrder: shortlist === undefined ? null : [],
      losses: [],
      timings: [],
      stoppedBy: null,
    };
  }
  const st: SelectionState = state;

  const save = async () => {
    if (file === undefined) return;
    st.theta = toJSON(theta);
    const ckpt: SelectionCheckpoint = { format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, ...identity, state: st };
    await writeCheckpoint(file, ckpt);
  };
  const timing = (step: number): StepTiming => {
    let t = st.timings.find((x) => x.step === step);
    if (!t) st.timings.push((t = { step, probeMs: 0, rescaleMs: 0 }));
    return t;
  };

  // Time estimates, in batches of work left.
  const eta = new EtaEstimator();
  const lastStep = strategy.schedule === 'one-shot' ? 1 : (count ?? n);
  const probesAt = (step: number) => Math.min(shortlist ?? n, n - (step - 1));
  const remainingBatches = (probesLeftThisStep: number, rescaleBatchesLeft: number) => {
    let left = rescaleBatchesLeft;
    if (strategy.probes) left += probesLeftThisStep * rankBatches;
    for (let s = st.step + 1; s <= lastStep; s++) {
      if (strategy.probes) left += probesAt(s) * rankBatches;
      if (rescaleAfter) left += rescaleEpochs * fullBatches;
    }
    return left;
  };
  const emitEta = (probesLeftThisStep: number, rescaleBatchesLeft: number) => {
    const seconds = eta.seconds(remainingBatches(probesLeftThisStep, rescaleBatchesLeft));
    if (seconds !== undefined) emit({ type: 'eta', seconds });
  };

  if (file !== undefined && st.stoppedBy === null) await save();

  const rescaleStep = async (step: number) => {
    const started = performance.now();
    const trained = clone(theta);
    const perEpoch = fullBatches;
    let done = 0;
    const { epochLosses } = await trainEpochs({
      model,
      data,
      theta: trained,
      skip: st.skipped,
      adam: new Adam(n, { lr: rescaleLr, frozen: { bAtt: st.skipped } }),
      epochs: rescaleEpochs,
      ...batching,
      seed: mixSeed(seed, RESCALE_STREAM, step),
      tokenMean,
      phase: 'rescale',
      step,
      emit,
      signal,
      onBatch: (ms) => {
        eta.record(1, ms);
        done += 1;
      },
      onEpoch: (epoch, loss) => {
        emit({ type: 'rescale-epoch', step, epoch, epochs: rescaleEpochs, loss });
        emitEta(0, Math.max(0, rescaleEpochs * perEpoch - done));
      },
    });
    theta = trained;
    st.losses.push({ step, loss: noNegativeZero(epochLosses[epochLosses.length - 1]) });
    timing(step).rescaleMs += performance.now() - started;
  };

  while (st.stoppedBy === null) {
    const step = st.step;
    const skippedSet = new Set(st.skipped);
    // Layers without attention weights (a DeciLM export) are skipped already: never candidates.
    const absent = new Set(model.config.attentionAbsent);
    let candidates = Array.from({ length: n }, (_, l) => l).filter((l) => !skippedSet.has(l) && !absent.has(l));
    if (candidates.length === 0) {
      st.stoppedBy = 'exhausted';
      await save();
      break;
    }

    let scores = st.trace.filter((e) => e.step === step);
    if (scores.length === 0) {
      const rankStarted = performance.now();
      if (shortlist !== undefined && shortlist < candidates.length) {
        st.firstOrder ??= [];
        let fo = st.firstOrder.filter((e) => e.step === step);
        if (fo.length === 0) {
          fo = await firstOrderScores(model, rankData, theta, st.skipped, candidates, step, { ...batching, tokenMean }, signal);
          st.firstOrder.push(...fo);
          await save();
        }
        candidates = [...fo]
          .sort(byScore)
          .slice(0, shortlist)
          .map((e) => e.candidate)
          .sort((a, b) => a - b);
      }
      const ctxCandidates = Object.freeze([...candidates]);
      const ctx: StrategyContext = {
        model,
        data: rankData,
        step,
        skipped: Object.freeze([...st.skipped]),
        theta: clone(theta),
        candidates: ctxCandidates,
        seed,
        signal,
        probe: async (candidate: number) => {
          check(ctxCandidates.includes(candidate), `probe(${candidate}): layer ${candidate} is not a candidate of step ${step}`);
          const cached = st.probes.find((p) => p.candidate === candidate);
          if (cached) return cached.score;
          emit({ type: 'probe-start', step, candidate, candidates: ctxCandidates.length });
          const probeTheta = clone(theta);
          probeTheta.bAtt[candidate] = 0;
          const skip = [...st.skipped, candidate];
          const { epochLosses } = await trainEpochs({
            model,
            data: rankData,
            theta: probeTheta,
            skip,
            adam: new Adam(n, { lr: probeLr, frozen: { bAtt: skip } }),
            epochs: 1,
            ...batching,
            seed: mixSeed(seed, PROBE_STREAM, step),
            tokenMean,
            phase: 'probe',
            step,
            candidate,
            emit,
            signal,
            onBatch: (ms) => eta.record(1, ms),
          });
          const score = noNegativeZero(epochLosses[0]);
          st.probes.push({ candidate, score });
          await save();
          emit({ type: 'probe-end', step, candidate, score });
          const probesLeft = ctxCandidates.filter((c) => !st.probes.some((p) => p.candidate === c)).length;
          emitEta(probesLeft, rescaleAfter ? rescaleEpochs * fullBatches : 0);
          return score;
        },
        layerStats: () => averagedLayerStats(model, rankData, theta, st.skipped, batching, signal),
      };
      const ranked = await strategy.rank(ctx);
      if (!Array.isArray(ranked) || ranked.length !== candidates.length)
        throw new HopscotchError(
          ErrorCodes.ARGUMENT,
          `strategy ${strategy.name} returned ${Array.isArray(ranked) ? ranked.length : typeof ranked} scores for ${candidates.length} candidates`,
        );
      scores = candidates.map((candidate, i) => {
        const score = ranked[i];
        if (typeof score !== 'number' || Number.isNaN(score))
          throw new HopscotchError(ErrorCodes.ARGUMENT, `strategy ${strategy.name} gave layer ${candidate} the score ${score}`);
        return { step, candidate, score: noNegativeZero(score) };
      });
      st.trace.push(...scores);
      st.probes = [];
      timing(step).probeMs += performance.now() - rankStarted;
      await save();
    }

    const order = [...scores].sort(byScore);
    if (strategy.schedule === 'iterative') {
      const best = order[0];
      if (maxLoss !== undefined && best.score > maxLoss) {
        st.stoppedBy = 'maxLoss';
        await save();
        break;
      }
      st.skipped.push(best.candidate);
      theta.bAtt[best.candidate] = 0;
      emit({ type: 'step-end', step, skipped: best.candidate, score: best.score });
      if (rescaleAfter) await rescaleStep(step);
      st.step = step + 1;
      if (count !== undefined && st.skipped.length >= count) st.stoppedBy = 'count';
      else if (st.skipped.length === n) st.stoppedBy = 'exhausted';
      await save();
    } else {
      let stoppedBy: 'count' | 'maxLoss' | 'exhausted' = 'exhausted';
      const picks: TraceEntry[] = [];
      for (const e of order) {
        if (count !== undefined && picks.length === count) {
          stoppedBy = 'count';
          break;
        }
        if (maxLoss !== undefined && e.score > maxLoss) {
          stoppedBy = 'maxLoss';
          break;
        }
        picks.push(e);
      }
      if (stoppedBy === 'exhausted' && count !== undefined && picks.length === count) stoppedBy = 'count';
      for (const e of picks) {
        st.skipped.push(e.candidate);
        theta.bAtt[e.candidate] = 0;
        emit({ type: 'step-end', step, skipped: e.candidate, score: e.score });
      }
      if (rescaleAfter && picks.length > 0) await rescaleStep(step);
      st.step = step + 1;
      st.stoppedBy = stoppedBy;
      await save();
    }
  }

  const sel: Selection = {
    strategy: strategy.name,
    skipped: [...st.skipped],
    theta,
    trace: st.trace,
    losses: st.losses,
    timings: st.timings,
    stoppedBy: st.stoppedBy ?? 'exhausted',
  };
  if (shortlist !== undefined) sel.firstOrder = st.firstOrder ?? [];
  return sel;
}

/**
 * First-order estimate of the loss change from skipping each candidate:
 * -b_att[l] * dL/db_att[l], with the gradient averaged over `data` (unshuffled batches,
 * weighted by samples or response tokens).
 */
async function firstOrderScores(
  model: Model,
  data: readonly Sample[],
  theta: Theta,
  skip: readonly number[],
  candidates: readonly number[],
  step: number,
  opts: { batchSize: number; tokenCap?: number; tokenMean: boolean },
  signal?: AbortSignal,
): Promise<TraceEntry[]> {
  const n = model.config.numLayers;
  const grad = new Float64Array(n);
  let total = 0;
  for (const batch of makeBatches(data, { ...opts, seed: 0, epoch: 0, ordered: true })) {
    throwIfAborted(signal);
    const res = await model.lossAndGrad(batch, theta, { skip: [...skip], tokenMean: opts.tokenMean });
    const w = opts.tokenMean ? res.responseTokens : batch.length;
    for (let l = 0; l < n; l++) grad[l] += w * res.grad.bAtt[l];
    total += w;
  }
  return candidates.map((l) => {
    const score = (-theta.bAtt[l] * grad[l]) / total;
    if (!Number.isFinite(score))
      throw new HopscotchError(ErrorCodes.NON_FINITE, `first-order score of layer ${l} is not finite (${score})`);
    return { step, candidate: l, score: noNegativeZero(score) };
  });
}
