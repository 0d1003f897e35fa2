/**
 * `hopscotch bench`: prefill and decode tokens/s and peak resident memory of generation
 * with 0, 1, 2, ... attention blocks skipped, at batch 1 and batched. Each configuration
 * runs in a fresh child process (unless --in-process), so every peak-memory figure is
 * that configuration's own. Writes CSV with --csv, an SVG with --svg, JSON with --json.
 */
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';

import { ErrorCodes, HopscotchError } from '../errors.js';
import { type BenchRow, benchCsv, benchOne, benchPlan } from '../eval/bench.js';
import { inspect, load, resolveDevice } from '../model.js';
import { speedChart } from '../plot/figures.js';
import type { Theta } from '../types.js';
import { readFitFile } from './cmd-export.js';
import { log, printJson } from './output.js';

interface BenchCliOptions {
  model: string;
  skipCounts: string;
  skipOrder?: string;
  fit?: string;
  batchSizes: string;
  promptTokens: string;
  newTokens: string;
  repeats: string;
  csv?: string;
  svg?: string;
  json?: boolean;
  device: string;
  threads?: string;
  inProcess?: boolean;
  one?: string;
}

const list = (s: string, name: string): number[] =>
  s.split(',').map((x) => {
    const n = Number(x.trim());
    if (x.trim() === '' || !Number.isInteger(n)) throw new HopscotchError(ErrorCodes.ARGUMENT, `${name} must be a comma-separated list of integers, got '${s}'`);
    return n;
  });

function table(rows: BenchRow[]): string {
  const head = ['skipped', 'batch', 'prefill tok/s', 'decode tok/s', 'peak RSS MiB'];
  const body = rows.map((r) => [
    String(r.skipped),
    String(r.batch),
    r.prefillTokensPerSec.toFixed(1),
    r.decodeTokensPerSec.toFixed(1),
    (r.peakRssBytes / 2 ** 20).toFixed(1),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  return [head, ...body].map((r) => r.map((c, i) => c.padStart(w[i])).join('  ')).join('\n') + '\n';
}

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('prefill/decode tokens/s and peak memory with 0, 1, 2, ... attention blocks skipped')
    .requiredOption('--model <dir>', 'model folder')
    .option('--skip-counts <list>', 'numbers of skipped blocks', '0,1,2')
    .option('--skip-order <list>', 'layers to skip, in order (default: the --fit skip list, else from the second-to-last layer down)')
    .option('--fit <file>', 'fit JSON: its skip list is the skip order and its theta is used')
    .option('--batch-sizes <list>', 'batch sizes', '1,8')
    .option('--prompt-tokens <n>', 'prompt length', '128')
    .option('--new-tokens <n>', 'decoded tokens', '32')
    .option('--repeats <n>', 'timed runs per configuration (median)', '3')
    .option('--csv <file>', 'write the rows as CSV')
    .option('--svg <file>', 'write the speed chart')
    .option('--device <device>', 'cpu, cuda or auto', 'auto')
    .option('--threads <n>', 'CPU threads')
    .option('--in-process', 'run every configuration in this process (peak memory is then cumulative)')
    .option('--one <skip:batch>', 'internal: run one configuration and print its row as JSON')
    .option('--json', 'print the rows as one JSON array')
    .action(async (opts: BenchCliOptions) => {
      if (!['cpu', 'cuda', 'auto'].includes(opts.device))
        throw new HopscotchError(ErrorCodes.ARGUMENT, `--device must be cpu, cuda or auto, got '${opts.device}'`);
      const fit = opts.fit ? readFitFile(opts.fit) : undefined;
      const skipOrder = opts.skipOrder ? list(opts.skipOrder, '--skip-order') : fit?.skipped;
      const theta: Theta | undefined = fit?.theta;
      const numbers = {
        skipCounts: list(opts.skipCounts, '--skip-counts'),
        batchSizes: list(opts.batchSizes, '--batch-sizes'),
        promptTokens: Number(opts.promptTokens),
        newTokens: Number(opts.newTokens),
        repeats: Number(opts.repeats),
        skipOrder,
      };
      const threads = opts.threads === undefined ? undefined : Number(opts.threads);

      if (opts.one !== undefined) {
        const [skip, batch] = opts.one.split(':').map((s) => (s === '' ? [] : list(s, '--one')));
        const model = await load(opts.model, { device: opts.device as 'cpu' | 'cuda' | 'auto', threads });
        try {
          const plan = benchPlan(model.config.numLayers, { ...numbers, skipOrder: skip, skipCounts: [skip.length], batchSizes: batch });
          printJson(await benchOne(model, { ...plan.configs[0], ...plan, theta }));
        } finally {
          model.dispose();
        }
        return;
      }

      const rows: BenchRow[] = [];
      const config = inspect(opts.model).config;
      const plan = benchPlan(config.numLayers, numbers);
      if (plan.promptTokens + plan.newTokens + 1 > config.maxPositionEmbeddings)
        throw new HopscotchError(
          ErrorCodes.ARGUMENT,
          `--prompt-tokens + --new-tokens + 1 exceeds max_position_embeddings ${config.maxPositionEmbeddings}`,
        );
      const device = resolveDevice(opts.device as 'cpu' | 'cuda' | 'auto');
      if (opts.device === 'auto') log(`hopscotch: using ${device.device} (${device.reason})`);
      const model = opts.inProcess ? await load(opts.model, { device: device.device, threads }) : undefined;
      try {
        for (const c of plan.configs) {
          log(`bench: ${c.skip.length} skipped [${c.skip.join(',')}], batch ${c.batch}`);
          if (model) {
            rows.push(await benchOne(model, { ...c, ...plan, theta }));
            continue;
          }
          const args = [process.argv[1], 'bench', '--model', opts.model, '--device', device.device, '--one', `${c.skip.join(',')}:${c.batch}`];
          args.push('--prompt-tokens', String(plan.promptTokens), '--new-tokens', String(plan.newTokens), '--repeats', String(plan.repeats));
          if (opts.fit) args.push('--fit', opts.fit);
          if (threads !== undefined) args.push('--threads', String(threads));
          const out = execFileSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
          rows.push(JSON.parse(out.trim().split('\n').pop()!) as BenchRow);
        }
      } finally {
        model?.dispose();
      }
      if (opts.csv) await writeFile(opts.csv, benchCsv(rows));
      if (opts.svg) await writeFile(opts.svg, speedChart(rows));
      if (opts.json) printJson(rows);
      else process.stdout.write(table(rows));
    });
}
