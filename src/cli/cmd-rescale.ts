/**
 * `hopscotch rescale`: learns theta for a fixed skip list and prints the fit. By default
 * the run converges on held-out loss (a seeded slice of the data, or `--validation`);
 * `--epochs N` trains exactly N epochs. With `--theta FILE` the skip list comes from the
 * file unless `--skip` is given (which must keep the file's skipped layers). With
 * `--checkpoint FILE` the run's state is saved after every optimizer step; a killed or
 * interrupted run started again with the same arguments resumes from it and prints
 * exactly the fit of an uninterrupted run.
 */
import { ErrorCodes, HopscotchError } from '../errors.js';
import { rescale, validateSkip, type Fit } from '../rescale.js';
import { toJSON } from '../theta.js';
import {
  type DataArgs,
  type ModelArgs,
  interruptible,
  obtainDataset,
  obtainValidation,
  openModel,
  readThetaFile,
  skipForTheta,
} from './cmd-shared.js';
import { describeTheta } from './cmd-select.js';
import { formatLoss, printJson, printLines, saveJson } from './output.js';
import { ProgressReporter } from './progress-bar.js';

export interface RescaleArgs {
  /** Skipped layers (default: the list recorded in `theta`'s file). */
  skip?: number[];
  /** File holding the starting theta (a fit or selection JSON). */
  theta?: string;
  /** Exact epochs; without it the run converges on held-out loss. */
  epochs?: number;
  maxEpochs?: number;
  patience?: number;
  /** Fraction of the data held out (default: the library's for a converging run). */
  holdout?: number;
  /** Held-out dataset file (instead of a slice of the data). */
  validation?: string;
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
  const r = args.rescale;
  if (r.skip === undefined && r.theta === undefined)
    throw new HopscotchError(ErrorCodes.ARGUMENT, 'give the skipped layers with --skip, or a fit/selection with --theta');
  const model = await openModel(args.model);
  try {
    // Everything that needs no compute is checked before the data are generated.
    const start = r.theta === undefined ? undefined : readThetaFile(r.theta, model);
    const skip = start === undefined ? r.skip! : skipForTheta(r.theta!, start, r.skip);
    validateSkip(skip, model.config.numLayers);
    const validation = await obtainValidation(model, r.validation, progress);
    const fit = await interruptible(progress, async (signal) => {
      const data = await obtainDataset(model, args.data, progress, signal);
      return rescale(model, data, {
        skip,
        theta: start?.theta,
        epochs: r.epochs,
        maxEpochs: r.maxEpochs,
        patience: r.patience,
        holdout: r.holdout,
        validation,
        lr: r.lr,
        batchSize: r.batchSize,
        tokenCap: r.tokenCap,
        seed: r.seed,
        checkpoint: r.checkpoint,
        onProgress: progress.onProgress,
        signal,
      });
    });
    const { checkpoint: _c, skip: _s, theta: thetaFrom, ...rest } = r;
    const settings = Object.fromEntries(Object.entries({ ...rest, thetaFrom }).filter(([, v]) => v !== undefined));
    const json = fitToJSON(fit, settings);
    if (args.save !== undefined) await saveJson(args.save, json);
    if (args.json) printJson(json);
    else
      printLines([
        `skipped      ${fit.skipped.join(', ') || '(none)'}`,
        `steps        ${fit.steps} (${fit.epochLosses.length} epochs, stopped by ${fit.stoppedBy})`,
        `epoch loss   ${fit.epochLosses.map((x) => formatLoss(x)).join(' -> ')}`,
        ...(fit.validationCurve && fit.validationCurve.length > 0
          ? [
              `held-out     ${fit.validationCurve.map((x) => formatLoss(x)).join(' -> ')}  (${fit.validationSamples} samples; kept epoch ${fit.bestEpoch ?? fit.epochLosses.length}: ${formatLoss(fit.validationLoss ?? NaN)})`,
            ]
          : []),
        '',
        ...describeTheta(fit.theta, fit.skipped),
      ]);
  } finally {
    model.dispose();
  }
}
