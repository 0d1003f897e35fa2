/** Registers every subcommand on the program. */
import type { Command } from 'commander';

import { inspect } from '../model.js';
import { formatCount, printJson } from './output.js';

function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('print a model summary (architecture, layers, heads, parameters, dtype) without loading weights')
    .argument('<dir>', 'model folder (config.json + safetensors)')
    .option('--json', 'print the summary as one JSON object')
    .action((dir: string, opts: { json?: boolean }) => {
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

export function registerCommands(program: Command): void {
  registerInspect(program);
}
