/**
 * `hopscotch rescale`: learns theta for a fixed skip list and prints the fit. With
 * `--checkpoint FILE` the run's state is saved after every optimizer step; a killed or
 * interrupted run started again with the same arguments resumes from it and prints
 * exactly the fit of an uninterrupted run.
 */
import { rescale, type Fit } from '../rescale.js';
import { toJSON } from '../theta.js';
import { type DataArgs, type ModelArgs, interruptible, obtainDataset, openModel, readThetaFile } from './cmd-shared.js';
import { describeTheta } from './cmd-select.js';
import { formatLoss, printJson, printLines, saveJson } from './output.js';
import { ProgressReporter } from './progress-bar.js';

export interface RescaleArgs {
  skip: number[];
  /** File holding the starting theta (a fit or selection JSON). */
  theta?: string;
  epochs: number;
  lr: number;
  batchSize: number;
  tokenCap?: number;
  seed: number;
  /** Checkpoint file: written after every optimizer step; an existing one is resumed. */
  checkpoint?: string;
}

export interface RescaleCommandArgs {
  model: ModelArgs;
  data: DataArgs;
  rescale: RescaleArgs;
  save?: string;
  json: boolean;
}

/** The JSON form of a fit, as `rescale --json` prints it and `export --fit` reads it. */
export function fitToJSON(fit: Fit, settings: Record<string, unknown>) {
  return { ...fit, theta: toJSON(fit.theta), settings };
}

export async function runRescale(args: RescaleCommandArgs): Promise<void> {
  const progress = new ProgressReporter();
  const model = await openModel(args.model);
  try {
    const r = args.rescale;
    const theta = r.theta === undefined ? undefined : readThetaFile(r.theta, model.config.numLayers);
    const fit = await interruptible(progress, async (signal) => {
      const data = await obtainDataset(model, args.data, progress, signal);
      return rescale(model, data, {
        skip: r.skip,
        theta,
        epochs: r.epochs,
        lr: r.lr,
        batchSize: r.batchSize,
        tokenCap: r.tokenCap,
        seed: r.seed,
        checkpoint: r.checkpoint,
        onProgress: progress.onProgress,
        signal,
      });
    });
    const settings = { epochs: r.epochs, lr: r.lr, batchSize: r.batchSize, seed: r.seed, ...(r.theta ? { thetaFrom: r.theta } : {}) };
    const json = fitToJSON(fit, settings);
    if (args.save !== undefined) await saveJson(args.save, json);
    if (args.json) printJson(json);
    else
      printLines([
        `skipped      ${fit.skipped.join(', ') || '(none)'}`,
        `steps        ${fit.steps}`,
        `epoch loss   ${fit.epochLosses.map((x) => formatLoss(x)).join(' -> ')}`,
        '',
        ...describeTheta(fit.theta, fit.skipped),
      ]);
  } finally {
    model.dispose();
  }
}
