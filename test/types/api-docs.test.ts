// docs/api/ is generated from the TypeScript sources by scripts/gen-api-docs.mjs; the
// committed pages must equal a fresh generation (run the script after changing a doc
// comment or a public type), and every export of the entry point must have a page entry.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

import * as api from '../../src/index.js';
import { root } from '../helpers.js';

const script = pathToFileURL(join(root, 'scripts', 'gen-api-docs.mjs')).href;
const { generateApiDocs } = (await import(script)) as { generateApiDocs: () => Map<string, string> };
const pages = generateApiDocs();
const apiDir = join(root, 'docs', 'api');

describe('docs/api', () => {
  it('equals a fresh generation from the sources', () => {
    const committed = readdirSync(apiDir).filter((f) => f.endsWith('.md')).sort();
    expect(committed).toEqual([...pages.keys()].sort());
    for (const [name, text] of pages) expect(readFileSync(join(apiDir, name), 'utf8'), `docs/api/${name}`).toBe(text);
  });

  it('lists every run-time export of the entry point in the index', () => {
    const index = pages.get('README.md')!;
    for (const name of Object.keys(api)) expect(index, name).toContain(`[\`${name}\`]`);
    for (const ns of ['theta', 'evaluation', 'plot'] as const)
      for (const name of Object.keys(api[ns])) expect(pages.get(`${ns}.md`)!, `${ns}.${name}`).toContain(`### ${name}\n`);
  });
});
