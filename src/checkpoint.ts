/**
 * Durable state of a `selectBlocks` run, and atomic file writes.
 *
 * A checkpoint is one JSON file, rewritten atomically (temporary file in the same
 * folder, fsync, rename, fsync of the folder) after every probe and every rescale, so
 * the file on disk is always either the previous or the next complete state. It records
 * what the run is (model fingerprint, digest of the data, the options that affect the
 * result) and where it is (skipped layers, theta, scores of the current step).
 *
 * Probes and rescales always start from a fresh Adam and from batch orders that are a
 * pure function of the seed, and checkpoints are written only between them, so no
 * optimizer or RNG state needs to be stored: resuming re-runs exactly the work that had
 * not been recorded and reaches the same result bit for bit.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ErrorCodes, HopscotchError } from './errors.js';
import type { ThetaJson } from './theta.js';

/**
 * Writes `contents` to `file` atomically: a temporary file in the same folder is
 * written and fsynced, then renamed over `file`, then the folder is fsynced (where the
 * platform allows). Readers see the old or the new file, never a partial one.
 */
export async function writeFileAtomic(file: string, contents: string | Uint8Array): Promise<void> {
  const dir = dirname(file);
  const tmp = join(dir, `.${basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(contents);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw new HopscotchError(ErrorCodes.IO, `cannot write ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const dh = await open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch {
    // Folders cannot be opened or fsynced on some platforms (Windows); the rename stands.
  }
}

export const CHECKPOINT_FORMAT = 'hopscotch-selection-checkpoint';
export const CHECKPOINT_VERSION = 1;

export interface TraceEntry {
  step: number;
  candidate: number;
  score: number;
}

export interface StepLoss {
  step: number;
  loss: number;
}

export interface StepTiming {
  step: number;
  probeMs: number;
  rescaleMs: number;
}

/** Where a selection run stands. */
export interface SelectionState {
  /** The step in progress (1-based): it chooses the `step`-th skipped layer. */
  step: number;
  skipped: number[];
  theta: ThetaJson;
  /** Scores of every completed ranking, all steps. */
  trace: TraceEntry[];
  /** Probe scores already computed in the current step (before its ranking completes). */
  probes: { candidate: number; score: number }[];
  /** First-order scores of every step so far (`shortlist` runs only; null otherwise). */
  firstOrder: TraceEntry[] | null;
  losses: StepLoss[];
  timings: StepTiming[];
  /** Set when the run has finished. */
  stoppedBy: 'count' | 'maxLoss' | 'exhausted' | null;
}

export interface SelectionCheckpoint {
  format: typeof CHECKPOINT_FORMAT;
  version: number;
  fingerprint: string;
  dataDigest: string;
  /** The options that determine the result, in canonical form. */
  options: Record<string, unknown>;
  state: SelectionState;
}

/** Reads a checkpoint; null when the file does not exist; HOPSCOTCH_ERR_CHECKPOINT when unreadable. */
export async function readCheckpoint(file: string): Promise<SelectionCheckpoint | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new HopscotchError(ErrorCodes.IO, `cannot read checkpoint ${file}: ${(err as Error).message}`, { cause: err });
  }
  let ckpt: SelectionCheckpoint;
  try {
    ckpt = JSON.parse(text) as SelectionCheckpoint;
  } catch (err) {
    throw new HopscotchError(ErrorCodes.CHECKPOINT, `checkpoint ${file} is not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const bad = (what: string) => new HopscotchError(ErrorCodes.CHECKPOINT, `checkpoint ${file}: ${what}`);
  if (!ckpt || typeof ckpt !== 'object' || ckpt.format !== CHECKPOINT_FORMAT)
    throw bad(`not a selection checkpoint (format must be "${CHECKPOINT_FORMAT}")`);
  if (ckpt.version !== CHECKPOINT_VERSION)
    throw bad(`version ${ckpt.version} is not supported (this library reads version ${CHECKPOINT_VERSION})`);
  const s = ckpt.state;
  if (
    typeof ckpt.fingerprint !== 'string' ||
    typeof ckpt.dataDigest !== 'string' ||
    !ckpt.options ||
    typeof ckpt.options !== 'object' ||
    !s ||
    typeof s !== 'object' ||
    !Number.isInteger(s.step) ||
    !Array.isArray(s.skipped) ||
    !s.theta ||
    !Array.isArray(s.trace) ||
    !Array.isArray(s.probes) ||
    !Array.isArray(s.losses) ||
    !Array.isArray(s.timings)
  )
    throw bad('missing or malformed fields');
  return ckpt;
}

export async function writeCheckpoint(file: string, ckpt: SelectionCheckpoint): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(ckpt) + '\n');
}

/**
 * Throws HOPSCOTCH_ERR_CHECKPOINT unless `ckpt` belongs to this model, these data and
 * these options; the message names the first difference.
 */
export function checkCheckpointMatches(
  file: string,
  ckpt: SelectionCheckpoint,
  expected: { fingerprint: string; dataDigest: string; options: Record<string, unknown> },
): void {
  const refuse = (what: string) =>
    new HopscotchError(ErrorCodes.CHECKPOINT, `checkpoint ${file} belongs to a different run: ${what}`);
  if (ckpt.fingerprint !== expected.fingerprint)
    throw refuse(`model fingerprint ${ckpt.fingerprint}, this model is ${expected.fingerprint}`);
  if (ckpt.dataDigest !== expected.dataDigest)
    throw refuse(`data digest ${ckpt.dataDigest}, these data are ${expected.dataDigest}`);
  const keys = new Set([...Object.keys(ckpt.options), ...Object.keys(expected.options)]);
  for (const k of [...keys].sort()) {
    const a = JSON.stringify(ckpt.options[k] ?? null);
    const b = JSON.stringify(expected.options[k] ?? null);
    if (a !== b) throw refuse(`option ${k} was ${a}, now ${b}`);
  }
}
