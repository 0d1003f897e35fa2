/**
 * `hopscotch inspect`: a model summary (architecture, layers, heads, parameters, dtype)
 * without loading weights; also reads a .gguf file.
 */
import type { Command } from 'commander';

import { inspectGguf, isGgufFile, summarizeGguf } from '../gguf.js';
import { inspect } from '../model.js';
import { formatCount, jsonOption, printResult } from './shared.js';

function inspectGgufFile(file: string, json: boolean | undefined): void {
  const s = summarizeGguf(inspectGguf(file));
  printResult(json, { file, format: 'gguf', ...s }, () => {
    const lines = [
      `file         ${file}`,
      `format       GGUF v${s.version}, ${s.fileSize} bytes`,
      `architecture ${s.architecture}${s.name ? ` (${s.name})` : ''}`,
      `layers       ${s.layers}`,
      `tensors      ${s.tensors} (${Object.entries(s.types).map(([k, n]) => `${n} ${k}`).join(', ')})`,
      `parameters   ${formatCount(s.parameters)} (${s.parameters})`,
      `tokenizer    ${s.tokenizer ?? 'none'}, ${s.vocabSize} tokens${s.hasChatTemplate ? ', chat template' : ''}`,
    ];
    if (s.attentionFree.length) lines.push(`no attention ${s.attentionFree.join(', ')}`);
    return lines;
  });
}

function inspectModelDir(dir: string, json: boolean | undefined): void {
  const info = inspect(dir);
  const c = info.config;
  printResult(json, { dir, ...info }, () => {
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
    return lines;
  });
}

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('print a model summary (architecture, layers, heads, parameters, dtype) without loading weights; also reads a .gguf file')
    .argument('<dir>', 'model folder (config.json + safetensors), or a GGUF file')
    .addOption(jsonOption())
    .action((dir: string, o: { json?: boolean }) => (isGgufFile(dir) ? inspectGgufFile(dir, o.json) : inspectModelDir(dir, o.json)));
}
