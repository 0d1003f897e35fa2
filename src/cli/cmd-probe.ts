/**
 * `hopscotch probe --plan DIR --job I`: one probe job of a plan that `select --plan`
 * wrote (plan.ts). The job index comes from --job, else SLURM_ARRAY_TASK_ID, else
 * JOB_COMPLETION_INDEX. Every check (plan, index, existing result, lock) runs before
 * the model is loaded where it can; the result is written atomically; a finished job
 * is not run again.
 */
import { jobIndexFromEnv, readPlan, readResult, runPlanJob } from '../plan.js';
import type { Device } from '../types.js';
import { interruptible, openModel } from './cmd-shared.js';
import { printJson, printLines } from './output.js';
import { ProgressReporter } from './progress-bar.js';
import { ErrorCodes, HopscotchError } from '../errors.js';

export interface ProbeCommandArgs {
  plan: string;
  job?: number;
  model?: string;
  device: Device | 'auto';
  threads?: number;
  json: boolean;
}

export async function runProbe(args: ProbeCommandArgs): Promise<void> {
  const job = jobIndexFromEnv(args.job);
  const plan = await readPlan(args.plan);
  if (job >= plan.jobs.length)
    throw new HopscotchError(ErrorCodes.PLAN, `job ${job} does not exist: plan ${plan.id} (step ${plan.step}) has ${plan.jobs.length} jobs, 0 to ${plan.jobs.length - 1}`);
  const print = (r: { state: string; job: number; candidate: number; score: number; steps: number }) => {
    if (args.json) printJson({ ...r, plan: plan.id });
    else printLines([`job ${r.job}     layer ${r.candidate}, ${r.steps} steps, score ${r.score} (${r.state === 'exists' ? 'already done' : 'done'})`]);
  };
  const existing = await readResult(args.plan, plan, job);
  if (existing !== null) {
    print({ state: 'exists', job, candidate: plan.jobs[job].candidate, score: existing.score, steps: existing.steps });
    return;
  }
  const progress = new ProgressReporter();
  const model = await openModel({ model: args.model ?? plan.model, device: args.device, threads: args.threads });
  try {
    const r = await interruptible(progress, (signal) =>
      runPlanJob(model, args.plan, job, {
        signal,
        onStart: (j) => process.stderr.write(`hopscotch: probe job ${job}: layer ${j.candidate}, ${j.resume?.losses.length ?? 0} -> ${j.steps} steps\n`),
      }),
    );
    print(r);
  } finally {
    model.dispose();
  }
}
