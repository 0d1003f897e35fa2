/**
 * `hopscotch eval`: measures a model and, with `--adapter` (a `scales` export) or `--fit`
 * (a fit or selection JSON), its NoScale and rescaled variants. `--tasks` picks the
 * measurements: held-out loss and perplexity (`loss`, on `--data`), WikiText-2 perplexity
 * (`text`), GSM8K with lm-evaluation-harness's rules (`gsm8k`), hidden-state shift per
 * layer (`mmd`), the largest singular values of the block matrices (`svd`) and generation
 * speed (`speed`). `--trace` draws a selection's probe losses and loss-per-block curve
 * with its elbow, or a fit's training loss. Prints a table (or `--json`: one object) and,
 * with `--out DIR`, writes report.json, report.md and the SVG figures.
 *
 * The older per-task flags (`--text`, `--gsm8k N`, `--mmd`, `--svd`, `--report DIR`) still
 * work: each adds its task to `--tasks`.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import type { Command } from 'commander';

import { loadAdapter, readAdapter } from '../adapter.js';
import type { TraceEntry } from '../checkpoint.js';
import { loadDataset } from '../dataset.js';
import { ErrorCodes, HopscotchError } from '../errors.js';
import { readText } from '../eval/perplexity.js';
import {
  EVAL_TASKS,
  type EvalTask,
  type EvaluationReport,
  type FitLike,
  type ReportInputs,
  type TraceSource,
  evaluateModel,
  mdTable,
  summaryRows,
  writeReport,
} from '../eval/report.js';
import { load } from '../model.js';
import type { Model, Sample } from '../types.js';
import { readFitFile } from './cmd-export.js';
import { log, printJson } from './output.js';

interface EvalCliOptions {
  model: string;
  adapter?: string;
  fit?: string;
  tasks?: string;
  out?: string;
  report?: string;
  trace?: string;
  data?: string;
  gsm8k?: string;
  gsm8kLimit?: string;
  nShot: string;
  maxNewTokens: string;
  chatTemplate?: boolean;
  text?: boolean | string;
  windowLength?: string;
  textWindows: string;
  mmd?: boolean;
  mmdTokens: string;
  svd?: boolean;
  speedBatchSizes: string;
  speedPromptTokens: string;
  speedNewTokens: string;
  speedRepeats: string;
  json?: boolean;
  device: string;
  threads?: string;
}

function int(value: string, name: string, min: number): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < min)
    throw new HopscotchError(ErrorCodes.ARGUMENT, `${name} must be an integer >= ${min}, got '${value}'`);
  return n;
}

function intList(value: string, name: string, min: number): number[] {
  return value.split(',').map((x) => int(x, name, min));
}

/** "loss,mmd" -> the tasks, in report order; unknown names are an argument error. */
export function parseTasks(value: string): EvalTask[] {
  const names = value.split(',').map((t) => t.trim()).filter(Boolean);
  for (const t of names)
    if (!(EVAL_TASKS as readonly string[]).includes(t))
      throw new HopscotchError(ErrorCodes.ARGUMENT, `--tasks: unknown task '${t}' (known: ${EVAL_TASKS.join(', ')})`);
  if (names.length === 0) throw new HopscotchError(ErrorCodes.ARGUMENT, `--tasks must list at least one of ${EVAL_TASKS.join(', ')}`);
  return EVAL_TASKS.filter((t) => names.includes(t));
}

function readJson(path: string, what: string): Record<string, unknown> {
  let j: unknown;
  try {
    j = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new HopscotchError(ErrorCodes.ARGUMENT, `cannot read ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (!j || typeof j !== 'object' || Array.isArray(j)) throw new HopscotchError(ErrorCodes.ARGUMENT, `${path}: ${what} must be a JSON object`);
  return j as Record<string, unknown>;
}

const isTraceEntry = (e: unknown): e is TraceEntry => {
  const x = e as { step?: unknown; candidate?: unknown; score?: unknown } | null;
  return !!x && Number.isInteger(x.step) && Number.isInteger(x.candidate) && typeof x.score === 'number' && Number.isFinite(x.score);
};

const numberArray = (v: unknown): v is number[] => Array.isArray(v) && v.every((x) => typeof x === 'number' && Number.isFinite(x));

/**
 * A selection (`select --json`: { strategy, skipped, trace, ... }) or a fit
 * (`rescale --json`: { skipped, losses, epochLosses, ... }) read for its figures.
 */
export function readTraceFile(path: string, numLayers: number): TraceSource {
  const j = readJson(path, 'trace file');
  if (Array.isArray(j.trace)) {
    const bad = j.trace.findIndex((e) => !isTraceEntry(e) || e.candidate < 0 || e.candidate >= numLayers);
    if (bad >= 0)
      throw new HopscotchError(
        ErrorCodes.ARGUMENT,
        `${path}: trace[${bad}] must be { step, candidate, score } with candidate in [0, ${numLayers}), got ${JSON.stringify(j.trace[bad])}`,
      );
    const order = Array.isArray(j.skipped) && j.skipped.every((l) => Number.isInteger(l) && l >= 0 && l < numLayers) ? (j.skipped as number[]) : undefined;
    return {
      kind: 'selection',
      file: path,
      trace: j.trace as TraceEntry[],
      ...(order ? { order } : {}),
      ...(typeof j.strategy === 'string' ? { strategy: j.strategy } : {}),
    };
  }
  if (numberArray(j.losses) || numberArray(j.epochLosses))
    return {
      kind: 'fit',
      file: path,
      stepLosses: numberArray(j.losses) ? j.losses : [],
      epochLosses: numberArray(j.epochLosses) ? j.epochLosses : [],
      ...(Array.isArray(j.skipped) ? { order: (j.skipped as number[]).filter((l) => Number.isInteger(l)) } : {}),
    };
  throw new HopscotchError(
    ErrorCodes.ARGUMENT,
    `${path}: neither a selection (no "trace" array, as select --json prints) nor a fit (no "losses" array, as rescale --json prints)`,
  );
}

/** The selection trace in a fit file, when it has one ({ trace: [{ step, candidate, score }] }). */
function traceInFit(path: string): TraceEntry[] | undefined {
  const j = readJson(path, 'fit file');
  return Array.isArray(j.trace) && j.trace.every(isTraceEntry) ? (j.trace as TraceEntry[]) : undefined;
}

/** Token ids of a few GSM8K test answers: held-out text when no --data is given for MMD. */
function gsm8kSamples(model: Model, count: number): Sample[] {
  const lines = readFileSync(new URL('../../data/gsm8k/test.jsonl', import.meta.url), 'utf8').split('\n').filter(Boolean);
  return lines.slice(-count).map((l) => {
    const d = JSON.parse(l) as { question: string; answer: string };
    return {
      prompt: model.tokenizer.encode(`Question: ${d.question}\nAnswer:`),
      response: model.tokenizer.encode(` ${d.answer}`, { addSpecialTokens: false }),
    };
  });
}

export function printReport(report: EvaluationReport): void {
  const s = summaryRows(report);
  const lines = [mdTable(s.head, s.rows)];
  if (report.mmd) {
    const m = report.mmd;
    lines.push('', `MMD² vs base (${m.tokens} tokens)`);
    lines.push(mdTable(['variant', ...m.layers.map(String)], m.variants.map((v) => [v.name, ...v.mmd2.map((x) => x.toExponential(2))])));
  }
  if (report.spectral) {
    const sp = report.spectral;
    lines.push('', 'largest singular values');
    lines.push(mdTable(['layer', ...sp.matrices], sp.layers.map((l, i) => [String(l), ...sp.sigma[i].map((x) => (x === null ? '-' : x.toFixed(3)))])));
  }
  const sel = report.selection;
  if (sel && sel.curve.length) {
    lines.push('', `loss per block removed (elbow${sel.elbowOn ? `, ${sel.elbowOn}` : ''}: k = ${sel.elbowK ?? 'n/a'})`);
    lines.push(
      mdTable(
        ['k', 'layer', 'probe loss', 'probe validation', 'held-out NoScale'],
        sel.curve.map((c) => [
          String(c.k),
          c.layer === null ? '-' : String(c.layer),
          c.probeLoss?.toFixed(4) ?? '-',
          c.probeValidation?.toFixed(4) ?? '-',
          c.heldOutNoScale?.toFixed(4) ?? '-',
        ]),
      ),
    );
  }
  if (report.bench) {
    lines.push('', 'speed (tokens/s)');
    lines.push(
      mdTable(
        ['skipped', 'batch', 'prefill', 'decode'],
        report.bench.map((r) => [String(r.skipped), String(r.batch), r.prefillTokensPerSec.toFixed(1), r.decodeTokensPerSec.toFixed(1)]),
      ),
    );
  }
  process.stdout.write(lines.join('\n') + '\n');
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('evaluate base / NoScale / rescaled: held-out loss, WikiText-2 perplexity, GSM8K (lm-eval rules), MMD per layer, singular values, speed; report folder with SVG figures')
    .requiredOption('--model <dir>', 'model folder')
    .option('--adapter <file>', "a 'scales' export (adapter.safetensors or its folder): NoScale = its skip list with theta ones, rescaled = its theta")
    .option('--fit <file>', 'instead of --adapter: fit or selection JSON ({ skipped, theta }) as rescale/select --json print')
    .option('--tasks <list>', `comma-separated tasks: ${EVAL_TASKS.join(', ')}`)
    .option('--out <dir>', 'report folder: report.json, report.md and the SVG figures')
    .option('--report <dir>', 'same as --out')
    .option('--data <file>', 'held-out dataset JSONL (not used for selection or rescale): the loss task, and the MMD tokens')
    .option('--trace <file>', 'selection or fit JSON to plot: probe loss per candidate per step and loss per block removed with the elbow (selection), or training loss (fit)')
    .option('--text [file]', 'text task on this file (default: the bundled WikiText-2 test split)')
    .option('--window-length <n>', 'tokens per perplexity window (default min(1024, max_position_embeddings))')
    .option('--text-windows <n>', 'perplexity windows to evaluate', '40')
    .option('--gsm8k-limit <n>', 'gsm8k task: the first n test questions (default all 1319)')
    .option('--gsm8k <n>', 'gsm8k task on the first n test questions (same as --tasks gsm8k --gsm8k-limit n)')
    .option('--n-shot <n>', 'GSM8K few-shot examples', '5')
    .option('--max-new-tokens <n>', 'GSM8K generation limit (lm-eval max_gen_toks)', '256')
    .option('--chat-template', "GSM8K prompts through the model's chat template (few-shot examples as turns)")
    .option('--mmd', 'same as adding mmd to --tasks')
    .option('--mmd-tokens <n>', 'tokens sampled for MMD', '512')
    .option('--svd', 'same as adding svd to --tasks')
    .option('--speed-batch-sizes <list>', 'speed task: batch sizes', '1,8')
    .option('--speed-prompt-tokens <n>', 'speed task: prompt length', '128')
    .option('--speed-new-tokens <n>', 'speed task: decoded tokens', '32')
    .option('--speed-repeats <n>', 'speed task: timed runs per configuration (median)', '3')
    .option('--device <device>', 'cpu, cuda or auto', 'auto')
    .option('--threads <n>', 'CPU threads')
    .option('--json', 'print the report as one JSON object')
    .action(async (opts: EvalCliOptions) => {
      if (!['cpu', 'cuda', 'auto'].includes(opts.device))
        throw new HopscotchError(ErrorCodes.ARGUMENT, `--device must be cpu, cuda or auto, got '${opts.device}'`);
      if (opts.adapter && opts.fit) throw new HopscotchError(ErrorCodes.ARGUMENT, '--adapter and --fit both give the variants: pass one');
      if (opts.out && opts.report && opts.out !== opts.report)
        throw new HopscotchError(ErrorCodes.ARGUMENT, '--out and --report name different folders: pass one');
      const outDir = opts.out ?? opts.report;

      const tasks = new Set<EvalTask>(opts.tasks !== undefined ? parseTasks(opts.tasks) : []);
      if (opts.tasks === undefined && opts.data) tasks.add('loss');
      if (opts.text) tasks.add('text');
      if (opts.gsm8k !== undefined) tasks.add('gsm8k');
      if (opts.mmd) tasks.add('mmd');
      if (opts.svd) tasks.add('svd');
      if (tasks.size === 0 && !opts.trace)
        throw new HopscotchError(ErrorCodes.ARGUMENT, `nothing to measure: pass --tasks (${EVAL_TASKS.join(', ')}) or --trace FILE`);
      if (tasks.has('loss') && !opts.data) throw new HopscotchError(ErrorCodes.ARGUMENT, 'the loss task needs the held-out samples: pass --data FILE');
      if (tasks.has('mmd') && !opts.adapter && !opts.fit)
        throw new HopscotchError(ErrorCodes.ARGUMENT, 'the mmd task compares variants with the base model: pass --adapter or --fit');
      if (opts.gsm8k !== undefined && opts.gsm8kLimit !== undefined && opts.gsm8k !== opts.gsm8kLimit)
        throw new HopscotchError(ErrorCodes.ARGUMENT, '--gsm8k and --gsm8k-limit give different question counts: pass one');
      const gsm8kLimit = opts.gsm8k ?? opts.gsm8kLimit;
      const numbers = {
        windowLength: opts.windowLength === undefined ? undefined : int(opts.windowLength, '--window-length', 2),
        textWindows: int(opts.textWindows, '--text-windows', 1),
        gsm8kLimit: gsm8kLimit === undefined ? undefined : int(gsm8kLimit, opts.gsm8k !== undefined ? '--gsm8k' : '--gsm8k-limit', 1),
        nShot: int(opts.nShot, '--n-shot', 0),
        maxNewTokens: int(opts.maxNewTokens, '--max-new-tokens', 1),
        mmdTokens: int(opts.mmdTokens, '--mmd-tokens', 2),
        speed: {
          batchSizes: intList(opts.speedBatchSizes, '--speed-batch-sizes', 1),
          promptTokens: int(opts.speedPromptTokens, '--speed-prompt-tokens', 1),
          newTokens: int(opts.speedNewTokens, '--speed-new-tokens', 1),
          repeats: int(opts.speedRepeats, '--speed-repeats', 1),
        },
        threads: opts.threads === undefined ? undefined : int(opts.threads, '--threads', 0),
      };
      // The report folder must be a folder we can write: checked before any work.
      if (outDir !== undefined) {
        if (existsSync(outDir) && !statSync(outDir).isDirectory())
          throw new HopscotchError(ErrorCodes.EXISTS, `--out ${outDir} exists and is not a folder`);
        mkdirSync(outDir, { recursive: true });
      }
      // Read the variant source before loading the model, so a bad file fails fast.
      const fitFile = opts.fit ? { ...readFitFile(opts.fit), trace: traceInFit(opts.fit) } : undefined;
      if (opts.adapter) readAdapter(opts.adapter);

      const model = await load(opts.model, { device: opts.device as 'cpu' | 'cuda' | 'auto', threads: numbers.threads, log });
      try {
        const inputs: ReportInputs = {};
        let fit: FitLike | undefined = fitFile;
        if (opts.adapter) {
          const a = loadAdapter(model, opts.adapter);
          fit = { skipped: a.skipped, theta: a.theta };
          inputs.adapter = opts.adapter;
          inputs.adapterSettings = { toolVersion: a.metadata.toolVersion, settings: a.metadata.settings };
        }
        if (opts.fit) inputs.fit = opts.fit;
        if (opts.data) inputs.data = opts.data;
        if (typeof opts.text === 'string') inputs.text = opts.text;
        if (opts.trace) inputs.trace = opts.trace;
        const trace = opts.trace ? readTraceFile(opts.trace, model.config.numLayers) : undefined;
        const heldOut = opts.data ? await loadDataset(opts.data, { vocabSize: model.config.vocabSize }) : undefined;
        const controller = new AbortController();
        const onSigint = () => controller.abort();
        process.once('SIGINT', onSigint);
        try {
          const report = await evaluateModel(model, {
            fit,
            trace,
            inputs,
            heldOut: tasks.has('loss') || trace?.kind === 'selection' ? heldOut : undefined,
            text: tasks.has('text')
              ? {
                  text: typeof opts.text === 'string' ? await readText(opts.text) : undefined,
                  windowLength: numbers.windowLength,
                  maxWindows: numbers.textWindows,
                }
              : undefined,
            gsm8k: tasks.has('gsm8k')
              ? {
                  limit: numbers.gsm8kLimit,
                  nShot: numbers.nShot,
                  maxNewTokens: numbers.maxNewTokens,
                  chatTemplate: opts.chatTemplate ?? false,
                }
              : undefined,
            mmd: tasks.has('mmd') ? { samples: heldOut ?? gsm8kSamples(model, 16), maxTokens: numbers.mmdTokens } : undefined,
            svd: tasks.has('svd') ? {} : undefined,
            speed: tasks.has('speed') ? numbers.speed : undefined,
            // Each finished task is written at once: a later failure loses nothing done.
            onTask: outDir === undefined ? undefined : async (partial) => void (await writeReport(outDir, partial)),
            log,
            signal: controller.signal,
          });
          if (outDir) {
            const files = await writeReport(outDir, report);
            log(`wrote ${files.join(', ')} to ${outDir}`);
          }
          if (opts.json) printJson(report);
          else printReport(report);
        } finally {
          process.removeListener('SIGINT', onSigint);
        }
      } finally {
        model.dispose();
      }
    });
}
