/**
 * `hopscotch run`: the whole method in one command: recovery set (generated from
 * prompts or read), block selection, a final rescale, and export.
 */
import { exportModel, type ExportFormat, type ExportResult } from '../export.js';
import { rescale } from '../rescale.js';
import { selectBlocks, selectionToJSON } from '../select.js';
import { toJSON } from '../theta.js';
import { type DataArgs, type ModelArgs, interruptible, obtainDataset, openModel } from './cmd-shared.js';
import { type SelectArgs, describeTheta, selectOptions, selectionSettings } from './cmd-select.js';
import { formatLoss, log, printJson, printLines, saveJson } from './output.js';
import { ProgressReporter } from './progress-bar.js';

export interface RunCommandArgs {
  model: ModelArgs;
  data: DataArgs;
  select: SelectArgs;
  /** Epochs of the final rescale (0: keep the selection's theta). */
  epochs: number;
  lr: number;
  out: string;
  format: ExportFormat;
  force: boolean;
  saveSelection?: string;
  saveFit?: string;
  json: boolean;
}

export async function runRun(args: RunCommandArgs): Promise<void> {
  const progress = new ProgressReporter();
  const model = await openModel(args.model);
  try {
    const s = args.select;
    const { sel, fit, theta, settings, exported } = await interruptible(progress, async (signal) => {
      const data = await obtainDataset(model, args.data, progress, signal);
      const sel = await selectBlocks(model, data, { ...selectOptions(s), onProgress: progress.onProgress, signal });
      if (args.saveSelection !== undefined) await saveJson(args.saveSelection, { ...selectionToJSON(sel), settings: selectionSettings(s) });
      const fit =
        args.epochs === 0
          ? null
          : await rescale(model, data, {
              skip: sel.skipped,
              theta: sel.theta,
              epochs: args.epochs,
              lr: args.lr,
              batchSize: s.batchSize,
              tokenCap: s.tokenCap,
              seed: s.seed,
              onProgress: progress.onProgress,
              signal,
            });
      const theta = fit?.theta ?? sel.theta;
      const settings = { ...selectionSettings(s), finalRescale: { epochs: args.epochs, lr: args.lr } };
      if (args.saveFit !== undefined)
        await saveJson(args.saveFit, { skipped: sel.skipped, theta: toJSON(theta), epochLosses: fit?.epochLosses ?? [], settings });
      const exported: ExportResult = await exportModel(
        model,
        { skipped: sel.skipped, theta },
        { out: args.out, format: args.format, force: args.force, settings, log, signal },
      );
      return { sel, fit, theta, settings, exported };
    });
    const result = {
      skipped: sel.skipped,
      theta: toJSON(theta),
      trace: sel.trace,
      selectionLosses: sel.losses,
      epochLosses: fit?.epochLosses ?? [],
      export: exported,
      settings,
    };
    if (args.json) printJson(result);
    else
      printLines([
        `skipped      ${sel.skipped.join(', ')}`,
        `final loss   ${fit ? fit.epochLosses.map((x) => formatLoss(x)).join(' -> ') : '(no final rescale)'}`,
        `exported     ${exported.format} to ${exported.out} (${exported.files.length} files, ${exported.bytes} bytes)`,
        ...(exported.maxAbsLogitDiff === undefined ? [] : [`check        max |logit diff| ${exported.maxAbsLogitDiff.toExponential(3)}`]),
        '',
        ...describeTheta(theta, sel.skipped),
      ]);
  } finally {
    model.dispose();
  }
}
