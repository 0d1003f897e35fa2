/**
 * `selectBlocks`: choose attention blocks to skip (paper section 3.1, appendices A.4
 * and A.5) with a pluggable {@link SelectionStrategy}. The top-level function reads as
 * the paper's loop:
 *
 *   while not stopped:
 *     candidates = the layers not yet skipped (minus excluded ones);
 *     probe each: train theta with its attention skipped (probeSteps at probeLr);
 *     pick the lowest score (stop if it is above maxLoss);
 *     rescale theta: train until the held-out loss stops improving;
 *     stop once `count` layers are skipped.
 *
 * One-shot strategies rank once, skip the `count` lowest together and rescale once.
 * Ties go to the lower layer index. Every probe and rescale runs through the training
 * unit (`trainTheta`); option checks live in select-options.ts, the run's durable state
 * (checkpoint after every probe and every rescale step) in {@link SelectionRun}.
 */
import { makeBatches, mixSeed, sampleTokens } from './batching.js';
import {
  type SelectionCheckpoint,
  type SelectionState,
  type StepLoss,
  type StepTiming,
  type TraceEntry,
  CHECKPOINT_FORMAT,
  CHECKPOINT_VERSION,
  byScore,
  checkCheckpointMatches,
  readCheckpoint,
  removeStaleTemporaries,
  writeCheckpoint,
} from './checkpoint.js';
import { ErrorCodes, HopscotchError, check } from './errors.js';
import { type ProgressEvent, EtaEstimator, safeCallback, throwIfAborted } from './progress.js';
import { checkSkip, checkTheta } from './layers.js';
import { type SelectOptions, type SelectSettings, resolveSelectOptions } from './select-options.js';
import type { StrategyContext } from './strategies.js';
import { type ThetaJson, clone, fromJSON, ones, toJSON } from './theta.js';
import { noNegativeZero, trainTheta } from './train.js';
import { type Probing, type ProbeContext, type ProbeExecutor, finalOutcomes, inProcessExecutor, nextRound, roundTargets } from './probing.js';
import type { Dataset, LayerStats, Model, Sample, Theta } from './types.js';

export { DEFAULT_PROBE_STEPS, type SelectOptions } from './select-options.js';

/** Why a selection stopped: `count` blocks skipped, the `maxLoss` bound reached, or no candidate left. */
export type StopReason = 'count' | 'maxLoss' | 'exhausted';

/** The result of {@link selectBlocks}. Steps are numbered from 1. */
export interface Selection {
  /** Fingerprint of the model the selection belongs to. */
  fingerprint?: string;
  strategy: string;
  /** Skipped layers, in the order chosen. */
  skipped: number[];
  theta: Theta;
  /** Every score of every ranking (one-shot strategies: all at step 1). */
  trace: TraceEntry[];
  /** The rescale of each step: training loss of its last epoch, held-out loss, epochs run. */
  losses: StepLoss[];
  timings: StepTiming[];
  stoppedBy: StopReason;
  /** First-order scores used for shortlisting, when `shortlist` was set. */
  firstOrder?: TraceEntry[];
  /** Optimizer steps of each probe. */
  probeSteps?: number;
  /** How the probes were scheduled: every candidate the whole budget, or successive halving. */
  probing?: Probing;
  /** Work done by all probes: optimizer steps and training tokens (prompt + response). */
  probeOptimizerSteps?: number;
  probeTokens?: number;
  /** Samples trained on and held out. */
  trainSamples?: number;
  validationSamples?: number;
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

/**
 * Chooses attention blocks to skip and learns theta for them. See the file comment for
 * the loop; {@link SelectOptions} for the knobs. Every option is checked before any
 * engine call. Rejects with `signal.reason` when aborted (checked before every engine
 * call); with `checkpoint`, the file then holds the last completed probe or rescale
 * step, and running again with the same model, data and options resumes and returns
 * exactly what an uninterrupted run returns.
 */
export async function selectBlocks(model: Model, data: Dataset, opts: SelectOptions = {}): Promise<Selection> {
  if (opts.workers !== undefined && opts.workers > 1) {
    const { selectWithWorkers } = await import('./workers.js');
    return selectWithWorkers(model, data, opts);
  }
  return runSelection(model, data, opts);
}

/**
 * The loop of {@link selectBlocks} with the probe jobs run by `executor` (in this
 * process by default; worker processes and plan directories supply their own).
 */
export async function runSelection(
  model: Model,
  data: Dataset,
  opts: SelectOptions,
  executor?: (cfg: SelectSettings) => ProbeExecutor,
): Promise<Selection> {
  const run = await SelectionRun.open(model, data, opts, executor);
  while (!run.finished) {
    if (!run.rescaling) {
      const candidates = run.candidates();
      if (candidates.length === 0) {
        await run.stop('exhausted');
        break;
      }
      const scores = await run.rank(candidates);
      const { picks, stop } = run.choose(scores);
      if (picks.length === 0) {
        await run.stop(stop ?? 'exhausted');
        break;
      }
      await run.skip(picks, stop);
    }
    await run.rescale();
  }
  return run.result();
}

const PROBE_STREAM = 0x50524f42;
const RESCALE_STREAM = 0x52455343;

/** A selection in progress: its settings, its durable state and the work of each phase. */
class SelectionRun {
  private theta: Theta;
  private readonly emit: (e: ProgressEvent) => void;
  private readonly eta = new EtaEstimator();
  private readonly executor: ProbeExecutor;

  private constructor(
    private readonly model: Model,
    private readonly cfg: SelectSettings,
    private readonly st: SelectionState,
    private readonly file: string | undefined,
    private readonly signal: AbortSignal | undefined,
    onProgress: SelectOptions['onProgress'],
    executor: ((cfg: SelectSettings) => ProbeExecutor) | undefined,
  ) {
    this.theta = fromJSON(st.theta);
    this.emit = safeCallback(onProgress);
    this.executor = executor ? executor(cfg) : inProcessExecutor(model, cfg.rankData, cfg.plan.validation);
  }

  /** Checks the options, then starts a run or resumes the one in `opts.checkpoint`. */
  static async open(
    model: Model,
    data: Dataset,
    opts: SelectOptions,
    executor?: (cfg: SelectSettings) => ProbeExecutor,
  ): Promise<SelectionRun> {
    const cfg = resolveSelectOptions(model, data, opts);
    const n = model.config.numLayers;
    const file = opts.checkpoint;
    let state: SelectionState | undefined;
    if (file !== undefined) {
      await removeStaleTemporaries(file);
      const ckpt = await readCheckpoint(file);
      if (ckpt) {
        checkCheckpointMatches(file, ckpt, cfg.identity);
        state = ckpt.state;
        try {
          checkTheta(fromJSON(state.theta), n);
          checkSkip(state.skipped, n, 'skipped');
        } catch (err) {
          throw new HopscotchError(ErrorCodes.CHECKPOINT, `checkpoint ${file}: ${(err as Error).message}`, { cause: err });
        }
      }
    }
    state ??= {
      step: 1,
      skipped: [],
      theta: toJSON(ones(n)),
      trace: [],
      probes: [],
      rescale: null,
      probeSteps: 0,
      probeTokens: 0,
      firstOrder: cfg.shortlist === undefined ? null : [],
      losses: [],
      timings: [],
      stoppedBy: null,
    };
    const run = new SelectionRun(model, cfg, state, file, opts.signal, opts.onProgress, executor);
    if (file !== undefined && state.stoppedBy === null) await run.save();
    return run;
  }

  get finished(): boolean {
    return this.st.stoppedBy !== null;
  }

  /** True between a step's pick and the end of its rescale. */
  get rescaling(): boolean {
    return this.st.rescale !== null;
  }

  /** Layers that can still be skipped, ascending. */
  candidates(): number[] {
    const skipped = new Set(this.st.skipped);
    return this.cfg.available.filter((l) => !skipped.has(l));
  }

  /** Scores of this step's candidates (recorded ones on resume), by the strategy. */
  async rank(all: number[]): Promise<TraceEntry[]> {
    const { st, cfg } = this;
    const step = st.step;
    const recorded = st.trace.filter((e) => e.step === step);
    if (recorded.length > 0) return recorded;
    const started = performance.now();
    const candidates = await this.shortlisted(all);
    if (cfg.strategy.probes) await this.probeRounds(candidates);
    const frozen = Object.freeze([...candidates]);
    const ctx: StrategyContext = {
      model: this.model,
      data: cfg.rankData,
      step,
      skipped: Object.freeze([...st.skipped]),
      theta: clone(this.theta),
      candidates: frozen,
      seed: cfg.seed,
      signal: this.signal,
      probe: (candidate) => {
        check(frozen.includes(candidate), `probe(${candidate}): layer ${candidate} is not a candidate of step ${step}`);
        return this.probe(candidate, frozen.length);
      },
      layerStats: () => averagedLayerStats(this.model, cfg.rankData, this.theta, st.skipped, cfg, this.signal),
    };
    const ranked = await cfg.strategy.rank(ctx);
    if (!Array.isArray(ranked) || ranked.length !== candidates.length)
      throw new HopscotchError(
        ErrorCodes.ARGUMENT,
        `strategy ${cfg.strategy.name} returned ${Array.isArray(ranked) ? ranked.length : typeof ranked} scores for ${candidates.length} candidates`,
      );
    const scores = candidates.map((candidate, i): TraceEntry => {
      const score = ranked[i];
      if (typeof score !== 'number' || Number.isNaN(score))
        throw new HopscotchError(ErrorCodes.ARGUMENT, `strategy ${cfg.strategy.name} gave layer ${candidate} the score ${score}`);
      const probed = st.probes.find((p) => p.candidate === candidate);
      const entry: TraceEntry = { step, candidate, score: noNegativeZero(score) };
      if (probed?.train !== undefined) entry.train = probed.train;
      if (probed?.validation !== undefined) entry.validation = probed.validation;
      if (probed?.droppedAt !== undefined) entry.droppedAt = probed.droppedAt;
      return entry;
    });
    st.trace.push(...scores);
    st.probes = [];
    this.timing(step).probeMs += performance.now() - started;
    await this.save();
    return scores;
  }

  /**
   * The picks of this step and why the run stops after them (null: it goes on).
   * Iterative: the lowest score, unless above maxLoss. One-shot: the `count` lowest.
   */
  choose(scores: readonly TraceEntry[]): { picks: TraceEntry[]; stop: StopReason | null } {
    const { cfg, st } = this;
    const order = [...scores].sort(byScore);
    const tooHigh = (e: TraceEntry) => {
      if (cfg.maxLoss === undefined) return false;
      const value = cfg.maxLossOn === 'validation' ? e.validation : e.score;
      if (value === undefined)
        throw new HopscotchError(ErrorCodes.ARGUMENT, `maxLossOn "validation": layer ${e.candidate} has no held-out probe loss (the strategy does not probe)`);
      return value > cfg.maxLoss;
    };
    if (cfg.strategy.schedule === 'iterative') {
      const best = order[0];
      if (tooHigh(best)) return { picks: [], stop: 'maxLoss' };
      const skipped = st.skipped.length + 1;
      const left = this.candidates().length - 1;
      const stop = cfg.count !== undefined && skipped >= cfg.count ? 'count' : left === 0 ? 'exhausted' : null;
      return { picks: [best], stop };
    }
    const picks: TraceEntry[] = [];
    let stop: StopReason = 'exhausted';
    for (const e of order) {
      if (cfg.count !== undefined && picks.length === cfg.count) {
        stop = 'count';
        break;
      }
      if (tooHigh(e)) {
        stop = 'maxLoss';
        break;
      }
      picks.push(e);
    }
    if (stop === 'exhausted' && cfg.count !== undefined && picks.length === cfg.count) stop = 'count';
    return { picks, stop };
  }

  /** Skips the picked layers and starts the step's rescale (or ends the step without one). */
  async skip(picks: readonly TraceEntry[], stop: StopReason | null): Promise<void> {
    const { st } = this;
    const step = st.step;
    for (const e of picks) {
      st.skipped.push(e.candidate);
      this.theta.bAtt[e.candidate] = 0;
      this.emit({ type: 'step-end', step, skipped: e.candidate, score: e.score });
    }
    // One-shot strategies decide everything in one ranking.
    const stopAfter = this.cfg.strategy.schedule === 'one-shot' ? stop ?? 'exhausted' : stop;
    st.rescale = { step, stopAfter, state: null };
    await this.save();
  }

  /** The step's rescale (resumed at batch granularity), then the next step. */
  async rescale(): Promise<void> {
    const { st, cfg } = this;
    const pending = st.rescale;
    if (pending === null) return;
    const step = pending.step;
    if (cfg.rescaleAfter) {
      const started = performance.now();
      let epoch = pending.state?.epoch ?? 0;
      const res = await trainTheta({
        model: this.model,
        data: cfg.plan.train,
        validation: cfg.plan.validation,
        skip: st.skipped,
        theta: this.theta,
        lr: cfg.rescaleLr,
        budget: cfg.plan.budget,
        batchSize: cfg.batchSize,
        tokenCap: cfg.tokenCap,
        seed: mixSeed(cfg.seed, RESCALE_STREAM, step),
        tokenMean: cfg.tokenMean,
        phase: 'rescale',
        step,
        emit: this.emit,
        signal: this.signal,
        resume: pending.state ?? undefined,
        onBatch: (ms) => this.eta.record(1, ms),
        onState: async (state) => {
          pending.state = state;
          await this.save();
          if (state.epoch !== epoch) {
            epoch = state.epoch;
            this.emitEta(0, 0);
          }
        },
      });
      this.theta = res.theta;
      const loss: StepLoss = {
        step,
        loss: res.epochLosses.length > 0 ? res.epochLosses[res.epochLosses.length - 1] : res.meanLoss,
        epochs: res.epochs,
        stoppedBy: res.stoppedBy,
      };
      if (res.validationLoss !== undefined) loss.validationLoss = res.validationLoss;
      if (res.validationCurve.length > 0) loss.validationCurve = res.validationCurve;
      st.losses.push(loss);
      this.timing(step).rescaleMs += performance.now() - started;
    }
    st.rescale = null;
    st.step = step + 1;
    if (pending.stopAfter !== null) st.stoppedBy = pending.stopAfter;
    await this.save();
  }

  async stop(reason: StopReason): Promise<void> {
    this.st.stoppedBy = reason;
    await this.save();
  }

  result(): Selection {
    const { st, cfg } = this;
    this.emit({ type: 'eta', seconds: 0 });
    const sel: Selection = {
      fingerprint: this.model.fingerprint,
      strategy: cfg.strategy.name,
      skipped: [...st.skipped],
      theta: clone(this.theta),
      trace: st.trace,
      losses: st.losses,
      timings: st.timings,
      stoppedBy: st.stoppedBy ?? 'exhausted',
      probeSteps: cfg.probeSteps,
      probing: cfg.probing,
      probeOptimizerSteps: st.probeSteps,
      probeTokens: st.probeTokens,
      trainSamples: cfg.plan.train.length,
      validationSamples: cfg.plan.validation?.length ?? 0,
    };
    if (cfg.shortlist !== undefined) sel.firstOrder = st.firstOrder ?? [];
    return sel;
  }

  /** What the probe jobs of this step share. */
  private probeContext(): ProbeContext {
    const { st, cfg } = this;
    return {
      step: st.step,
      skipped: [...st.skipped],
      theta: toJSON(this.theta),
      lr: cfg.probeLr,
      batchSize: cfg.batchSize,
      tokenCap: cfg.tokenCap ?? null,
      seed: mixSeed(cfg.seed, PROBE_STREAM, st.step),
      tokenMean: cfg.tokenMean,
      score: cfg.probeScore,
      probeSteps: cfg.probeSteps,
    };
  }

  /**
   * Probes every candidate of the step (exhaustive or successive halving, see
   * probing.ts) through the executor; each outcome is checkpointed as it arrives, and
   * the final scores land in `st.probes`, where the strategy's `probe` finds them.
   */
  private async probeRounds(candidates: readonly number[]): Promise<void> {
    const { st, cfg } = this;
    if (candidates.every((c) => st.probes.some((p) => p.candidate === c))) return;
    const keep = cfg.strategy.schedule === 'iterative' ? 1 : Math.min(cfg.count ?? candidates.length, candidates.length);
    const targets = roundTargets(cfg.probing, cfg.probeSteps, candidates.length, keep);
    const eta = cfg.probing.kind === 'halving' ? cfg.probing.eta : 2;
    const rounds = (st.rounds ??= []);
    const ctx = this.probeContext();
    const rt = { signal: this.signal, emit: this.emit, onBatch: (ms: number) => this.eta.record(1, ms), candidates: candidates.length };
    for (;;) {
      const next = nextRound(candidates, keep, targets, eta, rounds);
      if (next === null) break;
      const r = next.round;
      this.emit({ type: 'probe-round', step: st.step, round: r + 1, rounds: targets.length, candidates: next.jobs.length, steps: targets[r] });
      await this.executor.run(ctx, next.jobs, rt, async (o) => {
        (rounds[r] ??= []).push(o);
        await this.save();
        this.emitEta(0, 0);
      });
    }
    for (const f of finalOutcomes(candidates, targets, rounds)) {
      if (st.probes.some((p) => p.candidate === f.candidate)) continue;
      const entry: SelectionState['probes'][number] = { candidate: f.candidate, score: f.score, train: f.train };
      if (f.validation !== undefined) entry.validation = f.validation;
      if (f.droppedAt !== undefined) entry.droppedAt = f.droppedAt;
      st.probes.push(entry);
      st.probeSteps += f.steps;
      st.probeTokens += f.tokens;
    }
    st.rounds = null;
    await this.save();
  }

  /** The Hopscotch probe of one candidate (recorded result on resume), for strategies that probe one by one. */
  private async probe(candidate: number, candidates: number): Promise<number> {
    const { st } = this;
    const cached = st.probes.find((p) => p.candidate === candidate);
    if (cached) return cached.score;
    const ctx = this.probeContext();
    const rt = { signal: this.signal, emit: this.emit, onBatch: (ms: number) => this.eta.record(1, ms), candidates };
    await this.executor.run(ctx, [{ candidate, steps: ctx.probeSteps, resume: null }], rt, async (o) => {
      const entry: SelectionState['probes'][number] = { candidate, score: o.score, train: o.train };
      if (o.validation !== undefined) entry.validation = o.validation;
      st.probes.push(entry);
      st.probeSteps += o.steps;
      st.probeTokens += o.tokens;
      await this.save();
    });
    this.emitEta(candidates - st.probes.length, 0);
    return st.probes.find((p) => p.candidate === candidate)!.score;
  }

  /** The candidates left after first-order shortlisting (all of them without `shortlist`). */
  private async shortlisted(candidates: number[]): Promise<number[]> {
    const { st, cfg } = this;
    if (cfg.shortlist === undefined || cfg.shortlist >= candidates.length) return candidates;
    st.firstOrder ??= [];
    let fo = st.firstOrder.filter((e) => e.step === st.step);
    if (fo.length === 0) {
      fo = await firstOrderScores(this.model, cfg.rankData, this.theta, st.skipped, candidates, st.step, cfg, this.signal);
      st.firstOrder.push(...fo);
      await this.save();
    }
    return [...fo]
      .sort(byScore)
      .slice(0, cfg.shortlist)
      .map((e) => e.candidate)
      .sort((a, b) => a - b);
  }

  /** Emits the estimated seconds left: the optimizer steps still to take at the measured rate. */
  private emitEta(probesLeftThisStep: number, rescaleStepsLeft: number): void {
    const { cfg, st } = this;
    const perEpoch = cfg.trainEpochSteps;
    const b = cfg.plan.budget;
    // A converging rescale is estimated at the epochs the last one took (its maximum before any).
    const last = st.losses.at(-1)?.epochs;
    const rescaleSteps = !cfg.rescaleAfter ? 0 : b.kind === 'epochs' ? b.epochs * perEpoch : b.kind === 'converge' ? (last ?? b.maxEpochs) * perEpoch : 0;
    let left = rescaleStepsLeft + (cfg.strategy.probes ? probesLeftThisStep * cfg.probeSteps : 0);
    const lastStep = cfg.strategy.schedule === 'one-shot' ? 1 : (cfg.count ?? cfg.available.length);
    const available = this.candidates().length;
    for (let k = st.step + 1, c = available - 1; k <= lastStep && c > 0; k++, c--) {
      if (cfg.strategy.probes) left += Math.min(cfg.shortlist ?? c, c) * cfg.probeSteps;
      left += rescaleSteps;
    }
    const seconds = this.finished ? 0 : this.eta.seconds(left);
    if (seconds !== undefined) this.emit({ type: 'eta', seconds });
  }

  private timing(step: number): StepTiming {
    let t = this.st.timings.find((x) => x.step === step);
    if (!t) this.st.timings.push((t = { step, probeMs: 0, rescaleMs: 0 }));
    return t;
  }

  private async save(): Promise<void> {
    if (this.file === undefined) return;
    this.st.theta = toJSON(this.theta);
    const ckpt: SelectionCheckpoint = { format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, ...this.cfg.identity, state: this.st };
    await writeCheckpoint(this.file, ckpt);
  }
}

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
  for (const batch of makeBatches(data, { batchSize: batching.batchSize, tokenCap: batching.tokenCap, seed: 0, epoch: 0, ordered: true })) {
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
