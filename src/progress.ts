/**
 * Progress events of the long-running algorithms (`selectBlocks`, `rescale`,
 * `recoverySet`), a wrapper that keeps a faulty user callback from breaking a run,
 * cancellation helpers, and a simple remaining-time estimator.
 *
 * Events form a union tagged by `type`; switch on it:
 *
 * ```ts
 * onProgress: (e) => { if (e.type === 'probe-end') console.log(e.step, e.candidate, e.score); }
 * ```
 *
 * Steps of `selectBlocks` are numbered from 1: step k chooses the k-th skipped block.
 * Batches and epochs are numbered from 1 within their loop.
 */
import { ErrorCodes, HopscotchError } from './errors.js';

/** A probe of one candidate layer starts (`candidates` = how many are probed this step). */
export interface ProbeStartEvent {
  type: 'probe-start';
  step: number;
  candidate: number;
  candidates: number;
}

/**
 * A round of probe jobs starts: `candidates` jobs train up to `steps` optimizer steps
 * (exhaustive probing: one round; successive halving: one per slice of the budget).
 */
export interface ProbeRoundEvent {
  type: 'probe-round';
  step: number;
  round: number;
  rounds: number;
  candidates: number;
  steps: number;
}

/** One optimizer step was taken. `step` is the selection step (0 for a standalone rescale). */
export interface BatchEvent {
  type: 'batch';
  phase: 'probe' | 'rescale';
  step: number;
  candidate?: number;
  epoch: number;
  batch: number;
  batches: number;
  loss: number;
}

/** A probe finished; `score` is its mean training loss over the epoch. */
export interface ProbeEndEvent {
  type: 'probe-end';
  step: number;
  candidate: number;
  score: number;
}

/** A selection step chose `skipped` (the layer added this step) with `score`. */
export interface StepEndEvent {
  type: 'step-end';
  step: number;
  skipped: number;
  score: number;
}

/** A rescale epoch finished; `loss` is its mean training loss. */
export interface RescaleEpochEvent {
  type: 'rescale-epoch';
  step: number;
  epoch: number;
  epochs: number;
  loss: number;
}

/**
 * Loss on the validation samples: at the start of a rescale (`epoch` 0), after each of
 * its epochs, and at the end of a probe scored on validation.
 */
export interface ValidationEvent {
  type: 'validation';
  loss: number;
  /** Epoch after which it was measured (0 = the starting theta); absent for a probe. */
  epoch?: number;
  /** Selection step (absent for a standalone rescale). */
  step?: number;
  phase?: 'probe' | 'rescale';
  candidate?: number;
}

/** Estimated seconds left in the whole run. */
export interface EtaEvent {
  type: 'eta';
  seconds: number;
}

/**
 * `recoverySet` finished a generation batch. So far: `dropped` counts empty answers,
 * `truncated` answers cut by the token limit or the context; `skipped` counts prompts
 * too long for the model's context (all known before the first batch).
 */
export interface GenerateEvent {
  type: 'generate';
  batch: number;
  batches: number;
  samples: number;
  dropped: number;
  truncated: number;
  skipped: number;
}

/** `recoverySet` finished: what became of the prompts. */
export interface RecoverySetEvent {
  type: 'recovery-set';
  prompts: number;
  samples: number;
  /** Prompts whose answer was empty. */
  dropped: number;
  /** Prompts that leave no room for an answer in the model's context. */
  skipped: number;
  /** Samples whose answer was cut by `maxNewTokens` or the context (no stop token). */
  truncated: number;
  maxNewTokens: number;
  /** The stop ids used. */
  stop: number[];
}

/**
 * Warning from `recoverySet`: more than half the answers were cut by the token limit,
 * not ended by a stop token. The stop ids are probably not the model's end-of-answer
 * tokens (pass `stop`), or `maxNewTokens` is too low.
 */
export interface TruncatedEvent {
  type: 'truncated';
  truncated: number;
  samples: number;
  maxNewTokens: number;
  stop: number[];
}

export type ProgressEvent =
  | ProbeStartEvent
  | ProbeRoundEvent
  | BatchEvent
  | ProbeEndEvent
  | StepEndEvent
  | RescaleEpochEvent
  | ValidationEvent
  | EtaEvent
  | GenerateEvent
  | RecoverySetEvent
  | TruncatedEvent;

export type ProgressCallback = (event: ProgressEvent) => void;

/**
 * Wraps a user callback so that an exception (or a rejected promise) from it is logged
 * once and otherwise ignored: progress reporting never corrupts or stops a run.
 */
export function safeCallback<E>(
  cb: ((event: E) => unknown) | undefined,
  name = 'onProgress',
  log: (message: string) => void = (m) => console.warn(m),
): (event: E) => void {
  if (!cb) return () => {};
  let reported = false;
  const report = (err: unknown) => {
    if (reported) return;
    reported = true;
    const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
    log(`hopscotch: ${name} callback threw; further errors from it are ignored.\n${detail}`);
  };
  return (event: E) => {
    try {
      const r = cb(event);
      if (r && typeof (r as PromiseLike<unknown>).then === 'function') (r as Promise<unknown>).then(undefined, report);
    } catch (err) {
      report(err);
    }
  };
}

/** Throws `signal.reason` (or a HOPSCOTCH_ERR_ABORTED error when there is none) if aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (!signal?.aborted) return;
  throw signal.reason ?? new HopscotchError(ErrorCodes.ABORTED, 'the operation was aborted');
}

/** Remaining-time estimate from the mean duration of the units of work done so far. */
export class EtaEstimator {
  private done = 0;
  private ms = 0;

  /** Records `units` of work that took `ms` milliseconds. */
  record(units: number, ms: number): void {
    this.done += units;
    this.ms += ms;
  }

  /** Seconds for `remainingUnits` at the measured rate, or undefined before any measurement. */
  seconds(remainingUnits: number): number | undefined {
    if (this.done === 0) return undefined;
    return Math.max(0, (remainingUnits * this.ms) / this.done / 1000);
  }
}
