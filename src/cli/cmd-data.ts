/**
 * `hopscotch data`: builds the recovery set only (the model's own greedy answers to the
 * prompts) and writes it as a dataset file, with `--holdout F` also a seeded, disjoint
 * validation file. Every check that needs no model runs first: the prompts file, the
 * output paths (an existing file is refused without `--force`; a folder, the prompts
 * file itself or a missing parent folder always), so a mistake fails in well under a
 * second. Both files are written atomically; `--force` replaces a dataset file by
 * renaming the new one over it, and never removes anything else.
 */
import { rm, stat } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import type { Command } from 'commander';

import { loadPrompts, recoverySet, saveDataset, splitDataset } from '../dataset.js';
import { ErrorCodes, HopscotchError } from '../errors.js';
import type { Device, Sample } from '../types.js';
import { ProgressReporter } from './progress-bar.js';
import {
  argumentError,
  fractionOption,
  generationOptions,
  interruptible,
  intOption,
  jsonOption,
  modelOptions,
  openModel,
  printResult,
} from './shared.js';

interface DataCommandArgs {
  model: string;
  device: Device | 'auto';
  threads?: number;
  prompts: string;
  out: string;
  /** Share of the samples written to the validation file, in (0, 1). */
  holdout?: number;
  /** Validation file (default: `--out` with `.val` before its extension). */
  valOut?: string;
  seed: number;
  limit?: number;
  maxNewTokens: number;
  stop?: number[];
  genBatchSize: number;
  chatTemplate?: boolean;
  force?: boolean;
  json?: boolean;
}

/** data.jsonl -> data.val.jsonl; data -> data.val.jsonl. */
function validationPath(out: string): string {
  const ext = extname(out);
  const stem = ext === '' ? out : out.slice(0, -ext.length);
  return `${stem}.val${ext === '' ? '.jsonl' : ext}`;
}

async function statOrNull(file: string) {
  try {
    return await stat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new HopscotchError(ErrorCodes.IO, `cannot check ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Refuses an output path before any work: see the module comment. */
async function checkOutput(file: string, flag: string, force: boolean | undefined, prompts: string): Promise<void> {
  if (resolve(file) === resolve(prompts))
    throw argumentError(`${flag} ${file} is the prompts file: write the dataset elsewhere`);
  const parent = await statOrNull(dirname(resolve(file)));
  if (!parent?.isDirectory()) throw new HopscotchError(ErrorCodes.IO, `${flag} ${file}: the folder ${dirname(resolve(file))} does not exist`);
  const st = await statOrNull(file);
  if (st === null) return;
  if (!st.isFile())
    throw new HopscotchError(ErrorCodes.EXISTS, `${flag} ${file} exists and is not a regular file (--force replaces only a dataset file)`);
  if (!force) throw new HopscotchError(ErrorCodes.EXISTS, `${flag} ${file} exists (pass --force to replace it)`);
}

export async function runData(a: DataCommandArgs): Promise<void> {
  // Checks that need no model, before loading it.
  const valOut = a.holdout === undefined ? undefined : (a.valOut ?? validationPath(a.out));
  if (a.valOut !== undefined && a.holdout === undefined)
    throw argumentError('--val-out needs --holdout <fraction>');
  if (valOut !== undefined && resolve(valOut) === resolve(a.out))
    throw argumentError(`the validation file ${valOut} is the same as --out`);
  await checkOutput(a.out, '--out', a.force, a.prompts);
  if (valOut !== undefined) await checkOutput(valOut, '--val-out', a.force, a.prompts);
  const prompts = await loadPrompts(a.prompts, { limit: a.limit });
  if (prompts.length === 0) throw new HopscotchError(ErrorCodes.DATASET, `${a.prompts} holds no prompts`);
  if (a.holdout !== undefined && prompts.length < 2)
    throw new HopscotchError(ErrorCodes.DATASET, `--holdout needs at least 2 prompts, ${a.prompts} has ${prompts.length}`);

  const progress = new ProgressReporter();
  const model = await openModel(a);
  try {
    let truncatedWarning = false;
    const data = await interruptible(progress, (signal) =>
      recoverySet(model, prompts, {
        maxNewTokens: a.maxNewTokens,
        batchSize: a.genBatchSize,
        stop: a.stop,
        chatTemplate: a.chatTemplate,
        signal,
        onProgress: (e) => {
          if (e.type === 'truncated') truncatedWarning = true;
          progress.onProgress(e);
        },
      }),
    );
    if (data.length === 0)
      throw new HopscotchError(ErrorCodes.DATASET, `the model answered none of the ${prompts.length} prompts (every answer was empty)`);
    const stop = a.stop ?? model.tokenizer.stopTokenIds;
    const split =
      a.holdout === undefined ? { train: data, validation: [] as Sample[], validationIndices: [] } : splitDataset(data, { fraction: a.holdout, seed: a.seed });
    const truncated = (set: readonly Sample[]) => set.filter((s) => s.truncated).length;
    const meta = (role: 'train' | 'validation', set: readonly Sample[]) => ({
      source: basename(a.prompts),
      maxNewTokens: a.maxNewTokens,
      stop,
      truncated: truncated(set),
      ...(a.holdout === undefined ? {} : { split: { role, fraction: a.holdout, seed: a.seed, of: data.length } }),
    });
    // Validation first; if the training file then cannot be written, a validation file this
    // run created is removed again, so a failed run leaves no half of a pair behind.
    const valExisted = valOut !== undefined && (await statOrNull(valOut)) !== null;
    if (valOut !== undefined) await saveDataset(valOut, split.validation, { fingerprint: model.fingerprint, force: a.force, meta: meta('validation', split.validation) });
    try {
      await saveDataset(a.out, split.train, { fingerprint: model.fingerprint, force: a.force, meta: meta('train', split.train) });
    } catch (err) {
      if (valOut !== undefined && !valExisted) await rm(valOut, { force: true }).catch(() => {});
      throw err;
    }

    const result = {
      out: a.out,
      samples: split.train.length,
      validation: valOut ?? null,
      validationSamples: split.validation.length,
      prompts: prompts.length,
      truncated: truncated(data),
      stop,
      maxNewTokens: a.maxNewTokens,
      truncatedWarning,
    };
    const lines = [
      `wrote      ${split.train.length} samples to ${a.out}${valOut === undefined ? '' : `, ${split.validation.length} validation samples to ${valOut}`}`,
      `answers    ${data.length - result.truncated} ended with a stop token (${stop.join(',') || 'none'}), ${result.truncated} cut at the token limit`,
    ];
    if (truncatedWarning)
      lines.push(`warning    most answers were cut: pass the model's end-of-answer token with --stop <ids>, or raise --max-new-tokens`);
    printResult(a.json, result, () => lines);
  } finally {
    model.dispose();
  }
}

export function registerData(program: Command): void {
  const cmd = program
    .command('data')
    .description(
      "build the recovery set only: the model's greedy answers to the prompts, written as a dataset file " +
        '(with --holdout, also a disjoint validation file: --out with .val before its extension, e.g. data.val.jsonl)',
    );
  modelOptions.addTo(cmd)
    .requiredOption('--prompts <file>', 'prompts JSONL ({"prompt"} | {"messages"} | {"question"} per line)')
    .requiredOption('--out <file>', 'dataset file to write (must not exist unless --force)')
    .addOption(fractionOption('--holdout <fraction>', 'share of the samples written to a validation file instead, in (0, 1)', { open: true }))
    .option('--val-out <file>', 'validation file (default: --out with .val before its extension)')
    .addOption(intOption('--seed <n>', 'seed of the validation split', {}, 0));
  generationOptions.addTo(cmd)
    .option('--no-chat-template', 'encode prompts as plain text even when the tokenizer has a chat template')
    .option('--force', 'replace existing dataset files (never a folder)')
    .addOption(jsonOption())
    .action(async (o: Omit<DataCommandArgs, 'chatTemplate'> & { chatTemplate: boolean }) =>
      runData({ ...o, chatTemplate: o.chatTemplate === false ? false : undefined }),
    );
}
