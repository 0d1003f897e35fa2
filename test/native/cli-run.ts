// Runs the built CLI (`node dist/cli/main.js ...`) as a user runs it, for the CLI tests.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';

import { root } from '../helpers.js';

export const mainJs = join(root, 'dist', 'cli', 'main.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts the CLI in `cwd`; `done` settles when the process closes. */
export function startCli(cwd: string, args: string[]): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [mainJs, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}
