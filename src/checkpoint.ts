/**
 * Durable state of long runs (`selectBlocks`, `rescale`), and atomic file writes.
 *
 * A checkpoint is one JSON file, rewritten atomically (temporary file in the same
 * folder, fsync, rename, fsync of the folder), so the file on disk is always either the
 * previous or the next complete state. It records what the run is (model fingerprint,
 * digest of the data, the options that affect the result) and where it is.
 *
 * Selection checkpoints are written after every probe and every rescale. Probes and
 * rescales always start from a fresh Adam and from batch orders that are a pure
 * function of the seed, and checkpoints are written only between them, so no optimizer
 * or RNG state needs to be stored: resuming re-runs exactly the work that had not been
 * recorded and reaches the same result bit for bit.
 *
 * Rescale checkpoints are written between optimizer steps and hold the position in the
 * run (epoch, batch), theta, the whole Adam state and the losses so far; batch orders
 * are again a pure function of the seed, so the resumed run takes exactly the steps the
 * uninterrupted one would have taken.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ErrorCodes, HopscotchError } from './errors.js';
import type { ThetaJson } from './theta.js';
import type { TrainState } from './train.js';
import type { ProbeOutcome } from './probing.js';

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

/**
 * Removes the temporary files that {@link writeFileAtomic} left beside `file` in
 * processes that no longer run (a writer killed between creating and renaming its
 * temporary file). Files of live processes, this one included, are left alone; failures
 * are ignored, since a stale temporary file never affects the checkpoint itself.
 */
export async function removeStaleTemporaries(file: string): Promise<void> {
  const dir = dirname(file);
  const prefix = `.${basename(file)}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const m = /^(\d+)\.[0-9a-f]{12}\.tmp$/.exec(name.slice(prefix.length));
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid) continue;
    try {
      process.kill(pid, 0);
      continue; // still running
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') continue;
    }
    await rm(join(dir, name), { force: true }).catch(() => {});
  }
}

export const CHECKPOINT_FORMAT = 'hopscotch-selection-checkpoint';
export const CHECKPOINT_VERSION = 2;

/** One candidate's score at one step. */
export interface TraceEntry {
  step: number;
  candidate: number;
  /** The ranking score (lower = skip first). */
  score: number;
  /** Mean training loss over the probe's steps (probing strategies). */
  train?: number;
  /** Held-out loss at the probe's final theta (when there are held-out samples). */
  validation?: number;
  /** Optimizer steps of the probe when successive halving dropped it before the whole budget. */
  droppedAt?: number;
}

/**
 * The ranking of scores, in one place for the selection, successive halving and the
 * figures: lowest score first, ties to the lower layer, and a candidate that successive
 * halving dropped early (scored over fewer steps) after every one that ran the whole budget.
 */
export function byScore(a: Pick<TraceEntry, 'score' | 'candidate' | 'droppedAt'>, b: Pick<TraceEntry, 'score' | 'candidate' | 'droppedAt'>): number {
  return (b.droppedAt ?? Infinity) - (a.droppedAt ?? Infinity) || a.score - b.score || a.candidate - b.candidate;
}

/**
 * The best entry of every step (first by {@link byScore} among the candidates that ran the
 * whole budget), in step order: the loss-per-block-removed curve.
 */
export function bestOfEachStep(trace: readonly TraceEntry[]): TraceEntry[] {
  const best = new Map<number, TraceEntry>();
  for (const e of trace) {
    if (e.droppedAt !== undefined) continue;
    const b = best.get(e.step);
    if (!b || byScore(e, b) < 0) best.set(e.step, e);
  }
  return [...best.values()].sort((x, y) => x.step - y.step);
}

/** The rescale that ended a step. */
export interface StepLoss {
  step: number;
  /** Mean training loss of the rescale's last epoch. */
  loss: number;
  /** Held-out loss of the theta kept (when there are held-out samples). */
  validationLoss?: number;
  /** Epochs the rescale ran, and why it stopped. */
  epochs?: number;
  stoppedBy?: string;
  /** Held-out loss at the start of the rescale and after every epoch. */
  validationCurve?: number[];
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
  /** Probe results already computed in the current step (before its ranking completes). */
  probes: { candidate: number; score: number; train?: number; validation?: number; droppedAt?: number }[];
  /** Outcomes of the probe jobs of the current step, by round (absent or null between steps). */
  rounds?: ProbeOutcome[][] | null;
  /** The rescale in progress (after the step's pick), resumed at batch granularity. */
  rescale: { step: number; stopAfter: 'count' | 'maxLoss' | 'exhausted' | null; state: TrainState | null } | null;
  /** Work done by probes: optimizer steps and training tokens. */
  probeSteps: number;
  probeTokens: number;
  /** First-order scores of every step so far (`shortlist` runs only; null otherwise). */
  firstOrder: TraceEntry[] | null;
  losses: StepLoss[];
  timings: StepTiming[];
  /** Set when the run has finished. */
  stoppedBy: 'count' | 'maxLoss' | 'exhausted' | null;
}

export interface SelectionCheckpoint extends RunIdentity {
  format: typeof CHECKPOINT_FORMAT;
  version: number;
  state: SelectionState;
}

/**
 * What a checkpoint belongs to: the model, the data and the options that determine the
 * result. Every checkpoint format starts with these fields.
 */
export interface RunIdentity {
  fingerprint: string;
  dataDigest: string;
  /** The options that determine the result, in canonical form. */
  options: Record<string, unknown>;
}

/**
 * Reads a checkpoint file and checks its format name, version and identity fields; null
 * when the file does not exist. An unreadable file is HOPSCOTCH_ERR_IO, anything else
 * wrong HOPSCOTCH_ERR_CHECKPOINT. `kind` names the format in messages ("selection").
 */
export async function readCheckpointFile(
  file: string,
  format: string,
  version: number,
  kind: string,
): Promise<(RunIdentity & { format: string; version: number; state: unknown }) | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new HopscotchError(ErrorCodes.IO, `cannot read checkpoint ${file}: ${(err as Error).message}`, { cause: err });
  }
  let ckpt: Record<string, unknown>;
  try {
    ckpt = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new HopscotchError(ErrorCodes.CHECKPOINT, `checkpoint ${file} is not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const bad = (what: string) => new HopscotchError(ErrorCodes.CHECKPOINT, `checkpoint ${file}: ${what}`);
  if (!ckpt || typeof ckpt !== 'object' || ckpt.format !== format) throw bad(`not a ${kind} checkpoint (format must be "${format}")`);
  if (ckpt.version !== version) throw bad(`version ${ckpt.version} is not supported (this library reads version ${version})`);
  if (
    typeof ckpt.fingerprint !== 'string' ||
    typeof ckpt.dataDigest !== 'string' ||
    !ckpt.options ||
    typeof ckpt.options !== 'object' ||
    !ckpt.state ||
    typeof ckpt.state !== 'object'
  )
    throw bad('missing or malformed fields');
  return ckpt as unknown as RunIdentity & { format: string; version: number; state: unknown };
}

/** Reads a selection checkpoint; null when the file does not exist; HOPSCOTCH_ERR_CHECKPOINT when unreadable. */
export async function readCheckpoint(file: string): Promise<SelectionCheckpoint | null> {
  const ckpt = (await readCheckpointFile(file, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, 'selection')) as SelectionCheckpoint | null;
  if (ckpt === null) return null;
  const s = ckpt.state;
  if (
    !Number.isInteger(s.step) ||
    !Array.isArray(s.skipped) ||
    !s.theta ||
    !Array.isArray(s.trace) ||
    !Array.isArray(s.probes) ||
    !Array.isArray(s.losses) ||
    !Array.isArray(s.timings) ||
    !Number.isInteger(s.probeSteps) ||
    !Number.isInteger(s.probeTokens) ||
    !(s.rescale === null || (s.rescale && typeof s.rescale === 'object' && Number.isInteger(s.rescale.step)))
  )
    throw new HopscotchError(ErrorCodes.CHECKPOINT, `checkpoint ${file}: missing or malformed fields`);
  return ckpt;
}

/** Writes a checkpoint atomically (see {@link writeFileAtomic}). */
export async function writeCheckpoint(file: string, ckpt: SelectionCheckpoint | RescaleCheckpoint): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(ckpt) + '\n');
}

/**
 * Throws HOPSCOTCH_ERR_CHECKPOINT unless `ckpt` belongs to this model, these data and
 * these options; the message names the first difference.
 */
export function checkCheckpointMatches(file: string, ckpt: RunIdentity, expected: RunIdentity): void {
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

export const RESCALE_CHECKPOINT_FORMAT = 'hopscotch-rescale-checkpoint';
export const RESCALE_CHECKPOINT_VERSION = 2;

/** Where a `rescale` run stands, between two optimizer steps: the training unit's state. */
export type RescaleState = TrainState;

export interface RescaleCheckpoint extends RunIdentity {
  format: typeof RESCALE_CHECKPOINT_FORMAT;
  version: number;
  state: RescaleState;
}

/**
 * Reads a rescale checkpoint; null when the file does not exist; HOPSCOTCH_ERR_CHECKPOINT
 * when it is not one. Its state is checked against the run by the training unit on resume.
 */
export async function readRescaleCheckpoint(file: string): Promise<RescaleCheckpoint | null> {
  return (await readCheckpointFile(file, RESCALE_CHECKPOINT_FORMAT, RESCALE_CHECKPOINT_VERSION, 'rescale')) as RescaleCheckpoint | null;
}
