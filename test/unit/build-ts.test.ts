// `npm run build:ts` (scripts/build-ts.mjs) replaces dist/ by rename once the new tree is
// complete, so a CLI running from dist/ during `npm test` is never left without it for
// the length of a compile. Checked on stand-in folders: the new tree arrives by rename
// (same inode, not a copy), a file opened in the old tree stays readable, a module
// imported from the old tree keeps working, and leftovers of dead builds are removed.
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

import { root } from '../helpers.js';

const { replaceDir, removeLeftovers } = (await import(pathToFileURL(join(root, 'scripts', 'build-ts.mjs')).href)) as {
  replaceDir: (next: string, target: string) => void;
  removeLeftovers: (parent: string, name: string) => void;
};

const work = mkdtempSync(join(tmpdir(), 'hopscotch-build-ts-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function tree(dir: string, version: string): void {
  mkdirSync(join(dir, 'cli'), { recursive: true });
  writeFileSync(join(dir, 'index.js'), `export const version = '${version}';\n`);
  writeFileSync(join(dir, 'cli', 'main.js'), `export { version } from '../index.js';\n`);
}

describe('build:ts replaces dist/ by rename', () => {
  it('puts the new tree in place by rename and removes the old one after', async () => {
    const dist = join(work, 'a', 'dist');
    const next = join(work, 'a', 'dist.next-1');
    tree(dist, 'old');
    tree(next, 'new');
    const nextInode = statSync(next).ino;
    const oldModule = (await import(pathToFileURL(join(dist, 'cli', 'main.js')).href)) as { version: string };
    const fd = openSync(join(dist, 'index.js'), 'r');

    replaceDir(next, dist);

    expect(statSync(dist).ino).toBe(nextInode);
    expect(existsSync(next)).toBe(false);
    expect(readFileSync(join(dist, 'index.js'), 'utf8')).toContain("'new'");
    // What a running process already holds is untouched: its modules, its open files.
    expect(oldModule.version).toBe('old');
    const buf = Buffer.alloc(64);
    const n = readSync(fd, buf, 0, 64, 0);
    closeSync(fd);
    expect(buf.subarray(0, n).toString()).toContain("'old'");
    // A module it imports afterwards comes from the complete new tree.
    const later = (await import(pathToFileURL(join(dist, 'index.js')).href + '?after')) as { version: string };
    expect(later.version).toBe('new');
    // Nothing is left beside dist/.
    expect(readdirSync(join(work, 'a'))).toEqual(['dist']);
  });

  it('works when there is no dist/ yet', () => {
    const dist = join(work, 'b', 'dist');
    const next = join(work, 'b', 'dist.next-2');
    tree(next, 'first');
    replaceDir(next, dist);
    expect(readFileSync(join(dist, 'index.js'), 'utf8')).toContain("'first'");
  });

  it('removes leftovers of builds whose process is gone, and keeps those of a live one', () => {
    const parent = join(work, 'c');
    mkdirSync(parent, { recursive: true });
    const dead = 2 ** 22 + 12345; // above Linux's pid_max default range for 64-bit (4194304)
    const live = process.ppid;
    for (const name of [`dist.next-${dead}`, `dist.old-${dead}`, `dist.next-${live}`, 'dist.keep', 'distnext-1']) mkdirSync(join(parent, name));
    removeLeftovers(parent, 'dist');
    expect(existsSync(join(parent, `dist.next-${dead}`))).toBe(false);
    expect(existsSync(join(parent, `dist.old-${dead}`))).toBe(false);
    expect(existsSync(join(parent, `dist.next-${live}`))).toBe(true);
    expect(existsSync(join(parent, 'dist.keep'))).toBe(true);
    expect(existsSync(join(parent, 'distnext-1'))).toBe(true);
  });

  it('is what npm run build:ts runs, and tsc writes into the new folder, never into dist/', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts['build:ts']).toBe('node scripts/build-ts.mjs');
    expect(pkg.scripts.test).toMatch(/^npm run build:ts && /);
    const script = readFileSync(join(root, 'scripts', 'build-ts.mjs'), 'utf8');
    expect(script).toMatch(/'--outDir', next/);
    expect(script).not.toMatch(/rmSync\(dist\b/);
  });
});
