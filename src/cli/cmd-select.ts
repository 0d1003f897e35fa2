/**
 * `hopscotch select`: chooses attention blocks to skip (the Hopscotch loop or another
 * strategy) and prints the selection: skipped layers, theta, and every probe score. With
 * `--plan DIR` it writes the step's probe jobs for `hopscotch probe` instead of running
 * them, and merges their results when run again.
 */
import type { Command } from 'commander';

import { planSelection } from '../plan.js';
import { selectBlocks, selectionToJSON } from '../select.js';
import { checkSelectOptions } from '../select-options.js';
import { ProgressReporter } from './progress-bar.js';
import {
  type DataArgs,
  type ModelArgs,
  type SelectArgs,
  dataArgs,
  dataOptions,
  describeSelection,
  interruptible,
  jsonOption,
  modelOptions,
  obtainDataset,
  obtainValidation,
  openModel,
  printResult,
  saveJson,
  selectArgs,
  selectionOptions,
  selectionSettings,
  selectOptions,
  trainingOptions,
  validationOptions,
} from './shared.js';

interface SelectCommandArgs {
  model: ModelArgs;
  data: DataArgs;
  select: SelectArgs;
  save?: string;
  json?: boolean;
  /** Plan directory: write the step's probe jobs there instead of running them (and merge their results). */
  plan?: string;
}

async function runSelect(args: SelectCommandArgs): Promise<void> {
  const progress = new ProgressReporter();
  const model = await openModel(args.model);
  try {
    // The options are checked against the model before any data are generated.
    checkSelectOptions(model, selectOptions(args.select));
    const opts = selectOptions(args.select, await obtainValidation(model, args.select.validation, progress));
    const settings = selectionSettings(args.select);
    const result = await interruptible(progress, async (signal) => {
      const data = await obtainDataset(model, args.data, progress, signal);
      const run = { ...opts, onProgress: progress.onProgress, signal };
      if (args.plan === undefined) return { state: undefined, selection: await selectBlocks(model, data, run) };
      const state = await planSelection(model, data, args.plan, run);
      return state.state === 'planned' ? { state } : { state, selection: state.selection };
    });
    if (result.state?.state === 'planned') {
      const p = result.state;
      printResult(args.json, { state: 'planned', jobs: p.jobs, dir: p.dir, plan: p.plan, step: p.step, missing: p.missing }, () => [
        `planned      ${p.jobs} probe jobs (step ${p.step}, plan ${p.plan}), ${p.missing.length} without a result`,
        `run each     hopscotch probe --plan ${p.dir} --job I   (I = 0..${p.jobs - 1}; or as a Slurm array / Kubernetes Indexed Job)`,
        `then again   hopscotch select ... --plan ${p.dir}`,
      ]);
      return;
    }
    const sel = result.selection!;
    const json = { ...selectionToJSON(sel), settings };
    if (args.save !== undefined) await saveJson(args.save, json);
    printResult(args.json, result.state ? { state: 'done', ...json } : json, () => describeSelection(sel));
  } finally {
    model.dispose();
  }
}

export function registerSelect(program: Command): void {
  const cmd = program
    .command('select')
    .description('choose attention blocks to skip and learn theta for them (prints skipped layers, theta and every probe score)');
  for (const group of [modelOptions, dataOptions, selectionOptions, trainingOptions, validationOptions]) group.addTo(cmd);
  cmd
    .option('--save <file>', 'also write the selection JSON to this file')
    .option('--plan <dir>', "write the step's probe jobs to this folder and stop (run them with hopscotch probe); run again to merge their results and go on")
    .addOption(jsonOption())
    .action(async (o: { save?: string; plan?: string; json?: boolean }) => {
      await runSelect({ model: modelOptions.pick(o), data: dataArgs(o), select: selectArgs(o), save: o.save, plan: o.plan, json: o.json });
    });
}
