/**
 * `hopscotch eval`: measures a model and, with `--fit`, its NoScale and rescaled
 * variants: held-out loss and perplexity (`--data`), WikiText-2 perplexity (`--text`),
 * GSM8K accuracy with lm-evaluation-harness's rules (`--gsm8k N`), hidden-state shift
 * per layer (`--mmd`) and the largest singular values of the block matrices (`--svd`).
 * Prints a table (or `--json`: one object) and, with `--report DIR`, writes report.md,
 * report.json and the SVG figures.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';

import type { TraceEntry } from '../checkpoint.js';
import { loadDataset } from '../dataset.js';
import { ErrorCodes, HopscotchError } from '../errors.js';
import { type EvaluationReport, evaluateModel, mdTable, summaryRows, writeReport } from '../eval/report.js';
import { readText } from '../eval/perplexity.js';
import { load } from '../model.js';
import type { Model, Sample } from '../types.js';
import { readFitFile } from './cmd-export.js';
import { log, printJson } from './output.js';

interface EvalCliOptions {
  model: string;
  fit?: string;
  data?: string;
  gsm8k?: string;
  nShot: string;
  maxNewTokens: string;
  chatTemplate?: boolean;
  text?: boolean | string;
  windowLength?: string;
  textWindows: string;
  mmd?: boolean;
  mmdTokens: string;
  svd?: boolean;
  report?: string;
  json?: boolean;
  device: string;
  threads?: string;
}

function int(value: string, name: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new HopscotchError(ErrorCodes.ARGUMENT, `${name} must be an integer >= ${min}, got '${value}'`);
  return n;
}

/** The selection trace in a fit file, when it has one ({ trace: [{ step, candidate, score }] }). */
function readTrace(path: string): TraceEntry[] | undefined {
  const j = JSON.parse(readFileSync(path, 'utf8')) as { trace?: unknown };
  if (!Array.isArray(j.trace)) return undefined;
  const ok = j.trace.every(
    (e: { step?: unknown; candidate?: unknown; score?: unknown }) =>
      Number.isInteger(e?.step) && Number.isInteger(e?.candidate) && typeof e?.score === 'number',
  );
  return ok ? (j.trace as TraceEntry[]) : undefined;
}

/** Token ids of a few GSM8K test answers: held-out text when no --data is given for MMD. */
function gsm8kSamples(model: Model, count: number): Sample[] {
  const lines = readFileSync(new URL('../../data/gsm8k/test.jsonl', import.meta.url), 'utf8').split('\n').filter(Boolean);
  return lines.slice(-count).map((l) => {
    const d = JSON.parse(l) as { question: string; answer: string };
    return { prompt: model.tokenizer.encode(`Question: ${d.question}\nAnswer:`), response: model.tokenizer.encode(` ${d.answer}`, { addSpecialTokens: false }) };
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
  process.stdout.write(lines.join('\n') + '\n');
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('held-out loss/perplexity, WikiText-2 perplexity, GSM8K (lm-eval rules), MMD per layer and singular values, for base / NoScale / rescaled')
    .requiredOption('--model <dir>', 'model folder')
    .option('--fit <file>', 'fit or selection JSON ({ skipped, theta, trace? }): adds the NoScale and rescaled variants')
    .option('--data <file>', 'held-out recovery-set file (hopscotch dataset JSONL): loss and perplexity')
    .option('--gsm8k <n>', 'GSM8K accuracy on the first n test questions')
    .option('--n-shot <n>', 'GSM8K few-shot examples', '5')
    .option('--max-new-tokens <n>', 'GSM8K generation limit (lm-eval max_gen_toks)', '256')
    .option('--chat-template', "GSM8K prompts through the model's chat template (few-shot examples as turns)")
    .option('--text [file]', 'perplexity of plain text (default: the bundled WikiText-2 test split)')
    .option('--window-length <n>', 'tokens per perplexity window (default min(1024, max_position_embeddings))')
    .option('--text-windows <n>', 'perplexity windows to evaluate', '40')
    .option('--mmd', 'MMD² per layer between base and each variant (needs --fit)')
    .option('--mmd-tokens <n>', 'tokens sampled for MMD', '512')
    .option('--svd', 'largest singular value of every block matrix')
    .option('--report <dir>', 'write report.md, report.json and SVG figures here')
    .option('--device <device>', 'cpu, cuda or auto', 'auto')
    .option('--threads <n>', 'CPU threads')
    .option('--json', 'print the report as one JSON object')
    .action(async (opts: EvalCliOptions) => {
      if (!['cpu', 'cuda', 'auto'].includes(opts.device))
        throw new HopscotchError(ErrorCodes.ARGUMENT, `--device must be cpu, cuda or auto, got '${opts.device}'`);
      if (!opts.data && !opts.gsm8k && !opts.text && !opts.mmd && !opts.svd)
        throw new HopscotchError(ErrorCodes.ARGUMENT, 'nothing to measure: pass --data, --text, --gsm8k N, --mmd or --svd');
      if (opts.mmd && !opts.fit) throw new HopscotchError(ErrorCodes.ARGUMENT, '--mmd compares variants with the base model: it needs --fit');
      const fit = opts.fit ? { ...readFitFile(opts.fit), trace: readTrace(opts.fit) } : undefined;
      const model = await load(opts.model, {
        device: opts.device as 'cpu' | 'cuda' | 'auto',
        threads: opts.threads === undefined ? undefined : int(opts.threads, '--threads', 0),
        log,
      });
      try {
        const heldOut = opts.data ? await loadDataset(opts.data, { vocabSize: model.config.vocabSize }) : undefined;
        const controller = new AbortController();
        const onSigint = () => controller.abort();
        process.once('SIGINT', onSigint);
        try {
          const report = await evaluateModel(model, {
            fit,
            heldOut,
            text: opts.text
              ? {
                  text: typeof opts.text === 'string' ? await readText(opts.text) : undefined,
                  windowLength: opts.windowLength === undefined ? undefined : int(opts.windowLength, '--window-length', 2),
                  maxWindows: int(opts.textWindows, '--text-windows', 1),
                }
              : undefined,
            gsm8k: opts.gsm8k
              ? {
                  limit: int(opts.gsm8k, '--gsm8k', 1),
                  nShot: int(opts.nShot, '--n-shot', 0),
                  maxNewTokens: int(opts.maxNewTokens, '--max-new-tokens', 1),
                  chatTemplate: opts.chatTemplate ?? false,
                }
              : undefined,
            mmd: opts.mmd ? { samples: heldOut ?? gsm8kSamples(model, 16), maxTokens: int(opts.mmdTokens, '--mmd-tokens', 2) } : undefined,
            svd: opts.svd ? {} : undefined,
            log,
            signal: controller.signal,
          });
          if (opts.report) {
            const files = await writeReport(opts.report, report);
            log(`wrote ${files.length} files to ${opts.report}`);
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
