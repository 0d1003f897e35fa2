/**
 * Pieces shared by the command implementations: opening the model, obtaining the
 * recovery set (generated from prompts or read from a dataset file), reading theta
 * from a fit file, and running work that Ctrl-C interrupts cleanly.
 */
import { readFileSync } from 'node:fs';

import { loadDataset, loadPrompts, recoverySet, saveDataset } from '../dataset.js';
import { ErrorCodes, HopscotchError } from '../errors.js';
import { load } from '../model.js';
import { fromJSON, type ThetaJson } from '../theta.js';
import type { Dataset, Device, Model, Theta } from '../types.js';
import { log } from './output.js';
import type { ProgressReporter } from './progress-bar.js';

export interface ModelArgs {
  model: string;
  device: Device | 'auto';
  threads?: number;
}

/** Where the samples come from: prompts answered by the model, or a saved dataset. */
export interface DataArgs {
  prompts?: string;
  data?: string;
  limit?: number;
  maxNewTokens: number;
  /** Token ids that end a generated answer (default: the tokenizer's stop ids). */
  stop?: number[];
  /** Prompts per generation call. */
  genBatchSize: number;
  /** Write the generated recovery set here. */
  saveData?: string;
}

export async function openModel(args: ModelArgs): Promise<Model> {
  return load(args.model, { device: args.device, threads: args.threads, log });
}

/** The recovery set named by `args`, generated (with progress) or read and checked against the model. */
export async function obtainDataset(
  model: Model,
  args: DataArgs,
  progress: ProgressReporter,
  signal?: AbortSignal,
): Promise<Dataset> {
  if (args.data !== undefined) {
    const data = await loadDataset(args.data, {
      fingerprint: model.fingerprint,
      vocabSize: model.config.vocabSize,
      context: model.config.maxPositionEmbeddings,
    });
    const out = args.limit === undefined ? data : data.slice(0, args.limit);
    progress.line(`data       ${out.length} samples from ${args.data}`);
    return out;
  }
  if (args.prompts === undefined)
    throw new HopscotchError(ErrorCodes.ARGUMENT, 'give the samples with --prompts <file> or --data <file>');
  const prompts = await loadPrompts(args.prompts, { limit: args.limit });
  if (prompts.length === 0) throw new HopscotchError(ErrorCodes.DATASET, `${args.prompts} holds no prompts`);
  const data = await recoverySet(model, prompts, {
    maxNewTokens: args.maxNewTokens,
    batchSize: args.genBatchSize,
    stop: args.stop,
    onProgress: progress.onProgress,
    signal,
  });
  if (data.length === 0)
    throw new HopscotchError(ErrorCodes.DATASET, `the model answered none of the ${prompts.length} prompts (every answer was empty)`);
  if (args.saveData !== undefined) {
    await saveDataset(args.saveData, data, {
      fingerprint: model.fingerprint,
      force: true,
      meta: { source: args.prompts, maxNewTokens: args.maxNewTokens, stop: args.stop ?? model.tokenizer.stopTokenIds },
    });
    progress.line(`data       wrote ${data.length} samples to ${args.saveData}`);
  }
  return data;
}

/** What a fit, selection or theta JSON file holds. */
export interface ThetaFile {
  theta: Theta;
  /** The skip list the file records (fits and selections), if any. */
  skipped?: number[];
  /** The model the file was made for, if recorded. */
  fingerprint?: string;
}

/**
 * Reads theta from a JSON file: a fit or selection as `select --json` / `rescale --json`
 * print ({ theta: { bAtt, sAtt, bMlp, sMlp }, skipped, fingerprint, ... }) or a bare
 * theta object. A file made for another model is HOPSCOTCH_ERR_FINGERPRINT.
 */
export function readThetaFile(file: string, model: Pick<Model, 'fingerprint' | 'config' | 'dir'>): ThetaFile {
  const numLayers = model.config.numLayers;
  let j: unknown;
  try {
    j = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new HopscotchError(ErrorCodes.ARGUMENT, `cannot read theta from ${file}: ${(err as Error).message}`, { cause: err });
  }
  const rec = j && typeof j === 'object' && 'theta' in j ? (j as { theta: unknown; skipped?: unknown; fingerprint?: unknown }) : undefined;
  const obj = rec ? rec.theta : j;
  let theta: Theta;
  try {
    theta = fromJSON(obj as ThetaJson);
  } catch (err) {
    throw new HopscotchError(ErrorCodes.THETA, `${file}: ${(err as Error).message}`, { cause: err });
  }
  if (theta.bAtt.length !== numLayers)
    throw new HopscotchError(ErrorCodes.THETA, `${file}: theta has ${theta.bAtt.length} layers, the model has ${numLayers}`);
  const out: ThetaFile = { theta };
  if (rec?.fingerprint !== undefined) {
    if (typeof rec.fingerprint !== 'string') throw new HopscotchError(ErrorCodes.ARGUMENT, `${file}: "fingerprint" must be a string`);
    if (rec.fingerprint !== model.fingerprint)
      throw new HopscotchError(
        ErrorCodes.FINGERPRINT,
        `${file} was made for the model with fingerprint ${rec.fingerprint}, not for ${model.dir} (${model.fingerprint})`,
      );
    out.fingerprint = rec.fingerprint;
  }
  if (rec?.skipped !== undefined) {
    if (!Array.isArray(rec.skipped) || rec.skipped.some((l) => !Number.isInteger(l) || l < 0 || l >= numLayers))
      throw new HopscotchError(ErrorCodes.SKIP, `${file}: "skipped" must be a list of layer indices in [0, ${numLayers})`);
    out.skipped = rec.skipped as number[];
  }
  return out;
}

/**
 * The skip list of a rescale that starts from the theta in `file`: the file's own list
 * unless `skip` is given; a given list must keep every layer the file skipped (and every
 * layer whose b_att is 0), else HOPSCOTCH_ERR_SKIP names the layers it would revive.
 */
export function skipForTheta(file: string, t: ThetaFile, skip: number[] | undefined): number[] {
  const zero = Array.from(t.theta.bAtt.keys()).filter((l) => t.theta.bAtt[l] === 0);
  const required = [...new Set([...(t.skipped ?? []), ...zero])].sort((a, b) => a - b);
  if (skip === undefined) {
    if (t.skipped === undefined && zero.length === 0)
      throw new HopscotchError(ErrorCodes.ARGUMENT, `${file} records no skip list: give --skip`);
    return t.skipped ?? zero;
  }
  const missing = required.filter((l) => !skip.includes(l));
  if (missing.length > 0)
    throw new HopscotchError(
      ErrorCodes.SKIP,
      `--skip ${skip.join(',')} contradicts ${file}: it skipped layer${missing.length > 1 ? 's' : ''} ${missing.join(', ')} ` +
        `(b_att ${missing.map((l) => t.theta.bAtt[l]).join(', ')}); keep ${missing.length > 1 ? 'them' : 'it'} in --skip or leave --skip out to use the file's list`,
    );
  return skip;
}

/** Held-out samples from `--validation FILE`, checked against the model. */
export async function obtainValidation(model: Model, file: string | undefined, progress: ProgressReporter): Promise<Dataset | undefined> {
  if (file === undefined) return undefined;
  const data = await loadDataset(file, { fingerprint: model.fingerprint, vocabSize: model.config.vocabSize });
  progress.line(`validation ${data.length} samples from ${file}`);
  return data;
}

/**
 * Runs `work` with an AbortSignal that the first SIGINT (Ctrl-C) aborts: the work stops
 * before its next engine call, with an AbortError that the CLI turns into exit status
 * 130. A second SIGINT exits at once (checkpoints are written atomically, so that is
 * safe too). The progress display is stopped in every case.
 */
export async function interruptible<T>(progress: ProgressReporter, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) {
      progress.stop();
      process.stderr.write('hopscotch: interrupted\n');
      process.exit(130);
    }
    progress.line('hopscotch: interrupting after the current batch (Ctrl-C again to quit at once)');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    return await work(controller.signal);
  } finally {
    process.off('SIGINT', onSigint);
    progress.stop();
  }
}
