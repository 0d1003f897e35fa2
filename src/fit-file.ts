/**
 * The fit file: the one reader and the one writer of the JSON files that carry theta and
 * a skip list between commands and tools.
 *
 * Written (one shape): a {@link Fit} with theta as number arrays, plus the settings that
 * produced it: `{ fingerprint, skipped, theta: { bAtt, sAtt, bMlp, sMlp }, losses,
 * epochLosses, steps, ..., settings }`. A selection that was not rescaled is written as a
 * fit of zero steps ({@link fitOfSelection}).
 *
 * Read: that shape; a selection (`select --json`: `{ strategy, skipped, theta, trace, ... }`);
 * the older fit files that carry only `{ fingerprint?, skipped, theta, epochLosses,
 * settings? }`; and a bare theta object `{ bAtt, sAtt, bMlp, sMlp }`. Every field is
 * checked by the same rules as the library's arguments (layers.ts).
 */
import { readFileSync } from 'node:fs';

import { type TraceEntry, writeFileAtomic } from './checkpoint.js';
import { ErrorCodes, HopscotchError } from './errors.js';
import { checkSkip, checkTheta } from './layers.js';
import type { Fit } from './rescale.js';
import { type ThetaJson, fromJSON, toJSON } from './theta.js';
import type { Model, Theta } from './types.js';

/** What a fit file holds once read. */
export interface FitFile {
  theta: Theta;
  /** The skip list the file records (fits and selections); absent for a bare theta. */
  skipped?: number[];
  /** The model the file was made for, when recorded. */
  fingerprint?: string;
  /** The settings recorded with the fit ({} when none). */
  settings: Record<string, unknown>;
  /** A selection's scores, when the file has them. */
  trace?: TraceEntry[];
}

/** The JSON form of a fit, as {@link writeFitFile} writes it and `--json` prints it. */
export type FitJson = Omit<Fit, 'theta'> & { theta: ThetaJson; settings: Record<string, unknown> };

/** The one shape of a fit file: `fit` with theta as number arrays, and its settings. */
export function fitToJson(fit: Fit, settings: Record<string, unknown> = {}): FitJson {
  return { ...fit, theta: toJSON(fit.theta), settings };
}

/** A selection that was not rescaled, as a fit of zero steps. */
export function fitOfSelection(sel: { fingerprint?: string; skipped: number[]; theta: Theta }): Fit {
  return {
    ...(sel.fingerprint === undefined ? {} : { fingerprint: sel.fingerprint }),
    skipped: [...sel.skipped],
    theta: sel.theta,
    losses: [],
    epochLosses: [],
    steps: 0,
  };
}

/** Writes `fit` to `file` atomically in the one fit-file shape (pretty-printed JSON). */
export async function writeFitFile(file: string, fit: Fit, settings: Record<string, unknown> = {}): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(fitToJson(fit, settings), null, 2) + '\n');
}

/**
 * Reads theta and its skip list from `file`: a fit, a selection or a bare theta (see the
 * file comment). With `opts.model`, theta must have its layer count, the skip list its
 * layer range, and a recorded fingerprint must be the model's (HOPSCOTCH_ERR_FINGERPRINT);
 * without, the skip list is checked against theta's own length. `opts.requireSkip` refuses
 * a file that records no skip list. Errors: an unreadable file, one that is not a JSON
 * object or lacks a required field, HOPSCOTCH_ERR_ARGUMENT; theta, HOPSCOTCH_ERR_THETA;
 * the skip list, HOPSCOTCH_ERR_SKIP.
 */
export function readFitFile(
  file: string,
  opts: { requireSkip?: boolean; model?: Pick<Model, 'fingerprint' | 'dir'> & { config: { numLayers: number } } } = {},
): FitFile {
  let j: unknown;
  try {
    j = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new HopscotchError(ErrorCodes.ARGUMENT, `cannot read fit file ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (!j || typeof j !== 'object' || Array.isArray(j)) throw new HopscotchError(ErrorCodes.ARGUMENT, `${file}: a fit file is a JSON object`);
  const rec = j as Record<string, unknown>;
  const bare = !('theta' in rec);
  let theta: Theta;
  try {
    theta = fromJSON((bare ? rec : rec.theta) as ThetaJson);
  } catch (err) {
    throw new HopscotchError(ErrorCodes.THETA, `${file}: ${(err as Error).message}`, { cause: err });
  }
  const model = opts.model;
  const numLayers = model?.config.numLayers ?? theta.bAtt.length;
  checkTheta(theta, numLayers, { name: `${file}: theta` });
  const out: FitFile = { theta, settings: {} };
  if (!bare && rec.skipped !== undefined) {
    checkSkip(rec.skipped, numLayers, `${file}: skipped`);
    out.skipped = [...rec.skipped];
  }
  if (opts.requireSkip && out.skipped === undefined)
    throw new HopscotchError(ErrorCodes.ARGUMENT, `${file}: a fit file records "skipped" and "theta"`);
  if (!bare && rec.fingerprint !== undefined) {
    if (typeof rec.fingerprint !== 'string') throw new HopscotchError(ErrorCodes.ARGUMENT, `${file}: "fingerprint" must be a string`);
    if (model && rec.fingerprint !== model.fingerprint)
      throw new HopscotchError(
        ErrorCodes.FINGERPRINT,
        `${file} was made for the model with fingerprint ${rec.fingerprint}, not for ${model.dir} (${model.fingerprint})`,
      );
    out.fingerprint = rec.fingerprint;
  }
  if (!bare && rec.settings && typeof rec.settings === 'object' && !Array.isArray(rec.settings))
    out.settings = rec.settings as Record<string, unknown>;
  if (!bare && Array.isArray(rec.trace) && rec.trace.every(isTraceEntry)) out.trace = rec.trace;
  return out;
}

/** A selection's trace entry: integer step and candidate, a finite score. */
function isTraceEntry(e: unknown): e is TraceEntry {
  const x = e as { step?: unknown; candidate?: unknown; score?: unknown } | null;
  return !!x && Number.isInteger(x.step) && Number.isInteger(x.candidate) && typeof x.score === 'number' && Number.isFinite(x.score);
}
