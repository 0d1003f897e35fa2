/**
 * The whole method as one function, for `hopscotch run` and `hopscotch demo`: load the
 * model, obtain the recovery set, select blocks, rescale, and export, with progress on
 * stderr and Ctrl-C stopping after the current batch. Everything that needs no compute
 * is checked before the model is loaded (the output paths) or before the recovery set is
 * generated (the selection options and each format's constraints against the model).
 * With `heldOut`, part of the recovery set is kept out of selection and rescale and the
 * base, NoScale and rescaled models are measured on it.
 */
import { saveDataset } from '../dataset.js';
import { checkOutput, exportConstraints, exportModel, type ExportFormat, type ExportResult } from '../export.js';
import { evaluateLoss, rescale, type Fit } from '../rescale.js';
import { selectBlocks, selectionToJSON, type Selection } from '../select.js';
import { checkSelectOptions } from '../select-options.js';
import { ones, toJSON } from '../theta.js';
import type { Dataset, Device, ModelConfig, Theta } from '../types.js';
import { ProgressReporter } from './progress-bar.js';
import {
  type DataArgs,
  type ModelArgs,
  type RescaleRunArgs,
  type SelectArgs,
  interruptible,
  log,
  obtainDataset,
  obtainValidation,
  openModel,
  saveJson,
  selectOptions,
} from './shared.js';

export interface PipelineSpec {
  model: ModelArgs;
  data: DataArgs & { warnTruncated?: boolean };
  /** The selection's options; the final rescale shares its batching, seed and held-out data. */
  select: Partial<SelectArgs>;
  /** The final rescale (`epochs: 0` keeps the selection's theta). */
  rescale: Partial<RescaleRunArgs>;
  /** Settings recorded with the selection, and (with the final rescale's) with the fit and the exports. */
  settings: Record<string, unknown>;
  exports: { format: ExportFormat; out: string }[];
  /** Replace existing export outputs. */
  force: boolean;
  saveSelection?: string;
  saveFit?: string;
  /** Keep part of the recovery set out of selection and rescale, write both parts, and measure the variants on it. */
  heldOut?: {
    split(data: Dataset): { train: Dataset; heldOut: Dataset };
    files: { train: string; heldOut: string };
    /** Recorded in both dataset headers (with `split: 'train' | 'held-out'`). */
    meta: Record<string, unknown>;
  };
}

/** Mean loss of the held-out samples under the three variants (paper section 4.4 naming). */
export interface HeldOutLosses {
  base: number;
  noScale: number;
  rescaled: number;
}

export interface PipelineResult {
  device: Device;
  config: ModelConfig;
  /** The whole recovery set, and the part selection and rescale saw. */
  data: Dataset;
  train: Dataset;
  heldOut?: Dataset;
  selection: Selection;
  /** The final rescale, or null when it was left out (`epochs: 0`). */
  fit: Fit | null;
  theta: Theta;
  /** The selection's settings plus the final rescale's, as recorded. */
  settings: Record<string, unknown>;
  exports: ExportResult[];
  heldOutLoss?: HeldOutLosses;
  /** Loss of the base model on the training part (with `heldOut`: the curve's step 0). */
  trainBaseLoss?: number;
  /** Wall time of each stage. */
  seconds: Record<string, number>;
}

export async function runPipeline(spec: PipelineSpec): Promise<PipelineResult> {
  const started = performance.now();
  const seconds: Record<string, number> = {};
  let lap = started;
  const time = (stage: string) => {
    const now = performance.now();
    seconds[stage] = Number(((now - lap) / 1000).toFixed(2));
    lap = now;
  };

  for (const e of spec.exports) checkOutput(e.out, spec.force, e.format);
  const progress = new ProgressReporter();
  const model = await openModel(spec.model);
  try {
    time('load');
    let s = spec.select;
    for (const { format } of spec.exports) {
      const added = exportConstraints(model, format).exclude.filter((l) => !(s.exclude ?? []).includes(l));
      if (added.length === 0) continue;
      s = { ...s, exclude: [...(s.exclude ?? []), ...added].sort((a, b) => a - b) };
      progress.line(`select     excluding layer ${added.join(', ')}: format ${format} cannot skip its attention`);
    }
    checkSelectOptions(model, selectOptions(s as SelectArgs));
    const validation = await obtainValidation(model, s.validation, progress);
    const opts = selectOptions(s as SelectArgs, validation);
    const r = spec.rescale;
    const finalRescale = Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined));
    const settings = { ...spec.settings, finalRescale };

    return await interruptible(progress, async (signal) => {
      const data = await obtainDataset(model, spec.data, progress, signal);
      const { train, heldOut } = spec.heldOut ? spec.heldOut.split(data) : { train: data, heldOut: undefined };
      if (spec.heldOut && heldOut) {
        const { files, meta } = spec.heldOut;
        await saveDataset(files.train, train, { fingerprint: model.fingerprint, force: true, meta: { ...meta, split: 'train' } });
        await saveDataset(files.heldOut, heldOut, { fingerprint: model.fingerprint, force: true, meta: { ...meta, split: 'held-out' } });
      }
      time('recoverySet');

      const selection = await selectBlocks(model, train, { ...opts, onProgress: progress.onProgress, signal });
      if (spec.saveSelection !== undefined)
        await saveJson(spec.saveSelection, { ...selectionToJSON(selection), settings: spec.settings });
      time('select');

      const skip = selection.skipped;
      const fit =
        r.epochs === 0
          ? null
          : await rescale(model, train, {
              skip,
              theta: selection.theta,
              epochs: r.epochs,
              maxEpochs: r.maxEpochs,
              patience: r.patience,
              holdout: s.holdout,
              validation,
              lr: r.lr,
              batchSize: s.batchSize,
              tokenCap: s.tokenCap,
              seed: s.seed,
              onProgress: progress.onProgress,
              signal,
            });
      const theta = fit?.theta ?? selection.theta;
      if (spec.saveFit !== undefined)
        await saveJson(
          spec.saveFit,
          fit
            ? { ...fit, theta: toJSON(fit.theta), settings }
            : { fingerprint: model.fingerprint, skipped: skip, theta: toJSON(theta), epochLosses: [], settings },
        );
      time('rescale');

      let heldOutLoss: HeldOutLosses | undefined;
      let trainBaseLoss: number | undefined;
      if (heldOut) {
        // The held-out samples were never seen by selection or rescale.
        const n = model.config.numLayers;
        const noScale = ones(n);
        for (const l of skip) noScale.bAtt[l] = 0;
        heldOutLoss = {
          base: await evaluateLoss(model, heldOut, ones(n), { signal }),
          noScale: await evaluateLoss(model, heldOut, noScale, { skip, signal }),
          rescaled: await evaluateLoss(model, heldOut, theta, { skip, signal }),
        };
        trainBaseLoss = await evaluateLoss(model, train, ones(n), { signal });
        time('evaluate');
      }

      const exports: ExportResult[] = [];
      const exportFit = { skipped: skip, theta, fingerprint: model.fingerprint };
      for (const { format, out } of spec.exports)
        exports.push(await exportModel(model, exportFit, { out, format, force: spec.force, settings, log, signal }));
      time('export');
      seconds.total = Number(((performance.now() - started) / 1000).toFixed(2));
      return { device: model.device, config: model.config, data, train, heldOut, selection, fit, theta, settings, exports, heldOutLoss, trainBaseLoss, seconds };
    });
  } finally {
    model.dispose();
  }
}
