/**
 * `hopscotch run`: the whole method in one command (the pipeline of pipeline.ts):
 * recovery set (generated from prompts or read), block selection, a final rescale, and
 * export.
 */
import { type Command, Option } from 'commander';

import { EXPORT_FORMATS, type ExportFormat } from '../export.js';
import { toJSON } from '../theta.js';
import { runPipeline } from './pipeline.js';
import {
  dataArgs,
  dataOptions,
  describeTheta,
  formatLoss,
  jsonOption,
  modelOptions,
  printResult,
  rescaleOptions,
  selectArgs,
  selectionOptions,
  selectionSettings,
  trainingOptions,
  validationOptions,
} from './shared.js';

const finalRescale = rescaleOptions(
  'the final rescale',
  'exact epochs of the final rescale (0: keep the selection theta; default: until the held-out loss stops improving)',
  0,
);

interface RunOptions {
  out: string;
  format: ExportFormat;
  force?: boolean;
  saveSelection?: string;
  saveFit?: string;
  json?: boolean;
}

async function runRun(o: RunOptions): Promise<void> {
  const select = selectArgs(o);
  const r = await runPipeline({
    model: modelOptions.pick(o),
    data: dataArgs(o),
    select,
    rescale: finalRescale.pick(o),
    settings: selectionSettings(select),
    exports: [{ format: o.format, out: o.out }],
    force: o.force ?? false,
    saveSelection: o.saveSelection,
    saveFit: o.saveFit,
  });
  const { selection: sel, fit, theta } = r;
  const exported = r.exports[0];
  const result = {
    skipped: sel.skipped,
    theta: toJSON(theta),
    trace: sel.trace,
    selectionLosses: sel.losses,
    epochLosses: fit?.epochLosses ?? [],
    validationCurve: fit?.validationCurve ?? [],
    validationLoss: fit?.validationLoss,
    export: exported,
    settings: r.settings,
  };
  printResult(o.json, result, () => [
    `skipped      ${sel.skipped.join(', ')}`,
    `final loss   ${fit ? fit.epochLosses.map((x) => formatLoss(x)).join(' -> ') : '(no final rescale)'}`,
    ...(fit?.validationLoss !== undefined
      ? [`held-out     ${formatLoss(fit.validationLoss)} (${fit.validationSamples} samples, ${fit.epochLosses.length} epochs, stopped by ${fit.stoppedBy})`]
      : []),
    `exported     ${exported.format} to ${exported.out} (${exported.files.length} files, ${exported.bytes} bytes)`,
    ...(exported.maxAbsLogitDiff === undefined ? [] : [`check        max |logit diff| ${exported.maxAbsLogitDiff.toExponential(3)}`]),
    '',
    ...describeTheta(theta, sel.skipped),
  ]);
}

export function registerRun(program: Command): void {
  const cmd = program.command('run').description('the whole method: recovery set, block selection, final rescale, export');
  for (const group of [modelOptions, dataOptions, selectionOptions, trainingOptions, validationOptions, finalRescale]) group.addTo(cmd);
  cmd
    .requiredOption('--out <dir>', 'output folder of the export (must not exist unless --force)')
    .addOption(new Option('--format <format>', 'export format').choices([...EXPORT_FORMATS]).default('hf'))
    .option('--force', 'replace an existing output folder')
    .option('--save-selection <file>', 'also write the selection JSON to this file')
    .option('--save-fit <file>', 'also write the final fit JSON to this file')
    .addOption(jsonOption())
    .action(async (o: RunOptions) => runRun(o));
}
