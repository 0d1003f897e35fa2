#!/usr/bin/env node
/**
 * Compiles src/ into dist/ (`npm run build:ts`, run by `npm test` and `prepare`) without
 * taking dist/ away from a CLI that runs from it meanwhile: tsc writes a fresh sibling
 * folder, which then replaces dist/ by rename, and only then is the old tree deleted. A
 * running `hopscotch` keeps its loaded modules, and the files it opens later (a probe
 * worker, a lazily imported command) come from a complete tree, old or new; dist/ is
 * absent only between two renames, never for the length of a compile.
 *
 *   node scripts/build-ts.mjs
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** True while process `pid` exists (a concurrent build's folders are left alone). */
function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

/** Removes `<name>.next-PID` and `<name>.old-PID` folders left by builds that died midway. */
export function removeLeftovers(parent, name) {
  const pattern = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(next|old)-(\\d+)$`);
  for (const entry of readdirSync(parent)) {
    const m = pattern.exec(entry);
    if (m && Number(m[2]) !== process.pid && !alive(Number(m[2]))) rmSync(join(parent, entry), { recursive: true, force: true });
  }
}

/**
 * Puts the complete folder `next` at `target` by rename (no copy): the old `target`, if
 * any, is first renamed aside and removed once `next` is in place. Files already open in
 * the old tree stay readable.
 */
export function replaceDir(next, target) {
  const old = `${target}.old-${process.pid}`;
  const hadOld = existsSync(target);
  if (hadOld) renameSync(target, old);
  renameSync(next, target);
  if (hadOld) rmSync(old, { recursive: true, force: true });
}

function main() {
  const dist = join(root, 'dist');
  const next = `${dist}.next-${process.pid}`;
  removeLeftovers(root, 'dist');
  rmSync(next, { recursive: true, force: true });
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  try {
    execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', next], { stdio: 'inherit' });
    chmodSync(join(next, 'cli', 'main.js'), 0o755);
  } catch (err) {
    rmSync(next, { recursive: true, force: true });
    process.exitCode = typeof err.status === 'number' ? err.status : 1;
    return;
  }
  replaceDir(next, dist);
}

if (process.argv[1] && basename(process.argv[1]) === 'build-ts.mjs') main();
