/**
 * One evaluation of a model and its skipped variants, and the report folder it writes.
 *
 * Variants (paper section 4.4 naming): `base` (all-ones theta, nothing skipped),
 * `NoScale` (the fit's skipped blocks removed, every scale 1) and `rescaled` (the fit's
 * skip list and learned theta, "Ours"). Each requested measurement runs on each variant
 * it applies to; the report folder holds report.json (everything), report.md (tables
 * and figures) and one SVG per figure.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import type { TraceEntry } from '../checkpoint.js';
import { writeFileAtomic } from '../checkpoint.js';
import { check } from '../errors.js';
import { mmdChart, probeLossChart, removalCurveChart, spectralHeatmap, speedChart } from '../plot/figures.js';
import { ones } from '../theta.js';
import type { Model, Sample, Theta } from '../types.js';
import type { BenchRow } from './bench.js';
import { type Gsm8kResult, evaluateGsm8k } from './gsm8k.js';
import { type LayerShift, type ModelVariant, layerShift } from './mmd.js';
import { type HeldOutLoss, type TextPerplexity, heldOutLoss, readText, textPerplexity } from './perplexity.js';
import { type SpectralNorms, spectralNorms } from './spectral.js';

export interface FitLike {
  skipped: readonly number[];
  theta: Theta;
  /** A selection trace, for the loss-per-block-removed figures. */
  trace?: readonly TraceEntry[];
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
  /** GSM8K questions per variant (lm-eval gsm8k rules). */
  gsm8k?: { limit: number; nShot?: number; maxNewTokens?: number; chatTemplate?: boolean };
  /** MMD per layer between base and each other variant, on these samples. */
  mmd?: { samples: readonly Sample[]; maxTokens?: number };
  /** Largest singular values of the block matrices. */
  svd?: { tolerance?: number };
  log?: (message: string) => void;
  signal?: AbortSignal;
}

export interface VariantResult {
  name: string;
  skip: number[];
  heldOut?: HeldOutLoss;
  text?: TextPerplexity;
  gsm8k?: Omit<Gsm8kResult, 'items'> & { items: Gsm8kResult['items'] };
}

export interface EvaluationReport {
  model: { dir: string; arch: string; numLayers: number; fingerprint: string; device: string };
  skipped: number[];
  variants: VariantResult[];
  mmd?: LayerShift;
  spectral?: SpectralNorms;
  trace?: TraceEntry[];
  bench?: BenchRow[];
  createdAt: string;
}

/** Runs the requested measurements on base, NoScale and rescaled. */
export async function evaluateModel(model: Model, opts: EvaluateOptions): Promise<EvaluationReport> {
  const log = opts.log ?? (() => {});
  const variants = variantsFor(model, opts.fit);
  const report: EvaluationReport = {
    model: { dir: model.dir, arch: model.config.arch, numLayers: model.config.numLayers, fingerprint: model.fingerprint, device: model.device },
    skipped: [...(opts.fit?.skipped ?? [])],
    variants: variants.map((v) => ({ name: v.name, skip: [...(v.skip ?? [])] })),
    createdAt: new Date().toISOString(),
  };
  if (opts.fit?.trace) report.trace = [...opts.fit.trace];
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
      log(`GSM8K (${opts.gsm8k.limit} questions): ${v.name}`);
      out.gsm8k = await evaluateGsm8k(model, { ...opts.gsm8k, ...at });
    }
  }
  if (opts.mmd && variants.length > 1) {
    log('MMD per layer');
    report.mmd = await layerShift(model, opts.mmd.samples, variants.slice(1), { maxTokens: opts.mmd.maxTokens, signal: opts.signal });
  }
  if (opts.svd) {
    log('largest singular values');
    report.spectral = spectralNorms(model.dir, { tolerance: opts.svd.tolerance, signal: opts.signal });
  }
  return report;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
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
  md.push(
    `${report.model.arch}, ${report.model.numLayers} layers, fingerprint \`${report.model.fingerprint}\`, device ${report.model.device}.`,
    report.skipped.length ? `Skipped attention blocks: ${report.skipped.join(', ')}.` : 'No fit given: base model only.',
    '',
  );
  const s = summaryRows(report);
  md.push(mdTable(s.head, s.rows), '');
  const text = report.variants.find((v) => v.text)?.text;
  if (text)
    md.push(
      `Text perplexity: ${text.windows} windows of ${text.windowLength} tokens (${text.tokens} predicted tokens), exp(token-mean NLL).`,
      '',
    );
  const g = report.variants.find((v) => v.gsm8k)?.gsm8k;
  if (g)
    md.push(
      `GSM8K: first ${g.count} test questions, ${g.settings.nShot}-shot, greedy, at most ${g.settings.maxNewTokens} new tokens, ` +
        `stop at ${g.settings.stop.map((x) => JSON.stringify(x)).join(', ')}; lm-eval gsm8k v3 rules (docs/evaluation.md).`,
      '',
    );

  if (report.trace && report.trace.length) {
    await put('probe-loss.svg', probeLossChart(report.trace));
    const baseLoss = report.variants[0]?.heldOut?.loss;
    const curve = removalCurveChart(report.trace);
    await put('loss-per-block.svg', curve.svg);
    md.push('## Block selection', '', `Elbow of the loss-per-block-removed curve: k = ${curve.elbowK ?? 'n/a'}.`, '');
    if (baseLoss !== undefined) md.push(`Base model held-out loss: ${f4(baseLoss)}.`, '');
    md.push('![probe loss per candidate](probe-loss.svg)', '', '![loss per block removed](loss-per-block.svg)', '');
  }
  if (report.mmd) {
    const m = report.mmd;
    await put('mmd.svg', mmdChart(m.layers, m.variants.map((v) => ({ name: v.name, values: v.mmd2 }))));
    md.push(
      '## Hidden-state shift (MMD²)',
      '',
      `Unbiased MMD² between the base model's and each variant's output hidden state of each block, ${m.tokens} tokens, Gaussian kernel with median-heuristic bandwidth.`,
      '',
      mdTable(
        ['variant', ...m.layers.map((l) => `layer ${l}`)],
        m.variants.map((v) => [v.name, ...v.mmd2.map((x) => f4(x))]),
      ),
      '',
      '![MMD per layer](mmd.svg)',
      '',
    );
  }
  if (report.spectral) {
    const sp = report.spectral;
    await put('singular-values.svg', spectralHeatmap(sp.layers, sp.matrices, sp.sigma));
    md.push(
      '## Largest singular values',
      '',
      mdTable(
        ['layer', ...sp.matrices],
        sp.layers.map((l, i) => [String(l), ...sp.sigma[i].map((x) => (x === null ? 'absent' : f4(x)))]),
      ),
      '',
      '![singular values](singular-values.svg)',
      '',
    );
  }
  if (report.bench && report.bench.length) {
    await put('speed.svg', speedChart(report.bench));
    md.push('## Speed', '', '![speed](speed.svg)', '');
  }
  await put('report.json', JSON.stringify(report, null, 2) + '\n');
  await put('report.md', md.join('\n'));
  return files;
}
