/**
 * One evaluation of a model and its skipped variants, and the report folder it writes.
 *
 * Variants (paper section 4.4 naming): `base` (all-ones theta, nothing skipped),
 * `NoScale` (the fit's skipped blocks removed, every scale 1) and `rescaled` (the fit's
 * skip list and learned theta, "Ours"). Each requested task runs on each variant it
 * applies to: `loss` (held-out loss and perplexity), `text` (plain-text perplexity),
 * `gsm8k`, `mmd` (hidden-state shift per layer against base), `svd` (largest singular
 * values of the checkpoint) and `speed` (generation tokens/s with 0..k blocks skipped).
 * A selection or fit passed as `trace` adds its figures: probe loss per candidate per
 * step and loss per block removed with the elbow (selection), or the rescale training
 * loss (fit). The report folder holds report.json (everything), report.md (a short
 * summary with tables and figures) and one SVG per figure.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import type { TraceEntry } from '../checkpoint.js';
import { writeFileAtomic } from '../checkpoint.js';
import { ErrorCodes, HopscotchError, check, isPositiveInteger } from '../errors.js';
import { elbowIndex } from '../plot/elbow.js';
import { mmdChart, probeLossChart, removalCurve, removalCurveChart, rescaleLossChart, spectralHeatmap, speedChart } from '../plot/figures.js';
import { ones } from '../theta.js';
import type { Model, Sample, Theta } from '../types.js';
import { type BenchOptions, type BenchRow, benchmark } from './bench.js';
import { type Gsm8kResult, evaluateGsm8k } from './gsm8k.js';
import { type LayerShift, type ModelVariant, layerShift } from './mmd.js';
import { type HeldOutLoss, type TextPerplexity, heldOutLoss, readText, textPerplexity } from './perplexity.js';
import { type SpectralNorms, spectralNorms } from './spectral.js';

/** The measurements `hopscotch eval --tasks` can run, in report order. */
export const EVAL_TASKS = ['loss', 'text', 'gsm8k', 'mmd', 'svd', 'speed'] as const;
export type EvalTask = (typeof EVAL_TASKS)[number];

export interface FitLike {
  skipped: readonly number[];
  theta: Theta;
  /** A selection trace, for the loss-per-block-removed figures. */
  trace?: readonly TraceEntry[];
}

/**
 * A selection or a fit whose history is drawn: a selection's probe scores and skip order
 * (`select --json`, {@link Selection}), or a fit's training losses (`rescale --json`, {@link Fit}).
 */
export interface TraceSource {
  kind: 'selection' | 'fit';
  /** The file it was read from, shown in the report. */
  file?: string;
  /** Selection: every probe score of every step. */
  trace?: readonly TraceEntry[];
  /** Selection: the skipped layers in the order chosen. */
  order?: readonly number[];
  strategy?: string;
  /** Fit: training loss of every optimizer step. */
  stepLosses?: readonly number[];
  /** Fit: mean training loss of each epoch. */
  epochLosses?: readonly number[];
}

/** Where the variants and data came from, recorded in the report. */
export interface ReportInputs {
  /** The adapter file or folder (variants from its skip list and theta). */
  adapter?: string;
  /** Tool version and selection / rescale settings stored in the adapter. */
  adapterSettings?: { toolVersion: string; settings: Record<string, unknown> };
  /** The fit or selection JSON the variants came from. */
  fit?: string;
  /** The held-out dataset file. */
  data?: string;
  /** The text file of the `text` task (absent: the bundled WikiText-2 test split). */
  text?: string;
  /** The selection or fit JSON drawn by the trace figures. */
  trace?: string;
}

/** base, and with a fit: NoScale and rescaled. */
export function variantsFor(model: Model, fit?: FitLike): ModelVariant[] {
  const out: ModelVariant[] = [{ name: 'base' }];
  if (!fit || fit.skipped.length === 0) return out;
  const noScale = ones(model.config.numLayers);
  for (const l of fit.skipped) noScale.bAtt[l] = 0;
  const rescaled: Theta = {
    bAtt: Float32Array.from(fit.theta.bAtt),
    sAtt: Float32Array.from(fit.theta.sAtt),
    bMlp: Float32Array.from(fit.theta.bMlp),
    sMlp: Float32Array.from(fit.theta.sMlp),
  };
  for (const l of fit.skipped) rescaled.bAtt[l] = 0;
  out.push({ name: 'NoScale', theta: noScale, skip: [...fit.skipped] });
  out.push({ name: 'rescaled', theta: rescaled, skip: [...fit.skipped] });
  return out;
}

export interface EvaluateOptions {
  fit?: FitLike;
  /** Held-out recovery-set samples: loss and perplexity per variant. */
  heldOut?: readonly Sample[];
  /** Plain-text perplexity: the text (default the bundled WikiText-2 test split) and windows. */
  text?: { text?: string; windowLength?: number; maxWindows?: number };
  /** GSM8K per variant (lm-eval gsm8k rules) on the first `limit` test questions (default all). */
  gsm8k?: { limit?: number; nShot?: number; maxNewTokens?: number; chatTemplate?: boolean };
  /** MMD per layer between base and each other variant, on these samples. */
  mmd?: { samples: readonly Sample[]; maxTokens?: number };
  /** Largest singular values of the block matrices. */
  svd?: { tolerance?: number };
  /**
   * Generation speed with 0, 1, ..., k of the fit's blocks skipped (k = all of them; the
   * rescaled theta is used; NoScale runs at the same speed). Batch sizes and lengths as
   * in {@link benchmark}.
   */
  speed?: Pick<BenchOptions, 'batchSizes' | 'promptTokens' | 'newTokens' | 'repeats' | 'seed'>;
  /**
   * A selection or fit to draw. With a selection and `heldOut`, the held-out loss with the
   * first k blocks of its order skipped (NoScale) is measured for every k.
   */
  trace?: TraceSource;
  /** Recorded in the report as given. */
  inputs?: ReportInputs;
  /** Awaited after each task with the report so far (e.g. to write it, so a late failure loses nothing done). */
  onTask?: (report: EvaluationReport, task: EvalTask | 'trace') => Promise<void> | void;
  log?: (message: string) => void;
  signal?: AbortSignal;
}

/**
 * Every setting of `opts` checked against the model before any task runs (context
 * lengths, counts): HOPSCOTCH_ERR_ARGUMENT naming the task and the setting.
 */
export function checkEvaluateOptions(model: Model, opts: EvaluateOptions): void {
  const ctx = model.config.maxPositionEmbeddings;
  if (opts.text) {
    const w = opts.text.windowLength ?? Math.min(1024, ctx);
    check(Number.isInteger(w) && w >= 2, `text: windowLength must be an integer >= 2, got ${w}`);
    check(w <= ctx, `text: windowLength ${w} exceeds the model's context (max_position_embeddings ${ctx})`);
    check(opts.text.maxWindows === undefined || isPositiveInteger(opts.text.maxWindows), `text: maxWindows must be a positive integer, got ${opts.text.maxWindows}`);
  }
  if (opts.gsm8k) {
    const { limit, nShot = 5, maxNewTokens = 256 } = opts.gsm8k;
    check(limit === undefined || isPositiveInteger(limit), `gsm8k: limit must be a positive integer, got ${limit}`);
    check(Number.isInteger(nShot) && nShot >= 0, `gsm8k: nShot must be a non-negative integer, got ${nShot}`);
    check(isPositiveInteger(maxNewTokens), `gsm8k: maxNewTokens must be a positive integer, got ${maxNewTokens}`);
    check(maxNewTokens < ctx, `gsm8k: maxNewTokens ${maxNewTokens} leaves no room for a prompt in the model's context (max_position_embeddings ${ctx})`);
  }
  if (opts.speed) {
    const { promptTokens = 128, newTokens = 32 } = opts.speed;
    check(isPositiveInteger(promptTokens) && isPositiveInteger(newTokens), `speed: promptTokens and newTokens must be positive integers, got ${promptTokens} and ${newTokens}`);
    check(
      promptTokens + newTokens + 1 <= ctx,
      `speed: promptTokens ${promptTokens} + newTokens ${newTokens} + 1 exceeds the model's context (max_position_embeddings ${ctx})`,
    );
  }
  if (opts.mmd) check(opts.mmd.maxTokens === undefined || (Number.isInteger(opts.mmd.maxTokens) && opts.mmd.maxTokens >= 2), `mmd: maxTokens must be an integer >= 2, got ${opts.mmd.maxTokens}`);
  for (const [name, data] of [['held-out', opts.heldOut], ['mmd', opts.mmd?.samples]] as const) {
    const i = (data ?? []).findIndex((x) => x.prompt.length + x.response.length > ctx);
    if (i >= 0)
      throw new HopscotchError(
        ErrorCodes.ARGUMENT,
        `${name} sample ${i} has ${data![i].prompt.length + data![i].response.length} tokens, more than the model's context (max_position_embeddings ${ctx})`,
      );
  }
}

export interface VariantResult {
  name: string;
  skip: number[];
  heldOut?: HeldOutLoss;
  text?: TextPerplexity;
  gsm8k?: Omit<Gsm8kResult, 'items'> & { items: Gsm8kResult['items'] };
}

/** One point of the loss-per-block-removed curve. */
export interface RemovalPoint {
  k: number;
  /** The layer removed at step k (null at k = 0). */
  layer: number | null;
  /** The best probe score of step k (the selection's data; null at k = 0). */
  probeLoss: number | null;
  /** Held-out loss with the first k layers of the order skipped, every scale 1 (null without held-out data). */
  heldOutNoScale: number | null;
  /** The selection's own validation loss of the best probe of step k (null when it recorded none). */
  probeValidation?: number | null;
}

export interface SelectionReport {
  kind: 'selection' | 'fit';
  file?: string;
  strategy?: string;
  /** Selection: the skip order. */
  order: number[];
  /** Selection: loss per block removed, k = 0..order.length. */
  curve: RemovalPoint[];
  /** Held-out loss of the rescaled variant, at the k whose first k layers are its skip list. */
  rescaledHeldOut?: { k: number; loss: number };
  /**
   * Elbow of the held-out NoScale curve when measured, else of the selection's probe
   * validation curve when it recorded one, else of the probe curve; null: none.
   */
  elbowK: number | null;
  elbowOn: 'held-out' | 'validation' | 'probe' | null;
  /** Fit: training loss per optimizer step and per epoch. */
  stepLosses?: number[];
  epochLosses?: number[];
}

/** MMD² of one variant summarised over layers. */
export interface MmdSummary {
  name: string;
  /** Mean MMD² over the layers at and after the first skipped block. */
  meanFromFirstSkipped: number;
  max: number;
  maxLayer: number;
}

export interface EvaluationReport {
  model: { dir: string; arch: string; numLayers: number; fingerprint: string; device: string };
  /** The tasks that ran. */
  tasks: EvalTask[];
  inputs?: ReportInputs;
  skipped: number[];
  variants: VariantResult[];
  mmd?: LayerShift;
  mmdSummary?: MmdSummary[];
  spectral?: SpectralNorms;
  trace?: TraceEntry[];
  selection?: SelectionReport;
  bench?: BenchRow[];
  createdAt: string;
}

const sameSet = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x) => b.includes(x));

/** Theta with the given layers' attention removed and every scale 1. */
function noScaleTheta(numLayers: number, skip: readonly number[]): Theta {
  const t = ones(numLayers);
  for (const l of skip) t.bAtt[l] = 0;
  return t;
}

/** Per-variant MMD² summary: mean from the first skipped layer on, and the largest value. */
export function summarizeMmd(shift: LayerShift, skipped: readonly number[]): MmdSummary[] {
  const first = skipped.length ? Math.min(...skipped) : 0;
  return shift.variants.map((v) => {
    const from = v.mmd2.filter((_, i) => shift.layers[i] >= first);
    let maxI = 0;
    v.mmd2.forEach((x, i) => {
      if (x > v.mmd2[maxI]) maxI = i;
    });
    return {
      name: v.name,
      meanFromFirstSkipped: from.length ? from.reduce((a, b) => a + b, 0) / from.length : Number.NaN,
      max: v.mmd2[maxI],
      maxLayer: shift.layers[maxI],
    };
  });
}

/** Runs the requested measurements on base, NoScale and rescaled. */
export async function evaluateModel(model: Model, opts: EvaluateOptions): Promise<EvaluationReport> {
  checkEvaluateOptions(model, opts);
  const log = opts.log ?? (() => {});
  const done = async (task: EvalTask | 'trace') => {
    if (opts.onTask) await opts.onTask(report, task);
  };
  const variants = variantsFor(model, opts.fit);
  const tasks = EVAL_TASKS.filter(
    (t) =>
      ({
        loss: opts.heldOut !== undefined,
        text: opts.text !== undefined,
        gsm8k: opts.gsm8k !== undefined,
        mmd: opts.mmd !== undefined && variants.length > 1,
        svd: opts.svd !== undefined,
        speed: opts.speed !== undefined,
      })[t],
  );
  const report: EvaluationReport = {
    model: { dir: model.dir, arch: model.config.arch, numLayers: model.config.numLayers, fingerprint: model.fingerprint, device: model.device },
    tasks,
    ...(opts.inputs ? { inputs: { ...opts.inputs } } : {}),
    skipped: [...(opts.fit?.skipped ?? [])],
    variants: variants.map((v) => ({ name: v.name, skip: [...(v.skip ?? [])] })),
    createdAt: new Date().toISOString(),
  };
  const traceSource: TraceSource | undefined =
    opts.trace ?? (opts.fit?.trace ? { kind: 'selection', trace: opts.fit.trace, order: opts.fit.skipped } : undefined);
  if (traceSource?.trace) report.trace = [...traceSource.trace];
  const text = opts.text ? model.tokenizer.encode(opts.text.text ?? (await readText()), { addSpecialTokens: true }) : undefined;
  for (const [i, v] of variants.entries()) {
    const out = report.variants[i];
    const at = { theta: v.theta, skip: v.skip, signal: opts.signal };
    if (opts.heldOut) {
      log(`held-out loss: ${v.name}`);
      out.heldOut = await heldOutLoss(model, opts.heldOut, at);
    }
    if (text !== undefined && opts.text) {
      log(`text perplexity: ${v.name}`);
      out.text = await textPerplexity(model, text, { ...at, windowLength: opts.text.windowLength, maxWindows: opts.text.maxWindows });
    }
    if (opts.gsm8k) {
      log(`GSM8K (${opts.gsm8k.limit ?? 'all'} questions): ${v.name}`);
      out.gsm8k = await evaluateGsm8k(model, { ...opts.gsm8k, ...at });
    }
    if (opts.heldOut) await done('loss');
    if (text !== undefined) await done('text');
    if (opts.gsm8k) await done('gsm8k');
  }
  if (opts.mmd && variants.length > 1) {
    log('MMD per layer');
    report.mmd = await layerShift(model, opts.mmd.samples, variants.slice(1), { maxTokens: opts.mmd.maxTokens, signal: opts.signal });
    report.mmdSummary = summarizeMmd(report.mmd, report.skipped);
    await done('mmd');
  }
  if (opts.svd) {
    log('largest singular values');
    report.spectral = await spectralNorms(model.dir, { tolerance: opts.svd.tolerance, signal: opts.signal });
    await done('svd');
  }
  if (traceSource) {
    report.selection = await selectionReport(model, traceSource, opts, report);
    await done('trace');
  }
  if (opts.speed) {
    const order = report.selection?.order.length && opts.fit && sameSet(report.selection.order, opts.fit.skipped) ? report.selection.order : report.skipped;
    log(`speed: 0..${order.length} blocks skipped`);
    report.bench = await benchmark(model, {
      ...opts.speed,
      skipCounts: order.map((_, k) => k + 1).concat(0).sort((a, b) => a - b),
      skipOrder: order,
      theta: opts.fit?.theta,
      signal: opts.signal,
    });
  }
  return report;
}

/** The selection curve (held-out NoScale loss per k when there is held-out data) or the fit's losses. */
async function selectionReport(model: Model, src: TraceSource, opts: EvaluateOptions, report: EvaluationReport): Promise<SelectionReport> {
  const out: SelectionReport = {
    kind: src.kind,
    ...(src.file ? { file: src.file } : {}),
    ...(src.strategy ? { strategy: src.strategy } : {}),
    order: [...(src.order ?? [])],
    curve: [],
    elbowK: null,
    elbowOn: null,
  };
  if (src.stepLosses) out.stepLosses = [...src.stepLosses];
  if (src.epochLosses) out.epochLosses = [...src.epochLosses];
  if (!src.trace || src.trace.length === 0) return out;
  const best = removalCurve(src.trace);
  if (out.order.length === 0) out.order = best.map((b) => b.layer);
  const n = model.config.numLayers;
  const steps = Math.max(out.order.length, best.length);
  for (let k = 0; k <= steps; k++) {
    const b = best.find((c) => c.k === k);
    out.curve.push({
      k,
      layer: k === 0 ? null : (out.order[k - 1] ?? b?.layer ?? null),
      probeLoss: b ? b.loss : null,
      heldOutNoScale: null,
      probeValidation: b?.validation ?? null,
    });
  }
  if (opts.heldOut) {
    const base = report.variants[0].heldOut?.loss;
    for (let k = 0; k <= out.order.length; k++) {
      if (k === 0 && base !== undefined) {
        out.curve[0].heldOutNoScale = base;
        continue;
      }
      const skip = out.order.slice(0, k);
      opts.log?.(`held-out loss with ${k} of the selection's blocks skipped`);
      out.curve[k].heldOutNoScale = (await heldOutLoss(model, opts.heldOut, { theta: noScaleTheta(n, skip), skip, signal: opts.signal })).loss;
    }
    const rescaled = report.variants.find((v) => v.name === 'rescaled')?.heldOut;
    if (rescaled && opts.fit)
      for (let k = 1; k <= out.order.length; k++)
        if (sameSet(out.order.slice(0, k), opts.fit.skipped)) out.rescaledHeldOut = { k, loss: rescaled.loss };
  }
  const held = out.curve.filter((c) => c.heldOutNoScale !== null);
  const onHeld = held.length === out.order.length + 1 && held.length > 0;
  const val = out.curve.filter((c) => c.k > 0 && c.probeValidation !== null && c.probeValidation !== undefined);
  const onVal = !onHeld && val.length > 0 && val.length === out.curve.filter((c) => c.k > 0).length;
  const pts = onHeld
    ? held.map((c) => ({ k: c.k, y: c.heldOutNoScale! }))
    : onVal
      ? val.map((c) => ({ k: c.k, y: c.probeValidation! }))
      : out.curve.filter((c) => c.probeLoss !== null).map((c) => ({ k: c.k, y: c.probeLoss! }));
  const i = elbowIndex(
    pts.map((p) => p.y),
    pts.map((p) => p.k),
  );
  out.elbowK = i === null ? null : pts[i].k;
  out.elbowOn = i === null ? null : onHeld ? 'held-out' : onVal ? 'validation' : 'probe';
  return out;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
/** MMD² values: three significant digits in exponent form (they span many orders of magnitude). */
const e3 = (x: number) => (Number.isFinite(x) ? x.toExponential(2) : 'n/a');
const f4 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? 'n/a' : Number(x.toPrecision(5)).toString());

/** Markdown table. */
export function mdTable(head: string[], rows: (string | number)[][]): string {
  const line = (r: (string | number)[]) => `| ${r.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

/** The summary table printed by the CLI and placed at the top of report.md. */
export function summaryRows(report: EvaluationReport): { head: string[]; rows: string[][] } {
  const head = ['variant', 'skipped'];
  const has = (k: keyof VariantResult) => report.variants.some((v) => v[k] !== undefined);
  if (has('heldOut')) head.push('held-out loss', 'held-out ppl');
  if (has('text')) head.push('text ppl');
  if (has('gsm8k')) head.push('GSM8K strict', 'GSM8K flexible');
  const rows = report.variants.map((v) => {
    const r = [v.name, v.skip.length ? v.skip.join(',') : '-'];
    if (has('heldOut')) r.push(f4(v.heldOut?.loss), f4(v.heldOut?.perplexity));
    if (has('text')) r.push(f4(v.text?.perplexity));
    if (has('gsm8k')) r.push(v.gsm8k ? pct(v.gsm8k.strict) : 'n/a', v.gsm8k ? pct(v.gsm8k.flexible) : 'n/a');
    return r;
  });
  return { head, rows };
}

/** Writes report.json, report.md and the figures into `dir` (created if needed). Returns the files written. */
export async function writeReport(dir: string, report: EvaluationReport): Promise<string[]> {
  check(typeof dir === 'string' && dir.length > 0, 'report dir must be a path');
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  const put = async (name: string, contents: string) => {
    await writeFileAtomic(join(dir, name), contents);
    files.push(name);
  };
  const md: string[] = [`# Evaluation of ${report.model.dir}`, ''];
  md.push(`${report.model.arch}, ${report.model.numLayers} layers, fingerprint \`${report.model.fingerprint}\`, device ${report.model.device}, ${report.createdAt}.`, '');
  const inputs = report.inputs ?? {};
  const said: string[] = [];
  if (inputs.adapter) said.push(`- adapter: \`${inputs.adapter}\`${inputs.adapterSettings ? ` (hopscotch-native ${inputs.adapterSettings.toolVersion}, settings \`${JSON.stringify(inputs.adapterSettings.settings)}\`)` : ''}`);
  if (inputs.fit) said.push(`- fit: \`${inputs.fit}\``);
  if (inputs.data) said.push(`- held-out data: \`${inputs.data}\`${report.variants[0]?.heldOut ? ` (${report.variants[0].heldOut.samples} samples, ${report.variants[0].heldOut.tokens} response tokens)` : ''}`);
  if (inputs.trace) said.push(`- trace: \`${inputs.trace}\``);
  if (report.tasks?.length) said.push(`- tasks: ${report.tasks.join(', ')}`);
  if (said.length) md.push(...said, '');
  md.push(report.skipped.length ? `Skipped attention blocks: ${report.skipped.join(', ')}.` : 'No adapter or fit given: base model only.', '');
  const s = summaryRows(report);
  md.push(mdTable(s.head, s.rows), '');
  if (report.variants.some((v) => v.heldOut))
    md.push('Held-out loss: mean over samples of the summed response-token NLL; perplexity: exp(mean NLL per response token).', '');
  const text = report.variants.find((v) => v.text)?.text;
  if (text)
    md.push(
      `Text perplexity (${inputs.text ? `\`${inputs.text}\`` : 'WikiText-2 raw test split'}): ${text.windows} windows of ${text.windowLength} tokens (${text.tokens} predicted tokens), exp(token-mean NLL).`,
      '',
    );
  const g = report.variants.find((v) => v.gsm8k)?.gsm8k;
  if (g)
    md.push(
      `GSM8K: first ${g.count} test questions, ${g.settings.nShot}-shot, greedy, at most ${g.settings.maxNewTokens} new tokens, ` +
        `stop at ${g.settings.stop.map((x) => JSON.stringify(x)).join(', ')}; lm-eval gsm8k v3 rules (docs/evaluation.md).`,
      '',
    );

  const sel = report.selection;
  const trace = report.trace ?? [];
  if (trace.length) {
    await put('probe-loss.svg', probeLossChart(trace, { order: sel?.order }));
    const held = sel?.curve.every((c) => c.heldOutNoScale !== null) ? sel.curve.map((c) => c.heldOutNoScale!) : undefined;
    const curve = removalCurveChart(trace, { heldOut: held, rescaledHeldOut: sel?.rescaledHeldOut });
    await put('loss-per-block.svg', curve.svg);
    const elbowK = sel ? sel.elbowK : curve.elbowK;
    md.push(
      '## Block selection',
      '',
      `${sel?.strategy ? `Strategy ${sel.strategy}; s` : 'S'}kip order ${sel?.order.join(', ') ?? removalCurve(trace).map((c) => c.layer).join(', ')}. ` +
        `Elbow of the loss-per-block-removed curve${sel?.elbowOn ? ` (${sel.elbowOn})` : ''}: k = ${elbowK ?? 'n/a'}.`,
      '',
    );
    if (sel && sel.curve.length)
      md.push(
        mdTable(
          ['k', 'layer removed', 'best probe loss (selection data)', 'held-out loss, NoScale'],
          sel.curve.map((c) => [String(c.k), c.layer === null ? '-' : String(c.layer), c.probeLoss === null ? '-' : f4(c.probeLoss), c.heldOutNoScale === null ? '-' : f4(c.heldOutNoScale)]),
        ),
        '',
      );
    if (sel?.rescaledHeldOut) md.push(`Held-out loss of the rescaled model at k = ${sel.rescaledHeldOut.k}: ${f4(sel.rescaledHeldOut.loss)}.`, '');
    md.push('![probe loss per candidate](probe-loss.svg)', '', '![loss per block removed](loss-per-block.svg)', '');
  }
  if (sel?.stepLosses && sel.stepLosses.length) {
    await put('rescale-loss.svg', rescaleLossChart(sel.stepLosses, sel.epochLosses));
    const e = sel.epochLosses ?? [];
    md.push(
      '## Rescale',
      '',
      `${sel.stepLosses.length} optimizer steps${e.length ? `; epoch mean loss ${e.map((x) => f4(x)).join(' -> ')}` : ''}.`,
      '',
      '![rescale training loss](rescale-loss.svg)',
      '',
    );
  }
  if (report.mmd) {
    const m = report.mmd;
    await put('mmd.svg', mmdChart(m.layers, m.variants.map((v) => ({ name: v.name, values: v.mmd2 })), { skipped: report.skipped }));
    md.push(
      '## Hidden-state shift (MMD²)',
      '',
      `Unbiased MMD² between the base model's and each variant's output hidden state of each block, ${m.tokens} tokens, Gaussian kernel with median-heuristic bandwidth.`,
      '',
      mdTable(
        ['variant', ...m.layers.map((l) => `layer ${l}${report.skipped.includes(l) ? '*' : ''}`)],
        m.variants.map((v) => [v.name, ...v.mmd2.map(e3)]),
      ),
      '',
    );
    if (report.mmdSummary)
      md.push(
        mdTable(
          ['variant', 'mean MMD² from the first skipped layer', 'largest MMD² (layer)'],
          report.mmdSummary.map((x) => [x.name, e3(x.meanFromFirstSkipped), `${e3(x.max)} (${x.maxLayer})`]),
        ),
        '',
      );
    md.push('\\* attention skipped.', '', '![MMD per layer](mmd.svg)', '');
  }
  if (report.spectral) {
    const sp = report.spectral;
    await put('singular-values.svg', spectralHeatmap(sp.layers, sp.matrices, sp.sigma, { skipped: report.skipped }));
    md.push(
      '## Largest singular values',
      '',
      mdTable(
        ['layer', ...sp.matrices],
        sp.layers.map((l, i) => [`${l}${report.skipped.includes(l) ? '*' : ''}`, ...sp.sigma[i].map((x) => (x === null ? 'absent' : f4(x)))]),
      ),
      '',
      '![singular values](singular-values.svg)',
      '',
    );
  }
  if (report.bench && report.bench.length) {
    await put('speed.svg', speedChart(report.bench));
    md.push(
      '## Speed',
      '',
      `Greedy generation on ${report.bench[0].device}, ${report.bench[0].promptTokens} prompt tokens, ${report.bench[0].newTokens} new tokens, median of timed runs; ` +
        'the rescaled theta (NoScale runs at the same speed). Peak RSS is the whole process\'s.',
      '',
      mdTable(
        ['skipped', 'batch', 'prefill tok/s', 'decode tok/s'],
        report.bench.map((r) => [r.skip.length ? r.skip.join(',') : '-', String(r.batch), r.prefillTokensPerSec.toFixed(1), r.decodeTokensPerSec.toFixed(1)]),
      ),
      '',
      '![speed](speed.svg)',
      '',
    );
  }
  await put('report.json', JSON.stringify(report, null, 2) + '\n');
  await put('report.md', md.join('\n'));
  return files;
}
