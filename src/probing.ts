/**
 * How the probes of one selection step are scheduled, and the probe job itself.
 *
 * A probe job is one call of the training unit: candidate `c`, from the step's theta
 * (or from the candidate's own earlier state), trained up to `steps` optimizer steps on
 * the ranking data. Jobs are plain JSON ({@link ProbeJob}, {@link ProbeContext}) and
 * their result is a pure function of them, so they can run in this process, in worker
 * processes or as cluster jobs (plan.ts, workers.ts) and give the same bits.
 *
 * Two probing modes:
 *
 * - `exhaustive` (the paper): every candidate runs the whole probe budget.
 * - `halving` (successive halving): every candidate runs the first slice of the budget;
 *   the worse part, by its score over that slice, is dropped (keeping `1/eta` of them,
 *   and never fewer than the step needs); the survivors continue from their own state
 *   (no restart) on the next slice, until the last survivors have run the full budget.
 *   Every candidate of a step trains on the same batches (one seed per step), so at
 *   each cut all scores are over identical data; ties go to the lower layer. A
 *   survivor's final score is bit-identical to its exhaustive probe: halving changes a
 *   pick only when the exhaustive winner is dropped at an earlier cut.
 */
import { byScore } from './checkpoint.js';
import { ErrorCodes, HopscotchError, check } from './errors.js';
import type { ProgressEvent } from './progress.js';
import { type ThetaJson, fromJSON } from './theta.js';
import { type TrainState, meanLoss, trainTheta } from './train.js';
import type { Model, Sample } from './types.js';

/** The probing mode of `selectBlocks` (option `probing`). */
export type ProbingOption =
  | 'exhaustive'
  | 'halving'
  | { kind: 'exhaustive' }
  | {
      kind: 'halving';
      /** Keep 1/eta of the candidates at each cut. Default 2. */
      eta?: number;
      /** The first slice, as a fraction of the probe budget. Default {@link DEFAULT_MIN_FRACTION}. */
      minFraction?: number;
    };

/** {@link ProbingOption} resolved. */
export type Probing = { kind: 'exhaustive' } | { kind: 'halving'; eta: number; minFraction: number };

/**
 * Default first slice of halving: 1/16 of the probe budget. Halving with these defaults
 * is the default probing mode: it picked the same blocks as exhaustive probing on every
 * model measured, with 1.9-5.3x fewer probe tokens (docs/guide-choose-k.md, "Probing at scale").
 */
export const DEFAULT_MIN_FRACTION = 1 / 16;
export const DEFAULT_ETA = 2;

/** Checks and resolves the `probing` option (HOPSCOTCH_ERR_ARGUMENT naming the bad field). */
export function resolveProbing(p: ProbingOption | undefined): Probing {
  if (p === 'exhaustive') return { kind: 'exhaustive' };
  if (p === undefined || p === 'halving') return { kind: 'halving', eta: DEFAULT_ETA, minFraction: DEFAULT_MIN_FRACTION };
  check(p && typeof p === 'object', `probing must be "exhaustive", "halving" or { kind, ... }, got ${JSON.stringify(p)}`);
  if (p.kind === 'exhaustive') return { kind: 'exhaustive' };
  check(p.kind === 'halving', `probing kind must be "exhaustive" or "halving", got ${JSON.stringify((p as { kind: unknown }).kind)}`);
  const { eta = DEFAULT_ETA, minFraction = DEFAULT_MIN_FRACTION } = p;
  check(Number.isInteger(eta) && eta >= 2, `probing eta must be an integer >= 2, got ${eta}`);
  check(Number.isFinite(minFraction) && minFraction > 0 && minFraction <= 1, `probing minFraction must be in (0, 1], got ${minFraction}`);
  return { kind: 'halving', eta, minFraction };
}

/**
 * Cumulative step targets of the rounds of one step: `[probeSteps]` when exhaustive;
 * for halving with `n` candidates of which `keep` must run the whole budget, as many
 * cuts as bring `n` down to `keep` (at most as many as `minFraction` allows), the
 * budget divided by eta at each earlier round (at least one step, strictly increasing).
 */
export function roundTargets(probing: Probing, probeSteps: number, n: number, keep: number): number[] {
  if (probing.kind === 'exhaustive' || n <= keep) return [probeSteps];
  const { eta, minFraction } = probing;
  let cuts = 0;
  for (let m = n; m > keep && Math.pow(eta, -(cuts + 1)) >= minFraction - 1e-12; cuts++) m = Math.max(keep, Math.ceil(m / eta));
  const targets: number[] = [];
  for (let i = 0; i <= cuts; i++) {
    const t = Math.max(1, Math.ceil(probeSteps / Math.pow(eta, cuts - i)));
    if (targets.length === 0 || t > targets[targets.length - 1]) targets.push(t);
  }
  return targets;
}

/** What every probe job of one round shares. JSON. */
export interface ProbeContext {
  /** Selection step (from 1). */
  step: number;
  skipped: number[];
  /** The step's theta (before the candidate's b_att is zeroed). */
  theta: ThetaJson;
  lr: number;
  batchSize: number;
  tokenCap: number | null;
  /** Seed of the batch orders, the same for every candidate of the step. */
  seed: number;
  tokenMean: boolean;
  score: 'train' | 'validation';
  /** Optimizer steps of a whole probe: a job that reaches it is final (its held-out loss is recorded). */
  probeSteps: number;
}

/** One probe job: `candidate` trained up to `steps` optimizer steps, from `resume` or afresh. */
export interface ProbeJob {
  candidate: number;
  steps: number;
  resume: TrainState | null;
}

/** The result of a probe job. JSON. */
export interface ProbeOutcome {
  candidate: number;
  /** Optimizer steps and training tokens of the candidate's probe so far (all rounds). */
  steps: number;
  tokens: number;
  /** Mean training loss over those steps. */
  train: number;
  /** Held-out loss at the probe's theta (final jobs, or every job when scored on validation). */
  validation?: number;
  /** The ranking score: `train`, or `validation` when probes are scored on it. */
  score: number;
  /** The training state, to resume from in a later round (null when the job was final). */
  state: TrainState | null;
}

export interface ProbeJobRuntime {
  signal?: AbortSignal;
  emit?: (e: ProgressEvent) => void;
  onBatch?: (ms: number) => void;
}

/** Runs one probe job (the training unit plus, where due, a held-out loss). */
export async function runProbeJob(
  model: Model,
  data: readonly Sample[],
  validation: readonly Sample[] | undefined,
  ctx: ProbeContext,
  job: ProbeJob,
  rt: ProbeJobRuntime = {},
): Promise<ProbeOutcome> {
  const skip = [...ctx.skipped, job.candidate];
  const resume = job.resume === null ? undefined : { ...job.resume, stoppedBy: null };
  if (resume !== undefined && resume.losses.length > job.steps)
    throw new HopscotchError(ErrorCodes.CHECKPOINT, `probe of layer ${job.candidate}: its state has ${resume.losses.length} steps, more than the job's ${job.steps}`);
  let last: TrainState | undefined;
  const res = await trainTheta({
    model,
    data,
    skip,
    theta: fromJSON(ctx.theta),
    lr: ctx.lr,
    budget: { kind: 'steps', steps: job.steps },
    batchSize: ctx.batchSize,
    tokenCap: ctx.tokenCap ?? undefined,
    seed: ctx.seed,
    tokenMean: ctx.tokenMean,
    phase: 'probe',
    step: ctx.step,
    candidate: job.candidate,
    emit: rt.emit,
    signal: rt.signal,
    resume,
    onBatch: rt.onBatch,
    onState: (s) => {
      last = s;
    },
  });
  const final = job.steps >= ctx.probeSteps;
  const out: ProbeOutcome = {
    candidate: job.candidate,
    steps: res.steps,
    tokens: res.tokens,
    train: res.meanLoss,
    score: res.meanLoss,
    state: final ? null : structuredClone(last!),
  };
  if (validation !== undefined && validation.length > 0 && (final || ctx.score === 'validation')) {
    out.validation = await meanLoss(model, validation, res.theta, {
      skip,
      tokenMean: ctx.tokenMean,
      batchSize: ctx.batchSize,
      tokenCap: ctx.tokenCap ?? undefined,
      signal: rt.signal,
    });
    rt.emit?.({ type: 'validation', loss: out.validation, step: ctx.step, phase: 'probe', candidate: job.candidate });
    if (ctx.score === 'validation') out.score = out.validation;
  }
  return out;
}

/**
 * The jobs still due in the rounds of one step, given the outcomes recorded so far
 * (`rounds[i]`: outcomes of round i, in any order). Null when every round is complete.
 */
export function nextRound(
  candidates: readonly number[],
  keep: number,
  targets: readonly number[],
  eta: number,
  rounds: readonly (readonly ProbeOutcome[])[],
): { round: number; jobs: ProbeJob[] } | null {
  let entrants: { candidate: number; resume: TrainState | null }[] = candidates.map((c) => ({ candidate: c, resume: null }));
  for (let r = 0; r < targets.length; r++) {
    const done = rounds[r] ?? [];
    const missing = entrants.filter((e) => !done.some((o) => o.candidate === e.candidate));
    if (missing.length > 0) return { round: r, jobs: missing.map((e) => ({ candidate: e.candidate, steps: targets[r], resume: e.resume })) };
    if (r === targets.length - 1) return null;
    const mine = done.filter((o) => entrants.some((e) => e.candidate === o.candidate));
    const survivors = [...mine].sort(byScore).slice(0, Math.max(keep, Math.ceil(mine.length / eta)));
    entrants = survivors.sort((a, b) => a.candidate - b.candidate).map((o) => ({ candidate: o.candidate, resume: o.state }));
  }
  return null;
}

/** A candidate's result after all rounds: its last outcome; `droppedAt` = its steps when cut early. */
export interface ProbeFinal extends Omit<ProbeOutcome, 'state'> {
  droppedAt?: number;
}

/** Each candidate's last outcome (call once {@link nextRound} returns null). */
export function finalOutcomes(candidates: readonly number[], targets: readonly number[], rounds: readonly (readonly ProbeOutcome[])[]): ProbeFinal[] {
  const full = targets[targets.length - 1];
  return candidates.map((c) => {
    let last: ProbeOutcome | undefined;
    for (const r of rounds) last = r.find((o) => o.candidate === c) ?? last;
    if (!last) throw new HopscotchError(ErrorCodes.INTERNAL, `no probe outcome for layer ${c}`);
    const { state: _state, ...rest } = last;
    const f: ProbeFinal = rest;
    if (last.steps < full) f.droppedAt = last.steps;
    return f;
  });
}

/** How a run's probe jobs are run. */
export interface ProbeRuntime extends ProbeJobRuntime {
  /** Candidates of the step (for progress events). */
  candidates: number;
}

/**
 * Runs the jobs of one round and hands each outcome to `record` (awaited, in any order;
 * the selection checkpoints it). In this process, in worker processes, or as the jobs
 * of a plan directory.
 */
export interface ProbeExecutor {
  run(ctx: ProbeContext, jobs: readonly ProbeJob[], rt: ProbeRuntime, record: (o: ProbeOutcome) => Promise<void>): Promise<void>;
}

/** The default executor: the jobs one after the other, in this process. */
export function inProcessExecutor(model: Model, data: readonly Sample[], validation: readonly Sample[] | undefined): ProbeExecutor {
  return {
    async run(ctx, jobs, rt, record) {
      for (const job of jobs) {
        rt.emit?.({ type: 'probe-start', step: ctx.step, candidate: job.candidate, candidates: rt.candidates });
        const o = await runProbeJob(model, data, validation, ctx, job, rt);
        await record(o);
        rt.emit?.({ type: 'probe-end', step: ctx.step, candidate: job.candidate, score: o.score });
      }
    },
  };
}
