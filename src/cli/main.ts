#!/usr/bin/env node
/**
 * The `hopscotch` command line: the library's surface from a shell, one file per command
 * (`cmd-<name>.ts`) over the conventions of `shared.ts` (stdout, `--json`, exit status).
 */
import { Command, CommanderError } from 'commander';

import { registerBench } from './cmd-bench.js';
import { registerData } from './cmd-data.js';
import { registerDemo } from './cmd-demo.js';
import { registerEval } from './cmd-eval.js';
import { registerExport } from './cmd-export.js';
import { registerInspect } from './cmd-inspect.js';
import { registerProbe } from './cmd-probe.js';
import { registerRescale } from './cmd-rescale.js';
import { registerRun } from './cmd-run.js';
import { registerSelect } from './cmd-select.js';
import { configureErrors, reportError } from './shared.js';

const program = new Command();
program
  .name('hopscotch')
  .description('Skip redundant attention blocks in decoder LLMs and rescale the rest (Hopscotch).')
  .exitOverride();
configureErrors(program);

for (const register of [
  registerDemo,
  registerRun,
  registerSelect,
  registerRescale,
  registerData,
  registerProbe,
  registerExport,
  registerEval,
  registerBench,
  registerInspect,
])
  register(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // Commander has printed its own errors (and help) already.
  process.exitCode = err instanceof CommanderError ? err.exitCode : reportError(err);
}
