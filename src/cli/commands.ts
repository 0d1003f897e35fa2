/**
 * Registers every subcommand on the program, with the options they share parsed and
 * validated here once: a bad value is a HOPSCOTCH_ERR_ARGUMENT error naming the flag;
 * a parser error (unknown flag, missing value) is reported with the same code.
 * The subcommands' work lives in `cmd-*.ts` and receives typed arguments.
 */
import { type Command, Option } from 'commander';

import { EXPORT_FORMATS, type ExportFormat } from '../export.js';
import { ErrorCodes, HopscotchError } from '../errors.js';
import { inspectGguf, isGgufFile, summarizeGguf } from '../gguf.js';
import { inspect } from '../model.js';
import { STRATEGIES, type StrategyName } from '../strategies.js';
import { DEFAULT_HOLDOUT, DEFAULT_MAX_EPOCHS, DEFAULT_PATIENCE } from '../rescale.js';
import { DEFAULT_PROBE_STEPS } from '../select-options.js';
import type { Device } from '../types.js';
import { registerBench } from './cmd-bench.js';
import { registerData } from './cmd-data.js';
import { runDemo } from './cmd-demo.js';
import { registerEval } from './cmd-eval.js';
import { registerExport } from './cmd-export.js';
import { runRescale } from './cmd-rescale.js';
import { runRun } from './cmd-run.js';
import { runProbe } from './cmd-probe.js';
import { type SelectArgs, runSelect } from './cmd-select.js';
import type { DataArgs, ModelArgs } from './cmd-shared.js';
import { formatCount, printJson } from './output.js';

// ---------------------------------------------------------------------------------------
// Value parsers

function argumentError(flag: string, expected: string, got: string): HopscotchError {
  return new HopscotchError(ErrorCodes.ARGUMENT, `${flag} must be ${expected}, got '${got}'`);
}

interface IntRange {
  min?: number;
  max?: number;
}

function describeInt({ min, max }: IntRange): string {
  if (min !== undefined && max !== undefined) return `an integer in [${min}, ${max}]`;
  if (min !== undefined) return `an integer >= ${min}`;
  if (max !== undefined) return `an integer <= ${max}`;
  return 'an integer';
}

export function parseIntArg(flag: string, value: string, range: IntRange = {}): number {
  const n = Number(value);
  if (!/^[+-]?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || (range.min !== undefined && n < range.min) || (range.max !== undefined && n > range.max))
    throw argumentError(flag, describeInt(range), value);
  return n;
}

export function parseNumberArg(flag: string, value: string, opts: { positive?: boolean } = {}): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || (opts.positive && !(n > 0)))
    throw argumentError(flag, opts.positive ? 'a positive number' : 'a finite number', value);
  return n;
}

/** "3,7" -> [3, 7]: comma-separated integers >= 0, no repeats. */
export function parseIntListArg(flag: string, value: string): number[] {
  const parts = value.split(',').map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => !/^\d+$/.test(p)))
    throw argumentError(flag, 'a comma-separated list of integers >= 0 (e.g. 3,7)', value);
  const list = parts.map(Number);
  if (new Set(list).size !== list.length) throw argumentError(flag, 'a list without repeats', value);
  return list;
}

function optionFlag(opt: Option): string {
  return opt.long ?? opt.flags;
}

/** An option whose value is an integer in `range`. */
export function intOption(flags: string, description: string, range: IntRange = {}, defaultValue?: number): Option {
  const opt = new Option(flags, description);
  opt.argParser((v: string) => parseIntArg(optionFlag(opt), v, range));
  return defaultValue === undefined ? opt : opt.default(defaultValue);
}

/** An option whose value is a finite (optionally positive) number. */
export function numberOption(flags: string, description: string, opts: { positive?: boolean } = {}, defaultValue?: number): Option {
  const opt = new Option(flags, description);
  opt.argParser((v: string) => parseNumberArg(optionFlag(opt), v, opts));
  return defaultValue === undefined ? opt : opt.default(defaultValue);
}

export function intListOption(flags: string, description: string): Option {
  const opt = new Option(flags, description);
  return opt.argParser((v: string) => parseIntListArg(optionFlag(opt), v));
}

// ---------------------------------------------------------------------------------------
// Shared option groups

/** Commander gives the parsed flags in the same shape as the command arguments. */
type ModelOpts = ModelArgs;

function addModelOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--model <dir>', 'model folder (config.json, safetensors, tokenizer)')
    .addOption(new Option('--device <device>', 'engine device').choices(['cpu', 'cuda', 'auto']).default('auto'))
    .addOption(intOption('--threads <n>', 'CPU threads (default: all cores)', { min: 1 }));
}

function modelArgs(o: ModelOpts): ModelArgs {
  return { model: o.model, device: o.device, threads: o.threads };
}

type DataOpts = DataArgs;

function addDataOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--prompts <file>', 'prompts JSONL ({"prompt"} | {"messages"} | {"question"} per line), answered greedily by the model').conflicts('data'))
    .addOption(new Option('--data <file>', 'recovery set JSONL written by --save-data or saveDataset()'))
    .addOption(intOption('--limit <n>', 'use the first n prompts (or samples)', { min: 1 }))
    .addOption(intOption('--max-new-tokens <n>', 'longest generated answer', { min: 1 }, 256))
    .addOption(intListOption('--stop <ids>', "token ids that end an answer (default: every eos id of the model and its chat template's end-of-turn token)"))
    .addOption(intOption('--gen-batch-size <n>', 'prompts per generation call', { min: 1 }, 8))
    .option('--save-data <file>', 'write the generated recovery set to this file');
}

function dataArgs(o: DataOpts): DataArgs {
  if (o.prompts === undefined && o.data === undefined)
    throw new HopscotchError(ErrorCodes.ARGUMENT, 'give the samples with --prompts <file> or --data <file>');
  if (o.data !== undefined && o.saveData !== undefined)
    throw new HopscotchError(ErrorCodes.ARGUMENT, '--save-data applies to --prompts (with --data the samples are already in a file)');
  return { ...o };
}

type SelectOpts = SelectArgs;

function addTrainingOptions(cmd: Command): Command {
  return cmd
    .addOption(intOption('--seed <n>', 'seed of every shuffle (and of the random strategy)', {}, 0))
    .addOption(intOption('--batch-size <n>', 'samples per optimizer step', { min: 1 }, 32))
    .addOption(intOption('--token-cap <n>', 'most tokens per batch', { min: 1 }));
}

function addSelectOptions(cmd: Command, countFlag: string): Command {
  return addTrainingOptions(
    cmd
      .addOption(intOption(countFlag, 'number of attention blocks to skip', { min: 1 }))
      .addOption(numberOption('--max-loss <x>', 'stop when the best probe loss of a step is above x'))
      .addOption(new Option('--strategy <name>', 'selection strategy').choices(Object.keys(STRATEGIES)).default('iterative-greedy')),
  )
    .addOption(intListOption('--exclude <layers>', 'layers that are never skipped, comma-separated (e.g. 0)'))
    .addOption(numberOption('--probe-lr <x>', 'learning rate of the probes', { positive: true }, 1e-2))
    .addOption(intOption('--probe-steps <n>', `optimizer steps of each probe (default: one epoch or ${DEFAULT_PROBE_STEPS}, whichever is more)`, { min: 1 }))
    .addOption(new Option('--probe-score <how>', 'rank probes by mean training loss (the paper) or by held-out loss').choices(['train', 'validation']))
    .addOption(new Option('--max-loss-on <what>', '--max-loss compares the probe score or its held-out loss').choices(['score', 'validation']))
    .addOption(numberOption('--rescale-lr <x>', 'learning rate of the rescale after each step', { positive: true }, 3e-3))
    .addOption(intOption('--rescale-epochs <n>', 'exact epochs of the rescale after each step (default: until the held-out loss stops improving)', { min: 1 }))
    .addOption(intOption('--rescale-max-epochs <n>', `most epochs of a converging rescale (default ${DEFAULT_MAX_EPOCHS})`, { min: 1 }))
    .addOption(intOption('--rescale-patience <n>', `epochs without a better held-out loss before a rescale stops (default ${DEFAULT_PATIENCE})`, { min: 1 }))
    .addOption(intOption('--probe-subset <n>', 'rank candidates on n samples of the data (rescales use all)', { min: 1 }))
    .addOption(intOption('--shortlist <n>', 'probe only the n candidates with the best first-order score', { min: 1 }))
    .option('--checkpoint <file>', 'save progress here after every probe and rescale; an existing file is resumed')
    .addOption(new Option('--probing <mode>', 'successive halving (default) or every candidate the whole budget (the paper)').choices(['exhaustive', 'halving']))
    .addOption(intOption('--workers <n>', 'run the probe jobs in n worker processes (one GPU each on CUDA)', { min: 1 }));
}

/** Held-out data: a file, or a fraction of the recovery set. */
function addValidationOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--validation <file>', 'held-out dataset (JSONL as written by hopscotch data / --save-data), never trained on').conflicts('holdout'))
    .addOption(
      new Option('--holdout <fraction>', `fraction of the samples held out for validation (default ${DEFAULT_HOLDOUT} when rescales converge)`).argParser((v) => {
        const x = parseNumberArg('--holdout', v);
        if (!(x >= 0 && x < 1)) throw argumentError('--holdout', 'a fraction in [0, 1)', v);
        return x;
      }),
    );
}

function selectArgs(o: SelectOpts & { skip?: number }, count: number | undefined): SelectArgs {
  if (count === undefined && o.maxLoss === undefined)
    throw new HopscotchError(ErrorCodes.ARGUMENT, 'give the number of blocks to skip (or --max-loss)');
  return {
    count,
    maxLoss: o.maxLoss,
    maxLossOn: o.maxLossOn,
    strategy: o.strategy,
    exclude: o.exclude,
    seed: o.seed,
    batchSize: o.batchSize,
    tokenCap: o.tokenCap,
    probeLr: o.probeLr,
    probeSteps: o.probeSteps,
    probeScore: o.probeScore,
    rescaleLr: o.rescaleLr,
    rescaleEpochs: o.rescaleEpochs,
    rescaleMaxEpochs: o.rescaleMaxEpochs,
    rescalePatience: o.rescalePatience,
    holdout: o.holdout,
    validation: o.validation,
    probeSubset: o.probeSubset,
    shortlist: o.shortlist,
    checkpoint: o.checkpoint,
    probing: o.probing,
    workers: o.workers,
  };
}

// ---------------------------------------------------------------------------------------
// Commands

function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('print a model summary (architecture, layers, heads, parameters, dtype) without loading weights; also reads a .gguf file')
    .argument('<dir>', 'model folder (config.json + safetensors), or a GGUF file')
    .option('--json', 'print the summary as one JSON object')
    .action((dir: string, opts: { json?: boolean }) => {
      if (isGgufFile(dir)) {
        const s = summarizeGguf(inspectGguf(dir));
        if (opts.json) {
          printJson({ file: dir, format: 'gguf', ...s });
          return;
        }
        const lines = [
          `file         ${dir}`,
          `format       GGUF v${s.version}, ${s.fileSize} bytes`,
          `architecture ${s.architecture}${s.name ? ` (${s.name})` : ''}`,
          `layers       ${s.layers}`,
          `tensors      ${s.tensors} (${Object.entries(s.types).map(([k, n]) => `${n} ${k}`).join(', ')})`,
          `parameters   ${formatCount(s.parameters)} (${s.parameters})`,
          `tokenizer    ${s.tokenizer ?? 'none'}, ${s.vocabSize} tokens${s.hasChatTemplate ? ', chat template' : ''}`,
        ];
        if (s.attentionFree.length) lines.push(`no attention ${s.attentionFree.join(', ')}`);
        process.stdout.write(lines.join('\n') + '\n');
        return;
      }
      const info = inspect(dir);
      const c = info.config;
      if (opts.json) {
        printJson({ dir, ...info });
        return;
      }
      const lines = [
        `model        ${dir}`,
        `architecture ${c.arch} (${c.modelType})`,
        `layers       ${c.numLayers}`,
        `hidden       ${c.hiddenSize} (intermediate ${c.intermediateSize})`,
        `heads        ${c.numHeads} query, ${c.numKvHeads} key/value, head dim ${c.headDim}`,
        `vocab        ${c.vocabSize}`,
        `parameters   ${formatCount(c.parameters)} (${c.parameters})`,
        `dtype        ${c.dtype}`,
        `rope         ${c.ropeType}, theta ${c.ropeTheta}`,
        `tied head    ${c.tieWordEmbeddings ? 'yes' : 'no'}`,
        `files        ${info.files} safetensors, ${info.tensors} tensors`,
        `fingerprint  ${info.fingerprint}`,
      ];
      if (c.attentionAbsent.length) lines.push(`no attention ${c.attentionAbsent.join(', ')}`);
      process.stdout.write(lines.join('\n') + '\n');
    });
}

function registerSelect(program: Command): void {
  const cmd = program
    .command('select')
    .description('choose attention blocks to skip and learn theta for them (prints skipped layers, theta and every probe score)');
  addValidationOptions(addSelectOptions(addDataOptions(addModelOptions(cmd)), '--count <k>'))
    .option('--save <file>', 'also write the selection JSON to this file')
    .option('--plan <dir>', "write the step's probe jobs to this folder and stop (run them with hopscotch probe); run again to merge their results and go on")
    .option('--json', 'print the selection as one JSON object (the last stdout line)')
    .action(async (o: ModelOpts & DataOpts & SelectOpts & { save?: string; json?: boolean; plan?: string }) => {
      await runSelect({ model: modelArgs(o), data: dataArgs(o), select: selectArgs(o, o.count), save: o.save, json: o.json ?? false, plan: o.plan });
    });
}

function registerProbe(program: Command): void {
  program
    .command('probe')
    .description('run one probe job of a plan written by select --plan (a task of a Slurm array or Kubernetes Indexed Job)')
    .requiredOption('--plan <dir>', 'plan folder written by hopscotch select --plan')
    .addOption(intOption('--job <i>', 'job index (default: SLURM_ARRAY_TASK_ID, else JOB_COMPLETION_INDEX)', { min: 0 }))
    .option('--model <dir>', "model folder (default: the plan's; it must have the plan's fingerprint)")
    .addOption(new Option('--device <device>', 'engine device').choices(['cpu', 'cuda', 'auto']).default('auto'))
    .addOption(intOption('--threads <n>', 'CPU threads (default: all cores)', { min: 1 }))
    .option('--json', 'print the job result as one JSON object (the last stdout line)')
    .action(async (o: { plan: string; job?: number; model?: string; device: Device | 'auto'; threads?: number; json?: boolean }) => {
      await runProbe({ plan: o.plan, job: o.job, model: o.model, device: o.device, threads: o.threads, json: o.json ?? false });
    });
}

function registerRescale(program: Command): void {
  const cmd = program.command('rescale').description('learn theta (4 scalars per layer) for a fixed list of skipped attention blocks');
  addValidationOptions(addTrainingOptions(addDataOptions(addModelOptions(cmd))))
    .addOption(intListOption('--skip <layers>', "skipped attention layers, comma-separated (e.g. 3,7); default: the --theta file's list"))
    .option('--theta <file>', 'start from the theta in this fit or selection JSON (default: all ones); its skip list is used unless --skip is given')
    .addOption(intOption('--epochs <n>', 'exact passes over the data (default: until the held-out loss stops improving)', { min: 1 }))
    .addOption(intOption('--max-epochs <n>', `most epochs of a converging rescale (default ${DEFAULT_MAX_EPOCHS})`, { min: 1 }))
    .addOption(intOption('--patience <n>', `epochs without a better held-out loss before stopping (default ${DEFAULT_PATIENCE})`, { min: 1 }))
    .addOption(numberOption('--lr <x>', 'Adam learning rate', { positive: true }, 3e-3))
    .option('--checkpoint <file>', 'save progress here after every optimizer step; an existing file is resumed')
    .option('--save <file>', 'also write the fit JSON to this file')
    .option('--json', 'print the fit as one JSON object (the last stdout line)')
    .action(
      async (
        o: ModelOpts &
          DataOpts & {
            skip?: number[];
            theta?: string;
            epochs?: number;
            maxEpochs?: number;
            patience?: number;
            holdout?: number;
            validation?: string;
            lr: number;
            seed: number;
            batchSize: number;
            tokenCap?: number;
            checkpoint?: string;
            save?: string;
            json?: boolean;
          },
      ) => {
        await runRescale({
          model: modelArgs(o),
          data: dataArgs(o),
          rescale: {
            skip: o.skip,
            theta: o.theta,
            epochs: o.epochs,
            maxEpochs: o.maxEpochs,
            patience: o.patience,
            holdout: o.holdout,
            validation: o.validation,
            lr: o.lr,
            batchSize: o.batchSize,
            tokenCap: o.tokenCap,
            seed: o.seed,
            checkpoint: o.checkpoint,
          },
          save: o.save,
          json: o.json ?? false,
        });
      },
    );
}

function registerRun(program: Command): void {
  const cmd = program
    .command('run')
    .description('the whole method: recovery set, block selection, final rescale, export');
  addValidationOptions(addSelectOptions(addDataOptions(addModelOptions(cmd)), '--skip <k>'))
    .requiredOption('--out <dir>', 'output folder of the export (must not exist unless --force)')
    .addOption(new Option('--format <format>', 'export format').choices([...EXPORT_FORMATS]).default('hf'))
    .option('--force', 'replace an existing output folder')
    .addOption(intOption('--epochs <n>', 'exact epochs of the final rescale (0: keep the selection theta; default: until the held-out loss stops improving)', { min: 0 }))
    .addOption(intOption('--max-epochs <n>', `most epochs of the converging final rescale (default ${DEFAULT_MAX_EPOCHS})`, { min: 1 }))
    .addOption(intOption('--patience <n>', `epochs without a better held-out loss before the final rescale stops (default ${DEFAULT_PATIENCE})`, { min: 1 }))
    .addOption(numberOption('--lr <x>', 'learning rate of the final rescale', { positive: true }, 3e-3))
    .option('--save-selection <file>', 'also write the selection JSON to this file')
    .option('--save-fit <file>', 'also write the final fit JSON to this file')
    .option('--json', 'print the result as one JSON object (the last stdout line)')
    .action(
      async (
        o: ModelOpts &
          DataOpts &
          SelectOpts & {
            skip?: number;
            out: string;
            format: ExportFormat;
            force?: boolean;
            epochs?: number;
            maxEpochs?: number;
            patience?: number;
            lr: number;
            saveSelection?: string;
            saveFit?: string;
            json?: boolean;
          },
      ) => {
        await runRun({
          model: modelArgs(o),
          data: dataArgs(o),
          select: selectArgs(o, o.skip),
          epochs: o.epochs,
          maxEpochs: o.maxEpochs,
          patience: o.patience,
          lr: o.lr,
          out: o.out,
          format: o.format,
          force: o.force ?? false,
          saveSelection: o.saveSelection,
          saveFit: o.saveFit,
          json: o.json ?? false,
        });
      },
    );
}

function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('the whole method on the bundled TinyStories model: recovery set, selection, rescale, export, held-out losses')
    .option('--out <dir>', 'output folder', './hopscotch-demo')
    .addOption(intOption('--count <k>', 'attention blocks to skip', { min: 1, max: 5 }, 2))
    .addOption(intOption('--limit <n>', 'story openings to use (of 64)', { min: 4, max: 64 }, 64))
    .addOption(intOption('--max-new-tokens <n>', 'longest generated story continuation', { min: 1 }, 96))
    .addOption(new Option('--device <device>', 'engine device').choices(['cpu', 'cuda', 'auto']).default('auto'))
    .addOption(intOption('--threads <n>', 'CPU threads (default: all cores)', { min: 1 }))
    .option('--force', 'replace the files of an earlier demo in --out')
    .option('--json', 'print the result as one JSON object (the last stdout line)')
    .action(
      async (o: { out: string; count: number; limit: number; maxNewTokens: number; device: Device | 'auto'; threads?: number; force?: boolean; json?: boolean }) => {
        await runDemo({ ...o, force: o.force ?? false, json: o.json ?? false });
      },
    );
}

/**
 * Adds the subcommands to `program` and makes its parser errors carry the CLI's error
 * code, so that every failure on stderr reads `hopscotch: HOPSCOTCH_ERR_...: message`.
 */
export function registerCommands(program: Command): void {
  program.configureOutput({
    outputError: (text, write) => write(`hopscotch: ${ErrorCodes.ARGUMENT}: ${text.replace(/^error: /, '')}`),
  });
  registerDemo(program);
  registerRun(program);
  registerSelect(program);
  registerRescale(program);
  registerData(program);
  registerProbe(program);
  registerExport(program);
  registerEval(program);
  registerBench(program);
  registerInspect(program);
}
