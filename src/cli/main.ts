#!/usr/bin/env node
/**
 * The `hopscotch` command line: the library's surface from a shell.
 * Results go to stdout (`--json`: the last line is the result object); progress and
 * logs go to stderr. Errors print their code and exit with status 1.
 */
import { Command, CommanderError } from 'commander';

import { HopscotchError } from '../errors.js';
import { registerCommands } from './commands.js';

const program = new Command();
program
  .name('hopscotch')
  .description('Skip redundant attention blocks in decoder LLMs and rescale the rest (Hopscotch).')
  .showHelpAfterError()
  .exitOverride();

registerCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  const e = err as { code?: string; message?: string; name?: string };
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode;
  } else if (e?.name === 'AbortError' || e?.code === 'HOPSCOTCH_ERR_ABORTED') {
    process.stderr.write('hopscotch: interrupted\n');
    process.exitCode = 130;
  } else if (err instanceof HopscotchError) {
    process.stderr.write(`hopscotch: ${err.code}: ${err.message}\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(`hopscotch: ${e?.code ?? 'error'}: ${e?.message ?? String(err)}\n`);
    process.exitCode = 1;
  }
}
