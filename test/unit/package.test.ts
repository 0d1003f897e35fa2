// What the npm tarball ships, from `npm pack --dry-run`, and the package.json contract.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { root } from '../helpers.js';

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

function packedFiles(): string[] {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
  const [info] = JSON.parse(out) as { files: { path: string }[] }[];
  return info.files.map((f) => f.path);
}

describe('npm tarball', () => {
  const files = packedFiles();

  it('ships the compiled library, the CLI, the demo model and its data, licenses and notices', () => {
    for (const f of [
      'dist/index.js',
      'dist/index.d.ts',
      'dist/cli/main.js',
      'models/stories260k/model.safetensors',
      'models/stories260k/tokenizer.json',
      'models/stories260k/config.json',
      'models/stories260k/SOURCE.md',
      'data/prompts/story-openings.jsonl',
      'data/gsm8k/LICENSE',
      'docs/README.md',
      'README.md',
      'LICENSE',
      'THIRD_PARTY_NOTICES.md',
      'CHANGELOG.md',
      'scripts/install.mjs',
      'binding.gyp',
      'CMakeLists.txt',
      'native-sources.json',
    ])
      expect(files, f).toContain(f);
  });

  it('ships the native sources that the source build reads, and every one of them', () => {
    const sources = JSON.parse(readFileSync(join(root, 'native-sources.json'), 'utf8'));
    for (const f of [...sources.core, ...sources.core_avx2, ...sources.core_avx512, ...sources.addon]) expect(files, f).toContain(f);
  });

  it('ships nothing else: no tests, sources of the TypeScript, benchmarks, examples, CI or build output', () => {
    const allowed = [
      /^dist\/.*\.(js|d\.ts)$/,
      /^prebuilds\//,
      /^models\/stories260k\//,
      /^data\//,
      /^native\/(core|addon|cuda)\//,
      /^(docs\/README\.md|README\.md|CHANGELOG\.md|LICENSE|THIRD_PARTY_NOTICES\.md|package\.json)$/,
      /^(CMakeLists\.txt|binding\.gyp|native-sources\.json|scripts\/install\.mjs|scripts\/cmake-js-as-node-gyp\.mjs)$/,
    ];
    const stray = files.filter((f) => !allowed.some((re) => re.test(f)));
    expect(stray).toEqual([]);
    expect(files.some((f) => f.startsWith('dist/') && f.endsWith('.map'))).toBe(false);
  });
});

describe('package.json', () => {
  it('declares engines, a bin, and exports with the types condition first', () => {
    expect(pkg.engines.node).toBe('>=20');
    expect(pkg.bin.hopscotch).toBe('./dist/cli/main.js');
    expect(Object.keys(pkg.exports['.'])[0]).toBe('types');
    expect(pkg.type).toBe('module');
    expect(pkg.version).toMatch(/^\d+\.\d+\.\d+(-[\w.]+)?$/);
  });

  it('keeps native build tooling as runtime dependencies (a source build needs them) and test tools as dev ones', () => {
    for (const d of ['node-addon-api', 'node-gyp-build', 'cmake-js', '@huggingface/tokenizers', '@huggingface/jinja'])
      expect(pkg.dependencies[d], d).toBeDefined();
    for (const d of ['vitest', 'typescript', 'prebuildify']) expect(pkg.devDependencies[d], d).toBeDefined();
  });
});
