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

/**
 * The result of a `--json` run: stdout must be exactly one line (the convention of every
 * command), parsed as one JSON object.
 */
export function jsonResult<T = Record<string, unknown>>(r: CliResult): T {
  const lines = r.stdout.trimEnd().split('\n');
  if (lines.length !== 1) throw new Error(`--json printed ${lines.length} lines on stdout (exit ${r.code}): ${r.stdout.slice(0, 500)}\n${r.stderr}`);
  const j = JSON.parse(lines[0]) as unknown;
  if (!j || typeof j !== 'object' || Array.isArray(j)) throw new Error(`--json printed ${lines[0].slice(0, 200)}, not one object`);
  return j as T;
}

/** Polls `cond` every `every` ms until it holds; fails after `ms`. */
export async function waitFor(cond: () => boolean, what: string, ms = 30_000, every = 5): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}
