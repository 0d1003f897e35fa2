/**
 * What every `hopscotch` command shares, in one place: the conventions, the typed option
 * parsers, the option groups several commands declare, reading the files the commands
 * take, and printing results.
 *
 * Conventions (docs/cli.md repeats them):
 * - Results go to stdout. With `--json` stdout holds exactly one line, the result as one
 *   JSON object ({@link printResult}); without it, human-readable lines.
 * - Progress and logs go to stderr (a progress bar on a terminal, plain lines otherwise).
 * - Exit status ({@link EXIT}): 0 on success; 1 on any error, printed on stderr as
 *   `hopscotch: HOPSCOTCH_ERR_<CODE>: message` (a bad command line is
 *   HOPSCOTCH_ERR_ARGUMENT, naming the flag); 130 when Ctrl-C interrupted the work
 *   ({@link interruptible}: it stops after the current batch, so a `--checkpoint` stays valid).
 * - Every option value is parsed here by a typed parser ({@link intOption},
 *   {@link numberOption}, {@link fractionOption}, {@link byteSizeOption},
 *   {@link intListOption}, {@link layerListOption}, choices): a command receives numbers,
 *   lists and names, never strings to convert.
 * - `--skip <layers>` is always a list of layers; a number of blocks is `-k, --count <k>`.
 * - Commands import this module, the progress display and the pipeline, never each other.
 */
import { readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';

import { writeFileAtomic, type TraceEntry } from '../checkpoint.js';
import { loadDataset, loadPrompts, recoverySet, saveDataset } from '../dataset.js';
import { ErrorCodes, HopscotchError } from '../errors.js';
import { load } from '../model.js';
import { DEFAULT_HOLDOUT, DEFAULT_MAX_EPOCHS, DEFAULT_PATIENCE } from '../rescale.js';
import type { Selection, SelectOptions } from '../select.js';
import { DEFAULT_PROBE_STEPS } from '../select-options.js';
import { STRATEGIES, type StrategyName } from '../strategies.js';
import { fromJSON, type ThetaJson } from '../theta.js';
import type { Dataset, Device, Model, Theta } from '../types.js';
import type { ProgressReporter } from './progress-bar.js';

// ---------------------------------------------------------------------------------------
// Exit status and errors

/** The exit status of every command. */
export const EXIT = { ok: 0, error: 1, interrupted: 130 } as const;

const isAbort = (err: unknown) => {
  const e = err as { name?: string; code?: string } | null;
  return e?.name === 'AbortError' || e?.code === ErrorCodes.ABORTED;
};

/**
 * Prints `err` on stderr the one way every command does and returns the exit status:
 * 130 for an interruption, 1 for everything else.
 */
export function reportError(err: unknown): number {
  if (isAbort(err)) {
    process.stderr.write('hopscotch: interrupted\n');
    return EXIT.interrupted;
  }
  const e = err as { code?: string; message?: string } | null;
  const code = err instanceof HopscotchError ? err.code : (e?.code ?? 'error');
  process.stderr.write(`hopscotch: ${code}: ${e?.message ?? String(err)}\n`);
  return EXIT.error;
}

/** Commander's own parse errors (unknown flag, missing value) in the same form, with the ARGUMENT code. */
export function configureErrors(program: Command): void {
  program.showHelpAfterError().configureOutput({
    outputError: (text, write) => write(`hopscotch: ${ErrorCodes.ARGUMENT}: ${text.replace(/^error: /, '')}`),
  });
}

export function argumentError(message: string): HopscotchError {
  return new HopscotchError(ErrorCodes.ARGUMENT, message);
}

// ---------------------------------------------------------------------------------------
// Value parsers: a bad value is HOPSCOTCH_ERR_ARGUMENT naming the flag and the value.

function valueError(flag: string, expected: string, got: string): HopscotchError {
  return argumentError(`${flag} must be ${expected}, got '${got}'`);
}

export interface IntRange {
  min?: number;
  max?: number;
}

function describeInt({ min, max }: IntRange): string {
  if (min !== undefined && max !== undefined) return `an integer in [${min}, ${max}]`;
  if (min !== undefined) return `an integer >= ${min}`;
  if (max !== undefined) return `an integer <= ${max}`;
  return 'an integer';
}

const inRange = (n: number, { min, max }: IntRange) => (min === undefined || n >= min) && (max === undefined || n <= max);

export function parseIntArg(flag: string, value: string, range: IntRange = {}): number {
  const n = Number(value);
  if (!/^[+-]?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || !inRange(n, range)) throw valueError(flag, describeInt(range), value);
  return n;
}

export function parseNumberArg(flag: string, value: string, opts: { positive?: boolean } = {}): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || (opts.positive && !(n > 0)))
    throw valueError(flag, opts.positive ? 'a positive number' : 'a finite number', value);
  return n;
}

/** A fraction in [0, 1), or in (0, 1) with `open`. */
export function parseFractionArg(flag: string, value: string, opts: { open?: boolean } = {}): number {
  const x = Number(value);
  const ok = value.trim() !== '' && Number.isFinite(x) && x < 1 && (opts.open ? x > 0 : x >= 0);
  if (!ok) throw valueError(flag, opts.open ? 'a number in (0, 1)' : 'a fraction in [0, 1)', value);
  return x;
}

/** A positive whole number of bytes, in digits or exponent notation: 1000000, 5e9. */
export function parseByteSizeArg(flag: string, value: string): number {
  const n = Number(value);
  if (!/^\s*\d+(\.\d+)?(e\+?\d+)?\s*$/i.test(value) || !Number.isSafeInteger(n) || n < 1)
    throw valueError(flag, 'a positive whole number of bytes (e.g. 2000000000 or 2e9)', value);
  return n;
}

/** "1,8" -> [1, 8]: comma-separated integers in `range`. */
export function parseIntListArg(flag: string, value: string, range: IntRange = {}): number[] {
  const parts = value.split(',').map((p) => p.trim());
  if (parts.some((p) => !/^[+-]?\d+$/.test(p) || !inRange(Number(p), range)))
    throw valueError(flag, `a comma-separated list of ${describeInt(range).replace(/^an integer/, 'integers')}`, value);
  return parts.map(Number);
}

/** "3,7" -> [3, 7]: comma-separated integers >= 0 (layer indices or token ids), no repeats. */
export function parseLayerListArg(flag: string, value: string): number[] {
  const parts = value.split(',').map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => !/^\d+$/.test(p)))
    throw valueError(flag, 'a comma-separated list of integers >= 0 (e.g. 3,7)', value);
  const list = parts.map(Number);
  if (new Set(list).size !== list.length) throw valueError(flag, 'a list without repeats', value);
  return list;
}

function typed<T>(flags: string, description: string, parse: (flag: string, value: string) => T, defaultValue?: T): Option {
  const opt = new Option(flags, description);
  opt.argParser((v: string) => parse(opt.long ?? opt.flags, v));
  if (defaultValue === undefined) return opt;
  return opt.default(defaultValue, Array.isArray(defaultValue) ? defaultValue.join(',') : undefined);
}

/** An option whose value is an integer in `range`. */
export const intOption = (flags: string, description: string, range: IntRange = {}, defaultValue?: number) =>
  typed(flags, description, (f, v) => parseIntArg(f, v, range), defaultValue);

/** An option whose value is a finite (optionally positive) number. */
export const numberOption = (flags: string, description: string, opts: { positive?: boolean } = {}, defaultValue?: number) =>
  typed(flags, description, (f, v) => parseNumberArg(f, v, opts), defaultValue);

/** An option whose value is a fraction in [0, 1) (or (0, 1) with `open`). */
export const fractionOption = (flags: string, description: string, opts: { open?: boolean } = {}) =>
  typed(flags, description, (f, v) => parseFractionArg(f, v, opts));

/** An option whose value is a positive number of bytes. */
export const byteSizeOption = (flags: string, description: string) => typed(flags, description, parseByteSizeArg);

/** An option whose value is a comma-separated list of integers in `range` (repeats allowed). */
export const intListOption = (flags: string, description: string, range: IntRange = {}, defaultValue?: number[]) =>
  typed(flags, description, (f, v) => parseIntListArg(f, v, range), defaultValue);

/** An option whose value is a comma-separated list of distinct layer indices (or token ids). */
export const layerListOption = (flags: string, description: string) => typed(flags, description, parseLayerListArg);

export const DEVICES = ['auto', 'cpu', 'cuda'] as const;

/** `--device`, declared (and checked) here only. */
export const deviceOption = (description = 'engine device') =>
  new Option('--device <device>', description).choices(DEVICES).default('auto');

export const threadsOption = () => intOption('--threads <n>', 'CPU threads (default: all cores)', { min: 1 });

export const jsonOption = () => new Option('--json', 'print the result as one JSON object (the only stdout line)');

// ---------------------------------------------------------------------------------------
// Option groups: options several commands declare, each declared once. `pick` takes a
// group's values out of commander's parsed options (values left unset are left out).

export class OptionGroup<T> {
  /** `options` makes fresh Option objects for each command. */
  constructor(readonly options: () => Option[]) {}

  /** Adds the group's options to `cmd`. */
  addTo(cmd: Command): Command {
    for (const o of this.options()) cmd.addOption(o);
    return cmd;
  }

  /** The group's values in `opts`. */
  pick(opts: object): T {
    const values = opts as Record<string, unknown>;
    const names = this.options().map((o) => o.attributeName());
    return Object.fromEntries(names.filter((n) => values[n] !== undefined).map((n) => [n, values[n]])) as T;
  }
}

export interface ModelArgs {
  model: string;
  device: Device | 'auto';
  threads?: number;
}

export const modelOptions = new OptionGroup<ModelArgs>(() => [
  new Option('--model <dir>', 'model folder (config.json, safetensors, tokenizer)').makeOptionMandatory(),
  deviceOption(),
  threadsOption(),
]);

/** How the model answers the prompts of a recovery set. */
export interface GenerationArgs {
  limit?: number;
  maxNewTokens: number;
  /** Token ids that end a generated answer (default: the tokenizer's stop ids). */
  stop?: number[];
  /** Prompts per generation call. */
  genBatchSize: number;
}

export const generationOptions = new OptionGroup<GenerationArgs>(() => [
  intOption('--limit <n>', 'use the first n prompts (or samples)', { min: 1 }),
  intOption('--max-new-tokens <n>', 'longest generated answer, stop token included (also capped by the context)', { min: 1 }, 256),
  layerListOption('--stop <ids>', "token ids that end an answer (default: every eos id of the model and its chat template's end-of-turn token)"),
  intOption('--gen-batch-size <n>', 'prompts per generation call', { min: 1 }, 8),
]);

/** Where the samples come from: prompts answered by the model, or a saved dataset. */
export interface DataArgs extends GenerationArgs {
  prompts?: string;
  data?: string;
  /** Write the generated recovery set here. */
  saveData?: string;
}

export const dataOptions = new OptionGroup<DataArgs>(() => [
  new Option('--prompts <file>', 'prompts JSONL ({"prompt"} | {"messages"} | {"question"} per line), answered greedily by the model').conflicts('data'),
  new Option('--data <file>', 'recovery set JSONL written by --save-data or saveDataset()'),
  ...generationOptions.options(),
  new Option('--save-data <file>', 'write the generated recovery set to this file'),
]);

/** The data group's values, with the checks between its flags. */
export function dataArgs(opts: object): DataArgs {
  const o = dataOptions.pick(opts);
  if (o.prompts === undefined && o.data === undefined) throw argumentError('give the samples with --prompts <file> or --data <file>');
  if (o.data !== undefined && o.saveData !== undefined)
    throw argumentError('--save-data applies to --prompts (with --data the samples are already in a file)');
  return o;
}

/** Batching and seeding of every optimizer run. */
export interface TrainingArgs {
  seed: number;
  batchSize: number;
  tokenCap?: number;
}

export const trainingOptions = new OptionGroup<TrainingArgs>(() => [
  intOption('--seed <n>', 'seed of every shuffle (and of the random strategy)', {}, 0),
  intOption('--batch-size <n>', 'samples per optimizer step', { min: 1 }, 32),
  intOption('--token-cap <n>', 'most tokens per batch', { min: 1 }),
]);

/** Held-out data: a file, or a fraction of the recovery set. */
export interface ValidationArgs {
  /** Held-out dataset file. */
  validation?: string;
  /** Fraction of the samples held out. */
  holdout?: number;
}

export const validationOptions = new OptionGroup<ValidationArgs>(() => [
  new Option('--validation <file>', 'held-out dataset (JSONL as written by hopscotch data / --save-data), never trained on').conflicts('holdout'),
  fractionOption('--holdout <fraction>', `fraction of the samples held out for validation (default ${DEFAULT_HOLDOUT} when rescales converge)`),
]);

/** The `selectBlocks` options that the command line sets (training and validation options aside). */
export interface SelectionArgs {
  count?: number;
  maxLoss?: number;
  maxLossOn?: 'score' | 'validation';
  strategy: StrategyName;
  exclude?: number[];
  probeLr: number;
  probeSteps?: number;
  probeScore?: 'train' | 'validation';
  rescaleLr: number;
  rescaleEpochs?: number;
  rescaleMaxEpochs?: number;
  rescalePatience?: number;
  probeSubset?: number;
  shortlist?: number;
  checkpoint?: string;
  probing?: 'exhaustive' | 'halving';
  workers?: number;
}

export const selectionOptions = new OptionGroup<SelectionArgs>(() => [
  intOption('-k, --count <k>', 'number of attention blocks to skip', { min: 1 }),
  numberOption('--max-loss <x>', 'stop when the best probe loss of a step is above x'),
  new Option('--max-loss-on <what>', '--max-loss compares the probe score or its held-out loss').choices(['score', 'validation']),
  new Option('--strategy <name>', 'selection strategy').choices(Object.keys(STRATEGIES)).default('iterative-greedy'),
  layerListOption('--exclude <layers>', 'layers that are never skipped, comma-separated (e.g. 0)'),
  numberOption('--probe-lr <x>', 'learning rate of the probes', { positive: true }, 1e-2),
  intOption('--probe-steps <n>', `optimizer steps of each probe (default: one epoch or ${DEFAULT_PROBE_STEPS}, whichever is more)`, { min: 1 }),
  new Option('--probe-score <how>', 'rank probes by mean training loss (the paper) or by held-out loss').choices(['train', 'validation']),
  numberOption('--rescale-lr <x>', 'learning rate of the rescale after each step', { positive: true }, 3e-3),
  intOption('--rescale-epochs <n>', 'exact epochs of the rescale after each step (default: until the held-out loss stops improving)', { min: 1 }),
  intOption('--rescale-max-epochs <n>', `most epochs of a converging rescale (default ${DEFAULT_MAX_EPOCHS})`, { min: 1 }),
  intOption('--rescale-patience <n>', `epochs without a better held-out loss before a rescale stops (default ${DEFAULT_PATIENCE})`, { min: 1 }),
  intOption('--probe-subset <n>', 'rank candidates on n samples of the data (rescales use all)', { min: 1 }),
  intOption('--shortlist <n>', 'probe only the n candidates with the best first-order score', { min: 1 }),
  new Option('--checkpoint <file>', 'save progress here after every probe and rescale; an existing file is resumed'),
  new Option('--probing <mode>', 'successive halving (default) or every candidate the whole budget (the paper)').choices(['exhaustive', 'halving']),
  intOption('--workers <n>', 'run the probe jobs in n worker processes (one GPU each on CUDA)', { min: 1 }),
]);

/** Everything a selection takes from the command line. */
export type SelectArgs = SelectionArgs & TrainingArgs & ValidationArgs;

/** The selection, training and validation groups' values, with the check that a stop is given. */
export function selectArgs(opts: object): SelectArgs {
  const s = { ...selectionOptions.pick(opts), ...trainingOptions.pick(opts), ...validationOptions.pick(opts) };
  if (s.count === undefined && s.maxLoss === undefined) throw argumentError('give the number of blocks to skip with --count <k> (or --max-loss)');
  return s;
}

/** `selectBlocks` options from the parsed arguments and the loaded `--validation` samples. */
export function selectOptions(a: SelectArgs, validation?: Dataset): SelectOptions {
  const { validation: _file, ...rest } = a;
  return validation === undefined ? rest : { ...rest, validation };
}

/** The selection's settings as recorded next to its result (and in adapter metadata on export). */
export function selectionSettings(a: SelectArgs): Record<string, unknown> {
  const { checkpoint: _checkpoint, workers: _workers, ...rest } = a;
  return { ...rest };
}

/** The final rescale of `run`, or the rescale of `rescale`. */
export interface RescaleRunArgs {
  epochs?: number;
  maxEpochs?: number;
  patience?: number;
  lr: number;
}

/** `--epochs`, `--max-epochs`, `--patience`, `--lr`; `what` names the rescale, `minEpochs` 0 lets `--epochs 0` skip it. */
export const rescaleOptions = (what: string, epochs: string, minEpochs = 1) =>
  new OptionGroup<RescaleRunArgs>(() => [
    intOption('--epochs <n>', epochs, { min: minEpochs }),
    intOption('--max-epochs <n>', `most epochs of ${what} (default ${DEFAULT_MAX_EPOCHS})`, { min: 1 }),
    intOption('--patience <n>', `epochs without a better held-out loss before ${what} stops (default ${DEFAULT_PATIENCE})`, { min: 1 }),
    numberOption('--lr <x>', `learning rate of ${what}`, { positive: true }, 3e-3),
  ]);

// ---------------------------------------------------------------------------------------
// The model, the recovery set and the held-out samples

export async function openModel(args: ModelArgs): Promise<Model> {
  return load(args.model, { device: args.device, threads: args.threads, log });
}

/**
 * The recovery set named by `args`, generated (with progress) or read and checked against
 * the model. `warnTruncated: false` drops the advice to pass --stop when answers are cut
 * (for a caller that cuts them on purpose).
 */
export async function obtainDataset(
  model: Model,
  args: DataArgs & { warnTruncated?: boolean },
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
  if (args.prompts === undefined) throw argumentError('give the samples with --prompts <file> or --data <file>');
  const prompts = await loadPrompts(args.prompts, { limit: args.limit });
  if (prompts.length === 0) throw new HopscotchError(ErrorCodes.DATASET, `${args.prompts} holds no prompts`);
  const data = await recoverySet(model, prompts, {
    maxNewTokens: args.maxNewTokens,
    batchSize: args.genBatchSize,
    stop: args.stop,
    onProgress: args.warnTruncated === false ? (e) => e.type !== 'truncated' && progress.onProgress(e) : progress.onProgress,
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
 * safe too). The progress display, when given, is stopped in every case.
 */
export async function interruptible<T>(progress: ProgressReporter | undefined, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const say = (text: string) => (progress ? progress.line(text) : log(text));
  const onSigint = () => {
    if (controller.signal.aborted) {
      progress?.stop();
      process.stderr.write('hopscotch: interrupted\n');
      process.exit(EXIT.interrupted);
    }
    say('hopscotch: interrupting after the current batch (Ctrl-C again to quit at once)');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    return await work(controller.signal);
  } finally {
    process.off('SIGINT', onSigint);
    progress?.stop();
  }
}

// ---------------------------------------------------------------------------------------
// Fit files: what `select --json`, `rescale --json`, `run --save-fit` write

/** What a fit, selection or theta JSON file holds. */
export interface FitFile {
  theta: Theta;
  /** The skip list the file records (fits and selections), if any. */
  skipped?: number[];
  /** The model the file was made for, if recorded. */
  fingerprint?: string;
  /** The settings recorded with it ({} when none). */
  settings: Record<string, unknown>;
  /** A selection's probe scores, when it has them. */
  trace?: TraceEntry[];
}

export function readJsonObject(file: string, what: string): Record<string, unknown> {
  let j: unknown;
  try {
    j = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new HopscotchError(ErrorCodes.ARGUMENT, `cannot read ${what} ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (!j || typeof j !== 'object' || Array.isArray(j)) throw argumentError(`${file}: ${what} must be a JSON object`);
  return j as Record<string, unknown>;
}

export const isTraceEntry = (e: unknown): e is TraceEntry => {
  const x = e as { step?: unknown; candidate?: unknown; score?: unknown } | null;
  return !!x && Number.isInteger(x.step) && Number.isInteger(x.candidate) && typeof x.score === 'number' && Number.isFinite(x.score);
};

/**
 * Reads a fit or selection file ({ skipped, theta: { bAtt, sAtt, bMlp, sMlp },
 * fingerprint?, settings?, trace? }) or a bare theta object. `requireSkip` refuses a file
 * without a skip list. An unreadable file is HOPSCOTCH_ERR_ARGUMENT, a bad theta
 * HOPSCOTCH_ERR_THETA, a bad skip list HOPSCOTCH_ERR_SKIP.
 */
export function readFitFile(file: string, opts: { requireSkip?: boolean } = {}): FitFile {
  const j = readJsonObject(file, 'fit file');
  const rec = 'theta' in j;
  let theta: Theta;
  try {
    theta = fromJSON((rec ? j.theta : j) as ThetaJson);
  } catch (err) {
    throw new HopscotchError(ErrorCodes.THETA, `${file}: ${(err as Error).message}`, { cause: err });
  }
  const out: FitFile = { theta, settings: {} };
  if (!rec) {
    if (opts.requireSkip) throw argumentError(`${file}: a fit file records "skipped" and "theta"`);
    return out;
  }
  if (j.skipped === undefined) {
    if (opts.requireSkip) throw argumentError(`${file}: "skipped" must be an array of layer indices`);
  } else if (!Array.isArray(j.skipped) || j.skipped.some((l) => !Number.isInteger(l) || l < 0)) {
    throw new HopscotchError(ErrorCodes.SKIP, `${file}: "skipped" must be an array of layer indices`);
  } else out.skipped = j.skipped as number[];
  if (j.fingerprint !== undefined) {
    if (typeof j.fingerprint !== 'string') throw argumentError(`${file}: "fingerprint" must be a string`);
    out.fingerprint = j.fingerprint;
  }
  if (j.settings && typeof j.settings === 'object') out.settings = j.settings as Record<string, unknown>;
  if (Array.isArray(j.trace) && j.trace.every(isTraceEntry)) out.trace = j.trace;
  return out;
}

/**
 * A fit file checked against the model it will be used with: as many layers
 * (HOPSCOTCH_ERR_THETA), the same fingerprint when recorded (HOPSCOTCH_ERR_FINGERPRINT),
 * skipped layers in range (HOPSCOTCH_ERR_SKIP).
 */
export function checkFitForModel(file: string, fit: FitFile, model: Pick<Model, 'fingerprint' | 'config' | 'dir'>): FitFile {
  const numLayers = model.config.numLayers;
  if (fit.theta.bAtt.length !== numLayers)
    throw new HopscotchError(ErrorCodes.THETA, `${file}: theta has ${fit.theta.bAtt.length} layers, the model has ${numLayers}`);
  if (fit.fingerprint !== undefined && fit.fingerprint !== model.fingerprint)
    throw new HopscotchError(
      ErrorCodes.FINGERPRINT,
      `${file} was made for the model with fingerprint ${fit.fingerprint}, not for ${model.dir} (${model.fingerprint})`,
    );
  if (fit.skipped?.some((l) => l >= numLayers))
    throw new HopscotchError(ErrorCodes.SKIP, `${file}: "skipped" must be a list of layer indices in [0, ${numLayers})`);
  return fit;
}

/**
 * The skip list of a rescale that starts from the theta in `file`: the file's own list
 * unless `skip` is given; a given list must keep every layer the file skipped (and every
 * layer whose b_att is 0), else HOPSCOTCH_ERR_SKIP names the layers it would revive.
 */
export function skipForTheta(file: string, t: FitFile, skip: number[] | undefined): number[] {
  const zero = Array.from(t.theta.bAtt.keys()).filter((l) => t.theta.bAtt[l] === 0);
  const required = [...new Set([...(t.skipped ?? []), ...zero])].sort((a, b) => a - b);
  if (skip === undefined) {
    if (t.skipped === undefined && zero.length === 0) throw argumentError(`${file} records no skip list: give --skip`);
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

// ---------------------------------------------------------------------------------------
// Output

export function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** Writes lines of a human-readable result to stdout. */
export function printLines(lines: readonly string[]): void {
  process.stdout.write(lines.join('\n') + '\n');
}

/**
 * Prints a command's result the one way: with `json`, `value` as one JSON object on one
 * stdout line; otherwise the human-readable lines `describe` returns.
 */
export function printResult<T extends object>(json: boolean | undefined, value: T, describe: (value: T) => readonly string[]): void {
  if (json) printJson(value);
  else printLines(describe(value));
}

/** Writes `value` as pretty JSON to `file`, atomically. */
export async function saveJson(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');
}

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

/** A loss or score with a fixed number of decimals (`-` when absent). */
export function formatLoss(x: number | undefined, digits = 4): string {
  return x === undefined || Number.isNaN(x) ? '-' : x.toFixed(digits);
}

export function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - 60 * m)} s`;
}

/**
 * A plain-text table: the first row is the header, columns are padded to their widest
 * cell; columns listed in `right` are right-aligned (numbers).
 */
export function table(rows: readonly (readonly string[])[], right: readonly number[] = []): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  const line = (row: readonly string[]) =>
    row
      .map((cell, i) => (right.includes(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  const [head, ...body] = rows;
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)];
}

const SPARKS = '▁▂▃▄▅▆▇█';

/** One block character per value, scaled between the smallest and largest value. */
export function sparkline(values: readonly number[]): string {
  if (values.length === 0) return '';
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return values
    .map((v) => SPARKS[hi === lo ? 0 : Math.min(SPARKS.length - 1, Math.floor(((v - lo) / (hi - lo)) * SPARKS.length))])
    .join('');
}

/** Lowest score of every step: the loss-per-block-removed curve. */
export function stepBest(trace: readonly TraceEntry[]): TraceEntry[] {
  const best = new Map<number, TraceEntry>();
  for (const e of trace) {
    if (e.droppedAt !== undefined) continue; // dropped early by halving: scored over fewer steps
    const b = best.get(e.step);
    if (!b || e.score < b.score || (e.score === b.score && e.candidate < b.candidate)) best.set(e.step, e);
  }
  return [...best.values()].sort((x, y) => x.step - y.step);
}

export function describeTheta(theta: Theta, skipped: readonly number[]): string[] {
  const rows = [['layer', 'b_att', 's_att', 'b_mlp', 's_mlp', '']];
  for (let l = 0; l < theta.bAtt.length; l++)
    rows.push([
      String(l),
      theta.bAtt[l].toFixed(4),
      theta.sAtt[l].toFixed(4),
      theta.bMlp[l].toFixed(4),
      theta.sMlp[l].toFixed(4),
      skipped.includes(l) ? 'skipped' : '',
    ]);
  return ['theta', ...table(rows, [0, 1, 2, 3, 4])];
}

/** Human-readable summary of a selection. */
export function describeSelection(sel: Selection): string[] {
  const lines = [`strategy     ${sel.strategy}`, `skipped      ${sel.skipped.join(', ') || '(none)'}`, `stopped by   ${sel.stoppedBy}`, ''];
  const steps = [...new Set(sel.trace.map((e) => e.step))].sort((a, b) => a - b);
  const layers = [...new Set(sel.trace.map((e) => e.candidate))].sort((a, b) => a - b);
  if (steps.length > 0) {
    lines.push('scores (lower = skip first; * = chosen)');
    const rows = [['step', ...layers.map((l) => `layer ${l}`)]];
    for (const s of steps) {
      const chosen = new Set(steps.length === 1 ? sel.skipped : [sel.skipped[s - 1]]);
      rows.push([
        String(s),
        ...layers.map((l) => {
          const e = sel.trace.find((x) => x.step === s && x.candidate === l);
          return e ? `${formatLoss(e.score)}${chosen.has(l) ? '*' : e.droppedAt !== undefined ? '~' : ' '}` : '-';
        }),
      ]);
    }
    lines.push(...table(rows, layers.map((_, i) => i + 1)), '');
  }
  if (sel.losses.length > 0) {
    const best = stepBest(sel.trace);
    if (steps.length > 1)
      lines.push(`curve        ${sparkline(best.map((e) => e.score))}  (best score per step ${best.map((e) => formatLoss(e.score, 2)).join(' ')})`);
    lines.push(`rescaled     ${sel.losses.map((l) => `step ${l.step}: ${formatLoss(l.loss)}`).join(', ')}  (training loss)`);
    if (sel.losses.some((l) => l.validationLoss !== undefined))
      lines.push(
        `held-out     ${sel.losses.map((l) => `step ${l.step}: ${formatLoss(l.validationLoss ?? NaN)} (${l.epochs} epochs, ${l.stoppedBy})`).join(', ')}  (${sel.validationSamples} samples)`,
      );
    lines.push('');
  }
  if (sel.probeOptimizerSteps !== undefined && sel.probeOptimizerSteps > 0)
    lines.push(
      `probes       ${sel.probeSteps} steps each${sel.probing?.kind === 'halving' ? ` by successive halving (eta ${sel.probing.eta}, first slice ${sel.probing.minFraction} of the budget; ~ = dropped early, score over its slice)` : ''}; ${sel.probeOptimizerSteps} steps, ${sel.probeTokens} tokens in all`,
      '',
    );
  lines.push(...describeTheta(sel.theta, sel.skipped));
  return lines;
}
