/**
 * `hopscotch eval`: measures a model and, with `--adapter` (a `scales` export) or `--fit`
 * (a fit or selection JSON), its NoScale and rescaled variants. `--tasks` picks the
 * measurements: held-out loss and perplexity (`loss`, on `--data`), WikiText-2 perplexity
 * (`text`), GSM8K with lm-evaluation-harness's rules (`gsm8k`), hidden-state shift per
 * layer (`mmd`), the largest singular values of the block matrices (`svd`) and generation
 * speed (`speed`). `--trace` draws a selection's probe losses and loss-per-block curve
 * with its elbow, or a fit's training loss. Prints a table (or `--json`: one object) and,
 * with `--out DIR`, writes report.json, report.md and the SVG figures.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { type Command, Option } from 'commander';

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
import type { Model, Sample } from '../types.js';
import {
  type ModelArgs,
  argumentError,
  interruptible,
  intListOption,
  intOption,
  isTraceEntry,
  jsonOption,
  log,
  modelOptions,
  openModel,
  printResult,
  readFitFile,
  readJsonObject,
} from './shared.js';

interface EvalOptions {
  adapter?: string;
  fit?: string;
  tasks: EvalTask[];
  out?: string;
  trace?: string;
  data?: string;
  text?: string;
  windowLength?: number;
  textWindows: number;
  gsm8kLimit?: number;
  nShot: number;
  maxNewTokens: number;
  chatTemplate?: boolean;
  mmdTokens: number;
  speedBatchSizes: number[];
  speedPromptTokens: number;
  speedNewTokens: number;
  speedRepeats: number;
  json?: boolean;
}

/** "loss,mmd" -> the tasks, in report order; unknown names are an argument error. */
function parseTasks(flag: string, value: string): EvalTask[] {
  const names = value.split(',').map((t) => t.trim()).filter(Boolean);
  for (const t of names)
    if (!(EVAL_TASKS as readonly string[]).includes(t)) throw argumentError(`${flag}: unknown task '${t}' (known: ${EVAL_TASKS.join(', ')})`);
  if (names.length === 0) throw argumentError(`${flag} must list at least one of ${EVAL_TASKS.join(', ')}`);
  return EVAL_TASKS.filter((t) => names.includes(t));
}

const numberArray = (v: unknown): v is number[] => Array.isArray(v) && v.every((x) => typeof x === 'number' && Number.isFinite(x));

/**
 * A selection (`select --json`: { strategy, skipped, trace, ... }) or a fit
 * (`rescale --json`: { skipped, losses, epochLosses, ... }) read for its figures.
 */
function readTraceFile(path: string, numLayers: number): TraceSource {
  const j = readJsonObject(path, 'trace file');
  if (Array.isArray(j.trace)) {
    const bad = j.trace.findIndex((e) => !isTraceEntry(e) || e.candidate < 0 || e.candidate >= numLayers);
    if (bad >= 0)
      throw argumentError(
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
  throw argumentError(
    `${path}: neither a selection (no "trace" array, as select --json prints) nor a fit (no "losses" array, as rescale --json prints)`,
  );
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

function describeReport(report: EvaluationReport): string[] {
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
  return lines;
}

async function runEval(m: ModelArgs, o: EvalOptions): Promise<void> {
  const tasks = new Set(o.tasks);
  if (tasks.size === 0 && !o.trace) throw argumentError(`nothing to measure: pass --tasks (${EVAL_TASKS.join(', ')}) or --trace FILE`);
  if (tasks.has('loss') && !o.data) throw argumentError('the loss task needs the held-out samples: pass --data FILE');
  if (tasks.has('mmd') && !o.adapter && !o.fit) throw argumentError('the mmd task compares variants with the base model: pass --adapter or --fit');
  if (o.text !== undefined && !tasks.has('text')) throw argumentError('--text gives the text task its file: add text to --tasks');
  // The report folder must be a folder we can write: checked before any work.
  if (o.out !== undefined) {
    if (existsSync(o.out) && !statSync(o.out).isDirectory())
      throw new HopscotchError(ErrorCodes.EXISTS, `--out ${o.out} exists and is not a folder`);
    mkdirSync(o.out, { recursive: true });
  }
  // Read the variant source before loading the model, so a bad file fails fast.
  const fitFile = o.fit ? readFitFile(o.fit, { requireSkip: true }) : undefined;
  if (o.adapter) readAdapter(o.adapter);

  const model = await openModel(m);
  try {
    const inputs: ReportInputs = {};
    let fit: FitLike | undefined = fitFile && { skipped: fitFile.skipped!, theta: fitFile.theta, ...(fitFile.trace ? { trace: fitFile.trace } : {}) };
    if (o.adapter) {
      const a = loadAdapter(model, o.adapter);
      fit = { skipped: a.skipped, theta: a.theta };
      inputs.adapter = o.adapter;
      inputs.adapterSettings = { toolVersion: a.metadata.toolVersion, settings: a.metadata.settings };
    }
    if (o.fit) inputs.fit = o.fit;
    if (o.data) inputs.data = o.data;
    if (o.text !== undefined) inputs.text = o.text;
    if (o.trace) inputs.trace = o.trace;
    const trace = o.trace ? readTraceFile(o.trace, model.config.numLayers) : undefined;
    const heldOut = o.data ? await loadDataset(o.data, { vocabSize: model.config.vocabSize }) : undefined;
    const outDir = o.out;
    const report = await interruptible(undefined, async (signal) =>
      evaluateModel(model, {
        fit,
        trace,
        inputs,
        heldOut: tasks.has('loss') || trace?.kind === 'selection' ? heldOut : undefined,
        text: tasks.has('text')
          ? { text: o.text === undefined ? undefined : await readText(o.text), windowLength: o.windowLength, maxWindows: o.textWindows }
          : undefined,
        gsm8k: tasks.has('gsm8k') ? { limit: o.gsm8kLimit, nShot: o.nShot, maxNewTokens: o.maxNewTokens, chatTemplate: o.chatTemplate ?? false } : undefined,
        mmd: tasks.has('mmd') ? { samples: heldOut ?? gsm8kSamples(model, 16), maxTokens: o.mmdTokens } : undefined,
        svd: tasks.has('svd') ? {} : undefined,
        speed: tasks.has('speed')
          ? { batchSizes: o.speedBatchSizes, promptTokens: o.speedPromptTokens, newTokens: o.speedNewTokens, repeats: o.speedRepeats }
          : undefined,
        // Each finished task is written at once: a later failure loses nothing done.
        onTask: outDir === undefined ? undefined : async (partial) => void (await writeReport(outDir, partial)),
        log,
        signal,
      }),
    );
    if (outDir) {
      const files = await writeReport(outDir, report);
      log(`wrote ${files.join(', ')} to ${outDir}`);
    }
    printResult(o.json, report, describeReport);
  } finally {
    model.dispose();
  }
}

export function registerEval(program: Command): void {
  const cmd = program
    .command('eval')
    .description('evaluate base / NoScale / rescaled: held-out loss, WikiText-2 perplexity, GSM8K (lm-eval rules), MMD per layer, singular values, speed; report folder with SVG figures');
  const tasks = new Option('--tasks <list>', `comma-separated tasks: ${EVAL_TASKS.join(', ')}`).default([], 'none');
  tasks.argParser((v: string) => parseTasks('--tasks', v));
  modelOptions.addTo(cmd)
    .addOption(new Option('--adapter <file>', "a 'scales' export (adapter.safetensors or its folder): NoScale = its skip list with theta ones, rescaled = its theta").conflicts('fit'))
    .option('--fit <file>', 'instead of --adapter: fit or selection JSON ({ skipped, theta }) as rescale/select --json print')
    .addOption(tasks)
    .option('--out <dir>', 'report folder: report.json, report.md and the SVG figures')
    .option('--data <file>', 'held-out dataset JSONL (not used for selection or rescale): the loss task, and the MMD tokens')
    .option('--trace <file>', 'selection or fit JSON to plot: probe loss per candidate per step and loss per block removed with the elbow (selection), or training loss (fit)')
    .option('--text <file>', 'text task: plain-text file (default: the bundled WikiText-2 test split)')
    .addOption(intOption('--window-length <n>', 'text task: tokens per perplexity window (default min(1024, max_position_embeddings))', { min: 2 }))
    .addOption(intOption('--text-windows <n>', 'text task: perplexity windows to evaluate', { min: 1 }, 40))
    .addOption(intOption('--gsm8k-limit <n>', 'gsm8k task: the first n test questions (default all 1319)', { min: 1 }))
    .addOption(intOption('--n-shot <n>', 'gsm8k task: few-shot examples', { min: 0 }, 5))
    .addOption(intOption('--max-new-tokens <n>', 'gsm8k task: generation limit (lm-eval max_gen_toks)', { min: 1 }, 256))
    .option('--chat-template', "gsm8k task: prompts through the model's chat template (few-shot examples as turns)")
    .addOption(intOption('--mmd-tokens <n>', 'mmd task: tokens sampled', { min: 2 }, 512))
    .addOption(intListOption('--speed-batch-sizes <list>', 'speed task: batch sizes', { min: 1 }, [1, 8]))
    .addOption(intOption('--speed-prompt-tokens <n>', 'speed task: prompt length', { min: 1 }, 128))
    .addOption(intOption('--speed-new-tokens <n>', 'speed task: decoded tokens', { min: 1 }, 32))
    .addOption(intOption('--speed-repeats <n>', 'speed task: timed runs per configuration (median)', { min: 1 }, 3))
    .addOption(jsonOption())
    .action(async (o: EvalOptions) => runEval(modelOptions.pick(o), o));
}
