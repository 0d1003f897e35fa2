/**
 * `hopscotch export`: writes a fit (the JSON that `hopscotch select --json` /
 * `hopscotch rescale --json` print: { skipped, theta: { bAtt, sAtt, bMlp, sMlp } }) as an
 * adapter (`scales`), a folded checkpoint of the same architecture (`hf`), a DeciLM
 * checkpoint without the skipped attention weights (`decilm`), or a GGUF file for
 * llama.cpp / node-llama-cpp whose skipped layers have no attention (`gguf`).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';

import { ErrorCodes, HopscotchError } from '../errors.js';
import { EXPORT_FORMATS, exportModel, type ExportFormat } from '../export.js';
import { GGUF_TENSOR_TYPES, type GgufTensorTypeName } from '../gguf.js';
import { load } from '../model.js';
import { fromJSON, type ThetaJson } from '../theta.js';
import { formatCount, log, printJson } from './output.js';

interface ExportCliOptions {
  model: string;
  fit: string;
  format: string;
  out: string;
  force?: boolean;
  json?: boolean;
  device?: string;
  maxShardBytes?: string;
  ggufType?: string;
  tokenizerPre?: string;
}

/** Reads a fit JSON file: { skipped: number[], theta: { bAtt, sAtt, bMlp, sMlp }, fingerprint?, settings? }. */
export function readFitFile(path: string): {
  skipped: number[];
  theta: ReturnType<typeof fromJSON>;
  fingerprint?: string;
  settings: Record<string, unknown>;
} {
  let j: { skipped?: unknown; theta?: unknown; settings?: unknown; fingerprint?: unknown };
  try {
    j = JSON.parse(readFileSync(path, 'utf8')) as typeof j;
  } catch (err) {
    throw new HopscotchError(ErrorCodes.ARGUMENT, `cannot read fit file ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (!j || typeof j !== 'object') throw new HopscotchError(ErrorCodes.ARGUMENT, `${path}: a fit file is a JSON object`);
  if (!Array.isArray(j.skipped) || j.skipped.some((x) => !Number.isInteger(x)))
    throw new HopscotchError(ErrorCodes.ARGUMENT, `${path}: "skipped" must be an array of layer indices`);
  const theta = fromJSON(j.theta as ThetaJson);
  const settings = j.settings && typeof j.settings === 'object' ? (j.settings as Record<string, unknown>) : {};
  if (j.fingerprint !== undefined && typeof j.fingerprint !== 'string')
    throw new HopscotchError(ErrorCodes.ARGUMENT, `${path}: "fingerprint" must be a string`);
  return { skipped: j.skipped as number[], theta, settings, ...(j.fingerprint === undefined ? {} : { fingerprint: j.fingerprint as string }) };
}

export function registerExport(program: Command): void {
  program
    .command('export')
    .description(
      'write a fit as an adapter (scales), a folded checkpoint (hf), a DeciLM checkpoint without the skipped attention (decilm), ' +
        'or a GGUF file for llama.cpp / node-llama-cpp without the skipped attention (gguf)',
    )
    .requiredOption('--model <dir>', 'base model folder')
    .requiredOption('--fit <file>', 'fit JSON: { skipped, theta: { bAtt, sAtt, bMlp, sMlp } } as select/rescale --json print')
    .requiredOption('--format <format>', `one of ${EXPORT_FORMATS.join(', ')}`)
    .requiredOption('--out <path>', 'output folder, or .gguf file for --format gguf (must not exist unless --force)')
    .option('--force', 'replace an existing output folder')
    .option('--device <device>', 'device for the load-back check: cpu, cuda or auto', 'auto')
    .option('--max-shard-bytes <n>', 'largest safetensors shard in bytes (default 5e9)')
    .option('--gguf-type <type>', `gguf: type of the 2-D weights, one of ${GGUF_TENSOR_TYPES.join(', ')} (default: the checkpoint's)`)
    .option('--tokenizer-pre <name>', "gguf: llama.cpp's pre-tokenizer name for a byte-level BPE tokenizer the export does not recognise")
    .option('--json', 'print the result as one JSON object')
    .action(async (opts: ExportCliOptions) => {
      if (opts.ggufType !== undefined && !(GGUF_TENSOR_TYPES as readonly string[]).includes(opts.ggufType))
        throw new HopscotchError(ErrorCodes.ARGUMENT, `--gguf-type must be one of ${GGUF_TENSOR_TYPES.join(', ')}, got '${opts.ggufType}'`);
      if (!(EXPORT_FORMATS as readonly string[]).includes(opts.format))
        throw new HopscotchError(ErrorCodes.ARGUMENT, `--format must be one of ${EXPORT_FORMATS.join(', ')}, got '${opts.format}'`);
      if (!['cpu', 'cuda', 'auto'].includes(opts.device ?? 'auto'))
        throw new HopscotchError(ErrorCodes.ARGUMENT, `--device must be cpu, cuda or auto, got '${opts.device}'`);
      const maxShardBytes = opts.maxShardBytes === undefined ? undefined : Number(opts.maxShardBytes);
      const fit = readFitFile(opts.fit);
      const model = await load(opts.model, { device: opts.device as 'cpu' | 'cuda' | 'auto', log });
      try {
        const r = await exportModel(model, fit, {
          out: opts.out,
          format: opts.format as ExportFormat,
          force: opts.force ?? false,
          maxShardBytes,
          settings: fit.settings,
          ggufType: opts.ggufType as GgufTensorTypeName | undefined,
          tokenizerPre: opts.tokenizerPre,
          log,
        });
        if (opts.json) {
          printJson(r);
          return;
        }
        const lines = [`out          ${r.out}`, `format       ${r.format}`, `files        ${r.files.join(', ')}`, `bytes        ${r.bytes}`];
        if (r.parameters !== undefined)
          lines.push(`parameters   ${formatCount(r.parameters)} (base ${formatCount(r.baseParameters ?? 0)})`);
        if (r.gguf)
          lines.push(
            `gguf         ${r.gguf.architecture}, ${r.gguf.tensorType}` +
              (r.gguf.attentionFree.length ? `, no attention in layers ${r.gguf.attentionFree.join(', ')}` : '') +
              (r.gguf.f16Fallback.length ? `, ${r.gguf.f16Fallback.length} tensors F16 (rows not a multiple of 32)` : ''),
            `tokenizer    ${r.gguf.tokenizer.model}${r.gguf.tokenizer.pre ? ` (${r.gguf.tokenizer.pre})` : ''}, ${r.gguf.tokenizer.tokens} tokens`,
          );
        if (r.maxAbsLogitDiff !== undefined)
          lines.push(`check        max |logit diff| ${r.maxAbsLogitDiff.toExponential(3)} (allowed ${r.tolerance?.toExponential(3)})`);
        process.stdout.write(lines.join('\n') + '\n');
      } finally {
        model.dispose();
      }
    });
}
