/**
 * Probes as independent jobs: a plan directory shared by `hopscotch select --plan DIR`
 * (the loop) and `hopscotch probe --plan DIR --job I` (one probe job, e.g. one task of
 * a Slurm job array or one pod of a Kubernetes Indexed Job).
 *
 *   DIR/selection.json        the selection's checkpoint (the loop's whole state)
 *   DIR/data.json             the ranking samples (and held-out samples) the jobs train on
 *   DIR/plan.json             the current round: model, digests, settings, theta, skip list, jobs
 *   DIR/results/ID/job-I.json the result of job I of plan ID, written atomically
 *   DIR/results/ID/job-I.lock held while job I runs (pid and host)
 *
 * `planSelection` runs the selection loop until a round of probe jobs lacks results:
 * it then writes that round's plan and returns `{ state: 'planned', jobs }`. Run again,
 * it checks every result (plan id, job, candidate, model fingerprint, data digest,
 * settings) before merging any, and goes on. The jobs' outcomes are the in-process
 * outcomes bit for bit (probing.ts), so picks and theta equal those of `selectBlocks`.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';

import { removeStaleTemporaries, writeFileAtomic } from './checkpoint.js';
import { datasetDigest } from './dataset.js';
import { ErrorCodes, HopscotchError, check } from './errors.js';
import type { ProbeContext, ProbeExecutor, ProbeJob, ProbeOutcome } from './probing.js';
import { runProbeJob } from './probing.js';
import type { SelectOptions, SelectSettings } from './select-options.js';
import { type Selection, runSelection } from './select.js';
import type { Dataset, Model, Sample } from './types.js';

export const PLAN_FORMAT = 'hopscotch-probe-plan';
export const RESULT_FORMAT = 'hopscotch-probe-result';
export const PLAN_DATA_FORMAT = 'hopscotch-probe-data';
export const PLAN_VERSION = 1;

/** One round of probe jobs, as written to DIR/plan.json. */
export interface ProbePlan {
  format: typeof PLAN_FORMAT;
  version: number;
  /** Digest of everything below: names the results folder. */
  id: string;
  /** The model folder the plan was made with (a job may be given another path to the same model). */
  model: string;
  fingerprint: string;
  /** Digest of the whole data set of the selection, and of the samples the jobs use. */
  dataDigest: string;
  probeDataDigest: string;
  /** The selection options that determine the result. */
  settings: Record<string, unknown>;
  step: number;
  ctx: ProbeContext;
  jobs: ProbeJob[];
}

/** The result of one job, as written to DIR/results/ID/job-I.json. */
export interface ProbeResultFile {
  format: typeof RESULT_FORMAT;
  version: number;
  plan: string;
  job: number;
  candidate: number;
  fingerprint: string;
  probeDataDigest: string;
  settingsDigest: string;
  outcome: ProbeOutcome;
}

/** What `planSelection` reports. */
export type PlanState =
  | { state: 'planned'; dir: string; plan: string; step: number; jobs: number; missing: number[] }
  | { state: 'done'; dir: string; selection: Selection };

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const settingsDigest = (settings: Record<string, unknown>) => sha(JSON.stringify(settings)).slice(0, 16);
const planErr = (msg: string, cause?: unknown) => new HopscotchError(ErrorCodes.PLAN, msg, cause === undefined ? undefined : { cause });

export const planFile = (dir: string) => join(dir, 'plan.json');
export const dataFile = (dir: string) => join(dir, 'data.json');
export const resultFile = (dir: string, plan: string, job: number) => join(dir, 'results', plan, `job-${job}.json`);
const lockFile = (dir: string, plan: string, job: number) => join(dir, 'results', plan, `job-${job}.lock`);

function probeDataDigest(data: readonly Sample[], validation: readonly Sample[] | undefined): string {
  return sha(`${datasetDigest(data)}:${validation === undefined ? '-' : datasetDigest(validation)}`);
}

async function readJson(file: string, what: string): Promise<unknown | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new HopscotchError(ErrorCodes.IO, `cannot read ${what} ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw planErr(`${what} ${file} is corrupted or truncated (${(err as Error).message})`, err);
  }
}

/** Reads DIR/plan.json (HOPSCOTCH_ERR_PLAN when absent or malformed). */
export async function readPlan(dir: string): Promise<ProbePlan> {
  const file = planFile(dir);
  const p = (await readJson(file, 'plan')) as ProbePlan | null;
  if (p === null) throw planErr(`${dir} holds no plan (${file}); run hopscotch select ... --plan ${dir} first`);
  if (!p || typeof p !== 'object' || p.format !== PLAN_FORMAT) throw planErr(`${file} is not a probe plan`);
  if (p.version !== PLAN_VERSION) throw planErr(`${file}: plan version ${p.version} is not supported (this library reads ${PLAN_VERSION})`);
  if (typeof p.id !== 'string' || !Array.isArray(p.jobs) || !p.ctx || typeof p.fingerprint !== 'string' || typeof p.probeDataDigest !== 'string')
    throw planErr(`${file}: missing or malformed fields`);
  const { id, ...rest } = p;
  if (sha(JSON.stringify(rest)).slice(0, 16) !== id) throw planErr(`${file} was changed after it was written (its id does not match its contents)`);
  return p;
}

/**
 * Reads and checks the result of job `job` of `plan`; null when it is not there yet.
 * HOPSCOTCH_ERR_PLAN naming the job when it is corrupted, truncated or belongs to another
 * plan, model, data set or settings.
 */
export async function readResult(dir: string, plan: ProbePlan, job: number): Promise<ProbeOutcome | null> {
  const file = resultFile(dir, plan.id, job);
  let r: ProbeResultFile | null;
  try {
    r = (await readJson(file, `result of job ${job}`)) as ProbeResultFile | null;
  } catch (err) {
    if (err instanceof HopscotchError) throw planErr(`job ${job}: ${err.message}`, err);
    throw err;
  }
  if (r === null) return null;
  const bad = (what: string) => planErr(`job ${job}: result ${file} ${what}`);
  if (!r || typeof r !== 'object' || r.format !== RESULT_FORMAT || r.version !== PLAN_VERSION) throw bad('is not a probe result of this version');
  if (r.plan !== plan.id) throw bad(`belongs to plan ${r.plan}, not ${plan.id}`);
  if (r.job !== job) throw bad(`is the result of job ${r.job}`);
  if (r.candidate !== plan.jobs[job].candidate) throw bad(`probed layer ${r.candidate}, the job is layer ${plan.jobs[job].candidate}`);
  if (r.fingerprint !== plan.fingerprint) throw bad(`was computed on the model with fingerprint ${r.fingerprint}, the plan's is ${plan.fingerprint}`);
  if (r.probeDataDigest !== plan.probeDataDigest) throw bad(`was computed on other data (digest ${r.probeDataDigest}, the plan's ${plan.probeDataDigest})`);
  if (r.settingsDigest !== settingsDigest(plan.settings)) throw bad('was computed with other settings');
  const o = r.outcome;
  const finite = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
  if (!o || o.candidate !== r.candidate || !finite(o.score) || !finite(o.train) || !Number.isInteger(o.steps) || !Number.isInteger(o.tokens))
    throw bad('holds a malformed outcome');
  if (o.steps !== plan.jobs[job].steps) throw bad(`ran ${o.steps} steps, the job asks for ${plan.jobs[job].steps}`);
  return o;
}

/** Thrown inside the loop when a round lacks results; `planSelection` turns it into its answer. */
class PlanPending extends Error {
  constructor(readonly plan: ProbePlan, readonly missing: number[]) {
    super(`plan ${plan.id}: ${missing.length} of ${plan.jobs.length} jobs have no result`);
  }
}

function planExecutor(dir: string, model: Model, cfg: SelectSettings): ProbeExecutor {
  const probeDigest = probeDataDigest(cfg.rankData, cfg.plan.validation);
  return {
    async run(ctx, jobs, _rt, record) {
      const body = {
        format: PLAN_FORMAT,
        version: PLAN_VERSION,
        model: resolve(model.dir),
        fingerprint: model.fingerprint,
        dataDigest: cfg.identity.dataDigest,
        probeDataDigest: probeDigest,
        settings: cfg.identity.options,
        step: ctx.step,
        ctx,
        jobs: [...jobs],
      } satisfies Omit<ProbePlan, 'id'>;
      const plan: ProbePlan = { ...body, id: sha(JSON.stringify(body)).slice(0, 16) };
      const outcomes: (ProbeOutcome | null)[] = [];
      for (let i = 0; i < jobs.length; i++) outcomes.push(await readResult(dir, plan, i));
      const missing = outcomes.flatMap((o, i) => (o === null ? [i] : []));
      if (missing.length > 0) {
        const existing = await readJson(planFile(dir), 'plan').catch(() => null);
        if ((existing as ProbePlan | null)?.id !== plan.id) {
          if ((await readJson(dataFile(dir), 'data').catch(() => null)) === null || !(await dataMatches(dir, probeDigest)))
            await writeFileAtomic(dataFile(dir), JSON.stringify({ format: PLAN_DATA_FORMAT, version: PLAN_VERSION, digest: probeDigest, data: cfg.rankData, validation: cfg.plan.validation ?? null }) + '\n');
          await mkdir(join(dir, 'results', plan.id), { recursive: true });
          await writeFileAtomic(planFile(dir), JSON.stringify(plan) + '\n');
        }
        throw new PlanPending(plan, missing);
      }
      for (const o of outcomes) await record(o!);
    },
  };
}

async function dataMatches(dir: string, digest: string): Promise<boolean> {
  const d = (await readJson(dataFile(dir), 'data').catch(() => null)) as { digest?: string } | null;
  return d?.digest === digest;
}

/**
 * The selection loop of `selectBlocks` with its probe jobs run elsewhere, through the
 * plan directory `dir` (see the file comment). Returns 'planned' with the number of jobs
 * of the round to run, or 'done' with the selection.
 */
export async function planSelection(model: Model, data: Dataset, dir: string, opts: SelectOptions = {}): Promise<PlanState> {
  check(typeof dir === 'string' && dir.length > 0, 'plan must be a folder path');
  check(opts.checkpoint === undefined, 'a plan keeps its own checkpoint (DIR/selection.json): leave checkpoint out');
  check(opts.workers === undefined || opts.workers === 1, 'a plan runs its jobs elsewhere: leave workers out');
  await mkdir(dir, { recursive: true });
  try {
    const selection = await runSelection(model, data, { ...opts, checkpoint: join(dir, 'selection.json') }, (cfg) => planExecutor(dir, model, cfg));
    return { state: 'done', dir, selection };
  } catch (err) {
    if (err instanceof PlanPending)
      return { state: 'planned', dir, plan: err.plan.id, step: err.plan.step, jobs: err.plan.jobs.length, missing: err.missing };
    throw err;
  }
}

/** The samples a plan's jobs train on, checked against the plan. */
export async function readPlanData(dir: string, plan: ProbePlan, job: number): Promise<{ data: Sample[]; validation: Sample[] | undefined }> {
  const d = (await readJson(dataFile(dir), 'data')) as { format?: string; digest?: string; data?: Sample[]; validation?: Sample[] | null } | null;
  if (d === null) throw planErr(`job ${job}: ${dataFile(dir)} is missing`);
  if (d.format !== PLAN_DATA_FORMAT || !Array.isArray(d.data)) throw planErr(`job ${job}: ${dataFile(dir)} is not a plan's data file`);
  const validation = d.validation ?? undefined;
  const digest = probeDataDigest(d.data, validation);
  if (digest !== plan.probeDataDigest) throw planErr(`job ${job}: ${dataFile(dir)} holds other data than the plan (digest ${digest}, the plan's ${plan.probeDataDigest})`);
  return { data: d.data, validation };
}

/** What `runPlanJob` did. */
export interface PlanJobResult {
  state: 'done' | 'exists';
  job: number;
  candidate: number;
  score: number;
  steps: number;
}

/** The job index from a flag, else SLURM_ARRAY_TASK_ID, else JOB_COMPLETION_INDEX (Kubernetes Indexed Job). */
export function jobIndexFromEnv(flag: number | undefined, env: NodeJS.ProcessEnv = process.env): number {
  if (flag !== undefined) return flag;
  for (const name of ['SLURM_ARRAY_TASK_ID', 'JOB_COMPLETION_INDEX']) {
    const v = env[name];
    if (v !== undefined && v !== '') {
      if (!/^\d+$/.test(v)) throw new HopscotchError(ErrorCodes.ARGUMENT, `${name} must be a job index (an integer >= 0), got '${v}'`);
      return Number(v);
    }
  }
  throw new HopscotchError(ErrorCodes.ARGUMENT, 'give the job with --job I (or run under a Slurm array, SLURM_ARRAY_TASK_ID, or a Kubernetes Indexed Job, JOB_COMPLETION_INDEX)');
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
};

/** Takes job `job`'s lock, or throws HOPSCOTCH_ERR_PLAN naming the job and its other writer. */
async function takeLock(file: string, job: number): Promise<() => Promise<void>> {
  const me = JSON.stringify({ pid: process.pid, host: hostname() });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(file, 'wx');
      await fh.writeFile(me);
      await fh.close();
      return async () => {
        await rm(file, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new HopscotchError(ErrorCodes.IO, `cannot create ${file}: ${(err as Error).message}`, { cause: err });
    }
    let holder: { pid?: number; host?: string } = {};
    try {
      holder = JSON.parse(await readFile(file, 'utf8'));
    } catch {
      // A lock being written: treat it as held.
    }
    if (holder.host === hostname() && typeof holder.pid === 'number' && !alive(holder.pid)) {
      await rm(file, { force: true }); // its writer died (killed mid-probe): take over
      continue;
    }
    throw planErr(
      `job ${job} is already being run by pid ${holder.pid ?? '?'} on ${holder.host ?? '?'} (lock ${file}); ` +
        'two writers for one job are refused; remove the lock only if that process is gone',
    );
  }
  throw planErr(`job ${job}: cannot take the lock ${file}`);
}

/**
 * Runs job `job` of the plan in `dir` on `model` and writes its result atomically.
 * A job whose result is already there is not run again ('exists'). Every check (plan,
 * index, model fingerprint, data digest, lock) comes before the probe.
 */
export async function runPlanJob(model: Model, dir: string, job: number, opts: { signal?: AbortSignal; onStart?: (job: ProbeJob) => void } = {}): Promise<PlanJobResult> {
  const plan = await readPlan(dir);
  if (!Number.isInteger(job) || job < 0 || job >= plan.jobs.length)
    throw planErr(`job ${job} does not exist: plan ${plan.id} (step ${plan.step}) has ${plan.jobs.length} jobs, 0 to ${plan.jobs.length - 1}`);
  const spec = plan.jobs[job];
  const done = await readResult(dir, plan, job);
  if (done !== null) return { state: 'exists', job, candidate: spec.candidate, score: done.score, steps: done.steps };
  if (model.fingerprint !== plan.fingerprint)
    throw new HopscotchError(
      ErrorCodes.FINGERPRINT,
      `job ${job}: the plan was made for the model with fingerprint ${plan.fingerprint} (${plan.model}), not for ${model.dir} (${model.fingerprint})`,
    );
  const { data, validation } = await readPlanData(dir, plan, job);
  const out = resultFile(dir, plan.id, job);
  await mkdir(join(dir, 'results', plan.id), { recursive: true });
  await removeStaleTemporaries(out);
  const release = await takeLock(lockFile(dir, plan.id, job), job);
  try {
    if ((await readResult(dir, plan, job)) !== null) {
      const o = (await readResult(dir, plan, job))!;
      return { state: 'exists', job, candidate: spec.candidate, score: o.score, steps: o.steps };
    }
    opts.onStart?.(spec);
    const outcome = await runProbeJob(model, data, validation, plan.ctx, spec, { signal: opts.signal });
    const file: ProbeResultFile = {
      format: RESULT_FORMAT,
      version: PLAN_VERSION,
      plan: plan.id,
      job,
      candidate: spec.candidate,
      fingerprint: model.fingerprint,
      probeDataDigest: plan.probeDataDigest,
      settingsDigest: settingsDigest(plan.settings),
      outcome,
    };
    await writeFileAtomic(out, JSON.stringify(file) + '\n');
    return { state: 'done', job, candidate: spec.candidate, score: outcome.score, steps: outcome.steps };
  } finally {
    await release();
  }
}
