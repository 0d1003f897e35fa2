/**
 * `hopscotch run`: the whole method in one command: recovery set (generated from
 * prompts or read), block selection, a final rescale, and export.
 */
import { checkOutput, exportConstraints, exportModel, type ExportFormat, type ExportResult } from '../export.js';
import { rescale } from '../rescale.js';
import { selectBlocks, selectionToJSON } from '../select.js';
import { toJSON } from '../theta.js';
import { type DataArgs, type ModelArgs, interruptible, obtainDataset, openModel } from './cmd-shared.js';
import { type SelectArgs, describeTheta, prepareSelect, selectionSettings } from './cmd-select.js';
import { formatLoss, log, printJson, printLines, saveJson } from './output.js';
import { ProgressReporter } from './progress-bar.js';
import { fitToJSON } from './cmd-rescale.js';

export interface RunCommandArgs {
  model: ModelArgs;
  data: DataArgs;
  select: SelectArgs;
  /** Exact epochs of the final rescale (0: keep the selection's theta); without it the rescale converges. */
  epochs?: number;
  maxEpochs?: number;
  patience?: number;
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
  // Everything that needs no compute is checked first: the output folder, the format's
  // constraints, the selection options against the model.
  checkOutput(args.out, args.force, args.format);
  const model = await openModel(args.model);
  try {
    let s = args.select;
    const { exclude } = exportConstraints(model, args.format);
    const added = exclude.filter((l) => !(s.exclude ?? []).includes(l));
    if (added.length > 0) {
      s = { ...s, exclude: [...(s.exclude ?? []), ...added].sort((a, b) => a - b) };
      progress.line(`select     excluding layer ${added.join(', ')}: format ${args.format} cannot skip its attention`);
    }
    const opts = await prepareSelect(model, s, progress);
    const { sel, fit, theta, settings, exported } = await interruptible(progress, async (signal) => {
      const data = await obtainDataset(model, args.data, progress, signal);
      const sel = await selectBlocks(model, data, { ...opts, onProgress: progress.onProgress, signal });
      if (args.saveSelection !== undefined) await saveJson(args.saveSelection, { ...selectionToJSON(sel), settings: selectionSettings(s) });
      const fit =
        args.epochs === 0
          ? null
          : await rescale(model, data, {
              skip: sel.skipped,
              theta: sel.theta,
              epochs: args.epochs,
              maxEpochs: args.maxEpochs,
              patience: args.patience,
              holdout: s.holdout,
              validation: opts.validation,
              lr: args.lr,
              batchSize: s.batchSize,
              tokenCap: s.tokenCap,
              seed: s.seed,
              onProgress: progress.onProgress,
              signal,
            });
      const theta = fit?.theta ?? sel.theta;
      const finalRescale = Object.fromEntries(
        Object.entries({ epochs: args.epochs, maxEpochs: args.maxEpochs, patience: args.patience, lr: args.lr }).filter(([, v]) => v !== undefined),
      );
      const settings = { ...selectionSettings(s), finalRescale };
      if (args.saveFit !== undefined)
        await saveJson(
          args.saveFit,
          fit ? fitToJSON(fit, settings) : { fingerprint: model.fingerprint, skipped: sel.skipped, theta: toJSON(theta), epochLosses: [], settings },
        );
      const exported: ExportResult = await exportModel(
        model,
        { skipped: sel.skipped, theta, fingerprint: model.fingerprint },
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
      validationCurve: fit?.validationCurve ?? [],
      validationLoss: fit?.validationLoss,
      export: exported,
      settings,
    };
    if (args.json) printJson(result);
    else
      printLines([
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
  } finally {
    model.dispose();
  }
}
