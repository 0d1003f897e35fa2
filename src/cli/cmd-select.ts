/**
 * `hopscotch select`: chooses attention blocks to skip (the Hopscotch loop or another
 * strategy) and prints the selection: skipped layers, theta, and every probe score.
 */
import { selectBlocks, selectionToJSON, type Selection, type SelectOptions } from '../select.js';
import { planSelection } from '../plan.js';
import { checkSelectOptions } from '../select-options.js';
import type { Dataset, Model } from '../types.js';
import type { StrategyName } from '../strategies.js';
import type { TraceEntry } from '../checkpoint.js';
import { type DataArgs, type ModelArgs, interruptible, obtainDataset, obtainValidation, openModel } from './cmd-shared.js';
import { formatLoss, printJson, printLines, saveJson, sparkline, table } from './output.js';
import { ProgressReporter } from './progress-bar.js';

/** The `selectBlocks` options that the command line sets. */
export interface SelectArgs {
  count?: number;
  maxLoss?: number;
  strategy: StrategyName;
  seed: number;
  batchSize: number;
  tokenCap?: number;
  probeLr: number;
  probeSteps?: number;
  probeScore?: 'train' | 'validation';
  rescaleLr: number;
  /** Exact epochs of each rescale; without it each rescale converges on held-out loss. */
  rescaleEpochs?: number;
  rescaleMaxEpochs?: number;
  rescalePatience?: number;
  maxLossOn?: 'score' | 'validation';
  exclude?: number[];
  /** Fraction of the data held out for validation. */
  holdout?: number;
  /** Held-out dataset file. */
  validation?: string;
  probeSubset?: number;
  shortlist?: number;
  checkpoint?: string;
  /** Successive halving instead of exhaustive probing. */
  probing?: 'exhaustive' | 'halving';
  /** Probe jobs in this many worker processes. */
  workers?: number;
}

export interface SelectCommandArgs {
  model: ModelArgs;
  data: DataArgs;
  select: SelectArgs;
  save?: string;
  json: boolean;
  /** Plan directory: write the step's probe jobs there instead of running them (and merge their results). */
  plan?: string;
}

/** `selectBlocks` options from the parsed arguments (progress and signal added by the caller). */
export function selectOptions(a: SelectArgs, validation?: Dataset): SelectOptions {
  const { validation: _file, ...rest } = a;
  return { ...rest, validation };
}

/**
 * Checks the selection arguments against the model before any data are generated, and
 * loads the `--validation` file; returns the `selectBlocks` options.
 */
export async function prepareSelect(model: Model, a: SelectArgs, progress: ProgressReporter): Promise<SelectOptions> {
  checkSelectOptions(model, selectOptions(a));
  const validation = await obtainValidation(model, a.validation, progress);
  return selectOptions(a, validation);
}

/** The selection's settings as recorded next to its result (and in adapter metadata on export). */
export function selectionSettings(a: SelectArgs): Record<string, unknown> {
  const { checkpoint: _checkpoint, workers: _workers, ...rest } = a;
  return Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
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

export function describeTheta(theta: Selection['theta'], skipped: readonly number[]): string[] {
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

export async function runSelect(args: SelectCommandArgs): Promise<void> {
  const progress = new ProgressReporter();
  const model = await openModel(args.model);
  try {
    const opts = await prepareSelect(model, args.select, progress);
    if (args.plan !== undefined) {
      const planDir = args.plan;
      const state = await interruptible(progress, async (signal) => {
        const data = await obtainDataset(model, args.data, progress, signal);
        return planSelection(model, data, planDir, { ...opts, onProgress: progress.onProgress, signal });
      });
      if (state.state === 'planned') {
        if (args.json) printJson({ state: 'planned', jobs: state.jobs, dir: state.dir, plan: state.plan, step: state.step, missing: state.missing });
        else
          printLines([
            `planned      ${state.jobs} probe jobs (step ${state.step}, plan ${state.plan}), ${state.missing.length} without a result`,
            `run each     hopscotch probe --plan ${state.dir} --job I   (I = 0..${state.jobs - 1}; or as a Slurm array / Kubernetes Indexed Job)`,
            `then again   hopscotch select ... --plan ${state.dir}`,
          ]);
        return;
      }
      const json = { ...selectionToJSON(state.selection), settings: selectionSettings(args.select) };
      if (args.save !== undefined) await saveJson(args.save, json);
      if (args.json) printJson({ state: 'done', ...json });
      else printLines(describeSelection(state.selection));
      return;
    }
    const sel = await interruptible(progress, async (signal) => {
      const data = await obtainDataset(model, args.data, progress, signal);
      return selectBlocks(model, data, { ...opts, onProgress: progress.onProgress, signal });
    });
    const json = { ...selectionToJSON(sel), settings: selectionSettings(args.select) };
    if (args.save !== undefined) await saveJson(args.save, json);
    if (args.json) printJson(json);
    else printLines(describeSelection(sel));
  } finally {
    model.dispose();
  }
}
