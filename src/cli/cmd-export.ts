/**
 * `hopscotch export`: writes a fit (the JSON that `hopscotch select --json` /
 * `hopscotch rescale --json` print: { skipped, theta: { bAtt, sAtt, bMlp, sMlp } }) as an
 * adapter (`scales`), a folded checkpoint of the same architecture (`hf`), a DeciLM
 * checkpoint without the skipped attention weights (`decilm`), or a GGUF file for
 * llama.cpp / node-llama-cpp whose skipped layers have no attention (`gguf`).
 */
import { type Command, Option } from 'commander';

import { DEFAULT_MAX_SHARD_BYTES, EXPORT_FORMATS, exportModel, type ExportFormat } from '../export.js';
import { GGUF_TENSOR_TYPES, type GgufTensorTypeName } from '../gguf.js';
import {
  type ModelArgs,
  byteSizeOption,
  formatCount,
  interruptible,
  jsonOption,
  log,
  modelOptions,
  openModel,
  printResult,
  readFitFile,
} from './shared.js';

interface ExportOptions {
  fit: string;
  format: ExportFormat;
  out: string;
  force?: boolean;
  maxShardBytes?: number;
  ggufType?: GgufTensorTypeName;
  tokenizerPre?: string;
  json?: boolean;
}

async function runExport(m: ModelArgs, o: ExportOptions): Promise<void> {
  const fit = readFitFile(o.fit, { requireSkip: true });
  const model = await openModel(m);
  try {
    const r = await interruptible(undefined, (signal) =>
      exportModel(model, { skipped: fit.skipped!, theta: fit.theta, fingerprint: fit.fingerprint }, {
        out: o.out,
        format: o.format,
        force: o.force ?? false,
        maxShardBytes: o.maxShardBytes,
        settings: fit.settings,
        ggufType: o.ggufType,
        tokenizerPre: o.tokenizerPre,
        log,
        signal,
      }),
    );
    printResult(o.json, r, () => {
      const lines = [`out          ${r.out}`, `format       ${r.format}`, `files        ${r.files.join(', ')}`, `bytes        ${r.bytes}`];
      if (r.parameters !== undefined) lines.push(`parameters   ${formatCount(r.parameters)} (base ${formatCount(r.baseParameters ?? 0)})`);
      if (r.gguf)
        lines.push(
          `gguf         ${r.gguf.architecture}, ${r.gguf.tensorType}` +
            (r.gguf.attentionFree.length ? `, no attention in layers ${r.gguf.attentionFree.join(', ')}` : '') +
            (r.gguf.f16Fallback.length ? `, ${r.gguf.f16Fallback.length} tensors F16 (rows not a multiple of 32)` : ''),
          `tokenizer    ${r.gguf.tokenizer.model}${r.gguf.tokenizer.pre ? ` (${r.gguf.tokenizer.pre})` : ''}, ${r.gguf.tokenizer.tokens} tokens`,
        );
      if (r.maxAbsLogitDiff !== undefined)
        lines.push(`check        max |logit diff| ${r.maxAbsLogitDiff.toExponential(3)} (allowed ${r.tolerance?.toExponential(3)})`);
      return lines;
    });
  } finally {
    model.dispose();
  }
}

export function registerExport(program: Command): void {
  const cmd = program
    .command('export')
    .description(
      'write a fit as an adapter (scales), a folded checkpoint (hf), a DeciLM checkpoint without the skipped attention (decilm), ' +
        'or a GGUF file for llama.cpp / node-llama-cpp without the skipped attention (gguf)',
    );
  modelOptions.addTo(cmd)
    .requiredOption('--fit <file>', 'fit JSON: { skipped, theta: { bAtt, sAtt, bMlp, sMlp } } as select/rescale --json print')
    .addOption(new Option('--format <format>', 'export format').choices([...EXPORT_FORMATS]).makeOptionMandatory())
    .requiredOption('--out <path>', 'output folder, or .gguf file for --format gguf (must not exist unless --force)')
    .option('--force', 'replace an existing output folder')
    .addOption(byteSizeOption('--max-shard-bytes <n>', `largest safetensors shard in bytes (default ${DEFAULT_MAX_SHARD_BYTES})`))
    .addOption(
      new Option('--gguf-type <type>', "gguf: type of the 2-D weights (default: the checkpoint's)").choices([...GGUF_TENSOR_TYPES]),
    )
    .option('--tokenizer-pre <name>', "gguf: llama.cpp's pre-tokenizer name for a byte-level BPE tokenizer the export does not recognise")
    .addOption(jsonOption())
    .action(async (o: ExportOptions) => runExport(modelOptions.pick(o), o));
}
