/**
 * Progress of the long-running commands on stderr. On a terminal, a `cli-progress`
 * bar follows the unit of work in flight (a generation pass, one probe, one rescale)
 * and finished units are printed above it as lines. When stderr is not a terminal
 * (a log file, a pipe, CI), there is no bar: only the compact lines are written.
 */
import cliProgress from 'cli-progress';

import type { ProgressEvent } from '../progress.js';
import { formatLoss, formatSeconds } from './shared.js';

export interface ProgressReporterOptions {
  /** Default process.stderr. */
  stream?: NodeJS.WriteStream;
  /** Draw a bar. Default: whether `stream` is a terminal. */
  bar?: boolean;
}

/** Turns {@link ProgressEvent}s into a bar and lines. Call {@link stop} when the work ends. */
export class ProgressReporter {
  readonly #stream: NodeJS.WriteStream;
  readonly #multi: cliProgress.MultiBar | null;
  #bar: cliProgress.SingleBar | null = null;
  #eta: number | undefined;

  constructor(opts: ProgressReporterOptions = {}) {
    this.#stream = opts.stream ?? process.stderr;
    const bar = opts.bar ?? this.#stream.isTTY === true;
    this.#multi = bar
      ? new cliProgress.MultiBar(
          {
            stream: this.#stream,
            format: '{label} [{bar}] {value}/{total} {unit} | loss {loss} {left}',
            barsize: 24,
            hideCursor: true,
            clearOnComplete: true,
            autopadding: true,
            fps: 10,
          },
          cliProgress.Presets.shades_classic,
        )
      : null;
  }

  /** Prints a line (above the bar when one is drawn). */
  line(text: string): void {
    if (this.#multi) this.#multi.log(`${text}\n`);
    else this.#stream.write(`${text}\n`);
  }

  /** The callback to pass as `onProgress`. */
  readonly onProgress = (e: ProgressEvent): void => {
    switch (e.type) {
      case 'generate':
        this.#track('generate', 'batches', e.batch, e.batches, '-');
        if (!this.#multi || e.batch === e.batches)
          this.line(
            `generate   ${e.batch}/${e.batches} batches, ${e.samples} samples${e.truncated ? ` (${e.truncated} cut by the token limit)` : ''}` +
              `${e.dropped ? `, ${e.dropped} empty dropped` : ''}${e.skipped ? `, ${e.skipped} prompts too long for the context skipped` : ''}`,
          );
        break;
      case 'recovery-set':
        break;
      case 'truncated':
        this.line(
          `warning    ${e.truncated} of ${e.samples} answers were cut at ${e.maxNewTokens} tokens without a stop token ` +
            `(stop ids ${e.stop.join(',') || 'none'}): if the model ends its answers with another token, pass it with --stop <ids>; ` +
            `otherwise raise --max-new-tokens`,
        );
        break;
      case 'probe-round':
        if (e.rounds > 1) this.line(`step ${e.step}     probe round ${e.round}/${e.rounds}: ${e.candidates} candidates up to ${e.steps} steps`);
        break;
      case 'probe-start':
        this.#track(`step ${e.step} probe layer ${e.candidate}`, 'batches', 0, 1, '-');
        break;
      case 'batch': {
        const label =
          e.phase === 'probe' ? `step ${e.step} probe layer ${e.candidate}` : e.step > 0 ? `step ${e.step} rescale` : 'rescale';
        this.#track(`${label} epoch ${e.epoch}`, 'batches', e.batch, e.batches, formatLoss(e.loss));
        break;
      }
      case 'probe-end':
        this.line(`step ${e.step}     probe layer ${e.candidate}: loss ${formatLoss(e.score)}${this.#etaText()}`);
        break;
      case 'step-end':
        this.line(`step ${e.step}     skip layer ${e.skipped} (score ${formatLoss(e.score)})`);
        break;
      case 'rescale-epoch':
        this.line(
          `${e.step > 0 ? `step ${e.step}     ` : ''}rescale epoch ${e.epoch}/${e.epochs}: loss ${formatLoss(e.loss)}${this.#etaText()}`,
        );
        break;
      case 'validation':
        this.line(`validation loss ${formatLoss(e.loss)}`);
        break;
      case 'eta':
        this.#eta = e.seconds;
        break;
    }
  };

  #etaText(): string {
    return this.#eta === undefined ? '' : ` (about ${formatSeconds(this.#eta)} left)`;
  }

  #track(label: string, unit: string, value: number, total: number, loss: string): void {
    if (!this.#multi) return;
    const payload = { label, unit, loss, left: this.#eta === undefined ? '' : `| ${formatSeconds(this.#eta)} left` };
    if (!this.#bar) this.#bar = this.#multi.create(total, value, payload);
    else {
      this.#bar.setTotal(total);
      this.#bar.update(value, payload);
    }
  }

  /** Removes the bar and restores the cursor. Safe to call more than once. */
  stop(): void {
    this.#multi?.stop();
    this.#bar = null;
  }
}
