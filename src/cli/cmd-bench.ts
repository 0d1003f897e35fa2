/**
 * `hopscotch bench`: prefill and decode tokens/s and peak resident memory of generation
 * with 0, 1, 2, ... attention blocks skipped, at batch 1 and batched. Each configuration
 * runs in a fresh child process (unless --in-process), so every peak-memory figure is
 * that configuration's own. Writes CSV with --csv, an SVG with --svg.
 */
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { type Command, Option } from 'commander';

import { type BenchRow, benchCsv, benchOne, benchPlan } from '../eval/bench.js';
import { inspect, load, resolveDevice } from '../model.js';
import { speedChart } from '../plot/figures.js';
import {
  type ModelArgs,
  argumentError,
  intListOption,
  intOption,
  jsonOption,
  layerListOption,
  log,
  modelOptions,
  openModel,
  parseIntListArg,
  printJson,
  printResult,
  readFitFile,
  table,
} from './shared.js';

interface BenchOptions {
  skipCounts: number[];
  skipOrder?: number[];
  fit?: string;
  batchSizes: number[];
  promptTokens: number;
  newTokens: number;
  repeats: number;
  csv?: string;
  svg?: string;
  inProcess?: boolean;
  one?: { skip: number[]; batch: number };
  json?: boolean;
}

/** `--one 3,1:8`: the skipped layers and the batch size of the one configuration a child process runs. */
function parseOne(flag: string, value: string): { skip: number[]; batch: number } {
  const m = /^([\d,]*):(\d+)$/.exec(value.trim());
  if (!m) throw argumentError(`${flag} must be <layers>:<batch> (e.g. 3,1:8), got '${value}'`);
  return { skip: m[1] === '' ? [] : parseIntListArg(flag, m[1], { min: 0 }), batch: Number(m[2]) };
}

function describeRows(rows: readonly BenchRow[]): string[] {
  return table(
    [
      ['skipped', 'batch', 'prefill tok/s', 'decode tok/s', 'peak RSS MiB'],
      ...rows.map((r) => [
        String(r.skipped),
        String(r.batch),
        r.prefillTokensPerSec.toFixed(1),
        r.decodeTokensPerSec.toFixed(1),
        (r.peakRssBytes / 2 ** 20).toFixed(1),
      ]),
    ],
    [0, 1, 2, 3, 4],
  );
}

async function runBench(m: ModelArgs, o: BenchOptions): Promise<void> {
  const fit = o.fit === undefined ? undefined : readFitFile(o.fit, { requireSkip: true });
  const theta = fit?.theta;
  const numbers = {
    skipCounts: o.skipCounts,
    batchSizes: o.batchSizes,
    promptTokens: o.promptTokens,
    newTokens: o.newTokens,
    repeats: o.repeats,
    skipOrder: o.skipOrder ?? fit?.skipped,
  };

  if (o.one !== undefined) {
    const { skip, batch } = o.one;
    const model = await openModel(m);
    try {
      const plan = benchPlan(model.config.numLayers, { ...numbers, skipOrder: skip, skipCounts: [skip.length], batchSizes: [batch] });
      printJson(await benchOne(model, { ...plan.configs[0], ...plan, theta }));
    } finally {
      model.dispose();
    }
    return;
  }

  const config = inspect(m.model).config;
  const plan = benchPlan(config.numLayers, numbers);
  if (plan.promptTokens + plan.newTokens + 1 > config.maxPositionEmbeddings)
    throw argumentError(`--prompt-tokens + --new-tokens + 1 exceeds max_position_embeddings ${config.maxPositionEmbeddings}`);
  const device = resolveDevice(m.device);
  if (m.device === 'auto') log(`hopscotch: using ${device.device} (${device.reason})`);
  const model = o.inProcess ? await load(m.model, { device: device.device, threads: m.threads }) : undefined;
  const rows: BenchRow[] = [];
  try {
    for (const c of plan.configs) {
      log(`bench: ${c.skip.length} skipped [${c.skip.join(',')}], batch ${c.batch}`);
      if (model) {
        rows.push(await benchOne(model, { ...c, ...plan, theta }));
        continue;
      }
      const args = [process.argv[1], 'bench', '--model', m.model, '--device', device.device, '--one', `${c.skip.join(',')}:${c.batch}`];
      args.push('--prompt-tokens', String(plan.promptTokens), '--new-tokens', String(plan.newTokens), '--repeats', String(plan.repeats));
      if (o.fit) args.push('--fit', o.fit);
      if (m.threads !== undefined) args.push('--threads', String(m.threads));
      const out = execFileSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      rows.push(JSON.parse(out.trim().split('\n').pop()!) as BenchRow);
    }
  } finally {
    model?.dispose();
  }
  if (o.csv) await writeFile(o.csv, benchCsv(rows));
  if (o.svg) await writeFile(o.svg, speedChart(rows));
  printResult(o.json, { rows }, (r) => describeRows(r.rows));
}

export function registerBench(program: Command): void {
  const cmd = program.command('bench').description('prefill/decode tokens/s and peak memory with 0, 1, 2, ... attention blocks skipped');
  const one = new Option('--one <layers:batch>', 'run one configuration and print its row (what each child process runs)').hideHelp();
  one.argParser((v: string) => parseOne('--one', v));
  modelOptions.addTo(cmd)
    .addOption(intListOption('--skip-counts <list>', 'numbers of skipped blocks', { min: 0 }, [0, 1, 2]))
    .addOption(layerListOption('--skip-order <layers>', 'layers to skip, in order (default: the --fit skip list, else from the second-to-last layer down)'))
    .option('--fit <file>', 'fit JSON: its skip list is the skip order and its theta is used')
    .addOption(intListOption('--batch-sizes <list>', 'batch sizes', { min: 1 }, [1, 8]))
    .addOption(intOption('--prompt-tokens <n>', 'prompt length', { min: 1 }, 128))
    .addOption(intOption('--new-tokens <n>', 'decoded tokens', { min: 1 }, 32))
    .addOption(intOption('--repeats <n>', 'timed runs per configuration (median)', { min: 1 }, 3))
    .option('--csv <file>', 'write the rows as CSV')
    .option('--svg <file>', 'write the speed chart')
    .option('--in-process', 'run every configuration in this process (peak memory is then cumulative)')
    .addOption(one)
    .addOption(jsonOption())
    .action(async (o: BenchOptions) => runBench(modelOptions.pick(o), o));
}
