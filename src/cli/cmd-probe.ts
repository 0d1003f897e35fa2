/**
 * `hopscotch probe --plan DIR --job I`: one probe job of a plan that `select --plan`
 * wrote (plan.ts). The job index comes from --job, else SLURM_ARRAY_TASK_ID, else
 * JOB_COMPLETION_INDEX. Every check (plan, index, existing result, lock) runs before
 * the model is loaded where it can; the result is written atomically; a finished job
 * is not run again.
 */
import type { Command } from 'commander';

import { ErrorCodes, HopscotchError } from '../errors.js';
import { jobIndexFromEnv, readPlan, readResult, runPlanJob } from '../plan.js';
import type { Device } from '../types.js';
import { ProgressReporter } from './progress-bar.js';
import { deviceOption, interruptible, intOption, jsonOption, log, openModel, printResult, threadsOption } from './shared.js';

interface ProbeCommandArgs {
  plan: string;
  job?: number;
  model?: string;
  device: Device | 'auto';
  threads?: number;
  json?: boolean;
}

async function runProbe(args: ProbeCommandArgs): Promise<void> {
  const job = jobIndexFromEnv(args.job);
  const plan = await readPlan(args.plan);
  if (job >= plan.jobs.length)
    throw new HopscotchError(ErrorCodes.PLAN, `job ${job} does not exist: plan ${plan.id} (step ${plan.step}) has ${plan.jobs.length} jobs, 0 to ${plan.jobs.length - 1}`);
  const print = (r: { state: string; job: number; candidate: number; score: number; steps: number }) =>
    printResult(args.json, { ...r, plan: plan.id }, () => [
      `job ${r.job}     layer ${r.candidate}, ${r.steps} steps, score ${r.score} (${r.state === 'exists' ? 'already done' : 'done'})`,
    ]);
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
        onStart: (j) => log(`hopscotch: probe job ${job}: layer ${j.candidate}, ${j.resume?.losses.length ?? 0} -> ${j.steps} steps`),
      }),
    );
    print(r);
  } finally {
    model.dispose();
  }
}

export function registerProbe(program: Command): void {
  program
    .command('probe')
    .description('run one probe job of a plan written by select --plan (a task of a Slurm array or Kubernetes Indexed Job)')
    .requiredOption('--plan <dir>', 'plan folder written by hopscotch select --plan')
    .addOption(intOption('--job <i>', 'job index (default: SLURM_ARRAY_TASK_ID, else JOB_COMPLETION_INDEX)', { min: 0 }))
    .option('--model <dir>', "model folder (default: the plan's; it must have the plan's fingerprint)")
    .addOption(deviceOption())
    .addOption(threadsOption())
    .addOption(jsonOption())
    .action(async (o: ProbeCommandArgs) => runProbe(o));
}
